//! The agent's control core, free of any transport: accepts specs, and
//! answers reads about the spec, status, host and events. The gRPC layer in
//! `api/` is a thin shell over it.

use std::{sync::Arc, time::SystemTime};

use tokio::sync::{Mutex, broadcast, watch};
use tracing::{Instrument, Span, info, warn};

use crate::{
    addons::prereq::{self, AddonHostFacts, AddonPrerequisites},
    events::{Event, EventBus, EventKind},
    host::{HostCapabilities, HostInfo},
    reconcile::{self, StatusBoard, Step, StepName, StepStatus},
    spec::{NodeSpec, Role, ServiceDirs, SpecDocument, ValidationContext, ValidationErrors},
    state::{Desired, Loaded, RefusedSpec, StateError, StateStore},
    storage::{self, DiskInfo, StorageError, VolumeStatus},
    supervise::{ServiceStatus, SuperviseError, Supervisor},
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
    // ---- storage ----
    #[error("reading storage: {0}")]
    Storage(#[from] StorageError),
    #[error("internal error while {what}: {source}")]
    Internal {
        what: &'static str,
        source: tokio::task::JoinError,
    },
    // ---- services ----
    #[error(transparent)]
    Service(#[from] SuperviseError),
    #[error("this agent supervises no services")]
    NoSupervisor,
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
    pub remote_api: Option<RemoteApiInfo>,
    /// What each add-on needs and whether the node has it.
    pub addons: Vec<AddonPrerequisites>,
}

/// One look at the host.
struct HostProbe {
    hostname: String,
    capabilities: HostCapabilities,
    addons: AddonHostFacts,
}

/// The remote API's listener and certificates, as `info` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteApiInfo {
    pub address: std::net::SocketAddr,
    pub cert_not_after: SystemTime,
    pub client_ca_not_after: SystemTime,
}

#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub node_name: Option<String>,
    pub role: Option<Role>,
    /// Set while the spec found on disk at startup stays refused.
    pub refused_spec: Option<RefusedSpec>,
    pub desired_generation: u64,
    pub converged_generation: u64,
    pub steps: Vec<StepStatus>,
    /// Supervised services, in start order.
    pub services: Vec<ServiceStatus>,
}

#[derive(Debug)]
pub struct Controller {
    committer: Arc<Committer>,
    steps: Vec<Arc<dyn Step>>,
    status: Arc<StatusBoard>,
    host: Arc<dyn HostInfo>,
    started_at: SystemTime,
    remote_api: Option<RemoteApiInfo>,
    // ---- storage ----
    /// Volume status, disks and device admission; `None` in tests without it.
    storage: Option<storage::Storage>,
    supervisor: Option<Supervisor>,
    /// The services' data dirs, which storage persists by default.
    service_dirs: Option<ServiceDirs>,
}

/// Stores accepted specs. Runs in its own task so that a caller who goes
/// away (a cancelled RPC) cannot leave the disk and memory disagreeing.
#[derive(Debug)]
struct Committer {
    store: StateStore,
    /// Serialises commits so generations grow by exactly one per change.
    lock: Mutex<()>,
    desired: watch::Sender<Option<Arc<Desired>>>,
    /// Why the spec on disk was refused at startup, until one is accepted.
    refused: std::sync::Mutex<Option<RefusedSpec>>,
    events: Arc<EventBus>,
}

impl Committer {
    /// Stores `spec` as the next generation unless it equals the current one.
    async fn commit(self: Arc<Self>, spec: NodeSpec) -> Result<(u64, bool), ControlError> {
        let _serialised = self.lock.lock().await;
        let current = self.desired.borrow().clone();
        if let Some(current) = current.as_ref().filter(|c| c.spec == spec) {
            return Ok((current.generation, false));
        }
        // A spec refused at startup still used up its generation number.
        let floor = self.refused().map_or(0, |r| r.generation);
        let desired = Desired {
            generation: current.map_or(0, |c| c.generation).max(floor) + 1,
            spec,
        };
        let this = Arc::clone(&self);
        let to_save = desired.clone();
        let had_refused = self.refused().is_some();
        let span = Span::current();
        tokio::task::spawn_blocking(move || {
            span.in_scope(|| {
                this.store.save(&to_save)?;
                if had_refused {
                    this.store.clear_refused()?;
                }
                Ok::<_, StateError>(())
            })
        })
        .await
        .map_err(|source| ControlError::Internal {
            what: "saving the spec",
            source,
        })??;
        let generation = desired.generation;
        info!(generation, node = %desired.spec.node_name, "spec accepted");
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = None;
        // Published before the reconciler hears of it, so the acceptance
        // comes before the step events of its generation.
        self.events.publish(generation, EventKind::SpecAccepted);
        self.desired.send_replace(Some(Arc::new(desired)));
        Ok((generation, true))
    }

    fn refused(&self) -> Option<RefusedSpec> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Controller {
    pub fn new(
        store: StateStore,
        loaded: Loaded,
        steps: Vec<Arc<dyn Step>>,
        status: Arc<StatusBoard>,
        events: Arc<EventBus>,
        host: Arc<dyn HostInfo>,
    ) -> Self {
        if let Some(refused) = &loaded.refused {
            warn!(
                reason = %refused.reason,
                moved_to = %refused.moved_to.display(),
                "the stored spec was refused; waiting for a new one"
            );
        }
        Self {
            committer: Arc::new(Committer {
                store,
                lock: Mutex::new(()),
                desired: watch::Sender::new(loaded.desired.map(Arc::new)),
                refused: std::sync::Mutex::new(loaded.refused),
                events,
            }),
            steps,
            status,
            host,
            started_at: SystemTime::now(),
            remote_api: None,
            storage: None,
            supervisor: None,
            service_dirs: None,
        }
    }

    // ---- storage ----

    /// Serves volume status, disks and device admission from `storage`.
    pub fn with_storage(mut self, storage: storage::Storage) -> Self {
        self.storage = Some(storage);
        self
    }

    /// Each volume of the stored spec as the host has it now.
    pub async fn volumes(&self) -> Result<Vec<VolumeStatus>, ControlError> {
        match (&self.storage, self.current()) {
            (Some(storage), Some(current)) => Ok(storage.volume_status(&current.spec).await?),
            _ => Ok(Vec::new()),
        }
    }

    /// The host's block devices and whether volumes may use them.
    pub async fn disks(&self) -> Result<Vec<DiskInfo>, ControlError> {
        match &self.storage {
            Some(storage) => Ok(storage.disks().await?),
            None => Err(ControlError::Unsupported("listing disks")),
        }
    }

    /// Reports the remote API in `info`.
    pub fn with_remote_api(self, remote_api: Option<RemoteApiInfo>) -> Self {
        Self { remote_api, ..self }
    }

    // ---- services ----

    /// Tells validation where the services keep their data, so storage
    /// persists those directories by default.
    pub fn with_service_dirs(self, service_dirs: ServiceDirs) -> Self {
        Self {
            service_dirs: Some(service_dirs),
            ..self
        }
    }

    /// Serves the services of `supervisor` (status, logs, restarts).
    pub fn with_supervisor(mut self, supervisor: Supervisor) -> Self {
        self.supervisor = Some(supervisor);
        self
    }

    fn supervisor(&self) -> Result<&Supervisor, ControlError> {
        self.supervisor.as_ref().ok_or(ControlError::NoSupervisor)
    }

    /// The last `tail` lines of a service's output, and new ones as they come.
    pub fn service_logs(
        &self,
        service: &str,
        tail: usize,
    ) -> Result<(Vec<String>, broadcast::Receiver<String>), ControlError> {
        Ok(self.supervisor()?.logs(service, tail)?)
    }

    /// Restarts a supervised service now.
    pub fn restart_service(&self, service: &str) -> Result<(), ControlError> {
        info!(service, "restart requested");
        Ok(self.supervisor()?.restart(service)?)
    }

    /// The desired spec as the reconciler follows it.
    pub fn watch_desired(&self) -> watch::Receiver<Option<Arc<Desired>>> {
        self.committer.desired.subscribe()
    }

    fn current(&self) -> Option<Arc<Desired>> {
        self.committer.desired.borrow().clone()
    }

    /// The host's name and capabilities. The probe reads /proc and /sys:
    /// blocking I/O, kept off the async threads.
    async fn probe_host(&self) -> Result<HostProbe, ControlError> {
        let host = Arc::clone(&self.host);
        tokio::task::spawn_blocking(move || {
            let capabilities = host.capabilities();
            HostProbe {
                hostname: host.hostname(),
                addons: host.addon_facts(&capabilities.filesystems),
                capabilities,
            }
        })
        .await
        .map_err(|source| ControlError::Internal {
            what: "probing the host",
            source,
        })
    }

    /// What validation may know of this host.
    async fn validation_context(
        &self,
        document: &SpecDocument,
    ) -> Result<ValidationContext, ControlError> {
        let probe = self.probe_host().await?;
        let mut context = ValidationContext {
            own_public_key: None,
            kernel_filesystems: Some(probe.capabilities.filesystems),
            addon_host: Some(prereq::availability(&probe.addons)),
            service_dirs: self.service_dirs.clone(),
            ..ValidationContext::default()
        };
        if let Some(storage) = &self.storage {
            context.state_dir = storage
                .state_dir()
                .to_str()
                .and_then(|d| d.trim_end_matches('/').parse().ok());
            context.refused_devices = storage.refused_devices(document).await?;
        }
        Ok(context)
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
        let context = self.validation_context(&document).await?;
        let spec = match document.validate(&context) {
            Ok(spec) => spec,
            Err(errors) => {
                info!(errors = errors.len(), "spec refused");
                return Err(ControlError::Invalid(errors));
            }
        };
        let plan = self.plan(&spec).await;

        if mode == ApplyMode::DryRun {
            let current = self.current();
            return Ok(ApplyOutcome {
                generation: current.as_ref().map_or(0, |c| c.generation),
                changed: current.is_none_or(|c| c.spec != spec),
                plan,
            });
        }

        let commit = Arc::clone(&self.committer).commit(spec);
        let (generation, changed) = tokio::spawn(commit.instrument(Span::current()))
            .await
            .map_err(|source| ControlError::Internal {
                what: "storing the spec",
                source,
            })??;
        Ok(ApplyOutcome {
            generation,
            changed,
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
            refused_spec: self.committer.refused(),
            desired_generation: current.as_ref().map_or(0, |d| d.generation),
            converged_generation: self.status.converged_generation(),
            steps: self.status.snapshot(),
            services: self
                .supervisor
                .as_ref()
                .map(Supervisor::status)
                .unwrap_or_default(),
        }
    }

    pub async fn info(&self) -> Result<NodeInfo, ControlError> {
        let probe = self.probe_host().await?;
        Ok(NodeInfo {
            version: VERSION,
            hostname: probe.hostname,
            generation: self.current().map_or(0, |d| d.generation),
            addons: prereq::assess(&probe.addons),
            capabilities: probe.capabilities,
            started_at: self.started_at,
            remote_api: self.remote_api.clone(),
        })
    }

    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        self.committer.events.subscribe()
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
        let reloaded = crate::state::read_stored(tmp.path()).unwrap().unwrap();
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
            .filter(|name| name != "spec.json" && name != "lock")
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

    #[tokio::test]
    async fn a_refused_stored_spec_is_reported_and_generations_go_on() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("spec.json"),
            r#"{"generation": 41, "spec": {"node_name": "Bad_Name"}}"#,
        )
        .unwrap();
        let first = controller(tmp.path());
        let status = first.status();
        let refused = status.refused_spec.unwrap();
        assert!(refused.reason.contains("node_name"), "{}", refused.reason);
        assert_eq!(status.desired_generation, 0);
        drop(first);

        // Restarted before any new spec: still reported, still counted.
        let controller = controller(tmp.path());
        let refused = controller.status().refused_spec.unwrap();
        assert!(
            refused.reason.contains("earlier start"),
            "{}",
            refused.reason
        );
        assert!(refused.reason.contains("node_name"), "{}", refused.reason);
        assert_eq!(refused.generation, 41);

        let outcome = controller
            .apply(variant(1), ApplyMode::Apply)
            .await
            .unwrap();
        assert_eq!(
            outcome.generation, 42,
            "never reuses the refused generation"
        );
        assert!(controller.status().refused_spec.is_none());
        assert!(!tmp.path().join("spec.json.refused").exists());
    }

    #[tokio::test]
    async fn a_cancelled_apply_leaves_disk_and_memory_agreeing() {
        let tmp = tempfile::tempdir().unwrap();
        let controller = controller(tmp.path());
        for n in 0..40 {
            let task = tokio::spawn({
                let controller = Arc::clone(&controller);
                async move { controller.apply(variant(n), ApplyMode::Apply).await }
            });
            // Give up on the call at varying points of its progress.
            for _ in 0..n % 8 {
                tokio::task::yield_now().await;
            }
            task.abort();
            let _ = task.await;
            let Some(current) = controller.current() else {
                continue;
            };
            // Re-applying the current spec waits for a commit still running.
            let settled = controller
                .apply(current.spec.to_document(), ApplyMode::Apply)
                .await
                .unwrap();
            let memory = controller.current().unwrap();
            assert_eq!(settled.generation, memory.generation);
            let on_disk = crate::state::read_stored(tmp.path()).unwrap();
            assert_eq!(on_disk.as_ref(), Some(memory.as_ref()), "after attempt {n}");
        }
    }
}
