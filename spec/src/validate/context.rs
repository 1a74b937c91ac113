//! What validation is told about the host it validates for.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use crate::defaults;
use crate::types::{AbsPath, WgKey};

/// What validation knows about the host; `None` means unknown, and the
/// checks that need it are skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValidationContext {
    /// The node's own WireGuard public key: no peer may use it.
    pub own_public_key: Option<WgKey>,
    /// Filesystems the kernel supports: device volumes must use one of them.
    pub kernel_filesystems: Option<BTreeSet<String>>,
    /// The agent's own state dir, persisted by default
    /// (`defaults::STATE_DIR` when unknown).
    pub state_dir: Option<AbsPath>,
    /// The agent's run dir (`defaults::RUN_DIR` when unknown): no mount
    /// may cover it or lie in it.
    pub run_dir: Option<AbsPath>,
    /// Mount points and persisted paths, as written in the document, that
    /// pass through a symlink on this host, each with the symlink.
    pub symlinked_paths: BTreeMap<String, String>,
    /// Devices the agent must not use, as written in the document, each
    /// with why (outside the allow-list, holds / or the state dir).
    pub refused_devices: BTreeMap<String, String>,
    /// Service binaries the agent will not run, as written in the document,
    /// each with why (not root's, writable by others, in a directory others
    /// may write to).
    pub refused_binaries: BTreeMap<String, String>,
    /// Which add-ons the node can run.
    pub addon_host: Option<AddonHost>,
    /// Where this node's services keep their data, persisted by default
    /// (`defaults` when unknown).
    pub service_dirs: Option<ServiceDirs>,
}

impl ValidationContext {
    pub(super) fn state_dir_or_default(&self) -> AbsPath {
        self.state_dir.clone().unwrap_or_else(|| {
            defaults::STATE_DIR
                .parse()
                .unwrap_or_else(|_| unreachable!())
        })
    }

    pub(super) fn run_dir_or_default(&self) -> AbsPath {
        self.run_dir
            .clone()
            .unwrap_or_else(|| defaults::RUN_DIR.parse().unwrap_or_else(|_| unreachable!()))
    }
}

/// The directories of the supervised services that must survive a reboot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceDirs {
    /// k3s's data dir.
    pub k3s_data_dir: AbsPath,
    /// The kubelet's root dir (rshared).
    pub kubelet_dir: AbsPath,
    /// containerd's root.
    pub containerd_root: AbsPath,
}

impl Default for ServiceDirs {
    fn default() -> Self {
        let path = |text: &str| AbsPath::from_str(text).unwrap_or_else(|_| unreachable!());
        Self {
            k3s_data_dir: path(defaults::K3S_DATA_DIR),
            kubelet_dir: path(defaults::KUBELET_DIR),
            containerd_root: path(defaults::CONTAINERD_ROOT),
        }
    }
}

/// What the node can run of the add-ons, from their prerequisites.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddonHost {
    /// Add-ons (by their name in the spec) the node cannot run, with what
    /// it lacks.
    pub unavailable: BTreeMap<String, Vec<String>>,
    /// Interfaces MetalLB may announce on.
    pub broadcast_interfaces: BTreeSet<String>,
}
