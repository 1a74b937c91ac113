//! What the add-ons step needs of the host: the cluster, to delete what a
//! removed manifest deployed, and the manifest files it owns. The Linux
//! side is [`super::linux`]; the unit tests use [`super::fake`].

use std::{
    collections::BTreeMap,
    fmt, io,
    path::{Path, PathBuf},
};

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("running {k3s} kubectl: {source}")]
    Run {
        k3s: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("k3s kubectl delete -f {manifest}: {stderr}")]
    Delete { manifest: PathBuf, stderr: String },
}

/// The cluster side of removing an add-on.
#[async_trait]
pub trait ClusterOps: Send + Sync + fmt::Debug + 'static {
    /// Deletes what `manifest` deployed, with the `k3s` binary and the
    /// server's admin `kubeconfig`; what is already gone is no error.
    async fn delete_resources(
        &self,
        k3s: &Path,
        kubeconfig: &Path,
        manifest: &Path,
    ) -> Result<(), ClusterError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("listing {dir}: {source}")]
    List {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
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

/// The manifest files the agent owns (see [`super::manifests::is_owned`]).
/// Blocking: callers run them off the async threads.
pub trait ManifestFiles: Send + Sync + fmt::Debug + 'static {
    /// File name → contents of the owned files in `dir`; none when `dir`
    /// does not exist yet.
    fn owned(&self, dir: &Path) -> Result<BTreeMap<String, String>, ManifestError>;

    /// Replaces `dir/name` atomically (k3s never reads half a file);
    /// makes `dir`.
    fn write(&self, dir: &Path, name: &str, content: &str) -> Result<(), ManifestError>;

    /// Removes `dir/name`; a missing file is an error.
    fn remove(&self, dir: &Path, name: &str) -> Result<(), ManifestError>;
}
