//! Apply: validate a document against what the host allows, plan it, and
//! unless it is a dry run store it (plainly, or on trial).

use std::{
    path::{Component, Path},
    sync::Arc,
    time::Duration,
};

use tfagent_spec::{
    AbsPath, NodeSpec, ServiceDirs, Services, SpecDocument, ValidationContext, defaults,
};
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

/// What the caller of an apply may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyRights {
    /// Everything (the admin role; root on the local socket).
    All,
    /// Everything but the fields that decide what runs as root
    /// ([`Services::root_fields_changed`]): the operator role.
    NotRootFields,
}

/// Refuses `spec` when `rights` do not cover a field it changes that
/// decides what runs as root, compared with the stored spec (with the
/// defaults when none is stored, so an operator's first spec cannot name
/// another binary either).
fn check_rights(
    spec: &NodeSpec,
    rights: ApplyRights,
    committer: &Committer,
) -> Result<(), ControlError> {
    if rights == ApplyRights::All {
        return Ok(());
    }
    let stored = committer
        .current()
        .map_or_else(Services::defaults, |c| c.spec.services.clone());
    let changed = stored.root_fields_changed(&spec.services);
    if changed.is_empty() {
        return Ok(());
    }
    info!(fields = ?changed, "apply refused: root fields need the admin role");
    Err(ControlError::PermissionDenied(format!(
        "{}: changing what runs as root needs the admin role",
        changed.join(", ")
    )))
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

/// What validation knows of this host without probing it: the boot
/// config's state, run and service dirs. A stored spec (and a trial's
/// previous one) is checked against it when the agent starts, so what
/// Apply accepted is accepted again.
pub fn stored_spec_context(
    state_dir: &Path,
    run_dir: &Path,
    service_dirs: Option<ServiceDirs>,
) -> ValidationContext {
    let real = |dir: &Path| {
        std::fs::canonicalize(dir)
            .ok()
            .and_then(|real| host_dir(&real))
            .or_else(|| host_dir(dir))
    };
    ValidationContext {
        state_dir: real(state_dir),
        run_dir: real(run_dir),
        service_dirs,
        ..ValidationContext::default()
    }
}

/// `dir` with symlinks resolved when it exists, normalised as [`host_dir`].
async fn real_dir(dir: &Path) -> Option<AbsPath> {
    match tokio::fs::canonicalize(dir).await {
        Ok(real) => host_dir(&real),
        Err(_) => host_dir(dir),
    }
}

/// The binaries `document` names, as validation reads them: an empty field
/// is the default binary.
pub(super) fn effective_binaries(document: &SpecDocument) -> [String; 2] {
    let effective =
        |binary: &str, default: &str| if binary.is_empty() { default } else { binary }.to_owned();
    [
        effective(
            &document.services.containerd.binary,
            defaults::CONTAINERD_BINARY,
        ),
        effective(&document.services.k3s.binary, defaults::K3S_BINARY),
    ]
}

/// What validation may know of this host.
async fn validation_context(
    parts: &Collaborators,
    document: &SpecDocument,
) -> Result<ValidationContext, ControlError> {
    let probe = probe_host(parts).await?;
    let services = Arc::clone(&parts.services);
    let binaries = effective_binaries(document);
    let refused_binaries =
        tokio::task::spawn_blocking(move || services.refused_binaries(&binaries))
            .await
            .map_err(ControlError::internal("checking the service binaries"))?;
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
        refused_binaries,
    })
}

/// Validates `document`, plans it, and unless this is a dry run stores it
/// as the next generation when it differs from the stored spec.
pub async fn apply(
    document: SpecDocument,
    mode: ApplyMode,
    rights: ApplyRights,
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
        check_rights(&spec, rights, committer)?;
        let current = committer.current();
        return Ok(ApplyOutcome {
            generation: current.as_ref().map_or(0, |c| c.generation),
            changed: current.is_none_or(|c| c.spec != spec),
            plan,
        });
    }

    let _serialised = trials.serialise().await;
    // Under the lock: against the spec this one would replace.
    check_rights(&spec, rights, committer)?;
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
