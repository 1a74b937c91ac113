//! The add-ons step on a real host: `k3s kubectl` and the manifests
//! directory with std::fs.

use std::{collections::BTreeMap, fs, io, path::Path, process::Stdio};

use async_trait::async_trait;

use super::{
    manifests,
    ports::{ClusterError, ClusterOps, ManifestError, ManifestFiles},
};
use crate::state::StagedFile;

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
    ) -> Result<(), ClusterError> {
        let output = tokio::process::Command::new(k3s)
            .arg("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["delete", "--ignore-not-found", "--wait=false", "-f"])
            .arg(manifest)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| ClusterError::Run {
                k3s: k3s.to_owned(),
                source,
            })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(ClusterError::Delete {
                manifest: manifest.to_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }
}

/// The manifests directory on the host's filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostManifests;

impl ManifestFiles for HostManifests {
    fn owned(&self, dir: &Path) -> Result<BTreeMap<String, String>, ManifestError> {
        let list = |source| ManifestError::List {
            dir: dir.to_owned(),
            source,
        };
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(list(e)),
        };
        let mut files = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(list)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if manifests::is_owned(&name) && entry.file_type().map_err(list)?.is_file() {
                let path = entry.path();
                let content = fs::read_to_string(&path)
                    .map_err(|source| ManifestError::Read { path, source })?;
                files.insert(name, content);
            }
        }
        Ok(files)
    }

    fn write(&self, dir: &Path, name: &str, content: &str) -> Result<(), ManifestError> {
        // Temp file, fsync, rename.
        fs::create_dir_all(dir)
            .and_then(|()| StagedFile::write(dir, name, content.as_bytes())?.commit())
            .map_err(|source| ManifestError::Write {
                path: dir.join(name),
                source,
            })
    }

    fn remove(&self, dir: &Path, name: &str) -> Result<(), ManifestError> {
        let path = dir.join(name);
        fs::remove_file(&path).map_err(|source| ManifestError::Remove { path, source })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_the_agents_files_are_listed_and_a_missing_dir_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("server/manifests");
        assert!(HostManifests.owned(&manifests).unwrap().is_empty());
        HostManifests
            .write(&manifests, "tfagent-a.yaml", "a: 1\n")
            .unwrap();
        HostManifests
            .write(&manifests, "tfagent-a.yaml", "a: 2\n")
            .unwrap();
        fs::write(manifests.join("coredns.yaml"), "k3s").unwrap();
        fs::write(manifests.join("tfagent-notes.txt"), "mine").unwrap();
        fs::create_dir(manifests.join("tfagent-dir.yaml")).unwrap();
        let owned = HostManifests.owned(&manifests).unwrap();
        assert_eq!(
            owned,
            BTreeMap::from([("tfagent-a.yaml".to_owned(), "a: 2\n".to_owned())])
        );
        HostManifests.remove(&manifests, "tfagent-a.yaml").unwrap();
        let error = HostManifests
            .remove(&manifests, "tfagent-a.yaml")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("removing "), "{error}");
        assert!(error.contains("tfagent-a.yaml"), "{error}");
        // Nothing else was touched, no temp file left.
        let mut names: Vec<_> = fs::read_dir(&manifests)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["coredns.yaml", "tfagent-dir.yaml", "tfagent-notes.txt"]
        );
    }

    #[tokio::test]
    async fn a_k3s_that_cannot_run_is_named() {
        let error = K3sKubectl
            .delete_resources(
                Path::new("/nonexistent/k3s"),
                Path::new("/nonexistent/admin.kubeconfig"),
                Path::new("/nonexistent/tfagent-a.yaml"),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("running /nonexistent/k3s kubectl: "),
            "{error}"
        );
    }
}
