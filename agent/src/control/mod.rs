//! The agent's control core, free of any transport: accepts specs (plainly,
//! as a dry run, or on trial), resets, and answers reads about the spec,
//! status, host and events. The gRPC server is a thin shell over it.
//!
//! [`Controller`] is a facade over its parts: [`commit`] (generations on
//! disk and in memory), [`trial`] (try mode), [`reset`], [`views`] (read
//! models) and [`apply`]; what it needs of the rest of the agent comes
//! through the traits in [`ports`].

mod apply;
mod commit;
mod error;
#[cfg(test)]
pub(crate) mod fake;
mod linux;
pub mod ports;
mod reset;
mod trial;
mod views;

use std::{sync::Arc, time::SystemTime};

use tfagent_spec::{SpecDocument, wgquick::HubInfo};
use tokio::sync::{broadcast, watch};

pub use apply::{ApplyMode, ApplyOutcome, ApplyRights, stored_spec_context};
pub use error::ControlError;
pub use ports::Collaborators;
pub use reset::ResetOutcome;
pub use trial::{MAX_TRY_TIMEOUT, TrialStatus};
pub use views::{NodeInfo, NodeStatus, RemoteApiInfo, VERSION};

use crate::{
    events::{Event, EventBus},
    reconcile::StatusBoard,
    state::{Desired, Loaded, StateStore},
    step::Step,
    storage::{DiskInfo, VolumeStatus},
};
use commit::Committer;
use trial::Trials;

/// Everything a [`Controller`] is made of.
#[derive(Debug)]
pub struct ControllerParts {
    pub store: StateStore,
    pub loaded: Loaded,
    /// The steps in reconcile order.
    pub steps: Vec<Arc<dyn Step>>,
    /// The board the reconciler writes.
    pub status: Arc<StatusBoard>,
    pub events: Arc<EventBus>,
    pub collaborators: Collaborators,
    /// The remote API's listener, when one is configured.
    pub remote_api: Option<RemoteApiInfo>,
}

#[derive(Debug)]
pub struct Controller {
    committer: Arc<Committer>,
    trials: Arc<Trials>,
    steps: Vec<Arc<dyn Step>>,
    status: Arc<StatusBoard>,
    parts: Collaborators,
    started_at: SystemTime,
    remote_api: Option<RemoteApiInfo>,
}

impl Controller {
    pub fn new(parts: ControllerParts) -> Self {
        let committer = Arc::new(Committer::new(parts.store, parts.loaded, parts.events));
        Self {
            trials: Arc::new(Trials::new(Arc::clone(&committer))),
            committer,
            steps: parts.steps,
            status: parts.status,
            parts: parts.collaborators,
            started_at: SystemTime::now(),
            remote_api: parts.remote_api,
        }
    }

    /// The desired spec as the reconciler follows it.
    pub fn watch_desired(&self) -> watch::Receiver<Option<Arc<Desired>>> {
        self.committer.watch()
    }

    /// Validates `document`, plans it, and unless this is a dry run stores
    /// it as the next generation when it differs from the stored spec.
    pub async fn apply(
        &self,
        document: SpecDocument,
        mode: ApplyMode,
        rights: ApplyRights,
    ) -> Result<ApplyOutcome, ControlError> {
        apply::apply(
            document,
            mode,
            rights,
            &self.parts,
            &self.steps,
            &self.committer,
            &self.trials,
        )
        .await
    }

    /// Keeps the spec on trial as `generation`.
    pub async fn confirm(&self, generation: u64) -> Result<u64, ControlError> {
        self.trials.confirm(generation).await
    }

    /// Takes up a trial persisted by an earlier run.
    pub fn resume_trial(&self) -> Result<(), ControlError> {
        let context = stored_spec_context(
            self.parts.volumes.state_dir(),
            self.parts.services.run_dir(),
            self.parts.services.persisted_dirs(),
        );
        self.trials.resume(&context)
    }

    /// Takes back what the agent set up for the stored spec, then forgets
    /// it (see the Reset RPC for what is and is not done). `confirm` must
    /// be the stored spec's node name.
    pub async fn reset(&self, confirm: &str) -> Result<ResetOutcome, ControlError> {
        reset::reset(
            confirm,
            &self.committer,
            &self.trials,
            &self.steps,
            &self.status,
        )
        .await
    }

    /// The stored spec with secrets replaced by the redaction placeholder.
    pub fn redacted_spec(&self) -> Option<(u64, SpecDocument)> {
        self.committer
            .current()
            .map(|d| (d.generation, d.spec.redacted_document()))
    }

    pub fn status(&self) -> NodeStatus {
        views::status(&self.committer, &self.trials, &self.status, &self.parts)
    }

    /// [`Self::status`] with the live state of the WireGuard interface.
    pub async fn full_status(&self) -> NodeStatus {
        views::full_status(&self.committer, &self.trials, &self.status, &self.parts).await
    }

    pub async fn info(&self) -> Result<NodeInfo, ControlError> {
        views::info(
            &self.committer,
            &self.parts,
            self.started_at,
            self.remote_api.clone(),
        )
        .await
    }

    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        self.committer.events().subscribe()
    }

    /// Each volume of the stored spec as the host has it now.
    pub async fn volumes(&self) -> Result<Vec<VolumeStatus>, ControlError> {
        match self.committer.current() {
            Some(current) => Ok(self.parts.volumes.status(&current.spec).await?),
            None => Ok(Vec::new()),
        }
    }

    /// The host's block devices and whether volumes may use them.
    pub async fn disks(&self) -> Result<Vec<DiskInfo>, ControlError> {
        Ok(self.parts.volumes.disks().await?)
    }

    /// A server's admin kubeconfig, pointing at the VIP.
    pub fn kubeconfig(&self) -> Result<String, ControlError> {
        views::kubeconfig(&self.committer, &self.parts)
    }

    /// The last `tail` lines of a service's output, and new ones as they come.
    pub fn service_logs(
        &self,
        service: &str,
        tail: usize,
    ) -> Result<(Vec<String>, broadcast::Receiver<String>), ControlError> {
        Ok(self.parts.services.logs(service, tail)?)
    }

    /// Restarts a supervised service now.
    pub fn restart_service(&self, service: &str) -> Result<(), ControlError> {
        tracing::info!(service, "restart requested");
        Ok(self.parts.services.restart(service)?)
    }

    /// What a user's wg-quick config needs from this node.
    pub fn access_hub(&self, name: &str) -> Result<HubInfo, ControlError> {
        views::access_hub(&self.committer, &self.parts, name)
    }
}

#[cfg(test)]
mod tests;
