//! The zOS twin: VMs that look to tfagent like zOS nodes (Debian's kernel
//! with zOS's module set, a tmpfs root, cgroup v1, zinit, a storaged
//! stand-in's btrfs pool, kernel WireGuard), with tfagent installed only
//! from its flist. `scripts/twin-image.sh` builds the boot files; this
//! crate boots the VMs on an underlay inside a network namespace it owns
//! and drives them. Everything it starts dies with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod channel;
pub mod cluster;
mod vm;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub use channel::Reply;
pub use cluster::{MESH_PREFIX, Twin, VIP, failover_after_power_loss, mesh_ip};
pub use vm::{Accel, Vm, VmConfig};

/// The boot files `scripts/twin-image.sh` writes.
#[derive(Debug, Clone)]
pub struct Images {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

impl Images {
    /// target/twin/ of this workspace (or `TWIN_DIR`).
    pub fn locate() -> Self {
        let dir = std::env::var_os("TWIN_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/twin"),
            PathBuf::from,
        );
        Self {
            kernel: dir.join("vmlinuz"),
            initramfs: dir.join("initramfs.gz"),
        }
    }
}

/// Why the twin cannot run here, in one line, if it cannot.
pub fn cannot_run(images: &Images) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("the zOS twin needs root (namespaces, taps)".to_owned());
    }
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    if !qemu.is_ok_and(|o| o.status.success()) {
        return Some(
            "qemu-system-x86_64 does not run (apt-get install qemu-system-x86)".to_owned(),
        );
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun for the VMs' taps".to_owned());
    }
    for file in [&images.kernel, &images.initramfs] {
        if !file.is_file() {
            return Some(format!(
                "no twin boot file {} (make twin-image builds it)",
                file.display()
            ));
        }
    }
    None
}
