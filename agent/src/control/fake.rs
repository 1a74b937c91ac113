//! Collaborators for the control core's unit tests: no host is read and
//! nothing runs.
#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use async_trait::async_trait;
use tfagent_spec::{KeyPair, NodeSpec, ServiceDirs, SpecDocument, WgKey, Wireguard};
use tfagent_supervisor::{ServiceStatus, SuperviseError};
use tokio::sync::broadcast;

use super::ports::{Collaborators, Mesh, Services, Vip, Volumes};
use crate::{
    host::HostInfo,
    network::{Backend, InterfaceStatus},
    services::{ServicePaths, kubeconfig::KubeconfigError},
    storage::{DiskInfo, StorageError, VolumeStatus},
    vip::VipStatus,
};

/// No volumes, no disks, every device allowed.
#[derive(Debug)]
pub struct FakeVolumes {
    pub state_dir: PathBuf,
}

#[async_trait]
impl Volumes for FakeVolumes {
    async fn status(&self, _spec: &NodeSpec) -> Result<Vec<VolumeStatus>, StorageError> {
        Ok(Vec::new())
    }

    async fn disks(&self) -> Result<Vec<DiskInfo>, StorageError> {
        Ok(Vec::new())
    }

    async fn refused_devices(
        &self,
        _document: &SpecDocument,
    ) -> Result<BTreeMap<String, String>, StorageError> {
        Ok(BTreeMap::new())
    }

    async fn symlinked_paths(
        &self,
        _document: &SpecDocument,
    ) -> Result<BTreeMap<String, String>, StorageError> {
        Ok(BTreeMap::new())
    }

    fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

/// No service runs; k3s's files would be under `paths`. Binaries under
/// `/tmp/` are refused, as the host's check refuses them (/tmp is
/// world-writable), and no other is.
#[derive(Debug)]
pub struct FakeServices {
    pub paths: ServicePaths,
}

impl Services for FakeServices {
    fn status(&self) -> Vec<ServiceStatus> {
        Vec::new()
    }

    fn logs(
        &self,
        service: &str,
        _tail: usize,
    ) -> Result<(Vec<String>, broadcast::Receiver<String>), SuperviseError> {
        Err(SuperviseError::NotFound(service.to_owned()))
    }

    fn restart(&self, service: &str) -> Result<(), SuperviseError> {
        Err(SuperviseError::NotFound(service.to_owned()))
    }

    fn persisted_dirs(&self) -> Option<ServiceDirs> {
        self.paths.persisted_dirs()
    }

    fn host_adjustments(&self) -> Vec<String> {
        crate::services::k3s::host_adjustments(&self.paths)
    }

    fn run_dir(&self) -> &Path {
        &self.paths.run_dir
    }

    fn refused_binaries(&self, binaries: &[String]) -> BTreeMap<String, String> {
        binaries
            .iter()
            .filter(|b| b.starts_with("/untrusted/"))
            .map(|b| {
                let why = "not run as root: /untrusted is writable by others (mode 0777)";
                (b.clone(), why.to_owned())
            })
            .collect()
    }

    fn admin_kubeconfig(&self, server: &str) -> Result<String, KubeconfigError> {
        crate::services::linux::kubeconfig_for(&self.paths.k3s_kubeconfig(), server)
    }
}

/// A userspace interface that is never up.
#[derive(Debug)]
pub struct FakeMesh {
    pub key: WgKey,
}

#[async_trait]
impl Mesh for FakeMesh {
    fn public_key(&self) -> WgKey {
        self.key
    }

    fn backend(&self) -> Backend {
        Backend::Userspace
    }

    async fn status(&self, _desired: Option<&Wireguard>) -> Option<InterfaceStatus> {
        None
    }
}

/// No election.
#[derive(Debug)]
pub struct FakeVip;

impl Vip for FakeVip {
    fn status(&self) -> VipStatus {
        VipStatus::default()
    }
}

/// Fakes for everything, over `host`, with service files under `dir`.
pub fn collaborators(host: Arc<dyn HostInfo>, dir: &Path) -> Collaborators {
    Collaborators {
        host,
        volumes: Arc::new(FakeVolumes {
            state_dir: dir.join("state"),
        }),
        services: Arc::new(FakeServices {
            paths: ServicePaths::under(&dir.join("services")),
        }),
        mesh: Arc::new(FakeMesh {
            key: KeyPair::generate().public(),
        }),
        vip: Arc::new(FakeVip),
    }
}
