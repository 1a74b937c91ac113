//! A host for unit tests: fixed, zOS-like facts.

use std::collections::BTreeSet;

use super::{
    addon_facts::AddonHostFacts,
    ports::HostInfo,
    probe::{CgroupMode, HostCapabilities},
};

/// A host with fixed, zOS-like capabilities.
#[derive(Debug)]
pub struct FakeHost;

impl HostInfo for FakeHost {
    fn hostname(&self) -> String {
        "node-under-test".into()
    }

    fn capabilities(&self) -> HostCapabilities {
        HostCapabilities {
            kernel_release: "6.1.0-test".into(),
            kernel_wireguard: true,
            wireguard_go: None,
            cgroup_mode: CgroupMode::V1,
            filesystems: BTreeSet::from(["btrfs".to_owned()]),
            btrfs_pools: vec![],
        }
    }

    fn addon_facts(&self, filesystems: &BTreeSet<String>) -> AddonHostFacts {
        // As on zOS: no open-iscsi, one public NIC.
        AddonHostFacts {
            filesystems: filesystems.clone(),
            iscsiadm: None,
            iscsi_tcp: false,
            broadcast_interfaces: BTreeSet::from(["eth0".to_owned()]),
        }
    }
}
