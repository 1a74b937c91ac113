//! The agent's control core, free of any transport: accepts specs, and
//! answers reads about the spec, status, host and events. The gRPC layer in
//! `api/` is a thin shell over it.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::sync::{Mutex, broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, info, warn};

use crate::{
    addons::prereq::{self, AddonHostFacts, AddonPrerequisites},
    events::{Event, EventBus, EventKind},
    host::{HostCapabilities, HostInfo},
    reconcile::{self, StatusBoard, Step, StepName, StepStatus},
    services::{ServicePaths, k3s::kubeconfig_for},
    state::{Desired, Loaded, RefusedSpec, StateError, StateStore},
    storage::{self, DiskInfo, StorageError, VolumeStatus},
};
use tfagent_spec::{NodeSpec, Role, SpecDocument, ValidationContext, ValidationErrors};
use tfagent_supervisor::{ServiceStatus, SuperviseError, Supervisor};
// ---- network ----
use crate::{
    net::{Backend, InterfaceStatus, NetworkStep},
    trial::{self, Trial, TrialError},
};
use tfagent_spec::{WgKey, wgquick::HubInfo};

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
    // ---- network ----
    /// The request cannot be served in the agent's current state (a trial
    /// pending, nothing to confirm, no spec to fall back to).
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the try-mode record: {0}")]
    Trial(#[from] TrialError),
    // ---- reset ----
    /// A step could not take back what it set up; the spec stays stored.
    #[error("reset: the {step} step: {error}; the spec stays stored and is converged to again")]
    Reset { step: StepName, error: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    Apply,
    DryRun,
    /// Apply, and roll back to the previous spec unless confirmed within
    /// the timeout.
    Try(Duration),
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
    // ---- network ----
    pub wireguard_public_key: Option<WgKey>,
    pub wireguard_backend: Option<Backend>,
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

#[derive(Debug, Clone, Default)]
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
    // ---- network ----
    pub wireguard: Option<InterfaceStatus>,
    pub trial: Option<TrialStatus>,
    /// What became of the last trial that ended, one line.
    pub last_trial: Option<String>,
    // ---- vip ----
    /// `None` when the spec has no VIP election.
    pub vip: Option<crate::vip::VipStatus>,
}

/// A spec on trial, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialStatus {
    pub generation: u64,
    pub deadline: SystemTime,
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
    /// Where the services keep their files (storage persists their data
    /// dirs by default; a server's kubeconfig is there).
    service_paths: Option<ServicePaths>,
    // ---- network ----
    network: Option<Arc<NetworkStep>>,
    trials: Arc<Trials>,
    // ---- vip ----
    vip: Option<crate::vip::VipEngine>,
}

/// The spec on trial, if any, and how to call its revert off.
#[derive(Debug)]
struct Trials {
    state_dir: PathBuf,
    /// Serialises trial starts, confirmations, reverts and plain applies.
    lock: Mutex<()>,
    pending: std::sync::Mutex<Option<(Trial, CancellationToken)>>,
    last: std::sync::Mutex<Option<String>>,
}

impl Trials {
    fn pending(&self) -> Option<Trial> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(t, _)| t.clone())
    }

    fn set_last(&self, text: String) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
    }

    /// Forgets the pending trial and stops its timer.
    fn cancel_pending(&self) {
        if let Some((_, cancel)) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            cancel.cancel();
        }
    }

    /// Removes the trial record from the state dir.
    async fn clear_record(&self) -> Result<(), ControlError> {
        let dir = self.state_dir.clone();
        tokio::task::spawn_blocking(move || trial::clear(&dir))
            .await
            .map_err(|source| ControlError::Internal {
                what: "clearing the trial",
                source,
            })??;
        Ok(())
    }
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
    // ---- reset ----
    /// The generation the last reset forgot: later specs count on from it.
    reset_floor: std::sync::atomic::AtomicU64,
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
        let floor = self
            .refused()
            .map_or(0, |r| r.generation)
            .max(self.reset_floor.load(std::sync::atomic::Ordering::SeqCst));
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
        let state_dir = store.dir().to_owned();
        let reset_floor = store.reset_generation().into();
        Self {
            committer: Arc::new(Committer {
                store,
                lock: Mutex::new(()),
                desired: watch::Sender::new(loaded.desired.map(Arc::new)),
                refused: std::sync::Mutex::new(loaded.refused),
                events,
                reset_floor,
            }),
            steps,
            status,
            host,
            started_at: SystemTime::now(),
            remote_api: None,
            storage: None,
            supervisor: None,
            service_paths: None,
            vip: None,
            network: None,
            trials: Arc::new(Trials {
                state_dir,
                lock: Mutex::new(()),
                pending: std::sync::Mutex::new(None),
                last: std::sync::Mutex::new(None),
            }),
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

    /// Where the services keep their files: validation makes storage
    /// persist their data dirs by default, and `kubeconfig` finds k3s's.
    pub fn with_service_paths(self, service_paths: ServicePaths) -> Self {
        Self {
            service_paths: Some(service_paths),
            ..self
        }
    }

    /// The VIP engine, for status.
    pub fn with_vip(self, vip: crate::vip::VipEngine) -> Self {
        Self {
            vip: Some(vip),
            ..self
        }
    }

    /// A server's admin kubeconfig, pointing at the VIP (or, without one,
    /// at this node's WireGuard address). It carries the cluster's admin
    /// credentials: only admins may call this.
    pub fn kubeconfig(&self) -> Result<String, ControlError> {
        let current = self
            .current()
            .ok_or_else(|| ControlError::Precondition("no spec has been applied yet".into()))?;
        let spec = &current.spec;
        if !spec.role.is_server() {
            return Err(ControlError::Precondition(format!(
                "{} is a k3s agent: only servers have an admin kubeconfig",
                spec.node_name
            )));
        }
        let paths = self
            .service_paths
            .as_ref()
            .ok_or(ControlError::NoSupervisor)?;
        let address = spec
            .cluster
            .vip
            .or_else(|| spec.network.wireguard.addresses.first().map(|a| a.addr()))
            .ok_or_else(|| ControlError::Precondition("the spec has no address".into()))?;
        let server = format!("https://{}", std::net::SocketAddr::new(address, 6443));
        kubeconfig_for(&paths.k3s_kubeconfig(), &server)
            .map_err(|e| ControlError::Precondition(e.to_string()))
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

    /// Gives the controller the network step (public key, live status).
    pub fn with_network(mut self, network: Arc<NetworkStep>) -> Self {
        self.network = Some(network);
        self
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
            own_public_key: self.network.as_ref().map(|n| n.public_key()),
            kernel_filesystems: Some(probe.capabilities.filesystems),
            addon_host: Some(prereq::availability(&probe.addons)),
            service_dirs: self
                .service_paths
                .as_ref()
                .and_then(ServicePaths::persisted_dirs),
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

        let _trials = self.trials.lock.lock().await;
        if let Some(pending) = self.trials.pending() {
            if self.current().is_some_and(|c| c.spec == spec) {
                // The spec on trial, again: nothing to do, still on trial.
                return Ok(ApplyOutcome {
                    generation: pending.generation,
                    changed: false,
                    plan,
                });
            }
            return Err(ControlError::Precondition(format!(
                "generation {} is on trial: confirm it (tfagentctl confirm) or wait for its revert before applying another spec",
                pending.generation
            )));
        }
        if let ApplyMode::Try(timeout) = mode {
            return self.start_trial(spec, timeout, plan).await;
        }
        let (generation, changed) = self.commit(spec).await?;
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
            wireguard: None,
            trial: self.trials.pending().map(|t| TrialStatus {
                generation: t.generation,
                deadline: t.deadline,
            }),
            last_trial: self
                .trials
                .last
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            vip: self
                .vip
                .as_ref()
                .map(crate::vip::VipEngine::status)
                .filter(|s| s.vip.is_some()),
        }
    }

    /// [`Self::status`] with the live state of the WireGuard interface.
    pub async fn full_status(&self) -> NodeStatus {
        let mut status = self.status();
        if let Some(network) = &self.network {
            let current = self.current();
            status.wireguard = network
                .status(current.as_ref().map(|d| &d.spec.network.wireguard))
                .await;
        }
        status
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
            wireguard_public_key: self.network.as_ref().map(|n| n.public_key()),
            wireguard_backend: self.network.as_ref().map(|n| n.backend()),
        })
    }

    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        self.committer.events.subscribe()
    }

    async fn commit(&self, spec: NodeSpec) -> Result<(u64, bool), ControlError> {
        let commit = Arc::clone(&self.committer).commit(spec);
        tokio::spawn(commit.instrument(Span::current()))
            .await
            .map_err(|source| ControlError::Internal {
                what: "storing the spec",
                source,
            })?
    }
}

// ---- network ----
impl Controller {
    /// Stores `spec` on trial: the current spec is kept, and restored unless
    /// [`Self::confirm`] arrives within `timeout`. The trial lock is held.
    async fn start_trial(
        &self,
        spec: NodeSpec,
        timeout: Duration,
        plan: Vec<PlannedStep>,
    ) -> Result<ApplyOutcome, ControlError> {
        if timeout.is_zero() || timeout > trial::MAX_TRY_TIMEOUT {
            return Err(ControlError::BadRequest(format!(
                "try_timeout: must be between 1s and {}s",
                trial::MAX_TRY_TIMEOUT.as_secs()
            )));
        }
        let Some(current) = self.current() else {
            return Err(ControlError::Precondition(
                "try mode needs a stored spec to fall back to: apply one first".into(),
            ));
        };
        if current.spec == spec {
            return Ok(ApplyOutcome {
                generation: current.generation,
                changed: false,
                plan,
            });
        }
        // Recorded before the spec is stored: a crash in between reverts to
        // what is still current, which changes nothing.
        let mut trial = Trial {
            generation: current.generation + 1,
            deadline: SystemTime::now() + timeout,
            previous: current.spec.clone(),
        };
        self.save_trial(&trial).await?;
        let (generation, changed) = match self.commit(spec).await {
            Ok(committed) => committed,
            Err(error) => {
                // Nothing went on trial: a record left behind would revert
                // a later spec of the same generation.
                if let Err(clear) = self.trials.clear_record().await {
                    warn!(error = %clear, "cannot remove the trial record");
                }
                return Err(error);
            }
        };
        if generation != trial.generation {
            trial.generation = generation;
            self.save_trial(&trial).await?;
        }
        info!(
            generation,
            timeout_secs = timeout.as_secs(),
            "spec stored on trial"
        );
        self.arm(trial);
        Ok(ApplyOutcome {
            generation,
            changed,
            plan,
        })
    }

    async fn save_trial(&self, trial: &Trial) -> Result<(), ControlError> {
        let dir = self.trials.state_dir.clone();
        let trial = trial.clone();
        tokio::task::spawn_blocking(move || trial::save(&dir, &trial))
            .await
            .map_err(|source| ControlError::Internal {
                what: "saving the trial",
                source,
            })?
            .map_err(ControlError::from)
    }

    /// Records `trial` as pending and starts its revert timer.
    fn arm(&self, trial: Trial) {
        let cancel = CancellationToken::new();
        let generation = trial.generation;
        let wait = trial
            .deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        *self
            .trials
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((trial, cancel.clone()));
        let committer = Arc::clone(&self.committer);
        let trials = Arc::clone(&self.trials);
        tokio::spawn(
            async move {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = tokio::time::sleep(wait) => {
                        if let Err(error) = revert(&committer, &trials, generation).await {
                            warn!(%error, "cannot revert the spec on trial; retried at the next start");
                        }
                    }
                }
            }
            // Outlives the request that started it: no parent span.
            .instrument(tracing::info_span!(parent: None, "trial", generation)),
        );
    }

    /// Takes up a trial persisted by an earlier run: its revert runs at its
    /// deadline, at once when that has passed.
    pub fn resume_trial(&self) -> Result<(), ControlError> {
        if let Some(trial) = trial::load(&self.trials.state_dir)? {
            info!(generation = trial.generation, "a spec is still on trial");
            self.arm(trial);
        }
        Ok(())
    }

    /// Keeps the spec on trial as `generation`.
    pub async fn confirm(&self, generation: u64) -> Result<u64, ControlError> {
        let _trials = self.trials.lock.lock().await;
        let Some(pending) = self.trials.pending() else {
            let last = self
                .trials
                .last
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            return Err(ControlError::Precondition(match last {
                Some(last) => format!("no spec is on trial ({last})"),
                None => "no spec is on trial".into(),
            }));
        };
        if pending.generation != generation {
            return Err(ControlError::Precondition(format!(
                "generation {generation} is not on trial; generation {} is",
                pending.generation
            )));
        }
        self.trials.clear_record().await?;
        self.trials.cancel_pending();
        info!(generation, "spec on trial confirmed");
        self.trials
            .set_last(format!("generation {generation} was confirmed"));
        Ok(generation)
    }

    /// What a user's wg-quick config needs from this node.
    pub fn access_hub(&self, name: &str) -> Result<HubInfo, ControlError> {
        let network = self
            .network
            .as_ref()
            .ok_or(ControlError::Unsupported("WireGuard"))?;
        let current = self.current().ok_or_else(|| {
            ControlError::Precondition("no spec is stored: the mesh is not configured".into())
        })?;
        Ok(tfagent_spec::wgquick::hub_info(
            &current.spec.network.wireguard,
            current.spec.cluster.vip,
            network.public_key(),
            name,
        ))
    }
}

// ---- reset ----

/// What a reset did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetOutcome {
    /// The generation that was forgotten.
    pub generation: u64,
    /// One line per host change, in order.
    pub actions: Vec<String>,
}

impl Committer {
    /// Forgets the stored spec of `generation`, on disk then in memory.
    async fn forget(self: Arc<Self>, generation: u64) -> Result<(), ControlError> {
        let _serialised = self.lock.lock().await;
        let this = Arc::clone(&self);
        let span = Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| this.store.forget(generation)))
            .await
            .map_err(|source| ControlError::Internal {
                what: "forgetting the spec",
                source,
            })??;
        self.reset_floor
            .fetch_max(generation, std::sync::atomic::Ordering::SeqCst);
        self.desired.send_replace(None);
        Ok(())
    }
}

impl Controller {
    /// Takes back what the agent set up for the stored spec, then forgets
    /// it (see the Reset RPC for what is and is not done). `confirm` must
    /// be the stored spec's node name.
    pub async fn reset(&self, confirm: &str) -> Result<ResetOutcome, ControlError> {
        let _trials = self.trials.lock.lock().await;
        let current = self.current().ok_or_else(|| {
            ControlError::Precondition("no spec is stored: there is nothing to reset".into())
        })?;
        let node_name = current.spec.node_name.to_string();
        if confirm != node_name {
            return Err(ControlError::BadRequest(if confirm.is_empty() {
                "confirm_node_name: required: the node name of the stored spec".into()
            } else {
                format!(
                    "confirm_node_name: `{confirm}` is not the node name of the stored spec (`{node_name}`)"
                )
            }));
        }
        warn!(generation = current.generation, node = %node_name, "reset requested");
        // No reconcile pass runs meanwhile, and none of this spec follows.
        let _pass = self.status.pass_lock().lock().await;
        let mut actions = Vec::new();
        for step in self.steps.iter().rev() {
            let span = tracing::info_span!("reset", step = %step.name());
            let done = step
                .teardown(&current.spec)
                .instrument(span)
                .await
                .map_err(|error| {
                    warn!(step = %step.name(), %error, "reset failed; the spec stays stored");
                    ControlError::Reset {
                        step: step.name(),
                        error: error.to_string(),
                    }
                })?;
            for action in &done {
                info!(step = %step.name(), %action, "reset");
            }
            actions.extend(done);
        }
        // A pending trial would restore the spec it replaced.
        self.trials.cancel_pending();
        self.trials.clear_record().await?;
        Arc::clone(&self.committer)
            .forget(current.generation)
            .await?;
        for step in &self.steps {
            self.status.record(
                step.name(),
                reconcile::Condition::Pending,
                "reset: no spec applied".into(),
                reconcile::Outcome::Unchanged,
            );
        }
        info!(
            generation = current.generation,
            changes = actions.len(),
            "reset done"
        );
        Ok(ResetOutcome {
            generation: current.generation,
            actions,
        })
    }
}

/// Restores the spec a trial replaced, unless it was confirmed meanwhile.
async fn revert(
    committer: &Arc<Committer>,
    trials: &Trials,
    generation: u64,
) -> Result<(), ControlError> {
    let _trials = trials.lock.lock().await;
    let Some(pending) = trials.pending().filter(|t| t.generation == generation) else {
        return Ok(());
    };
    let (reverted_to, _) = Arc::clone(committer).commit(pending.previous).await?;
    trials.clear_record().await?;
    *trials.pending.lock().unwrap_or_else(|p| p.into_inner()) = None;
    warn!(
        generation,
        reverted_to, "the spec on trial was not confirmed in time; reverted"
    );
    trials.set_last(format!(
        "generation {generation} was not confirmed in time and was reverted as generation {reverted_to}"
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::test_support::controller;
    use tfagent_spec::fixtures::example_document;

    /// The example with a different node name per `n`, so each is a change.
    fn variant(n: usize) -> SpecDocument {
        let mut document = example_document("agent");
        document.node_name = format!("variant-{n}");
        document
    }

    #[tokio::test]
    async fn a_server_serves_its_kubeconfig_at_the_vip_and_an_agent_refuses() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = ServicePaths::under(&tmp.path().join("services"));
        let controller = crate::test_support::unshared_controller(&tmp.path().join("state"))
            .with_service_paths(paths.clone());
        let refused = controller.kubeconfig().unwrap_err().to_string();
        assert!(refused.contains("no spec"), "{refused}");

        controller
            .apply(example_document("server-init"), ApplyMode::Apply)
            .await
            .unwrap();
        // k3s has not written it yet.
        let early = controller.kubeconfig().unwrap_err().to_string();
        assert!(early.contains("k3s up yet"), "{early}");
        std::fs::create_dir_all(&paths.config_dir).unwrap();
        std::fs::write(
            paths.k3s_kubeconfig(),
            "clusters:\n- cluster:\n    server: https://127.0.0.1:6443\n  name: default\nusers:\n- name: default\n  user:\n    client-key-data: S0VZ\n",
        )
        .unwrap();
        let text = controller.kubeconfig().unwrap();
        assert!(text.contains("server: https://10.100.0.250:6443"), "{text}");
        assert!(text.contains("client-key-data: S0VZ"), "{text}");

        controller
            .apply(example_document("agent"), ApplyMode::Apply)
            .await
            .unwrap();
        let agent = controller.kubeconfig().unwrap_err().to_string();
        assert!(agent.contains("only servers"), "{agent}");
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
    async fn a_try_whose_commit_fails_leaves_no_trial_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let controller = controller(tmp.path());
        controller
            .apply(variant(1), ApplyMode::Apply)
            .await
            .unwrap();
        let spec = tmp.path().join("spec.json");
        std::fs::remove_file(&spec).unwrap();
        std::fs::create_dir(&spec).unwrap();
        controller
            .apply(variant(2), ApplyMode::Try(Duration::from_secs(60)))
            .await
            .unwrap_err();
        assert!(
            trial::load(tmp.path()).unwrap().is_none(),
            "a record of generation 2 would revert the next spec stored as 2"
        );
        assert!(controller.status().trial.is_none());
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

    // ---- reset ----
    /// A step that records its teardowns, and fails them when told.
    #[derive(Debug)]
    struct RecordingStep {
        name: StepName,
        log: Arc<std::sync::Mutex<Vec<String>>>,
        fail: bool,
    }

    #[async_trait::async_trait]
    impl Step for RecordingStep {
        fn name(&self) -> StepName {
            self.name
        }

        async fn plan(
            &self,
            _desired: &NodeSpec,
        ) -> Result<reconcile::StepPlan, reconcile::StepError> {
            Ok(reconcile::StepPlan {
                step: self.name,
                implemented: true,
                actions: Vec::new(),
            })
        }

        /// Takes a while, so a reset can arrive in the middle of a pass.
        async fn converge(
            &self,
            _desired: &NodeSpec,
        ) -> Result<reconcile::StepOutcome, reconcile::StepError> {
            self.log
                .lock()
                .unwrap()
                .push(format!("converge-start {}", self.name));
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.log
                .lock()
                .unwrap()
                .push(format!("converge-end {}", self.name));
            Ok(reconcile::StepOutcome::UpToDate)
        }

        async fn teardown(&self, last: &NodeSpec) -> Result<Vec<String>, reconcile::StepError> {
            self.log
                .lock()
                .unwrap()
                .push(format!("{} {}", self.name, last.node_name));
            if self.fail {
                return Err(reconcile::StepError::Apply {
                    change: "take down".into(),
                    source: "injected".into(),
                });
            }
            Ok(vec![format!("{} done", self.name)])
        }
    }

    fn recording_controller(
        dir: &std::path::Path,
        failing: Option<StepName>,
    ) -> (Controller, Arc<std::sync::Mutex<Vec<String>>>) {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let steps: Vec<Arc<dyn Step>> = StepName::ORDER
            .iter()
            .map(|&name| {
                Arc::new(RecordingStep {
                    name,
                    log: Arc::clone(&log),
                    fail: failing == Some(name),
                }) as Arc<dyn Step>
            })
            .collect();
        let (store, loaded) = StateStore::open(dir).unwrap();
        let controller = Controller::new(
            store,
            loaded,
            steps,
            Arc::new(StatusBoard::new(&StepName::ORDER)),
            Arc::new(EventBus::default()),
            Arc::new(crate::test_support::FakeHost),
        );
        (controller, log)
    }

    #[tokio::test]
    async fn a_reset_takes_the_steps_down_in_reverse_order_and_survives_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let (controller, log) = recording_controller(tmp.path(), None);
        controller
            .apply(variant(1), ApplyMode::Apply)
            .await
            .unwrap();
        let outcome = controller.reset("variant-1").await.unwrap();
        assert_eq!(outcome.generation, 1);
        assert_eq!(
            *log.lock().unwrap(),
            [
                "addons variant-1",
                "vip variant-1",
                "services variant-1",
                "network variant-1",
                "storage variant-1"
            ]
        );
        assert_eq!(outcome.actions[0], "addons done");
        assert!(controller.current().is_none());
        assert!(
            controller
                .status()
                .steps
                .iter()
                .all(|s| s.message.starts_with("reset"))
        );
        drop(controller);
        let (restarted, _) = recording_controller(tmp.path(), None);
        assert!(restarted.current().is_none(), "the reset is on disk");
        let next = restarted.apply(variant(2), ApplyMode::Apply).await.unwrap();
        assert_eq!(next.generation, 2);
    }

    #[tokio::test]
    async fn a_reset_waits_for_the_pass_under_way_and_no_pass_of_the_old_spec_follows() {
        let tmp = tempfile::tempdir().unwrap();
        let (controller, log) = recording_controller(tmp.path(), None);
        let controller = Arc::new(controller);
        let reconciler = reconcile::Reconciler::new(
            controller.steps.clone(),
            Arc::clone(&controller.status),
            Arc::new(EventBus::default()),
            Duration::from_millis(20),
        );
        let shutdown = CancellationToken::new();
        let reconciling =
            tokio::spawn(reconciler.run(controller.watch_desired(), shutdown.clone()));
        controller
            .apply(variant(1), ApplyMode::Apply)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        while !log
            .lock()
            .unwrap()
            .iter()
            .any(|e| e == "converge-end storage")
        {
            assert!(started.elapsed() < Duration::from_secs(10), "no pass");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // In the middle of a pass.
        controller.reset("variant-1").await.unwrap();
        let entries = log.lock().unwrap().clone();
        let teardown = entries
            .iter()
            .position(|e| e == "addons variant-1")
            .unwrap();
        assert_eq!(
            entries[teardown - 1],
            "converge-end addons",
            "the pass ended before the teardown began: {entries:?}"
        );
        // Resyncs come every 20 ms: none converges the forgotten spec.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(*log.lock().unwrap(), entries, "a pass ran after the reset");
        shutdown.cancel();
        reconciling.await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_teardown_keeps_the_spec() {
        let tmp = tempfile::tempdir().unwrap();
        let (controller, log) = recording_controller(tmp.path(), Some(StepName::Services));
        controller
            .apply(variant(1), ApplyMode::Apply)
            .await
            .unwrap();
        let error = controller.reset("variant-1").await.unwrap_err();
        assert!(
            matches!(
                error,
                ControlError::Reset {
                    step: StepName::Services,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("stays stored"), "{error}");
        assert_eq!(log.lock().unwrap().len(), 3, "stops at the failing step");
        assert_eq!(controller.current().unwrap().generation, 1);
        assert!(tmp.path().join("spec.json").exists());
    }

    #[tokio::test]
    async fn a_reset_ends_a_trial_so_nothing_is_restored_later() {
        let tmp = tempfile::tempdir().unwrap();
        let (controller, _) = recording_controller(tmp.path(), None);
        controller
            .apply(variant(1), ApplyMode::Apply)
            .await
            .unwrap();
        controller
            .apply(variant(2), ApplyMode::Try(Duration::from_millis(300)))
            .await
            .unwrap();
        controller.reset("variant-2").await.unwrap();
        assert!(!tmp.path().join(trial::TRIAL_FILE).exists());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            controller.current().is_none(),
            "the trial's revert was called off"
        );
        assert!(controller.status().trial.is_none());
    }

    // ---- network ----
    async fn wait_for_generation(controller: &Controller, generation: u64) -> Duration {
        let start = std::time::Instant::now();
        while controller.current().map(|c| c.generation) != Some(generation) {
            assert!(start.elapsed() < Duration::from_secs(10), "no revert");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        start.elapsed()
    }

    #[tokio::test]
    async fn a_try_without_confirm_is_reverted_at_its_deadline() {
        let tmp = tempfile::tempdir().unwrap();
        let controller = controller(tmp.path());
        let refused = controller
            .apply(variant(1), ApplyMode::Try(Duration::from_secs(1)))
            .await
            .unwrap_err();
        assert!(
            matches!(refused, ControlError::Precondition(_)),
            "{refused}"
        );
        controller
            .apply(variant(1), ApplyMode::Apply)
            .await
            .unwrap();
        let outcome = controller
            .apply(variant(2), ApplyMode::Try(Duration::from_millis(500)))
            .await
            .unwrap();
        assert_eq!((outcome.generation, outcome.changed), (2, true));
        assert!(tmp.path().join(trial::TRIAL_FILE).exists());
        assert_eq!(controller.status().trial.unwrap().generation, 2);
        // Nothing else is applied while a trial runs; the same spec is fine.
        let busy = controller
            .apply(variant(3), ApplyMode::Apply)
            .await
            .unwrap_err();
        assert!(
            busy.to_string().contains("generation 2 is on trial"),
            "{busy}"
        );
        let again = controller
            .apply(variant(2), ApplyMode::Apply)
            .await
            .unwrap();
        assert_eq!((again.generation, again.changed), (2, false));

        let waited = wait_for_generation(&controller, 3).await;
        assert!(waited < Duration::from_secs(3), "{waited:?}");
        let (_, document) = controller.redacted_spec().unwrap();
        assert_eq!(document.node_name, "variant-1");
        let status = controller.status();
        assert!(status.trial.is_none());
        assert!(
            status
                .last_trial
                .unwrap()
                .contains("reverted as generation 3")
        );
        assert!(!tmp.path().join(trial::TRIAL_FILE).exists());
        let late = controller.confirm(2).await.unwrap_err();
        assert!(late.to_string().contains("reverted"), "{late}");
    }

    #[tokio::test]
    async fn a_confirmed_try_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let controller = controller(tmp.path());
        controller
            .apply(variant(1), ApplyMode::Apply)
            .await
            .unwrap();
        controller
            .apply(variant(2), ApplyMode::Try(Duration::from_millis(300)))
            .await
            .unwrap();
        let wrong = controller.confirm(1).await.unwrap_err();
        assert!(wrong.to_string().contains("generation 2 is"), "{wrong}");
        assert_eq!(controller.confirm(2).await.unwrap(), 2);
        assert!(!tmp.path().join(trial::TRIAL_FILE).exists());
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (generation, document) = controller.redacted_spec().unwrap();
        assert_eq!((generation, document.node_name.as_str()), (2, "variant-2"));
        assert!(controller.confirm(2).await.is_err());
        // Applies go on as usual after it.
        let next = controller
            .apply(variant(3), ApplyMode::Apply)
            .await
            .unwrap();
        assert_eq!(next.generation, 3);
    }

    #[tokio::test]
    async fn a_trial_left_by_an_earlier_run_is_reverted_at_start() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let first = controller(tmp.path());
            first.apply(variant(1), ApplyMode::Apply).await.unwrap();
            first.apply(variant(2), ApplyMode::Apply).await.unwrap();
        }
        // As if the agent died inside the window of a try of generation 2.
        let previous = variant(1).validate(&ValidationContext::default()).unwrap();
        let trial = Trial {
            generation: 2,
            deadline: SystemTime::now() + Duration::from_millis(300),
            previous,
        };
        trial::save(tmp.path(), &trial).unwrap();
        let restarted = controller(tmp.path());
        restarted.resume_trial().unwrap();
        assert_eq!(restarted.status().trial.unwrap().generation, 2);
        wait_for_generation(&restarted, 3).await;
        let (_, document) = restarted.redacted_spec().unwrap();
        assert_eq!(document.node_name, "variant-1");
    }

    #[tokio::test]
    async fn the_nodes_own_key_is_refused_as_a_peer_and_shown_in_info() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, loaded) = StateStore::open(tmp.path()).unwrap();
        let network = Arc::new(crate::test_support::network_step());
        let own = network.public_key();
        let controller = Controller::new(
            store,
            loaded,
            vec![],
            Arc::new(StatusBoard::new(&StepName::ORDER)),
            Arc::new(EventBus::default()),
            Arc::new(crate::test_support::FakeHost),
        )
        .with_network(network);
        let info = controller.info().await.unwrap();
        assert_eq!(info.wireguard_public_key, Some(own));
        assert_eq!(info.wireguard_backend, Some(Backend::Userspace));
        let mut document = variant(1);
        document.network.wireguard.peers[0].public_key = own.to_string();
        let error = controller
            .apply(document, ApplyMode::Apply)
            .await
            .unwrap_err();
        assert!(matches!(error, ControlError::Invalid(_)), "{error}");
        assert!(error.to_string().contains("public_key"), "{error}");
    }
}
