//! `tfagentctl health`: an exit code for zinit `test:` and monitoring.

use tfagent_proto::v1 as pb;

use crate::{error::CtlError, output::condition_name};

/// Whether a status is healthy: `Ok` with a one-line summary, or an error
/// listing each step that holds convergence up.
pub(crate) fn check(status: &pb::NodeStatus, live_only: bool) -> Result<String, CtlError> {
    let desired = status.desired_generation;
    let converged = status.converged_generation;
    if live_only {
        return Ok(format!(
            "alive: generation {desired}, converged {converged}"
        ));
    }
    if !status.refused_spec.is_empty() {
        return Err(CtlError::new(format!(
            "unhealthy: the stored spec was refused: {}",
            status.refused_spec
        )));
    }
    if desired == 0 {
        return Err(CtlError::new("unhealthy: no spec has been applied yet"));
    }
    if converged >= desired {
        return Ok(format!("healthy: generation {desired} converged"));
    }
    let holding: Vec<String> = status
        .steps
        .iter()
        .filter(|step| step.converged_generation < desired)
        .map(|step| {
            let condition = condition_name(step.condition);
            let why = if step.last_error.is_empty() {
                &step.message
            } else {
                &step.last_error
            };
            format!("{}: {condition} {why}", step.step)
                .trim_end()
                .to_owned()
        })
        .collect();
    Err(CtlError {
        details: holding,
        ..CtlError::new(format!(
            "unhealthy: generation {desired} not converged (at {converged})"
        ))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn status(desired: u64, converged: u64, steps: Vec<pb::StepStatus>) -> pb::NodeStatus {
        pb::NodeStatus {
            desired_generation: desired,
            converged_generation: converged,
            steps,
            ..Default::default()
        }
    }

    #[test]
    fn health_is_convergence_and_lists_what_holds_it_up() {
        assert_eq!(
            check(&status(3, 3, vec![]), false).unwrap(),
            "healthy: generation 3 converged"
        );
        let failed = pb::StepStatus {
            step: "network".into(),
            condition: pb::Condition::Failed.into(),
            converged_generation: 2,
            last_error: "wg0: no such device".into(),
            ..Default::default()
        };
        let done = pb::StepStatus {
            step: "storage".into(),
            condition: pb::Condition::Converged.into(),
            converged_generation: 3,
            ..Default::default()
        };
        let error = check(&status(3, 2, vec![done, failed]), false).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unhealthy: generation 3 not converged (at 2)\n  network: failed wg0: no such device"
        );
        let none = check(&status(0, 0, vec![]), false).unwrap_err();
        assert!(none.message.contains("no spec"), "{none}");
        let refused = pb::NodeStatus {
            refused_spec: "spec.json: not JSON".into(),
            ..status(0, 0, vec![])
        };
        assert!(check(&refused, false).is_err());
    }

    #[test]
    fn live_health_only_needs_an_answer() {
        assert!(check(&status(0, 0, vec![]), true).is_ok());
        assert!(check(&status(4, 1, vec![]), true).is_ok());
    }
}
