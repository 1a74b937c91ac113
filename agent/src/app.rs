//! Wiring only: builds the store, steps, controller, reconciler and API
//! server, runs them, and shuts them down in order.

use std::{future::Future, sync::Arc};

use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{Instrument, error, info, info_span, warn};

use crate::{
    addons,
    config::{BootConfig, RemoteApi},
    control::{Collaborators, Controller, ControllerParts, RemoteApiInfo},
    events::EventBus,
    host::{HostInfo, LinuxHost},
    network,
    reconcile::{Reconciler, StatusBoard},
    servers::{
        grpc::{self, ServeError},
        metrics::{self, Metrics, MetricsError, ReconcileMetrics},
    },
    services,
    state::{StateError, StateStore},
    step::{Step, StepName},
    storage, vip,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Key(#[from] network::KeyError),
    #[error(transparent)]
    Backend(#[from] network::BackendError),
    /// A task the agent cannot run without died; the supervisor (zinit,
    /// systemd) restarts the agent.
    #[error("the {task} task crashed: {source}")]
    Crashed {
        task: &'static str,
        source: tokio::task::JoinError,
    },
}

/// The parts of this build: every step, and the VIP engine and host they
/// share with the control core.
#[derive(Debug)]
pub struct Wiring {
    pub storage: storage::Storage,
    pub network: Arc<network::NetworkStep>,
    pub services: services::Services,
    pub vip: vip::VipStep,
    pub vip_engine: vip::VipEngine,
    pub host: Arc<dyn HostInfo>,
}

impl Wiring {
    /// The steps in reconcile order, and the control core's collaborators
    /// over the same parts.
    pub fn assemble(self) -> (Vec<Arc<dyn Step>>, Collaborators) {
        // Add-on manifests go where this node's k3s reads them.
        let k3s = addons::K3sPaths::under(&self.services.paths().k3s_data_dir);
        let storage = Arc::new(self.storage);
        let services = Arc::new(self.services);
        let steps: Vec<Arc<dyn Step>> = vec![
            storage.clone(),
            self.network.clone(),
            services.clone(),
            Arc::new(self.vip),
            Arc::new(addons::AddonsStep::new(k3s)),
        ];
        debug_assert!(steps.iter().map(|s| s.name()).eq(StepName::ORDER));
        let collaborators = Collaborators {
            host: self.host,
            volumes: storage,
            services,
            mesh: self.network,
            vip: Arc::new(self.vip_engine),
        };
        (steps, collaborators)
    }
}

/// Runs the agent until `shutdown` completes or serving fails.
pub async fn run(
    config: BootConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    let (store, loaded) = StateStore::open_with(
        &config.state_dir,
        &crate::control::stored_spec_context(
            &config.state_dir,
            &config.services.run_dir,
            config.services.persisted_dirs(),
        ),
    )?;
    match &loaded.desired {
        Some(desired) => info!(
            generation = desired.generation,
            "resuming from the stored spec"
        ),
        None if loaded.refused.is_none() => info!("no spec stored yet; waiting for Apply"),
        None => {}
    }
    // Listeners are bound before anything runs: a bad address or
    // certificate fails the start, naming what is wrong.
    let socket = grpc::bind_unix(&config.socket, config.socket_reader_gid).await?;
    let remote = match &config.remote_api {
        Some(remote) => Some(grpc::bind_tls(remote).await?),
        None => None,
    };
    let remote_info = match (&remote, &config.remote_api) {
        (Some(listener), Some(files)) => Some(RemoteApiInfo {
            address: listener.local_addr().unwrap_or(files.address),
            cert_not_after: listener.not_after,
            client_ca_not_after: listener.client_ca_not_after,
        }),
        _ => None,
    };
    let metrics_listener = match config.metrics_address {
        Some(address) => Some(metrics::bind(address).await?),
        None => None,
    };

    let token = CancellationToken::new();
    let supervisor = tfagent_supervisor::Supervisor::new(
        tfagent_supervisor::SupervisorConfig {
            record_dir: config.services.record_dir.clone(),
            log_dir: config.services.log_dir.clone(),
            cgroups: if config.service_cgroups {
                tfagent_supervisor::cgroup::CgroupLayout::detect()
            } else {
                tfagent_supervisor::cgroup::CgroupLayout::None
            },
            cgroup_parent: config.services.cgroup_parent.clone(),
        },
        token.clone(),
    );
    let capabilities = LinuxHost.capabilities();
    // What the services render depends on the host (the kubelet on cgroup
    // v1): known before adoption compares definitions.
    let mut service_paths = config.services.clone();
    service_paths.host_cgroup_v1 = matches!(
        capabilities.cgroup_mode,
        crate::host::CgroupMode::V1 | crate::host::CgroupMode::Hybrid
    );
    // Services a previous agent started are adopted before anything else
    // runs, so nothing starts them twice.
    if let Some(desired) = &loaded.desired {
        let resumed = services::resume(&supervisor, &desired.spec, &service_paths);
        if !resumed.is_empty() {
            info!(services = ?resumed, "adopted the services still running");
        }
        // A running keepalived keeps the VIP where it is: adopt it too.
        if let Some((_, def)) = vip::wanted(&desired.spec, &config.vip).keepalived
            && let Ok(true) = supervisor.resume(def)
        {
            info!("adopted the running keepalived");
        }
    }
    let key = Arc::new(network::key::load_or_generate(store.dir())?);
    let backend = match network::choose_backend(config.wireguard_backend, &capabilities) {
        Ok(backend) => backend,
        // With neither, the network step fails and says why; the agent
        // still serves.
        Err(network::BackendError::Neither) => {
            warn!("the host has neither the wireguard module nor wireguard-go");
            network::Backend::Userspace
        }
        Err(error) => return Err(error.into()),
    };
    info!(%backend, public_key = %key.public(), "WireGuard");
    let reconcile_now = Arc::new(tokio::sync::Notify::new());
    let userspace = network::userspace(
        capabilities.wireguard_go.as_deref(),
        supervisor.clone(),
        Arc::clone(&reconcile_now),
    );
    // A healthy interface gives the network step no reason to touch its
    // wireguard-go: adopt it now, as the services above.
    if backend == network::Backend::Userspace
        && let Some(desired) = &loaded.desired
    {
        userspace.adopt(&desired.spec.network.wireguard.interface);
    }
    let network = Arc::new(network::step(backend, key, userspace));
    let storage = storage::Storage::linux(&config.state_dir, config.allowed_devices.clone());
    let keepalived_status = supervisor.clone();
    let vip_files: Arc<dyn vip::RunDir> = Arc::new(vip::linux::LinuxRunDir::new(&config.vip.dir));
    let (vip_engine, vip_task) = vip::VipEngine::new(
        vip::linux::engine_parts(
            &config.vip,
            network.clone(),
            Arc::clone(&vip_files),
            Arc::new(move || {
                keepalived_status
                    .watch(vip::keepalived::SERVICE)
                    .ok()
                    .and_then(|s| s.borrow().pid)
            }),
        ),
        token.clone(),
    );
    let vip_task = tokio::spawn(vip_task);
    let (steps, collaborators) = Wiring {
        storage,
        network,
        services: services::Services::new(supervisor.clone(), service_paths),
        vip: vip::VipStep::new(
            config.vip.clone(),
            Arc::new(supervisor.clone()),
            vip_engine.clone(),
            vip_files,
        ),
        vip_engine,
        host: Arc::new(LinuxHost),
    }
    .assemble();
    let status = Arc::new(StatusBoard::new(&StepName::ORDER));
    let events = Arc::new(EventBus::default());
    let controller = Arc::new(Controller::new(ControllerParts {
        store,
        loaded,
        steps: steps.clone(),
        status: Arc::clone(&status),
        events: Arc::clone(&events),
        collaborators,
        remote_api: remote_info.clone(),
    }));
    // An unreadable trial record must not keep the agent from serving: it
    // is reported, and the stored spec stands.
    if let Err(error) = controller.resume_trial() {
        error!(%error, "cannot resume the spec on trial; keeping the stored spec");
    }

    let tracker = TaskTracker::new();
    if let (Some(info), Some(files)) = (remote_info, config.remote_api.clone()) {
        tracker.spawn(watch_expiry(info, files, token.clone()));
    }
    let reconcile_metrics = Arc::new(ReconcileMetrics::default());
    if let Some(listener) = metrics_listener {
        let metrics = Arc::new(Metrics::new(&reconcile_metrics, Arc::clone(&controller)));
        tracker.spawn(metrics::serve(listener, metrics, token.clone()));
    }
    let reconciler = Reconciler::new(steps, status, events, config.resync_interval)
        .with_observer(reconcile_metrics)
        .with_trigger(reconcile_now);
    let reconciling = tokio::spawn(
        reconciler
            .run(controller.watch_desired(), token.clone())
            .instrument(info_span!("reconciler")),
    );
    // An agent whose reconciler died must not go on answering as if all
    // were well: stop serving, and exit with an error.
    let on_crash = token.clone();
    let reconciler_watch = tracker.spawn(async move {
        let result = reconciling.await;
        if result.is_err() {
            error!("the reconciler crashed; stopping");
            on_crash.cancel();
        }
        result
    });
    let on_shutdown = token.clone();
    tracker.spawn(async move {
        tokio::select! {
            () = shutdown => info!("shutting down"),
            () = on_shutdown.cancelled() => {}
        }
        on_shutdown.cancel();
    });

    notify(&[sd_notify::NotifyState::Ready]);
    if let Some(timeout) = sd_notify::watchdog_enabled() {
        tracker.spawn(feed_watchdog(timeout, token.clone()).instrument(info_span!("watchdog")));
    }
    let local = grpc::LocalAccess {
        uids: config.socket_allowed_uids.clone(),
        reader_gid: config.socket_reader_gid,
    };
    let served = grpc::serve(socket, remote, controller, local, token.clone()).await;
    notify(&[sd_notify::NotifyState::Stopping]);
    token.cancel();
    tracker.close();
    tracker.wait().await;
    // A holder hands the VIP over before the agent goes.
    if vip_task.await.is_err() {
        error!("the VIP task crashed");
    }
    // The services keep running; the next agent adopts them.
    supervisor.detached().await;
    served?;
    match reconciler_watch.await {
        Ok(Ok(())) => {}
        Ok(Err(source)) | Err(source) => {
            return Err(AppError::Crashed {
                task: "reconciler",
                source,
            });
        }
    }
    info!("stopped");
    Ok(())
}

/// Tells systemd (Type=notify) about our state; a no-op elsewhere.
fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(error) = sd_notify::notify(state)
    {
        warn!(%error, "cannot notify systemd");
    }
}

/// Warns once a day while a certificate of the remote API is expired or
/// about to expire (at start, binding warned already).
async fn watch_expiry(info: RemoteApiInfo, files: RemoteApi, token: CancellationToken) {
    let day = std::time::Duration::from_secs(24 * 3600);
    loop {
        tokio::select! {
            () = tokio::time::sleep(day) => {}
            () = token.cancelled() => return,
        }
        grpc::warn_if_expiring("node", &files.cert, info.cert_not_after);
        grpc::warn_if_expiring("client CA", &files.client_ca, info.client_ca_not_after);
    }
}

/// Pings systemd's watchdog (`WatchdogSec=`) at half its timeout. The pings
/// come from the same runtime that serves and reconciles, so an agent whose
/// runtime is wedged stops pinging and systemd restarts it.
async fn feed_watchdog(timeout: std::time::Duration, token: CancellationToken) {
    info!(?timeout, "feeding the systemd watchdog");
    let mut ticks = tokio::time::interval(timeout / 2);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => notify(&[sd_notify::NotifyState::Watchdog]),
            () = token.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use tfagent_spec::fixtures::example_spec;

    #[tokio::test]
    async fn every_step_acts_and_says_what_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let steps = crate::test_support::steps(dir.path());
        let names: Vec<StepName> = steps.iter().map(|s| s.name()).collect();
        assert_eq!(names, StepName::ORDER);

        let mut spec = example_spec("server-init");
        let plans = crate::step::plan_all(&steps, &spec).await;
        for plan in &plans {
            assert_eq!(plan.error, None, "{plan:?}");
        }
        // On this host the example's pool and disk are absent: storage
        // refuses, before any change.
        assert!(
            plans[0].actions[0]
                .starts_with("refuse volume k3s: no btrfs pool is mounted at /mnt/ssd-1"),
            "{:?}",
            plans[0]
        );
        let peers = plans[1]
            .actions
            .iter()
            .filter(|a| a.starts_with("add peer"))
            .count();
        assert_eq!(peers, 5, "{:?}", plans[1]);
        assert_eq!(plans[2].actions.len(), 5, "{:?}", plans[2]);
        assert_eq!(plans[2].actions[3], "start containerd");
        assert_eq!(plans[3].actions[0], "write keepalived's configuration");
        assert!(plans[3].actions[3].contains("election of VIP 10.100.0.250"));
        assert!(
            plans[4]
                .actions
                .iter()
                .any(|a| a == "write tfagent-metallb.yaml"),
            "{:?}",
            plans[4]
        );

        // Asked nothing: nothing to do.
        spec.storage.volumes.clear();
        spec.network.vip = None;
        spec.addons = Default::default();
        let plans = crate::step::plan_all(&steps, &spec).await;
        for index in [0, 3, 4] {
            assert!(plans[index].actions.is_empty(), "{index}");
        }

        let worker = example_spec("agent");
        let plans = crate::step::plan_all(&steps, &worker).await;
        let vip = &plans[3];
        assert_eq!(
            vip.actions,
            ["route VIP 10.100.0.250 to whichever server holds it"]
        );
    }
}
