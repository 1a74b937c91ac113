//! What the services step needs of the host: a supervisor to run the
//! services, and the files rendered for them. The Linux side is
//! [`super::linux`]; the unit tests use [`super::fake`].

use std::{
    fmt, io,
    path::{Path, PathBuf},
    sync::Arc,
};

use async_trait::async_trait;
use tfagent_supervisor::{Ensured, ServiceDef, ServiceName, SuperviseError, def::Fnv64};

/// A file the services read, rendered from the spec.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub path: PathBuf,
    pub contents: Vec<u8>,
    pub mode: u32,
    /// Holds a secret: its contents are never shown.
    pub secret: bool,
}

impl fmt::Debug for RenderedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderedFile")
            .field("path", &self.path)
            .field("bytes", &self.contents.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .field("secret", &self.secret)
            .finish()
    }
}

/// A file as found on disk: a digest of its contents and its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileState {
    pub digest: u64,
    pub mode: u32,
}

impl FileState {
    /// The state of a file holding `contents` with `mode` (an FNV-1a
    /// digest: the same in every build).
    pub fn of(contents: &[u8], mode: u32) -> Self {
        let mut hash = Fnv64::default();
        hash.write(contents);
        Self {
            digest: hash.0,
            mode,
        }
    }
}

impl RenderedFile {
    /// The state this file has once written.
    pub fn state(&self) -> FileState {
        FileState::of(&self.contents, self.mode)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("removing {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The services' rendered files. Blocking: callers run them off the async
/// threads.
pub trait ServiceFiles: Send + Sync + fmt::Debug + 'static {
    /// The file's state; `None` when it does not exist.
    fn state(&self, path: &Path) -> Result<Option<FileState>, FileError>;

    /// Replaces the file atomically, its mode set from the start (a secret
    /// is never readable by others, not even briefly); makes its directory.
    fn write(&self, file: &RenderedFile) -> Result<(), FileError>;

    /// Removes the file; `false` when there was none.
    fn remove(&self, path: &Path) -> Result<bool, FileError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisionError {
    #[error("supervising {service}: {source}")]
    Ensure {
        service: ServiceName,
        #[source]
        source: SuperviseError,
    },
    #[error("adopting {service}: {source}")]
    Resume {
        service: ServiceName,
        #[source]
        source: SuperviseError,
    },
}

/// What the step needs of a process supervisor.
#[async_trait]
pub trait Supervision: Send + Sync + fmt::Debug + 'static {
    /// Supervises `def`: starts it when new, restarts it when what it runs
    /// changed, and otherwise takes its new policies in place.
    fn ensure(&self, def: ServiceDef) -> Result<Ensured, SupervisionError>;

    /// Adopts `def` only if the process an earlier agent started for it
    /// still runs; starts nothing. `true` when adopted.
    fn resume(&self, def: ServiceDef) -> Result<bool, SupervisionError>;

    /// Stops a service (its dependents first) and stops supervising it.
    async fn remove(&self, name: &ServiceName);

    /// The supervised services' definitions, in start order.
    fn definitions(&self) -> Vec<Arc<ServiceDef>>;

    /// The definition `name` runs with, if it is supervised.
    fn definition(&self, name: &str) -> Option<Arc<ServiceDef>>;
}
