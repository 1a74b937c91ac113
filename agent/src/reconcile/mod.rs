//! The ordered converge loop: storage → network → services → vip → addons.
//!
//! Each capability is a [`Step`]: it observes the host and makes a plan (what
//! would change), then applies it. A step whose plan is empty has converged;
//! a failed step blocks the steps after it, which depend on it; a step this
//! build cannot carry out says so and changes nothing.

mod status;

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

pub use status::{Condition, Outcome, StatusBoard, StepStatus};

use crate::{
    events::{EventBus, EventKind, StepPhase},
    spec::NodeSpec,
    state::Desired,
};

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

/// What converging one step to a spec would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPlan {
    pub step: StepName,
    /// False when this build cannot carry the step out; `actions` then says
    /// what the step would manage.
    pub implemented: bool,
    /// One line per host change, in the order they would be made.
    pub actions: Vec<String>,
}

impl StepPlan {
    pub fn not_implemented(step: StepName, would_manage: Vec<String>) -> Self {
        Self {
            step,
            implemented: false,
            actions: would_manage,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.implemented && self.actions.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Observing the host failed.
    #[error("observing the host: {0}")]
    Observe(String),
    /// A change could not be made.
    #[error("{action}: {message}")]
    Apply { action: String, message: String },
    /// Apply was called on a step this build cannot carry out.
    #[error("the {0} step is not implemented in this build")]
    NotImplemented(StepName),
}

/// One capability of the agent, converged in [`StepName::ORDER`].
#[async_trait]
pub trait Step: Send + Sync + fmt::Debug {
    fn name(&self) -> StepName;

    /// Observes the host and computes what converging to `desired` would
    /// change. Must not change the host: dry runs call it.
    async fn plan(&self, desired: &NodeSpec) -> Result<StepPlan, StepError>;

    /// Carries out a plan this step made for `desired`.
    async fn apply(&self, desired: &NodeSpec, plan: &StepPlan) -> Result<(), StepError>;
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
        }
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
            let current = desired.borrow_and_update().clone();
            let delay = match current {
                Some(current) => {
                    if self.converge(&current).await {
                        retry = FIRST_RETRY;
                        self.resync
                    } else {
                        let delay = retry;
                        retry = (retry * 2).min(self.resync);
                        delay
                    }
                }
                None => self.resync,
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
            }
        }
    }

    /// One pass over every step in order. Returns whether no step failed.
    pub async fn converge(&self, desired: &Desired) -> bool {
        let mut failed: Option<StepName> = None;
        for step in &self.steps {
            let name = step.name();
            let span = info_span!("reconcile", step = %name, generation = desired.generation);
            let ok = self
                .run_step(step.as_ref(), desired, failed)
                .instrument(span)
                .await;
            if !ok && failed.is_none() {
                failed = Some(name);
            }
        }
        failed.is_none()
    }

    async fn run_step(
        &self,
        step: &dyn Step,
        desired: &Desired,
        blocked_by: Option<StepName>,
    ) -> bool {
        let name = step.name();
        let generation = desired.generation;
        let before = self.status.get(name);
        let before_condition = before.as_ref().map(|s| s.condition);
        // A resync of a step already converged to this generation publishes
        // events only if something changes.
        let routine = before.as_ref().is_some_and(|s| {
            matches!(
                s.condition,
                Condition::Converged | Condition::NotImplemented
            ) && s.run_generation == generation
        });
        let report = |condition: Condition, phase: StepPhase, message: String, outcome: Outcome| {
            self.status
                .record(name, condition, message.clone(), outcome);
            if !routine || before_condition != Some(condition) {
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

        if let Some(blocker) = blocked_by {
            let message = format!("waiting for {blocker}, which failed");
            if before_condition != Some(Condition::Blocked) {
                self.events.publish(
                    generation,
                    EventKind::Step {
                        step: name,
                        phase: StepPhase::Blocked,
                        message: message.clone(),
                    },
                );
            }
            self.status
                .record(name, Condition::Blocked, message, Outcome::Unchanged);
            return false;
        }

        self.status.record(
            name,
            Condition::Progressing,
            "running".into(),
            Outcome::Running(generation),
        );
        if !routine {
            self.events.publish(
                generation,
                EventKind::Step {
                    step: name,
                    phase: StepPhase::Started,
                    message: String::new(),
                },
            );
        }

        let plan = match step.plan(&desired.spec).await {
            Ok(plan) => plan,
            Err(error) => return self.failed(name, error, &report),
        };
        if !plan.implemented {
            // What the spec asks of the step is in the plan (`apply --dry-run`).
            let message = "not implemented in this build; nothing was done".to_owned();
            report(
                Condition::NotImplemented,
                StepPhase::NotImplemented,
                message,
                Outcome::Unchanged,
            );
            return true;
        }
        if plan.actions.is_empty() {
            report(
                Condition::Converged,
                StepPhase::Converged,
                "up to date".into(),
                Outcome::Converged(generation),
            );
            return true;
        }
        info!(changes = plan.actions.len(), "applying");
        match step.apply(&desired.spec, &plan).await {
            Ok(()) => {
                let message = format!("applied {} change(s)", plan.actions.len());
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
                true
            }
            Err(error) => self.failed(name, error, &report),
        }
    }

    fn failed(
        &self,
        step: StepName,
        error: StepError,
        report: &dyn Fn(Condition, StepPhase, String, Outcome),
    ) -> bool {
        let error = error.to_string();
        warn!(%step, %error, "step failed");
        report(
            Condition::Failed,
            StepPhase::Failed,
            error.clone(),
            Outcome::Failed(error),
        );
        false
    }
}

#[cfg(test)]
mod tests;
