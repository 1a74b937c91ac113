//! Wiring only: builds the store, steps, controller, reconciler and API
//! server, runs them, and shuts them down in order.

use std::{future::Future, sync::Arc};

use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{Instrument, error, info, info_span, warn};

use crate::{
    addons,
    api::{self, ServeError},
    config::BootConfig,
    control::Controller,
    events::EventBus,
    host::{HostInfo, LinuxHost},
    net,
    reconcile::{Reconciler, StatusBoard, Step, StepName},
    state::{StateError, StateStore},
    storage, supervise, vip,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    // ---- network ----
    #[error(transparent)]
    Key(#[from] net::KeyError),
    #[error(transparent)]
    Backend(#[from] net::BackendError),
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    /// A task the agent cannot run without died; the supervisor (zinit,
    /// systemd) restarts the agent.
    #[error("the {task} task crashed: {source}")]
    Crashed {
        task: &'static str,
        source: tokio::task::JoinError,
    },
}

/// The steps in reconcile order, with this network step.
pub fn steps(network: Arc<dyn Step>) -> Vec<Arc<dyn Step>> {
    let steps: Vec<Arc<dyn Step>> = vec![
        Arc::new(storage::step()),
        network,
        Arc::new(supervise::step()),
        Arc::new(vip::step()),
        Arc::new(addons::step()),
    ];
    debug_assert!(steps.iter().map(|s| s.name()).eq(StepName::ORDER));
    steps
}

/// Runs the agent until `shutdown` completes or serving fails.
pub async fn run(
    config: BootConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    let (store, loaded) = StateStore::open(&config.state_dir)?;
    match &loaded.desired {
        Some(desired) => info!(
            generation = desired.generation,
            "resuming from the stored spec"
        ),
        None if loaded.refused.is_none() => info!("no spec stored yet; waiting for Apply"),
        None => {}
    }
    // ---- network ----
    let key = Arc::new(net::NodeKey::load_or_generate(store.dir())?);
    let capabilities = LinuxHost.capabilities();
    let backend = match net::choose_backend(config.wireguard_backend, &capabilities) {
        Ok(backend) => backend,
        // With neither, the network step fails and says why; the agent
        // still serves.
        Err(net::BackendError::Neither) => {
            warn!("the host has neither the wireguard module nor wireguard-go");
            net::Backend::Userspace
        }
        Err(error) => return Err(error.into()),
    };
    info!(%backend, public_key = %key.public(), "WireGuard");
    let network = Arc::new(net::step(
        backend,
        key,
        capabilities.wireguard_go.as_deref(),
    ));
    let steps = steps(network.clone());
    let status = Arc::new(StatusBoard::new(&StepName::ORDER));
    let events = Arc::new(EventBus::default());
    let controller = Arc::new(
        Controller::new(
            store,
            loaded,
            steps.clone(),
            Arc::clone(&status),
            Arc::clone(&events),
            Arc::new(LinuxHost),
        )
        .with_network(network),
    );
    controller.resume_trial()?;

    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let socket = api::bind_unix(&config.socket).await?;

    let reconciler = Reconciler::new(steps, status, events, config.resync_interval);
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
    let served = api::serve(
        socket,
        controller,
        &config.socket_allowed_uids,
        token.clone(),
    )
    .await;
    notify(&[sd_notify::NotifyState::Stopping]);
    token.cancel();
    tracker.close();
    tracker.wait().await;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::test_support::example_spec;

    #[tokio::test]
    async fn every_step_says_what_is_asked_and_only_network_acts() {
        let steps = steps(Arc::new(crate::test_support::network_step()));
        let names: Vec<StepName> = steps.iter().map(|s| s.name()).collect();
        assert_eq!(names, StepName::ORDER);

        let mut spec = example_spec("server-init");
        let plans = crate::reconcile::plan_all(&steps, &spec).await;
        let plans: Vec<_> = plans.into_iter().map(Result::unwrap).collect();
        assert!(plans[1].implemented, "{:?}", plans[1]);
        assert!(
            plans
                .iter()
                .enumerate()
                .all(|(i, p)| i == 1 || !p.implemented)
        );
        assert_eq!(plans[0].actions.len(), spec.storage.volumes.len());
        assert!(plans[0].actions[0].contains("/var/lib/rancher/k3s"));
        let peers = plans[1]
            .actions
            .iter()
            .filter(|a| a.starts_with("add peer"))
            .count();
        assert_eq!(peers, 5, "{:?}", plans[1]);
        assert!(plans[2].actions[1].starts_with("k3s server (server-init)"));
        assert!(plans[3].actions[0].contains("priority 150"));
        assert!(plans[4].actions[0].contains("metallb"));

        // Asked nothing: an empty list, which blocks no later step.
        spec.storage.volumes.clear();
        spec.network.vip = None;
        spec.addons = Default::default();
        let plans = crate::reconcile::plan_all(&steps, &spec).await;
        for index in [0, 3, 4] {
            assert!(plans[index].as_ref().unwrap().actions.is_empty(), "{index}");
        }

        let worker = example_spec("agent");
        let plans = crate::reconcile::plan_all(&steps, &worker).await;
        let vip = plans[3].as_ref().unwrap();
        assert!(vip.actions[0].ends_with("follow the holder"), "{vip:?}");
    }
}
