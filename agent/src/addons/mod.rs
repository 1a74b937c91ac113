//! Add-ons: the manifests k3s auto-deploys on servers (MetalLB,
//! ingress-nginx, cert-manager with Let's Encrypt, Longhorn; local-path is
//! k3s's own provisioner, set up through k3s's config).
//!
//! The step owns the `tfagent-*.yaml` files of k3s's manifests directory on
//! servers: it writes the files of the add-ons that are on (atomically) and
//! removes those of the add-ons that are off. k3s does not delete what a
//! removed file deployed, so the agent first deletes those resources from
//! the cluster (a deleted HelmChart uninstalls its chart), then the file.

pub mod manifests;
pub mod prereq;

use std::{
    collections::BTreeMap,
    fmt, fs, io,
    path::{Path, PathBuf},
    process::Stdio,
};

use async_trait::async_trait;
use tracing::info;

use crate::{
    state::StagedFile,
    step::{Capability, StepError, StepName},
};
use tfagent_spec::{NodeSpec, defaults};

pub use manifests::FILE_PREFIX;

/// Where k3s looks for manifests and its admin credentials, under its data
/// dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K3sPaths {
    /// `<data-dir>/server/manifests`.
    pub manifests: PathBuf,
    /// `<data-dir>/server/cred/admin.kubeconfig`.
    pub admin_kubeconfig: PathBuf,
}

impl K3sPaths {
    pub fn under(data_dir: &Path) -> Self {
        Self {
            manifests: data_dir.join("server/manifests"),
            admin_kubeconfig: data_dir.join("server/cred/admin.kubeconfig"),
        }
    }
}

impl Default for K3sPaths {
    fn default() -> Self {
        Self::under(Path::new(defaults::K3S_DATA_DIR))
    }
}

/// The cluster side of removing an add-on.
#[async_trait]
pub trait ClusterOps: Send + Sync + fmt::Debug + 'static {
    /// Deletes what `manifest` deployed; what is already gone is no error.
    async fn delete_resources(
        &self,
        k3s: &Path,
        kubeconfig: &Path,
        manifest: &Path,
    ) -> Result<(), io::Error>;
}

/// `k3s kubectl delete`, with the server's admin credentials.
#[derive(Debug, Default, Clone, Copy)]
pub struct K3sKubectl;

#[async_trait]
impl ClusterOps for K3sKubectl {
    async fn delete_resources(
        &self,
        k3s: &Path,
        kubeconfig: &Path,
        manifest: &Path,
    ) -> Result<(), io::Error> {
        let output = tokio::process::Command::new(k3s)
            .arg("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["delete", "--ignore-not-found", "--wait=false", "-f"])
            .arg(manifest)
            .stdin(Stdio::null())
            .output()
            .await?;
        if output.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "k3s kubectl delete: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }
}

/// The files the step owns, as they are on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// File name → content, for the `tfagent-*.yaml` files present.
    pub present: BTreeMap<String, String>,
    /// File name → content the spec asks for.
    pub wanted: BTreeMap<&'static str, String>,
}

/// One change to the manifests directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddonChange {
    Write {
        file: &'static str,
        content: String,
        new: bool,
    },
    Remove {
        file: String,
    },
}

impl fmt::Display for AddonChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddonChange::Write {
                file, new: true, ..
            } => write!(f, "write {file}"),
            AddonChange::Write {
                file, new: false, ..
            } => write!(f, "rewrite {file}"),
            AddonChange::Remove { file } => write!(
                f,
                "delete what {file} deployed from the cluster, then remove it"
            ),
        }
    }
}

/// The add-ons step.
#[derive(Debug)]
pub struct AddonsStep<C: ClusterOps = K3sKubectl> {
    paths: K3sPaths,
    cluster: C,
}

impl AddonsStep<K3sKubectl> {
    pub fn new(paths: K3sPaths) -> Self {
        Self::with_cluster(paths, K3sKubectl)
    }
}

impl<C: ClusterOps> AddonsStep<C> {
    pub fn with_cluster(paths: K3sPaths, cluster: C) -> Self {
        Self { paths, cluster }
    }
}

fn observe_error(what: &str, source: impl std::error::Error + Send + Sync + 'static) -> StepError {
    StepError::Observe {
        what: what.to_owned(),
        source: Box::new(source),
    }
}

/// The `tfagent-*.yaml` files of `dir`; none when it does not exist yet.
fn read_owned(dir: &Path) -> io::Result<BTreeMap<String, String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    let mut files = BTreeMap::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(FILE_PREFIX) && name.ends_with(".yaml") && entry.file_type()?.is_file()
        {
            files.insert(name, fs::read_to_string(entry.path())?);
        }
    }
    Ok(files)
}

#[async_trait]
impl<C: ClusterOps> Capability for AddonsStep<C> {
    type Observed = Observed;
    type Change = AddonChange;

    fn step(&self) -> StepName {
        StepName::Addons
    }

    async fn observe(&self, desired: &NodeSpec) -> Result<Observed, StepError> {
        // Only servers deploy manifests; an agent wants none.
        let wanted = if desired.role.is_server() {
            manifests::render(&desired.addons)
                .map_err(|e| observe_error("the add-on manifests", e))?
        } else {
            BTreeMap::new()
        };
        let dir = self.paths.manifests.clone();
        let present = tokio::task::spawn_blocking(move || read_owned(&dir))
            .await
            .map_err(|e| observe_error("the manifests directory", e))?
            .map_err(|e| {
                observe_error(
                    &format!("the manifests directory {}", self.paths.manifests.display()),
                    e,
                )
            })?;
        Ok(Observed { present, wanted })
    }

    fn plan(_desired: &NodeSpec, observed: &Observed) -> Vec<AddonChange> {
        let mut changes = Vec::new();
        for (file, content) in &observed.wanted {
            let present = observed.present.get(*file);
            if present != Some(content) {
                changes.push(AddonChange::Write {
                    file,
                    content: content.clone(),
                    new: present.is_none(),
                });
            }
        }
        for file in observed.present.keys() {
            if !observed.wanted.contains_key(file.as_str()) {
                changes.push(AddonChange::Remove { file: file.clone() });
            }
        }
        changes
    }

    async fn apply(&self, desired: &NodeSpec, changes: &[AddonChange]) -> Result<(), StepError> {
        let dir = &self.paths.manifests;
        for change in changes {
            let failed = |source: io::Error| StepError::Apply {
                change: change.to_string(),
                source: Box::new(source),
            };
            match change {
                AddonChange::Write { file, content, .. } => {
                    let (dir, file, content) = (dir.clone(), *file, content.clone());
                    // Temp file, fsync, rename: k3s never reads half a file.
                    tokio::task::spawn_blocking(move || {
                        fs::create_dir_all(&dir)?;
                        StagedFile::write(&dir, file, content.as_bytes())?.commit()
                    })
                    .await
                    .map_err(io::Error::other)
                    .and_then(|written| written)
                    .map_err(failed)?;
                }
                AddonChange::Remove { file } => {
                    let path = dir.join(file);
                    self.cluster
                        .delete_resources(
                            Path::new(desired.services.k3s.binary.as_str()),
                            &self.paths.admin_kubeconfig,
                            &path,
                        )
                        .await
                        .map_err(failed)?;
                    tokio::fs::remove_file(&path).await.map_err(failed)?;
                }
            }
            info!(%change, "done");
        }
        Ok(())
    }

    // ---- reset ----
    /// Removes the manifests tfagent wrote. The cluster's resources are
    /// left alone: resetting one server must not delete what the whole
    /// cluster runs.
    async fn teardown(&self, _last: &NodeSpec) -> Result<Vec<String>, StepError> {
        let dir = self.paths.manifests.clone();
        let present = tokio::task::spawn_blocking(move || read_owned(&dir))
            .await
            .map_err(|e| observe_error("the manifests directory", e))?
            .map_err(|e| observe_error("the manifests directory", e))?;
        let mut done = Vec::new();
        for file in present.keys() {
            let path = self.paths.manifests.join(file);
            let change = format!("remove {}", path.display());
            tokio::fs::remove_file(&path)
                .await
                .map_err(|source| StepError::Apply {
                    change: change.clone(),
                    source: Box::new(source),
                })?;
            done.push(change);
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests;
