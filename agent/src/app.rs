//! Wiring only: builds the store, steps, controller, reconciler and API
//! server, runs them, and shuts them down in order.

use std::{future::Future, sync::Arc};

use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{Instrument, error, info, info_span, warn};

use crate::{
    addons::AddonsStep,
    api::{self, ServeError},
    config::BootConfig,
    control::Controller,
    events::EventBus,
    host::LinuxHost,
    net::NetworkStep,
    reconcile::{Reconciler, StatusBoard, Step, StepName},
    state::{StateError, StateStore},
    storage::StorageStep,
    supervise::ServicesStep,
    vip::VipStep,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// A task the agent cannot run without died; the supervisor (zinit,
    /// systemd) restarts the agent.
    #[error("the {task} task crashed: {source}")]
    Crashed {
        task: &'static str,
        source: tokio::task::JoinError,
    },
}

/// The steps in reconcile order.
pub fn steps() -> Vec<Arc<dyn Step>> {
    let steps: Vec<Arc<dyn Step>> = vec![
        Arc::new(StorageStep),
        Arc::new(NetworkStep),
        Arc::new(ServicesStep),
        Arc::new(VipStep),
        Arc::new(AddonsStep),
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
    let steps = steps();
    let status = Arc::new(StatusBoard::new(&StepName::ORDER));
    let events = Arc::new(EventBus::default());
    let controller = Arc::new(Controller::new(
        store,
        loaded,
        steps.clone(),
        Arc::clone(&status),
        Arc::clone(&events),
        Arc::new(LinuxHost),
    ));

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
