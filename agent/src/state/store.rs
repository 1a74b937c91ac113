//! The persisted desired spec and its generation.
//!
//! One file, `spec.json`, replaced atomically (temp file, fsync, rename, fsync
//! of the directory), mode 0600 because it holds the cluster token. A crash at
//! any point leaves either the old file or the new one, never a mix.

use std::{
    fs,
    io::ErrorKind,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;

use super::atomic::{self, StagedFile};

use tfagent_spec::{NodeSpec, SpecDocument, ValidationContext, ValidationErrors};

const SPEC_FILE: &str = "spec.json";
/// Where a spec the agent refused at startup is kept.
const REFUSED_FILE: &str = "spec.json.refused";
/// Held locked by the running agent.
const LOCK_FILE: &str = "lock";
/// The generation of the spec the last reset forgot.
const RESET_FILE: &str = "spec.reset";

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
    #[error("{path} is locked: another tfagent uses this state dir")]
    Locked { path: PathBuf },
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

#[derive(Serialize)]
struct StateFile {
    generation: u64,
    spec: SpecDocument,
}

/// Reads and writes the desired state under the state dir. Holds an
/// exclusive lock on the dir for as long as it lives, so a second agent
/// started by mistake cannot touch the state of the running one.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    _lock: Flock<fs::File>,
}

impl StateStore {
    /// Opens (creating it 0700 if needed) and locks the state dir, removes
    /// temp files a crash left behind, and loads the last accepted spec, if
    /// any. A spec file that is corrupt or that this agent refuses (e.g.
    /// written by a newer one) is moved aside and reported, not fatal: the
    /// agent must keep serving so it can be given a spec it takes.
    pub fn open(dir: &Path) -> Result<(Self, Loaded), StateError> {
        Self::open_with(dir, &ValidationContext::default())
    }

    /// [`StateStore::open`], validating the stored spec against `context`:
    /// what the boot config says of this host (its service, state and run
    /// dirs), so a spec accepted by Apply is accepted again at the next
    /// start.
    pub fn open_with(
        dir: &Path,
        context: &ValidationContext,
    ) -> Result<(Self, Loaded), StateError> {
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
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(dir_err)?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
            .map_err(|_| StateError::Locked { path: lock_path })?;
        atomic::remove_stale_temp_files(dir, SPEC_FILE).map_err(dir_err)?;
        atomic::remove_stale_temp_files(dir, RESET_FILE).map_err(dir_err)?;
        let store = Self {
            dir: dir.to_owned(),
            _lock: lock,
        };
        let loaded = match read_state(&store.spec_path(), context) {
            Ok(Some(desired)) => {
                // A refusal that a later Apply superseded, whose removal was
                // cut short.
                store.clear_refused()?;
                Loaded {
                    desired: Some(desired),
                    refused: None,
                }
            }
            Ok(None) => Loaded {
                desired: None,
                refused: store.earlier_refusal(context)?,
            },
            Err(error @ (StateError::Corrupt { .. } | StateError::Invalid { .. })) => {
                let generation = peek_generation(&store.spec_path());
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

    /// The state dir (the network step keeps its key and trial there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn spec_path(&self) -> PathBuf {
        self.dir.join(SPEC_FILE)
    }

    fn refused_path(&self) -> PathBuf {
        self.dir.join(REFUSED_FILE)
    }

    /// Renames the spec file aside, replacing an older refused one.
    fn set_aside(&self) -> Result<PathBuf, StateError> {
        let to = self.refused_path();
        fs::rename(self.spec_path(), &to)
            .and_then(|()| fs::File::open(&self.dir)?.sync_all())
            .map_err(|source| StateError::Write {
                path: to.clone(),
                source,
            })?;
        Ok(to)
    }

    /// A spec an earlier start set aside and nothing has replaced yet: still
    /// reported, and its generation still counts.
    fn earlier_refusal(
        &self,
        context: &ValidationContext,
    ) -> Result<Option<RefusedSpec>, StateError> {
        let path = self.refused_path();
        if !path.exists() {
            return Ok(None);
        }
        let reason = match read_state(&path, context) {
            Ok(_) => "set aside at an earlier start; it is valid now: apply it again to use it"
                .to_owned(),
            Err(error) => format!("set aside at an earlier start: {error}"),
        };
        Ok(Some(RefusedSpec {
            reason,
            generation: peek_generation(&path),
            moved_to: path,
        }))
    }

    /// Forgets a refused spec once a new one is stored.
    pub fn clear_refused(&self) -> Result<(), StateError> {
        let path = self.refused_path();
        match fs::remove_file(&path) {
            Err(source) if source.kind() != ErrorKind::NotFound => {
                Err(StateError::Write { path, source })
            }
            _ => Ok(()),
        }
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

    /// Forgets the stored spec of `generation`: records the generation
    /// first (so later ones count on), then removes the spec file. A crash
    /// in between leaves the spec stored.
    pub fn forget(&self, generation: u64) -> Result<(), StateError> {
        let path = self.dir.join(RESET_FILE);
        let write = |source| StateError::Write {
            path: path.clone(),
            source,
        };
        StagedFile::write(&self.dir, RESET_FILE, format!("{generation}\n").as_bytes())
            .and_then(StagedFile::commit)
            .map_err(write)?;
        let spec = self.spec_path();
        match fs::remove_file(&spec).and_then(|()| fs::File::open(&self.dir)?.sync_all()) {
            Err(source) if source.kind() != ErrorKind::NotFound => {
                Err(StateError::Write { path: spec, source })
            }
            _ => Ok(()),
        }
    }

    /// The generation the last reset forgot (0 when none): later specs are
    /// numbered after it.
    pub fn reset_generation(&self) -> u64 {
        fs::read_to_string(self.dir.join(RESET_FILE))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Reads a state file. The spec goes through [`SpecDocument::parse`], whose
/// errors never quote the token.
fn read_state(path: &Path, context: &ValidationContext) -> Result<Option<Desired>, StateError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let corrupt = |message: String| StateError::Corrupt {
        path: path.to_owned(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let Some(fields) = value.as_object() else {
        return Err(corrupt("not a JSON object".into()));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["generation", "spec"].contains(&k.as_str()))
    {
        return Err(corrupt(format!("unknown field `{unknown}`")));
    }
    let generation = match fields.get("generation").and_then(serde_json::Value::as_u64) {
        Some(0) => return Err(corrupt("generation 0 is never written".into())),
        Some(generation) => generation,
        None => return Err(corrupt("no generation".into())),
    };
    let spec = fields
        .get("spec")
        .ok_or_else(|| corrupt("no spec".into()))?;
    let document =
        SpecDocument::parse(&spec.to_string()).map_err(|e| corrupt(format!("in the spec: {e}")))?;
    let spec = document
        .validate(context)
        .map_err(|errors| StateError::Invalid {
            path: path.to_owned(),
            generation,
            errors,
        })?;
    Ok(Some(Desired { generation, spec }))
}

/// The spec stored in `dir`, read without taking the lock (for tests that
/// look at what a running store wrote).
#[cfg(test)]
pub fn read_stored(dir: &Path) -> Result<Option<Desired>, StateError> {
    read_state(&dir.join(SPEC_FILE), &ValidationContext::default())
}

/// The generation a state file claims, however broken the rest; 0 if none.
fn peek_generation(path: &Path) -> u64 {
    fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|value| value.get("generation")?.as_u64())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
