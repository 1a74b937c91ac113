//! What the control core needs of the rest of the agent, as narrow traits it
//! owns: the volumes, the supervised services, the mesh and the VIP. The
//! daemon wires in the real ones ([`super::linux`]); tests pass fakes.

use std::{collections::BTreeMap, fmt, path::Path, sync::Arc};

use async_trait::async_trait;
use tfagent_spec::{NodeSpec, ServiceDirs, SpecDocument, WgKey, Wireguard};
use tfagent_supervisor::{ServiceStatus, SuperviseError};
use tokio::sync::broadcast;

use crate::{
    host::HostInfo,
    network::{Backend, InterfaceStatus},
    services::kubeconfig::KubeconfigError,
    storage::{DiskInfo, StorageError, VolumeStatus},
    vip::VipStatus,
};

/// The node's volumes and disks.
#[async_trait]
pub trait Volumes: Send + Sync + fmt::Debug {
    /// Each volume of `spec` as the host has it now.
    async fn status(&self, spec: &NodeSpec) -> Result<Vec<VolumeStatus>, StorageError>;
    /// The host's block devices and whether volumes may use them.
    async fn disks(&self) -> Result<Vec<DiskInfo>, StorageError>;
    /// Devices `document` names that volumes may not use, each with why.
    async fn refused_devices(
        &self,
        document: &SpecDocument,
    ) -> Result<BTreeMap<String, String>, StorageError>;
    /// Mount points and persisted paths `document` names that pass
    /// through a symlink on this host, each with the symlink.
    async fn symlinked_paths(
        &self,
        document: &SpecDocument,
    ) -> Result<BTreeMap<String, String>, StorageError>;
    /// The agent's own state dir, which no volume may cover.
    fn state_dir(&self) -> &Path;
}

/// The supervised services (containerd, k3s, …).
pub trait Services: Send + Sync + fmt::Debug {
    /// Every supervised service, in start order.
    fn status(&self) -> Vec<ServiceStatus>;
    /// The last `tail` lines of a service's output, and new ones as they come.
    fn logs(
        &self,
        service: &str,
        tail: usize,
    ) -> Result<(Vec<String>, broadcast::Receiver<String>), SuperviseError>;
    /// Restarts a service now.
    fn restart(&self, service: &str) -> Result<(), SuperviseError>;
    /// The services' data dirs, which storage persists by default.
    fn persisted_dirs(&self) -> Option<ServiceDirs>;
    /// What the services' config differs in for this host, one line each.
    fn host_adjustments(&self) -> Vec<String>;
    /// The agent's run dir (sockets, the services' runtime files), which
    /// no volume may cover.
    fn run_dir(&self) -> &Path;
    /// Of the binaries named (as written in a document), those that would
    /// not be run as root, each with why (see `tfagent_supervisor::exe`).
    /// Blocking: it reads the filesystem.
    fn refused_binaries(&self, binaries: &[String]) -> BTreeMap<String, String>;
    /// The admin kubeconfig this server's k3s wrote, pointing at `server`.
    fn admin_kubeconfig(&self, server: &str) -> Result<String, KubeconfigError>;
}

/// The node's WireGuard mesh interface.
#[async_trait]
pub trait Mesh: Send + Sync + fmt::Debug {
    fn public_key(&self) -> WgKey;
    fn backend(&self) -> Backend;
    /// The interface as it is now, compared with `desired` when given.
    async fn status(&self, desired: Option<&Wireguard>) -> Option<InterfaceStatus>;
}

/// The VIP election as this node sees it.
pub trait Vip: Send + Sync + fmt::Debug {
    fn status(&self) -> VipStatus;
}

/// Everything the control core reads or drives besides the steps.
#[derive(Debug, Clone)]
pub struct Collaborators {
    pub host: Arc<dyn HostInfo>,
    pub volumes: Arc<dyn Volumes>,
    pub services: Arc<dyn Services>,
    pub mesh: Arc<dyn Mesh>,
    pub vip: Arc<dyn Vip>,
}
