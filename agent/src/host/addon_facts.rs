//! What the node has that the add-ons care about: open-iscsi, the
//! `iscsi_tcp` module, interfaces that can broadcast. Read from /proc, /sys
//! and PATH; each parser takes the text it reads, so it is tested on
//! fixtures.

use std::{collections::BTreeSet, fs, path::PathBuf};

use super::probe::{KernelModules, ProbeRoot, find_executable};

/// `IFF_BROADCAST` in /sys/class/net/NAME/flags.
const IFF_BROADCAST: u32 = 0x2;
/// `IFF_LOOPBACK`.
const IFF_LOOPBACK: u32 = 0x8;

/// What the node has that add-ons care about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddonHostFacts {
    /// Block filesystems the kernel has or can load.
    pub filesystems: BTreeSet<String>,
    /// Where `iscsiadm` (open-iscsi) is, if anywhere on PATH.
    pub iscsiadm: Option<PathBuf>,
    /// Whether the `iscsi_tcp` module is loaded, built in or loadable.
    pub iscsi_tcp: bool,
    /// Interfaces that can broadcast (ARP works there), loopback excluded.
    pub broadcast_interfaces: BTreeSet<String>,
}

/// Reads the facts under `root`.
pub fn probe(root: &ProbeRoot, filesystems: &BTreeSet<String>) -> AddonHostFacts {
    let iscsi_tcp = module_loaded(&root.read("/proc/modules"), "iscsi_tcp")
        || KernelModules::read(root).present("iscsi_tcp");
    let mut broadcast_interfaces = BTreeSet::new();
    if let Ok(entries) = fs::read_dir(root.file("/sys/class/net")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let flags = root.read(&format!("/sys/class/net/{name}/flags"));
            if interface_flags(&flags)
                .is_some_and(|f| f & IFF_BROADCAST != 0 && f & IFF_LOOPBACK == 0)
            {
                broadcast_interfaces.insert(name);
            }
        }
    }
    AddonHostFacts {
        filesystems: filesystems.clone(),
        iscsiadm: root
            .path_env
            .as_deref()
            .and_then(|path| find_executable(path, "iscsiadm")),
        iscsi_tcp,
        broadcast_interfaces,
    }
}

/// Whether /proc/modules lists `name` as loaded.
pub fn module_loaded(proc_modules: &str, name: &str) -> bool {
    proc_modules
        .lines()
        .any(|line| line.split_whitespace().next() == Some(name))
}

/// The value of /sys/class/net/NAME/flags (`0x1003`).
pub fn interface_flags(text: &str) -> Option<u32> {
    u32::from_str_radix(text.trim().strip_prefix("0x")?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers_read_proc_modules_and_interface_flags() {
        let modules = "iscsi_tcp 24576 0 - Live 0x0000000000000000\nlibiscsi_tcp 32768 1 iscsi_tcp, Live 0x0\n";
        assert!(module_loaded(modules, "iscsi_tcp"));
        assert!(module_loaded(modules, "libiscsi_tcp"));
        assert!(!module_loaded(modules, "iscsi"));
        assert_eq!(interface_flags("0x1003\n"), Some(0x1003));
        assert_eq!(interface_flags("0x90"), Some(0x90));
        assert_eq!(interface_flags("garbage"), None);
    }
}
