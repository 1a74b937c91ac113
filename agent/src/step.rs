//! The step contract: what every capability of the agent (storage, network,
//! services, vip, add-ons) offers the reconciler, and the words the rest of
//! the agent uses about a step — its name, its plan, the outcome of a run,
//! its condition and its errors. A leaf: it knows the spec and nothing else
//! of the agent.

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use tfagent_spec::NodeSpec;
use tracing::info;

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

/// Where a step stands, as status and events report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// No spec has reached this step yet.
    Pending,
    /// A run for a new generation is under way.
    Progressing,
    Converged,
    Failed,
    /// An earlier step failed, so this one did not run.
    Blocked,
}

/// What a converge run of a step did when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// The host already matched the spec.
    UpToDate,
    Applied {
        changes: usize,
    },
}

/// The underlying error a [`StepError`] carries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Reading the host failed.
    #[error("observing {what}: {source}")]
    Observe { what: String, source: BoxError },
    /// A change could not be made.
    #[error("{change}: {source}")]
    Apply { change: String, source: BoxError },
}

/// One step's plan as dry runs and `Apply` replies show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPlan {
    pub step: StepName,
    /// One line per host change, in the order they would be made.
    pub actions: Vec<String>,
    /// Why the step could not be planned (its host could not be read).
    pub error: Option<String>,
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

    /// The host changes that take `observed` to `desired`, in order; empty
    /// when the host already matches.
    fn plan(desired: &NodeSpec, observed: &Self::Observed) -> Vec<Self::Change>;

    /// Makes the changes of a plan, in order.
    async fn apply(&self, desired: &NodeSpec, changes: &[Self::Change]) -> Result<(), StepError>;

    /// Takes back what the capability set up for `last`, the spec being
    /// forgotten, never destroying data. Returns one line per change made.
    /// A capability that sets nothing up has nothing to take back.
    async fn teardown(&self, _last: &NodeSpec) -> Result<Vec<String>, StepError> {
        Ok(Vec::new())
    }
}

/// The reconciler's view of a capability (object safe; every
/// [`Capability`] is one).
#[async_trait]
pub trait Step: Send + Sync + fmt::Debug {
    fn name(&self) -> StepName;

    /// Observes and plans without changing anything: one line per change.
    async fn plan(&self, desired: &NodeSpec) -> Result<Vec<String>, StepError>;

    /// Observes, plans and applies.
    async fn converge(&self, desired: &NodeSpec) -> Result<StepOutcome, StepError>;

    /// See [`Capability::teardown`].
    async fn teardown(&self, last: &NodeSpec) -> Result<Vec<String>, StepError>;
}

#[async_trait]
impl<C: Capability> Step for C {
    fn name(&self) -> StepName {
        self.step()
    }

    async fn plan(&self, desired: &NodeSpec) -> Result<Vec<String>, StepError> {
        let observed = self.observe(desired).await?;
        Ok(C::plan(desired, &observed)
            .iter()
            .map(ToString::to_string)
            .collect())
    }

    async fn converge(&self, desired: &NodeSpec) -> Result<StepOutcome, StepError> {
        let observed = self.observe(desired).await?;
        let changes = C::plan(desired, &observed);
        if changes.is_empty() {
            return Ok(StepOutcome::UpToDate);
        }
        info!(changes = changes.len(), "applying");
        self.apply(desired, &changes).await?;
        Ok(StepOutcome::Applied {
            changes: changes.len(),
        })
    }

    async fn teardown(&self, last: &NodeSpec) -> Result<Vec<String>, StepError> {
        Capability::teardown(self, last).await
    }
}

/// Runs a step's blocking host I/O off the async threads; its error, or the
/// task's panic, comes back as the source of a [`StepError`].
pub async fn off_async_threads<T, E>(
    task: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, BoxError>
where
    T: Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::task::spawn_blocking(task).await {
        Ok(done) => done.map_err(Into::into),
        Err(panicked) => Err(panicked.into()),
    }
}

/// Plans every step without changing anything (dry runs, `Apply` replies).
pub async fn plan_all(steps: &[Arc<dyn Step>], desired: &NodeSpec) -> Vec<StepPlan> {
    let mut plans = Vec::with_capacity(steps.len());
    for step in steps {
        plans.push(match step.plan(desired).await {
            Ok(actions) => StepPlan {
                step: step.name(),
                actions,
                error: None,
            },
            Err(error) => StepPlan {
                step: step.name(),
                actions: Vec::new(),
                error: Some(error.to_string()),
            },
        });
    }
    plans
}
