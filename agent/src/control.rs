//! The agent's control core, free of any transport: accepts specs, and
//! answers reads about the spec, status, host and events. The gRPC layer in
//! `api/` is a thin shell over it.

use std::{sync::Arc, time::SystemTime};

use tokio::sync::{Mutex, broadcast, watch};
use tracing::info;

use crate::{
    events::{Event, EventBus, EventKind},
    host::{HostCapabilities, HostInfo},
    reconcile::{self, StatusBoard, Step, StepName, StepStatus},
    spec::{NodeSpec, Role, SpecDocument, ValidationContext, ValidationErrors},
    state::{Desired, StateError, StateStore},
};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the spec is invalid ({count} error(s)):\n{errors}", count = .0.len(), errors = .0)]
    Invalid(ValidationErrors),
    #[error("{0} is not served by this build")]
    Unsupported(&'static str),
    #[error("storing the spec: {0}")]
    State(#[from] StateError),
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    Apply,
    DryRun,
    /// Roll back unless confirmed; arrives with the network capability.
    Try,
}

/// The plan of one step as `Apply` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    pub step: StepName,
    pub implemented: bool,
    pub actions: Vec<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// The stored generation after this call.
    pub generation: u64,
    /// Whether the spec differs from the stored one.
    pub changed: bool,
    pub plan: Vec<PlannedStep>,
}

#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub version: &'static str,
    pub hostname: String,
    pub generation: u64,
    pub capabilities: HostCapabilities,
    pub started_at: SystemTime,
}

#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub node_name: Option<String>,
    pub role: Option<Role>,
    pub desired_generation: u64,
    pub converged_generation: u64,
    pub steps: Vec<StepStatus>,
}

#[derive(Debug)]
pub struct Controller {
    store: Arc<StateStore>,
    /// Serialises `Apply` so generations grow by exactly one per change.
    apply_lock: Mutex<()>,
    desired: watch::Sender<Option<Arc<Desired>>>,
    steps: Vec<Arc<dyn Step>>,
    status: Arc<StatusBoard>,
    events: Arc<EventBus>,
    host: Arc<dyn HostInfo>,
    started_at: SystemTime,
}

impl Controller {
    pub fn new(
        store: StateStore,
        initial: Option<Desired>,
        steps: Vec<Arc<dyn Step>>,
        status: Arc<StatusBoard>,
        events: Arc<EventBus>,
        host: Arc<dyn HostInfo>,
    ) -> Self {
        Self {
            store: Arc::new(store),
            apply_lock: Mutex::new(()),
            desired: watch::Sender::new(initial.map(Arc::new)),
            steps,
            status,
            events,
            host,
            started_at: SystemTime::now(),
        }
    }

    /// The desired spec as the reconciler follows it.
    pub fn watch_desired(&self) -> watch::Receiver<Option<Arc<Desired>>> {
        self.desired.subscribe()
    }

    fn current(&self) -> Option<Arc<Desired>> {
        self.desired.borrow().clone()
    }

    /// Validates `document`, plans it, and unless this is a dry run stores it
    /// as the next generation when it differs from the stored spec.
    pub async fn apply(
        &self,
        document: SpecDocument,
        mode: ApplyMode,
    ) -> Result<ApplyOutcome, ControlError> {
        if mode == ApplyMode::Try {
            return Err(ControlError::Unsupported("apply mode `try`"));
        }
        let spec = document
            .validate(&ValidationContext::default())
            .map_err(ControlError::Invalid)?;
        let plan = self.plan(&spec).await;

        if mode == ApplyMode::DryRun {
            let current = self.current();
            return Ok(ApplyOutcome {
                generation: current.as_ref().map_or(0, |c| c.generation),
                changed: current.is_none_or(|c| c.spec != spec),
                plan,
            });
        }

        let _serialised = self.apply_lock.lock().await;
        let current = self.current();
        if let Some(current) = current.as_ref().filter(|c| c.spec == spec) {
            return Ok(ApplyOutcome {
                generation: current.generation,
                changed: false,
                plan,
            });
        }
        let desired = Desired {
            generation: current.map_or(0, |c| c.generation) + 1,
            spec,
        };
        let store = Arc::clone(&self.store);
        let to_save = desired.clone();
        tokio::task::spawn_blocking(move || store.save(&to_save))
            .await
            .map_err(|e| ControlError::Internal(format!("saving the spec: {e}")))??;
        let generation = desired.generation;
        info!(generation, node = %desired.spec.node_name, "spec accepted");
        self.desired.send_replace(Some(Arc::new(desired)));
        self.events.publish(generation, EventKind::SpecAccepted);
        Ok(ApplyOutcome {
            generation,
            changed: true,
            plan,
        })
    }

    async fn plan(&self, spec: &NodeSpec) -> Vec<PlannedStep> {
        reconcile::plan_all(&self.steps, spec)
            .await
            .into_iter()
            .zip(&self.steps)
            .map(|(result, step)| match result {
                Ok(plan) => PlannedStep {
                    step: plan.step,
                    implemented: plan.implemented,
                    actions: plan.actions,
                    error: None,
                },
                Err(error) => PlannedStep {
                    step: step.name(),
                    implemented: true,
                    actions: Vec::new(),
                    error: Some(error.to_string()),
                },
            })
            .collect()
    }

    /// The stored spec with secrets replaced by the redaction placeholder.
    pub fn redacted_spec(&self) -> Option<(u64, SpecDocument)> {
        self.current()
            .map(|d| (d.generation, d.spec.redacted_document()))
    }

    pub fn status(&self) -> NodeStatus {
        let current = self.current();
        NodeStatus {
            node_name: current.as_ref().map(|d| d.spec.node_name.to_string()),
            role: current.as_ref().map(|d| d.spec.role),
            desired_generation: current.as_ref().map_or(0, |d| d.generation),
            converged_generation: self.status.converged_generation(),
            steps: self.status.snapshot(),
        }
    }

    pub async fn info(&self) -> Result<NodeInfo, ControlError> {
        let host = Arc::clone(&self.host);
        // The probe reads /proc and /sys: blocking I/O.
        let (hostname, capabilities) =
            tokio::task::spawn_blocking(move || (host.hostname(), host.capabilities()))
                .await
                .map_err(|e| ControlError::Internal(format!("probing the host: {e}")))?;
        Ok(NodeInfo {
            version: VERSION,
            hostname,
            generation: self.current().map_or(0, |d| d.generation),
            capabilities,
            started_at: self.started_at,
        })
    }

    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::test_support::{controller, example_document};

    /// The example with a different node name per `n`, so each is a change.
    fn variant(n: usize) -> SpecDocument {
        let mut document = example_document("agent");
        document.node_name = format!("variant-{n}");
        document
    }

    #[tokio::test]
    async fn concurrent_applies_get_distinct_consecutive_generations() {
        let tmp = tempfile::tempdir().unwrap();
        let controller = controller(tmp.path());
        let tasks: Vec<_> = (0..16)
            .map(|n| {
                let controller = Arc::clone(&controller);
                tokio::spawn(async move { controller.apply(variant(n), ApplyMode::Apply).await })
            })
            .collect();
        let mut generations = Vec::new();
        for task in tasks {
            let outcome = task.await.unwrap().unwrap();
            assert!(outcome.changed);
            generations.push(outcome.generation);
        }
        generations.sort_unstable();
        assert_eq!(generations, (1..=16).collect::<Vec<_>>());

        // The stored spec is the one that got the last generation.
        let (generation, stored) = controller.redacted_spec().unwrap();
        assert_eq!(generation, 16);
        let (_, reloaded) = StateStore::open(tmp.path()).unwrap();
        let reloaded = reloaded.unwrap();
        assert_eq!(reloaded.generation, 16);
        assert_eq!(reloaded.spec.node_name.to_string(), stored.node_name);
    }

    #[tokio::test]
    async fn a_failed_write_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let controller = controller(tmp.path());
        controller
            .apply(variant(1), ApplyMode::Apply)
            .await
            .unwrap();
        let mut desired = controller.watch_desired();
        desired.borrow_and_update();

        // A directory where the spec file goes makes the rename fail, even
        // for root (file permissions would not stop root).
        let spec = tmp.path().join("spec.json");
        std::fs::remove_file(&spec).unwrap();
        std::fs::create_dir(&spec).unwrap();
        let error = controller
            .apply(variant(2), ApplyMode::Apply)
            .await
            .unwrap_err();
        assert!(matches!(error, ControlError::State(_)), "{error}");
        assert!(error.to_string().contains("spec.json"), "{error}");

        let (generation, document) = controller.redacted_spec().unwrap();
        assert_eq!((generation, document.node_name.as_str()), (1, "variant-1"));
        assert!(
            !desired.has_changed().unwrap(),
            "the reconciler was not told"
        );
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|name| name != "spec.json")
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    }

    #[tokio::test]
    async fn dry_run_never_stores_or_publishes() {
        let tmp = tempfile::tempdir().unwrap();
        let controller = controller(tmp.path());
        let outcome = controller
            .apply(variant(1), ApplyMode::DryRun)
            .await
            .unwrap();
        assert_eq!((outcome.generation, outcome.changed), (0, true));
        assert_eq!(outcome.plan.len(), StepName::ORDER.len());
        assert!(controller.redacted_spec().is_none());
        assert!(controller.subscribe().0.is_empty());
        assert!(!tmp.path().join("spec.json").exists());
    }
}
