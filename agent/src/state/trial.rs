//! The record of a spec on trial (try mode): its generation, deadline and
//! the spec to go back to, persisted so that an agent restarted inside the
//! window still reverts.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use super::atomic::StagedFile;
use tfagent_spec::{NodeSpec, SpecDocument, ValidationContext};

/// The trial's file in the state dir (0600: the previous spec holds the
/// cluster token).
pub const TRIAL_FILE: &str = "trial.json";

#[derive(Debug, thiserror::Error)]
pub enum TrialError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path} is not a trial file: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// A spec on trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trial {
    /// The generation on trial.
    pub generation: u64,
    /// When it is reverted unless confirmed.
    pub deadline: SystemTime,
    /// The spec it replaced, restored on revert.
    pub previous: NodeSpec,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrialFile {
    generation: u64,
    deadline_unix_ms: u64,
    previous: serde_json::Value,
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Persists `trial` atomically.
pub fn save(dir: &Path, trial: &Trial) -> Result<(), TrialError> {
    let path = dir.join(TRIAL_FILE);
    let corrupt = |e: serde_json::Error| TrialError::Corrupt {
        path: path.clone(),
        message: e.to_string(),
    };
    let file = TrialFile {
        generation: trial.generation,
        deadline_unix_ms: unix_ms(trial.deadline),
        previous: serde_json::to_value(trial.previous.to_document()).map_err(corrupt)?,
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(corrupt)?;
    StagedFile::write(dir, TRIAL_FILE, &bytes)
        .and_then(StagedFile::commit)
        .map_err(|source| TrialError::Write { path, source })
}

/// The persisted trial, if any.
pub fn load(dir: &Path, context: &ValidationContext) -> Result<Option<Trial>, TrialError> {
    let path = dir.join(TRIAL_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(TrialError::Read { path, source }),
    };
    let corrupt = |message: String| TrialError::Corrupt {
        path: path.clone(),
        message,
    };
    let file: TrialFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let document = SpecDocument::parse(&file.previous.to_string())
        .map_err(|e| corrupt(format!("in the previous spec: {e}")))?;
    let previous = document
        .validate(context)
        .map_err(|e| corrupt(format!("the previous spec is not valid: {e}")))?;
    Ok(Some(Trial {
        generation: file.generation,
        deadline: UNIX_EPOCH + Duration::from_millis(file.deadline_unix_ms),
        previous,
    }))
}

/// Forgets the trial.
pub fn clear(dir: &Path) -> Result<(), TrialError> {
    let path = dir.join(TRIAL_FILE);
    match fs::remove_file(&path) {
        Err(source) if source.kind() != io::ErrorKind::NotFound => {
            Err(TrialError::Write { path, source })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use tfagent_spec::fixtures::example_spec;

    #[test]
    fn a_trial_survives_a_restart_and_is_0600() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(
            load(tmp.path(), &ValidationContext::default()).unwrap(),
            None
        );
        let trial = Trial {
            generation: 7,
            deadline: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            previous: example_spec("agent"),
        };
        save(tmp.path(), &trial).unwrap();
        let mode = fs::metadata(tmp.path().join(TRIAL_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            load(tmp.path(), &ValidationContext::default()).unwrap(),
            Some(trial)
        );
        clear(tmp.path()).unwrap();
        clear(tmp.path()).unwrap();
        assert_eq!(
            load(tmp.path(), &ValidationContext::default()).unwrap(),
            None
        );
    }

    #[test]
    fn a_broken_trial_file_is_reported_without_its_content() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(
            tmp.path().join(TRIAL_FILE),
            r#"{"generation": 2, "deadline_unix_ms": 1, "previous": {"cluster": {"token": "s3cr3t-value"}, "node_name": "Bad_Name"}}"#,
        )
        .unwrap();
        let error = load(tmp.path(), &ValidationContext::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("not valid"), "{error}");
        assert!(!error.contains("s3cr3t"), "{error}");
    }
}
