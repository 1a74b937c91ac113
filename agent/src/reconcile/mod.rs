//! The ordered converge loop: storage → network → services → vip → addons.
//!
//! Each capability is a [`Step`]: it observes the host and makes a plan (what
//! would change), then applies it. A step whose plan is empty has converged;
//! a failed step blocks the steps after it, which depend on it.

mod status;

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

pub use status::{Outcome, StatusBoard, StepStatus};

use crate::{
    events::{EventBus, EventKind},
    state::Desired,
    step::{Condition, Step, StepError, StepName, StepOutcome},
};

/// Told of every converge run of a step (blocked steps do not run), e.g.
/// to count runs for the metrics endpoint.
pub trait RunObserver: Send + Sync + fmt::Debug {
    fn step_ran(&self, step: StepName, result: Result<&StepOutcome, &StepError>, took: Duration);
}

/// Drives the host to the desired spec and keeps it there.
#[derive(Debug)]
pub struct Reconciler {
    steps: Vec<Arc<dyn Step>>,
    status: Arc<StatusBoard>,
    events: Arc<EventBus>,
    resync: Duration,
    observers: Vec<Arc<dyn RunObserver>>,
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
            observers: Vec::new(),
            trigger: Arc::new(Notify::new()),
        }
    }

    /// Runs a pass whenever `trigger` is notified, besides the usual ones.
    pub fn with_trigger(self, trigger: Arc<Notify>) -> Self {
        Self { trigger, ..self }
    }

    /// Tells `observer` of every converge run.
    pub fn with_observer(mut self, observer: Arc<dyn RunObserver>) -> Self {
        self.observers.push(observer);
        self
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
                    blocker = blocker.or(Some(Blocker(name)));
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
                && matches!(s.condition, Condition::Converged | Condition::Failed)
        });
        let before_message = before.as_ref().map(|s| s.message.clone());
        let report = |condition: Condition, message: String, outcome: Outcome| {
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
                        condition,
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
                report(Condition::Blocked, message, Outcome::Unchanged);
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
                    condition: Condition::Progressing,
                    message: String::new(),
                },
            );
        }

        let started = Instant::now();
        let converged = step.converge(&desired.spec).await;
        let took = started.elapsed();
        for observer in &self.observers {
            observer.step_ran(name, converged.as_ref(), took);
        }
        match converged {
            Ok(StepOutcome::UpToDate) => {
                report(
                    Condition::Converged,
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
                        condition: Condition::Converged,
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
                report(Condition::Failed, error.clone(), Outcome::Failed(error));
                StepResult::Failed
            }
        }
    }
}

/// Why a step did not run: an earlier one failed.
#[derive(Debug, Clone, Copy)]
struct Blocker(StepName);

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "waiting for {}, which failed", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepResult {
    Done,
    Failed,
    Blocked,
}

#[cfg(test)]
mod tests;
