//! The real collaborators: the agent's own storage, services, network and
//! VIP steps, seen through the control core's ports.

use std::{collections::BTreeMap, path::Path};

use async_trait::async_trait;
use tfagent_spec::{NodeSpec, ServiceDirs, SpecDocument, WgKey, Wireguard};
use tfagent_supervisor::{ServiceStatus, SuperviseError};
use tokio::sync::broadcast;

use super::ports;
use crate::{
    network::{Backend, InterfaceStatus, NetworkStep},
    services::{self, kubeconfig::KubeconfigError},
    storage::{DiskInfo, Storage, StorageError, VolumeStatus},
    vip::{VipEngine, VipStatus},
};

#[async_trait]
impl ports::Volumes for Storage {
    async fn status(&self, spec: &NodeSpec) -> Result<Vec<VolumeStatus>, StorageError> {
        self.volume_status(spec).await
    }

    async fn disks(&self) -> Result<Vec<DiskInfo>, StorageError> {
        Storage::disks(self).await
    }

    async fn refused_devices(
        &self,
        document: &SpecDocument,
    ) -> Result<BTreeMap<String, String>, StorageError> {
        Storage::refused_devices(self, document).await
    }

    async fn symlinked_paths(
        &self,
        document: &SpecDocument,
    ) -> Result<BTreeMap<String, String>, StorageError> {
        Storage::symlinked_paths(self, document).await
    }

    fn state_dir(&self) -> &Path {
        Storage::state_dir(self)
    }
}

impl ports::Services for services::Services {
    fn status(&self) -> Vec<ServiceStatus> {
        self.supervisor().status()
    }

    fn logs(
        &self,
        service: &str,
        tail: usize,
    ) -> Result<(Vec<String>, broadcast::Receiver<String>), SuperviseError> {
        self.supervisor().logs(service, tail)
    }

    fn restart(&self, service: &str) -> Result<(), SuperviseError> {
        self.supervisor().restart(service)
    }

    fn persisted_dirs(&self) -> Option<ServiceDirs> {
        self.paths().persisted_dirs()
    }

    fn host_adjustments(&self) -> Vec<String> {
        services::k3s::host_adjustments(self.paths())
    }

    fn run_dir(&self) -> &Path {
        &self.paths().run_dir
    }

    fn refused_binaries(&self, binaries: &[String]) -> BTreeMap<String, String> {
        binaries
            .iter()
            .filter(|binary| binary.starts_with('/'))
            .filter_map(|binary| {
                tfagent_supervisor::exe::check_binary(Path::new(binary))
                    .err()
                    .map(|why| (binary.clone(), format!("not run as root: {why}")))
            })
            .collect()
    }

    fn admin_kubeconfig(&self, server: &str) -> Result<String, KubeconfigError> {
        services::linux::kubeconfig_for(&self.paths().k3s_kubeconfig(), server)
    }
}

#[async_trait]
impl ports::Mesh for NetworkStep {
    fn public_key(&self) -> WgKey {
        NetworkStep::public_key(self)
    }

    fn backend(&self) -> Backend {
        NetworkStep::backend(self)
    }

    async fn status(&self, desired: Option<&Wireguard>) -> Option<InterfaceStatus> {
        NetworkStep::status(self, desired).await
    }
}

impl ports::Vip for VipEngine {
    fn status(&self) -> VipStatus {
        VipEngine::status(self)
    }
}
