//! The persisted desired spec and its generation.
//!
//! One file, `spec.json`, replaced atomically (temp file, fsync, rename, fsync
//! of the directory), mode 0600 because it holds the cluster token. A crash at
//! any point leaves either the old file or the new one, never a mix.

mod atomic;

use std::{
    fs,
    io::ErrorKind,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub use atomic::StagedFile;

use crate::spec::{NodeSpec, SpecDocument, ValidationContext, ValidationErrors};

const SPEC_FILE: &str = "spec.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state dir {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a tfagent state file: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("{path} holds a spec this agent refuses:\n{errors}")]
    Invalid {
        path: PathBuf,
        generation: u64,
        errors: ValidationErrors,
    },
}

/// A stored spec the agent could not take at startup. It is moved aside so
/// the agent can serve and a new Apply can replace it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedSpec {
    /// Why, in one message.
    pub reason: String,
    pub moved_to: PathBuf,
    /// Its generation when readable (0 otherwise): later ones count on.
    pub generation: u64,
}

/// What [`StateStore::open`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub desired: Option<Desired>,
    pub refused: Option<RefusedSpec>,
}

/// A spec the agent has accepted, with the generation it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Starts at 1 and grows by one per accepted change.
    pub generation: u64,
    pub spec: NodeSpec,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    generation: u64,
    spec: SpecDocument,
}

/// Reads and writes the desired state under the state dir.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// Opens (creating it 0700 if needed) the state dir, removes temp files a
    /// crash left behind, and loads the last accepted spec, if any. A spec
    /// file that is corrupt or that this agent refuses (e.g. written by a
    /// newer one) is moved aside and reported, not fatal: the agent must
    /// keep serving so it can be given a spec it takes.
    pub fn open(dir: &Path) -> Result<(Self, Loaded), StateError> {
        let dir_err = |source| StateError::Dir {
            path: dir.to_owned(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(dir_err)?;
        // The dir may predate us with looser bits; the spec holds secrets.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(dir_err)?;
        atomic::remove_stale_temp_files(dir, SPEC_FILE).map_err(dir_err)?;
        let store = Self {
            dir: dir.to_owned(),
        };
        let loaded = match store.load() {
            Ok(desired) => Loaded {
                desired,
                refused: None,
            },
            Err(error @ (StateError::Corrupt { .. } | StateError::Invalid { .. })) => {
                let generation = match &error {
                    StateError::Invalid { generation, .. } => *generation,
                    _ => 0,
                };
                let moved_to = store.set_aside()?;
                Loaded {
                    desired: None,
                    refused: Some(RefusedSpec {
                        reason: error.to_string(),
                        moved_to,
                        generation,
                    }),
                }
            }
            Err(error) => return Err(error),
        };
        Ok((store, loaded))
    }

    /// Renames the spec file to `spec.json.refused`, replacing an older one.
    fn set_aside(&self) -> Result<PathBuf, StateError> {
        let from = self.spec_path();
        let to = self.dir.join(format!("{SPEC_FILE}.refused"));
        fs::rename(&from, &to)
            .and_then(|()| fs::File::open(&self.dir)?.sync_all())
            .map_err(|source| StateError::Write {
                path: to.clone(),
                source,
            })?;
        Ok(to)
    }

    pub fn spec_path(&self) -> PathBuf {
        self.dir.join(SPEC_FILE)
    }

    fn load(&self) -> Result<Option<Desired>, StateError> {
        let path = self.spec_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if file.generation == 0 {
            return Err(StateError::Corrupt {
                path,
                message: "generation 0 is never written".into(),
            });
        }
        let spec = file
            .spec
            .validate(&ValidationContext::default())
            .map_err(|errors| StateError::Invalid {
                path: path.clone(),
                generation: file.generation,
                errors,
            })?;
        Ok(Some(Desired {
            generation: file.generation,
            spec,
        }))
    }

    /// Writes `desired` as a temp file, fsynced, without making it current.
    /// [`StagedFile::commit`] makes it current; dropping it instead leaves the
    /// previous spec in place.
    pub fn stage(&self, desired: &Desired) -> Result<StagedFile, StateError> {
        let file = StateFile {
            generation: desired.generation,
            spec: desired.spec.to_document(),
        };
        let path = self.spec_path();
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        StagedFile::write(&self.dir, SPEC_FILE, &bytes)
            .map_err(|source| StateError::Write { path, source })
    }

    /// Persists `desired` atomically.
    pub fn save(&self, desired: &Desired) -> Result<(), StateError> {
        let staged = self.stage(desired)?;
        staged.commit().map_err(|source| StateError::Write {
            path: self.spec_path(),
            source,
        })
    }
}

#[cfg(test)]
mod tests;
