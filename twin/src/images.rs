//! The twin's boot files, and whether this host can run the twin at all.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

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
