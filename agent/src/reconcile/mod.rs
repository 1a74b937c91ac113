//! The ordered converge loop: storage → network → services → vip → addons.
//!
//! Each capability is a [`Step`]: it observes the host and makes a plan (what
//! would change), then applies it. A step whose plan is empty has converged;
//! a failed step blocks the steps after it, which depend on it; a step this
//! build cannot carry out says so and changes nothing.

mod status;

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

pub use status::{Condition, Outcome, StatusBoard, StepStatus};

use crate::{
    events::{EventBus, EventKind, StepPhase},
    metrics::{ReconcileMetrics, RunResult},
    state::Desired,
};
use tfagent_spec::NodeSpec;

/// The reconcile steps, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StepName {
    Storage,
    Network,
    Services,
    Vip,
    Addons,
}

impl StepName {
    pub const ORDER: [StepName; 5] = [
        StepName::Storage,
        StepName::Network,
        StepName::Services,
        StepName::Vip,
        StepName::Addons,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Storage => "storage",
            StepName::Network => "network",
            StepName::Services => "services",
            StepName::Vip => "vip",
            StepName::Addons => "addons",
        }
    }
}

impl fmt::Display for StepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a capability's pure plan says must happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan<C> {
    /// This build cannot carry the step out. `wants` lists what the spec
    /// asks of it; empty when it asks nothing.
    NotImplemented { wants: Vec<String> },
    /// The host changes that make it match the spec, in order; empty when
    /// it already does.
    Changes(Vec<C>),
}

/// One capability of the agent: observe the host, plan the difference
/// (pure, so it is tested exhaustively), apply the plan.
#[async_trait]
pub trait Capability: Send + Sync + fmt::Debug + 'static {
    /// What the capability reads of the host.
    type Observed: Send + Sync;
    /// One host change; its Display is what plans and events show.
    type Change: fmt::Display + Send + Sync;

    fn step(&self) -> StepName;

    /// Reads the host state this capability manages. Never changes it.
    async fn observe(&self, desired: &NodeSpec) -> Result<Self::Observed, StepError>;

    /// The changes that take `observed` to `desired`.
    fn plan(desired: &NodeSpec, observed: &Self::Observed) -> Plan<Self::Change>;

    /// Makes the changes of a plan, in order.
    async fn apply(&self, desired: &NodeSpec, changes: &[Self::Change]) -> Result<(), StepError>;

    // ---- reset ----
    /// Takes back what the capability set up for `last`, the spec being
    /// forgotten, never destroying data. Returns one line per change made.
    /// A capability that sets nothing up has nothing to take back.
    async fn teardown(&self, _last: &NodeSpec) -> Result<Vec<String>, StepError> {
        Ok(Vec::new())
    }
}

/// A capability this build cannot carry out yet. It reads nothing of the
/// host and changes nothing; its plan says what the spec asks of it, so
/// status and dry runs are honest about what is not being done.
pub struct Unimplemented {
    step: StepName,
    wants: fn(&NodeSpec) -> Vec<String>,
}

impl Unimplemented {
    pub fn new(step: StepName, wants: fn(&NodeSpec) -> Vec<String>) -> Self {
        Self { step, wants }
    }
}

impl fmt::Debug for Unimplemented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unimplemented")
            .field("step", &self.step)
            .finish()
    }
}

#[async_trait]
impl Capability for Unimplemented {
    /// What the spec asks of the step.
    type Observed = Vec<String>;
    type Change = std::convert::Infallible;

    fn step(&self) -> StepName {
        self.step
    }

    async fn observe(&self, desired: &NodeSpec) -> Result<Vec<String>, StepError> {
        Ok((self.wants)(desired))
    }

    fn plan(_desired: &NodeSpec, wants: &Vec<String>) -> Plan<Self::Change> {
        Plan::NotImplemented {
            wants: wants.clone(),
        }
    }

    async fn apply(&self, _desired: &NodeSpec, changes: &[Self::Change]) -> Result<(), StepError> {
        // Its plans have no changes to make.
        match changes.first() {
            None => Ok(()),
            Some(&never) => match never {},
        }
    }
}

/// A plan as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPlan {
    pub step: StepName,
    /// False when this build cannot carry the step out; `actions` then says
    /// what the spec asks of it.
    pub implemented: bool,
    /// One line per host change, in the order they would be made.
    pub actions: Vec<String>,
}

/// What one converge pass of a step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    NotImplemented { wants: Vec<String> },
    UpToDate,
    Applied { changes: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Reading the host failed.
    #[error("observing {what}: {source}")]
    Observe {
        what: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A change could not be made.
    #[error("{change}: {source}")]
    Apply {
        change: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The reconciler's view of a capability (object safe; every
/// [`Capability`] is one).
#[async_trait]
pub trait Step: Send + Sync + fmt::Debug {
    fn name(&self) -> StepName;

    /// Observes and plans without changing anything (dry runs).
    async fn plan(&self, desired: &NodeSpec) -> Result<StepPlan, StepError>;

    /// Observes, plans and applies.
    async fn converge(&self, desired: &NodeSpec) -> Result<StepOutcome, StepError>;

    // ---- reset ----
    /// See [`Capability::teardown`].
    async fn teardown(&self, _last: &NodeSpec) -> Result<Vec<String>, StepError> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl<C: Capability> Step for C {
    fn name(&self) -> StepName {
        self.step()
    }

    async fn plan(&self, desired: &NodeSpec) -> Result<StepPlan, StepError> {
        let observed = self.observe(desired).await?;
        Ok(match C::plan(desired, &observed) {
            Plan::NotImplemented { wants } => StepPlan {
                step: self.step(),
                implemented: false,
                actions: wants,
            },
            Plan::Changes(changes) => StepPlan {
                step: self.step(),
                implemented: true,
                actions: changes.iter().map(ToString::to_string).collect(),
            },
        })
    }

    async fn converge(&self, desired: &NodeSpec) -> Result<StepOutcome, StepError> {
        let observed = self.observe(desired).await?;
        match C::plan(desired, &observed) {
            Plan::NotImplemented { wants } => Ok(StepOutcome::NotImplemented { wants }),
            Plan::Changes(changes) if changes.is_empty() => Ok(StepOutcome::UpToDate),
            Plan::Changes(changes) => {
                info!(changes = changes.len(), "applying");
                self.apply(desired, &changes).await?;
                Ok(StepOutcome::Applied {
                    changes: changes.len(),
                })
            }
        }
    }

    async fn teardown(&self, last: &NodeSpec) -> Result<Vec<String>, StepError> {
        Capability::teardown(self, last).await
    }
}

/// Plans every step without changing anything (dry runs, `Apply` replies).
pub async fn plan_all(
    steps: &[Arc<dyn Step>],
    desired: &NodeSpec,
) -> Vec<Result<StepPlan, StepError>> {
    let mut plans = Vec::with_capacity(steps.len());
    for step in steps {
        plans.push(step.plan(desired).await);
    }
    plans
}

/// Drives the host to the desired spec and keeps it there.
#[derive(Debug)]
pub struct Reconciler {
    steps: Vec<Arc<dyn Step>>,
    status: Arc<StatusBoard>,
    events: Arc<EventBus>,
    resync: Duration,
    metrics: ReconcileMetrics,
    /// Asks for a pass now (e.g. a restarted wireguard-go needs its
    /// configuration again).
    trigger: Arc<Notify>,
}

/// First retry delay after a failed step; doubled up to the resync interval.
const FIRST_RETRY: Duration = Duration::from_secs(1);

impl Reconciler {
    pub fn new(
        steps: Vec<Arc<dyn Step>>,
        status: Arc<StatusBoard>,
        events: Arc<EventBus>,
        resync: Duration,
    ) -> Self {
        Self {
            steps,
            status,
            events,
            resync,
            metrics: ReconcileMetrics::default(),
            trigger: Arc::new(Notify::new()),
        }
    }

    /// Runs a pass whenever `trigger` is notified, besides the usual ones.
    pub fn with_trigger(self, trigger: Arc<Notify>) -> Self {
        Self { trigger, ..self }
    }

    /// Counts runs into `metrics` (a handle onto shared counters).
    pub fn with_metrics(self, metrics: ReconcileMetrics) -> Self {
        Self { metrics, ..self }
    }

    /// Runs until `shutdown`: converges at every new spec, after a failure
    /// with back-off, and otherwise every resync interval to heal drift.
    pub async fn run(
        self,
        mut desired: watch::Receiver<Option<Arc<Desired>>>,
        shutdown: CancellationToken,
    ) {
        let mut retry = FIRST_RETRY;
        loop {
            // The spec is read under the pass lock: a reset holding it ends
            // with the spec gone, and no pass of the old one follows.
            let pass = tokio::select! {
                () = shutdown.cancelled() => break,
                pass = self.status.pass_lock().lock() => pass,
            };
            let current = desired.borrow_and_update().clone();
            let delay = match current {
                Some(current) => {
                    // Shutdown does not wait for the rest of a pass: every
                    // step is idempotent and the next start converges again.
                    let converged = tokio::select! {
                        () = shutdown.cancelled() => break,
                        converged = self.converge(&current) => converged,
                    };
                    drop(pass);
                    if converged {
                        retry = FIRST_RETRY;
                        self.resync
                    } else {
                        let delay = retry;
                        retry = (retry * 2).min(self.resync);
                        delay
                    }
                }
                None => {
                    drop(pass);
                    self.resync
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = desired.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    retry = FIRST_RETRY;
                }
                _ = tokio::time::sleep(delay) => {}
                () = self.trigger.notified() => {}
            }
        }
    }

    /// One pass over every step in order. Returns whether no step failed.
    pub async fn converge(&self, desired: &Desired) -> bool {
        let mut blocker: Option<Blocker> = None;
        let mut failed = false;
        for step in &self.steps {
            let name = step.name();
            let span = info_span!("reconcile", step = %name, generation = desired.generation);
            let result = self
                .run_step(step.as_ref(), desired, blocker)
                .instrument(span)
                .await;
            match result {
                StepResult::Done => {}
                StepResult::Failed => {
                    failed = true;
                    blocker = blocker.or(Some(Blocker::Failed(name)));
                }
                StepResult::NotDone => {
                    blocker = blocker.or(Some(Blocker::NotImplemented(name)));
                }
                StepResult::Blocked => {}
            }
        }
        !failed
    }

    async fn run_step(
        &self,
        step: &dyn Step,
        desired: &Desired,
        blocker: Option<Blocker>,
    ) -> StepResult {
        let name = step.name();
        let generation = desired.generation;
        let before = self.status.get(name);
        let before_condition = before.as_ref().map(|s| s.condition);
        // A repeat run for the same generation (a resync or a retry) is
        // routine: it publishes events and moves `last_transition` only if
        // its outcome differs from the last one.
        let routine = before.as_ref().is_some_and(|s| {
            s.run_generation == generation
                && matches!(
                    s.condition,
                    Condition::Converged | Condition::NotImplemented | Condition::Failed
                )
        });
        let before_message = before.as_ref().map(|s| s.message.clone());
        let report = |condition: Condition, phase: StepPhase, message: String, outcome: Outcome| {
            // A new error text is news even when the step was failing before.
            let news = before_condition != Some(condition)
                || (condition == Condition::Failed
                    && before_message.as_deref() != Some(message.as_str()));
            self.status
                .record(name, condition, message.clone(), outcome);
            if !routine || news {
                self.events.publish(
                    generation,
                    EventKind::Step {
                        step: name,
                        phase,
                        message,
                    },
                );
            }
        };

        if let Some(blocker) = blocker {
            let message = blocker.to_string();
            let unchanged = before.as_ref().is_some_and(|s| {
                s.condition == Condition::Blocked
                    && s.run_generation == generation
                    && s.message == message
            });
            self.status.mark_run(name, generation);
            if !unchanged {
                report(
                    Condition::Blocked,
                    StepPhase::Blocked,
                    message,
                    Outcome::Unchanged,
                );
            }
            return StepResult::Blocked;
        }

        if routine {
            self.status.mark_run(name, generation);
        } else {
            self.status.record(
                name,
                Condition::Progressing,
                "running".into(),
                Outcome::Running(generation),
            );
            self.events.publish(
                generation,
                EventKind::Step {
                    step: name,
                    phase: StepPhase::Started,
                    message: String::new(),
                },
            );
        }

        let started = Instant::now();
        let converged = step.converge(&desired.spec).await;
        let result = match &converged {
            Ok(StepOutcome::NotImplemented { .. }) => RunResult::NotImplemented,
            Ok(StepOutcome::UpToDate) => RunResult::UpToDate,
            Ok(StepOutcome::Applied { changes }) => RunResult::Applied { changes: *changes },
            Err(_) => RunResult::Failed,
        };
        self.metrics.observe(name, result, started.elapsed());
        match converged {
            Ok(StepOutcome::NotImplemented { wants }) => {
                // What the spec asks of the step is in the plan (`apply --dry-run`).
                let message = "not implemented in this build; nothing was done".to_owned();
                report(
                    Condition::NotImplemented,
                    StepPhase::NotImplemented,
                    message,
                    Outcome::Unchanged,
                );
                // Later steps may depend on what this one was asked to do.
                if wants.is_empty() {
                    StepResult::Done
                } else {
                    StepResult::NotDone
                }
            }
            Ok(StepOutcome::UpToDate) => {
                report(
                    Condition::Converged,
                    StepPhase::Converged,
                    "up to date".into(),
                    Outcome::Converged(generation),
                );
                StepResult::Done
            }
            Ok(StepOutcome::Applied { changes }) => {
                let message = format!("applied {changes} change(s)");
                // Changes on a resync mean drift was healed: always worth an event.
                self.status.record(
                    name,
                    Condition::Converged,
                    message.clone(),
                    Outcome::Converged(generation),
                );
                self.events.publish(
                    generation,
                    EventKind::Step {
                        step: name,
                        phase: StepPhase::Converged,
                        message,
                    },
                );
                StepResult::Done
            }
            Err(error) => {
                let error = error.to_string();
                // Routine repeats of the same failure are not logged again.
                if !routine
                    || before.as_ref().and_then(|s| s.last_error.as_deref()) != Some(error.as_str())
                {
                    warn!(%error, "step failed");
                }
                report(
                    Condition::Failed,
                    StepPhase::Failed,
                    error.clone(),
                    Outcome::Failed(error),
                );
                StepResult::Failed
            }
        }
    }
}

/// Why a step did not run.
#[derive(Debug, Clone, Copy)]
enum Blocker {
    Failed(StepName),
    NotImplemented(StepName),
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::Failed(step) => write!(f, "waiting for {step}, which failed"),
            Blocker::NotImplemented(step) => {
                write!(f, "waiting for {step}, which this build cannot carry out")
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepResult {
    /// Converged, or nothing was asked of it.
    Done,
    /// Not implemented but asked for something later steps may rely on.
    NotDone,
    Failed,
    Blocked,
}

#[cfg(test)]
mod tests;
