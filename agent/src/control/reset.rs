//! Reset: every step takes back what it set up for the stored spec, in
//! reverse order and never destroying data; then the spec is forgotten.

use std::sync::Arc;

use tracing::{Instrument, info, warn};

use super::{commit::Committer, error::ControlError, trial::Trials};
use crate::{
    reconcile::{Outcome, StatusBoard},
    step::{Condition, Step},
};

/// What a reset did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetOutcome {
    /// The generation that was forgotten.
    pub generation: u64,
    /// One line per host change, in order.
    pub actions: Vec<String>,
}

/// Takes the stored spec down; `confirm` must be its node name.
pub async fn reset(
    confirm: &str,
    committer: &Arc<Committer>,
    trials: &Trials,
    steps: &[Arc<dyn Step>],
    status: &StatusBoard,
) -> Result<ResetOutcome, ControlError> {
    let _serialised = trials.serialise().await;
    let current = committer.current().ok_or_else(|| {
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
    let _pass = status.pass_lock().lock().await;
    let mut actions = Vec::new();
    for step in steps.iter().rev() {
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
    trials.abandon().await?;
    committer.forget(current.generation).await?;
    for step in steps {
        status.record(
            step.name(),
            Condition::Pending,
            "reset: no spec applied".into(),
            Outcome::Unchanged,
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
