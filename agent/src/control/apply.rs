//! Apply: validate a document against what the host allows, plan it, and
//! unless it is a dry run store it (plainly, or on trial).

use std::{
    path::{Component, Path},
    sync::Arc,
    time::Duration,
};

use tfagent_spec::{AbsPath, NodeSpec, SpecDocument, ValidationContext};
use tracing::info;

use super::{
    commit::Committer,
    error::ControlError,
    ports::Collaborators,
    trial::{self, Trials},
    views::probe_host,
};
use crate::{
    addons::prereq,
    step::{Step, StepPlan, plan_all},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    Apply,
    DryRun,
    /// Apply, and roll back to the previous spec unless confirmed within
    /// the timeout.
    Try(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// The stored generation after this call.
    pub generation: u64,
    /// Whether the spec differs from the stored one.
    pub changed: bool,
    pub plan: Vec<StepPlan>,
}

/// A host directory as validation compares it: lexically normalised
/// (`//`, `.` and a trailing `/` dropped); `None` when it has `..` or is
/// not UTF-8, and validation then falls back to the default.
fn host_dir(path: &Path) -> Option<AbsPath> {
    let mut text = String::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => {
                text.push('/');
                text.push_str(name.to_str()?);
            }
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    if text.is_empty() {
        text.push('/');
    }
    text.parse().ok()
}

/// `dir` with symlinks resolved when it exists, normalised as [`host_dir`].
async fn real_dir(dir: &Path) -> Option<AbsPath> {
    match tokio::fs::canonicalize(dir).await {
        Ok(real) => host_dir(&real),
        Err(_) => host_dir(dir),
    }
}

/// What validation may know of this host.
async fn validation_context(
    parts: &Collaborators,
    document: &SpecDocument,
) -> Result<ValidationContext, ControlError> {
    let probe = probe_host(parts).await?;
    Ok(ValidationContext {
        own_public_key: Some(parts.mesh.public_key()),
        kernel_filesystems: Some(probe.capabilities.filesystems),
        addon_host: Some(prereq::availability(&probe.addons)),
        service_dirs: parts.services.persisted_dirs(),
        // Where the agent's dirs really are: a mount point never passes
        // through a symlink, so a mount that hid one would be on this path.
        state_dir: real_dir(parts.volumes.state_dir()).await,
        run_dir: real_dir(parts.services.run_dir()).await,
        symlinked_paths: parts.volumes.symlinked_paths(document).await?,
        refused_devices: parts.volumes.refused_devices(document).await?,
    })
}

/// Validates `document`, plans it, and unless this is a dry run stores it
/// as the next generation when it differs from the stored spec.
pub async fn apply(
    document: SpecDocument,
    mode: ApplyMode,
    parts: &Collaborators,
    steps: &[Arc<dyn Step>],
    committer: &Arc<Committer>,
    trials: &Arc<Trials>,
) -> Result<ApplyOutcome, ControlError> {
    let context = validation_context(parts, &document).await?;
    let spec = match document.validate(&context) {
        Ok(spec) => spec,
        Err(errors) => {
            info!(errors = errors.len(), "spec refused");
            return Err(ControlError::Invalid(errors));
        }
    };
    let plan = plan_all(steps, &spec).await;

    if mode == ApplyMode::DryRun {
        let current = committer.current();
        return Ok(ApplyOutcome {
            generation: current.as_ref().map_or(0, |c| c.generation),
            changed: current.is_none_or(|c| c.spec != spec),
            plan,
        });
    }

    let _serialised = trials.serialise().await;
    if let Some(pending) = trials.pending() {
        if committer.current().is_some_and(|c| c.spec == spec) {
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
    let (generation, changed) = match mode {
        ApplyMode::Try(timeout) => start_trial(spec, timeout, committer, trials).await?,
        _ => committer.commit(spec).await?,
    };
    Ok(ApplyOutcome {
        generation,
        changed,
        plan,
    })
}

async fn start_trial(
    spec: NodeSpec,
    timeout: Duration,
    committer: &Arc<Committer>,
    trials: &Arc<Trials>,
) -> Result<(u64, bool), ControlError> {
    trial::check_timeout(timeout)?;
    let Some(current) = committer.current() else {
        return Err(ControlError::Precondition(
            "try mode needs a stored spec to fall back to: apply one first".into(),
        ));
    };
    trials.start(&current, spec, timeout).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn host_dirs_are_normalised_before_validation_compares_them() {
        let dir = |text: &str| host_dir(Path::new(text)).map(|d| d.to_string());
        assert_eq!(
            dir("/var/cache/modules/tfagent/").as_deref(),
            Some("/var/cache/modules/tfagent")
        );
        assert_eq!(dir("//run//tfagent/./").as_deref(), Some("/run/tfagent"));
        assert_eq!(dir("/").as_deref(), Some("/"));
        assert_eq!(dir("/var/../etc"), None);
    }
}
