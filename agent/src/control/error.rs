//! What the control core answers when a request cannot be served.

use tfagent_spec::ValidationErrors;
use tfagent_supervisor::SuperviseError;

use crate::{
    services::kubeconfig::KubeconfigError,
    state::{StateError, trial::TrialError},
    step::StepName,
    storage::StorageError,
};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the spec is invalid ({count} error(s)):\n{errors}", count = .0.len(), errors = .0)]
    Invalid(ValidationErrors),
    #[error("storing the spec: {0}")]
    State(#[from] StateError),
    #[error("reading storage: {0}")]
    Storage(#[from] StorageError),
    #[error("internal error while {what}: {source}")]
    Internal {
        what: &'static str,
        source: tokio::task::JoinError,
    },
    #[error(transparent)]
    Service(#[from] SuperviseError),
    /// The request cannot be served in the agent's current state (a trial
    /// pending, nothing to confirm, no spec to fall back to).
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    BadRequest(String),
    /// The caller's role may not make this change.
    #[error("{0}")]
    PermissionDenied(String),
    #[error("the try-mode record: {0}")]
    Trial(#[from] TrialError),
    /// k3s's kubeconfig is not there (yet) or not readable.
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    /// A step could not take back what it set up; the spec stays stored.
    #[error("reset: the {step} step: {error}; the spec stays stored and is converged to again")]
    Reset { step: StepName, error: String },
}

impl ControlError {
    /// A blocking task that did not finish.
    pub(crate) fn internal(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Self {
        move |source| ControlError::Internal { what, source }
    }
}
