//! Add-ons: the manifests k3s auto-deploys on servers (MetalLB,
//! ingress-nginx, cert-manager with Let's Encrypt, Longhorn; local-path is
//! k3s's own provisioner, set up through k3s's config).
//!
//! The step owns the `tfagent-*.yaml` files of k3s's manifests directory on
//! servers: it writes the files of the add-ons that are on (atomically) and
//! removes those of the add-ons that are off. k3s does not delete what a
//! removed file deployed, so the agent first deletes those resources from
//! the cluster (a deleted HelmChart uninstalls its chart), then the file.

pub mod linux;
pub mod manifests;
pub mod plan;
pub mod ports;
pub mod prereq;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use async_trait::async_trait;
use tracing::info;

use crate::step::{BoxError, Capability, StepError, StepName, off_async_threads};
use tfagent_spec::{NodeSpec, defaults};

pub use linux::{HostManifests, K3sKubectl};
pub use manifests::FILE_PREFIX;
pub use plan::{AddonChange, Observed};
pub use ports::{ClusterError, ClusterOps, ManifestError, ManifestFiles};

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

/// The add-ons step, over the cluster and the manifest files.
#[derive(Debug)]
pub struct AddonsStep<C: ClusterOps = K3sKubectl, M: ManifestFiles = HostManifests> {
    paths: K3sPaths,
    cluster: C,
    files: Arc<M>,
}

impl AddonsStep {
    pub fn new(paths: K3sPaths) -> Self {
        Self::with_cluster(paths, K3sKubectl)
    }
}

impl<C: ClusterOps> AddonsStep<C> {
    pub fn with_cluster(paths: K3sPaths, cluster: C) -> Self {
        Self::with_ports(paths, cluster, HostManifests)
    }
}

impl<C: ClusterOps, M: ManifestFiles> AddonsStep<C, M> {
    pub fn with_ports(paths: K3sPaths, cluster: C, files: M) -> Self {
        Self {
            paths,
            cluster,
            files: Arc::new(files),
        }
    }

    /// The owned files present.
    async fn owned(&self) -> Result<BTreeMap<String, String>, StepError> {
        let (files, dir) = (Arc::clone(&self.files), self.paths.manifests.clone());
        off_async_threads(move || files.owned(&dir))
            .await
            .map_err(|source| StepError::Observe {
                what: "the manifests directory".into(),
                source,
            })
    }

    /// Removes the owned file `name`.
    async fn remove(&self, name: &str) -> Result<(), BoxError> {
        let (files, dir, name) = (
            Arc::clone(&self.files),
            self.paths.manifests.clone(),
            name.to_owned(),
        );
        off_async_threads(move || files.remove(&dir, &name)).await
    }
}

#[async_trait]
impl<C: ClusterOps, M: ManifestFiles> Capability for AddonsStep<C, M> {
    type Observed = Observed;
    type Change = AddonChange;

    fn step(&self) -> StepName {
        StepName::Addons
    }

    async fn observe(&self, desired: &NodeSpec) -> Result<Observed, StepError> {
        let wanted = plan::wanted(desired).map_err(|source| StepError::Observe {
            what: "the add-on manifests".into(),
            source: Box::new(source),
        })?;
        let present = self.owned().await?;
        Ok(Observed { present, wanted })
    }

    fn plan(_desired: &NodeSpec, observed: &Observed) -> Vec<AddonChange> {
        plan::plan(observed)
    }

    async fn apply(&self, desired: &NodeSpec, changes: &[AddonChange]) -> Result<(), StepError> {
        let dir = &self.paths.manifests;
        for change in changes {
            let failed = |source: BoxError| StepError::Apply {
                change: change.to_string(),
                source,
            };
            match change {
                AddonChange::Write { file, content, .. } => {
                    let (files, dir, file, content) =
                        (Arc::clone(&self.files), dir.clone(), *file, content.clone());
                    off_async_threads(move || files.write(&dir, file, &content))
                        .await
                        .map_err(failed)?;
                }
                AddonChange::Remove { file } => {
                    self.cluster
                        .delete_resources(
                            Path::new(desired.services.k3s.binary.as_str()),
                            &self.paths.admin_kubeconfig,
                            &dir.join(file),
                        )
                        .await
                        .map_err(|e| failed(Box::new(e)))?;
                    self.remove(file).await.map_err(failed)?;
                }
            }
            info!(%change, "done");
        }
        Ok(())
    }

    /// Removes the manifests tfagent wrote. The cluster's resources are
    /// left alone: resetting one server must not delete what the whole
    /// cluster runs.
    async fn teardown(&self, _last: &NodeSpec) -> Result<Vec<String>, StepError> {
        let mut done = Vec::new();
        for file in self.owned().await?.keys() {
            let change = format!("remove {}", self.paths.manifests.join(file).display());
            self.remove(file).await.map_err(|source| StepError::Apply {
                change: change.clone(),
                source,
            })?;
            done.push(change);
        }
        Ok(done)
    }
}
