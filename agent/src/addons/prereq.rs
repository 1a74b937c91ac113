//! What each add-on needs of the node, and whether this node has it, from
//! the facts the host probe read (`host::addon_facts`).

use tfagent_spec::AddonHost;

use crate::host::AddonHostFacts;

/// One add-on's verdict on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddonPrerequisites {
    /// The add-on's name in the spec (`longhorn`, `metallb`, ...).
    pub addon: &'static str,
    /// What the node has that the add-on needs.
    pub has: Vec<String>,
    /// What it lacks; empty when the add-on can run here.
    pub lacks: Vec<String>,
}

impl AddonPrerequisites {
    pub fn possible(&self) -> bool {
        self.lacks.is_empty()
    }
}

/// Each add-on's prerequisites against `facts`, in the spec's order.
pub fn assess(facts: &AddonHostFacts) -> Vec<AddonPrerequisites> {
    let mut metallb = AddonPrerequisites {
        addon: "metallb",
        has: Vec::new(),
        lacks: Vec::new(),
    };
    if facts.broadcast_interfaces.is_empty() {
        metallb
            .lacks
            .push("a broadcast-capable interface for L2 announcements".into());
    } else {
        let names: Vec<&str> = facts
            .broadcast_interfaces
            .iter()
            .map(String::as_str)
            .collect();
        metallb.has.push(format!(
            "broadcast-capable interfaces: {}",
            names.join(", ")
        ));
    }

    let mut longhorn = AddonPrerequisites {
        addon: "longhorn",
        has: Vec::new(),
        lacks: Vec::new(),
    };
    match &facts.iscsiadm {
        Some(path) => longhorn.has.push(format!("iscsiadm at {}", path.display())),
        None => longhorn
            .lacks
            .push("iscsiadm (the open-iscsi tools) on PATH".into()),
    }
    if facts.iscsi_tcp {
        longhorn.has.push("the iscsi_tcp kernel module".into());
    } else {
        longhorn.lacks.push("the iscsi_tcp kernel module".into());
    }
    let volume_filesystems: Vec<&str> = ["ext4", "xfs"]
        .into_iter()
        .filter(|fs| facts.filesystems.contains(*fs))
        .collect();
    if volume_filesystems.is_empty() {
        longhorn
            .lacks
            .push("ext4 or xfs in the kernel, for its volumes".into());
    } else {
        longhorn.has.push(format!(
            "{} in the kernel",
            volume_filesystems.join(" and ")
        ));
    }

    let nothing = |addon| AddonPrerequisites {
        addon,
        has: vec!["nothing of the node beyond k3s".into()],
        lacks: Vec::new(),
    };
    vec![
        metallb,
        nothing("ingress_nginx"),
        nothing("cert_manager"),
        nothing("local_path"),
        longhorn,
    ]
}

/// What validation needs to refuse add-ons this node cannot run.
pub fn availability(facts: &AddonHostFacts) -> AddonHost {
    AddonHost {
        unavailable: assess(facts)
            .into_iter()
            .filter(|p| !p.possible())
            .map(|p| (p.addon.to_owned(), p.lacks))
            .collect(),
        broadcast_interfaces: facts.broadcast_interfaces.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::{collections::BTreeSet, env, fs, os::unix::fs::PermissionsExt};

    use super::*;
    use crate::host::{addon_facts::probe, probe::ProbeRoot};

    fn fixture(files: &[(&str, &str)]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let file = tmp.path().join(path);
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(file, text).unwrap();
        }
        tmp
    }

    fn btrfs_only() -> BTreeSet<String> {
        BTreeSet::from(["btrfs".to_owned()])
    }

    #[test]
    fn on_zos_longhorn_is_not_possible_and_says_why() {
        // btrfs only, no iscsiadm, no iscsi_tcp; eth0 broadcasts, the
        // WireGuard interface (POINTOPOINT|NOARP) and lo do not.
        let root = fixture(&[
            ("proc/sys/kernel/osrelease", "6.1.21-zos\n"),
            ("proc/modules", "wireguard 98304 0 - Live 0x0\n"),
            (
                "lib/modules/6.1.21-zos/modules.dep",
                "kernel/fs/btrfs/btrfs.ko:\n",
            ),
            ("sys/class/net/eth0/flags", "0x1003\n"),
            ("sys/class/net/tfk3s/flags", "0x90\n"),
            ("sys/class/net/lo/flags", "0x9\n"),
        ]);
        let facts = probe(
            &ProbeRoot {
                root: root.path().to_owned(),
                path_env: Some("/nonexistent".into()),
            },
            &btrfs_only(),
        );
        assert_eq!(
            facts.broadcast_interfaces,
            BTreeSet::from(["eth0".to_owned()])
        );
        let verdicts = assess(&facts);
        let longhorn = verdicts.iter().find(|v| v.addon == "longhorn").unwrap();
        assert!(!longhorn.possible());
        assert_eq!(
            longhorn.lacks,
            [
                "iscsiadm (the open-iscsi tools) on PATH",
                "the iscsi_tcp kernel module",
                "ext4 or xfs in the kernel, for its volumes",
            ]
        );
        let metallb = verdicts.iter().find(|v| v.addon == "metallb").unwrap();
        assert!(metallb.possible());
        assert_eq!(metallb.has, ["broadcast-capable interfaces: eth0"]);

        let host = availability(&facts);
        assert_eq!(host.unavailable.len(), 1);
        assert_eq!(host.unavailable["longhorn"].len(), 3);
    }

    #[test]
    fn a_node_with_open_iscsi_and_ext4_can_run_longhorn() {
        let root = fixture(&[
            ("proc/sys/kernel/osrelease", "6.1.0-amd64\n"),
            (
                "lib/modules/6.1.0-amd64/modules.dep",
                "kernel/drivers/scsi/iscsi_tcp.ko.xz: kernel/drivers/scsi/libiscsi_tcp.ko.xz\n",
            ),
            ("bin/iscsiadm", "#!/bin/sh\n"),
        ]);
        let bin = root.path().join("bin");
        fs::set_permissions(bin.join("iscsiadm"), fs::Permissions::from_mode(0o755)).unwrap();
        let mut filesystems = btrfs_only();
        filesystems.insert("ext4".into());
        let facts = probe(
            &ProbeRoot {
                root: root.path().to_owned(),
                path_env: Some(env::join_paths([&bin]).unwrap()),
            },
            &filesystems,
        );
        assert!(facts.iscsi_tcp, "a loadable module counts");
        let verdicts = assess(&facts);
        let longhorn = verdicts.iter().find(|v| v.addon == "longhorn").unwrap();
        assert!(longhorn.possible(), "{longhorn:?}");
        // No interface can broadcast here: MetalLB L2 cannot announce.
        let metallb = verdicts.iter().find(|v| v.addon == "metallb").unwrap();
        assert!(!metallb.possible());
        assert!(availability(&facts).unavailable.contains_key("metallb"));
    }
}
