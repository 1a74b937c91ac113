//! Everything that touches the host goes through the traits here, so domain
//! logic is unit-tested with fakes and the Linux implementations are tested
//! as root.

pub mod addon_facts;
pub mod probe;

use std::collections::BTreeSet;

pub use addon_facts::AddonHostFacts;
pub use probe::{BtrfsPool, CgroupMode, HostCapabilities};

/// Read-only facts about the host, for `GetInfo` and validation.
pub trait HostInfo: Send + Sync + std::fmt::Debug + 'static {
    fn hostname(&self) -> String;
    fn capabilities(&self) -> HostCapabilities;
    /// What the add-ons need of the node; `filesystems` as `capabilities`
    /// found them.
    fn addon_facts(&self, filesystems: &BTreeSet<String>) -> AddonHostFacts;
}

/// The running Linux host.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxHost;

impl HostInfo for LinuxHost {
    fn hostname(&self) -> String {
        nix::unistd::gethostname()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn capabilities(&self) -> HostCapabilities {
        probe::probe(&probe::ProbeRoot::host())
    }

    fn addon_facts(&self, filesystems: &BTreeSet<String>) -> AddonHostFacts {
        addon_facts::probe(&probe::ProbeRoot::host(), filesystems)
    }
}
