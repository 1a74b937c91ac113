//! The running Linux host, read under `/`.

use std::collections::BTreeSet;

use super::{
    addon_facts::{self, AddonHostFacts},
    ports::HostInfo,
    probe::{self, HostCapabilities},
};

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
