//! Recording fakes of the add-ons step's ports: a cluster that records
//! deletions, and a manifests directory in memory.
#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use async_trait::async_trait;

use super::ports::{ClusterError, ClusterOps, ManifestError, ManifestFiles};

#[derive(Debug, Default)]
pub struct ClusterState {
    /// The manifests whose resources were deleted, by file name.
    pub deleted: Vec<String>,
    /// Deletions fail while this is set.
    pub fail: bool,
}

/// Cheap to clone: every clone is the same cluster.
#[derive(Debug, Default, Clone)]
pub struct FakeCluster {
    state: Arc<Mutex<ClusterState>>,
}

impl FakeCluster {
    pub fn state(&self) -> MutexGuard<'_, ClusterState> {
        self.state.lock().unwrap()
    }
}

#[async_trait]
impl ClusterOps for FakeCluster {
    async fn delete_resources(
        &self,
        _k3s: &Path,
        _kubeconfig: &Path,
        manifest: &Path,
    ) -> Result<(), ClusterError> {
        let mut state = self.state();
        if state.fail {
            return Err(ClusterError::Delete {
                manifest: manifest.to_owned(),
                stderr: "the apiserver is not ready".into(),
            });
        }
        let name = manifest.file_name().unwrap().to_string_lossy().into_owned();
        state.deleted.push(name);
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct DirState {
    /// Path → contents.
    pub files: BTreeMap<PathBuf, String>,
    /// Every change, in order: `write NAME`, `remove NAME`.
    pub calls: Vec<String>,
}

/// Manifest files in memory. Cheap to clone: every clone is the same.
#[derive(Debug, Default, Clone)]
pub struct FakeManifests {
    state: Arc<Mutex<DirState>>,
}

impl FakeManifests {
    pub fn dir(&self) -> MutexGuard<'_, DirState> {
        self.state.lock().unwrap()
    }

    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.dir().calls)
    }
}

impl ManifestFiles for FakeManifests {
    fn owned(&self, dir: &Path) -> Result<BTreeMap<String, String>, ManifestError> {
        Ok(self
            .dir()
            .files
            .iter()
            .filter(|(path, _)| path.parent() == Some(dir))
            .filter_map(|(path, content)| {
                let name = path.file_name()?.to_str()?;
                super::manifests::is_owned(name).then(|| (name.to_owned(), content.clone()))
            })
            .collect())
    }

    fn write(&self, dir: &Path, name: &str, content: &str) -> Result<(), ManifestError> {
        let mut state = self.dir();
        state.calls.push(format!("write {name}"));
        state.files.insert(dir.join(name), content.to_owned());
        Ok(())
    }

    fn remove(&self, dir: &Path, name: &str) -> Result<(), ManifestError> {
        let mut state = self.dir();
        let path = dir.join(name);
        if state.files.remove(&path).is_none() {
            return Err(ManifestError::Remove {
                path,
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        state.calls.push(format!("remove {name}"));
        Ok(())
    }
}
