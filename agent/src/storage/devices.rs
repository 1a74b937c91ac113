//! Which block devices volumes may use: the boot config's allow-list, and
//! never the disk that holds `/` or the agent's state dir. Also the listing
//! behind `tfagentctl disks`.

use std::path::{Path, PathBuf};

use super::ports::{OpsError, StorageOps};
use crate::host::probe::{MountEntry, parse_mountinfo};

/// The device rules of the boot config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePolicy {
    /// Patterns (`*` and `?` wildcards) a device path, as written or
    /// resolved, must match; `None` admits every device but the system's.
    pub allowed: Option<Vec<String>>,
    /// Paths whose disk is never used: `/` and the state dir.
    pub protected: Vec<PathBuf>,
}

impl DevicePolicy {
    pub fn new(allowed: Option<Vec<String>>, state_dir: &Path) -> Self {
        Self {
            allowed,
            protected: vec![PathBuf::from("/"), state_dir.to_owned()],
        }
    }

    /// Why volumes may not use `device`, or `None` when they may.
    pub fn refusal(
        &self,
        ops: &dyn StorageOps,
        mounts: &[MountEntry],
        device: &str,
    ) -> Option<String> {
        let node = ops.resolve_device(Path::new(device)).ok().flatten();
        if let Some(allowed) = &self.allowed {
            let resolved = node.as_ref().map(|n| n.path.as_str());
            let admitted = allowed.iter().any(|pattern| {
                glob_match(pattern, device) || resolved.is_some_and(|r| glob_match(pattern, r))
            });
            if !admitted {
                return Some(format!(
                    "{device} is not in the boot config's allowed_devices ({})",
                    allowed.join(", ")
                ));
            }
        }
        // A device that does not exist yet holds nothing of the system.
        let node = node?;
        let disk = ops.whole_disk(&node.major_minor);
        self.protected.iter().find_map(|path| {
            (backing_disk(ops, mounts, path).as_deref() == Some(disk.as_str())).then(|| {
                format!(
                    "{device} is on the disk that holds {}; the system disk is never used",
                    path.display()
                )
            })
        })
    }
}

/// The whole disk (`major:minor`) under the filesystem holding `path`, if
/// it is on a block device.
fn backing_disk(ops: &dyn StorageOps, mounts: &[MountEntry], path: &Path) -> Option<String> {
    let entry = mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.components().count())?;
    let major_minor = if !entry.major_minor.starts_with("0:") {
        entry.major_minor.clone()
    } else if entry.source.starts_with("/dev/") {
        // btrfs reports an anonymous device number; its source names the disk.
        ops.resolve_device(Path::new(&entry.source))
            .ok()
            .flatten()?
            .major_minor
    } else {
        return None;
    };
    Some(ops.whole_disk(&major_minor))
}

/// Shell-style matching of `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A block device as `tfagentctl disks` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskInfo {
    pub path: String,
    pub size_bytes: u64,
    /// What `blkid -p` found; empty when blank.
    pub signatures: Vec<String>,
    pub mount_points: Vec<String>,
    /// Why volumes may not use it; `None` when they may.
    pub refusal: Option<String>,
}

/// Every block device with its signatures, mounts and admission.
pub fn list_disks(ops: &dyn StorageOps, policy: &DevicePolicy) -> Result<Vec<DiskInfo>, OpsError> {
    let mounts = parse_mountinfo(&ops.mountinfo()?);
    let devices = ops.block_devices()?;
    Ok(devices
        .into_iter()
        .map(|device| {
            let signatures = match ops.signatures(&device.path) {
                Ok(signatures) => signatures.iter().map(ToString::to_string).collect(),
                Err(error) => vec![format!("unreadable: {error}")],
            };
            let mount_points = mounts
                .iter()
                .filter(|m| m.source == device.path || m.major_minor == device.major_minor)
                .map(|m| m.mount_point.display().to_string())
                .collect();
            DiskInfo {
                refusal: policy.refusal(ops, &mounts, &device.path),
                path: device.path,
                size_bytes: device.size_bytes,
                signatures,
                mount_points,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("/dev/loop*", "/dev/loop12"));
        assert!(glob_match(
            "/dev/disk/by-id/nvme-*",
            "/dev/disk/by-id/nvme-X_1"
        ));
        assert!(!glob_match("/dev/loop*", "/dev/sda"));
        assert!(glob_match("/dev/sd?", "/dev/sdb"));
        assert!(!glob_match("/dev/sd?", "/dev/sdb1"));
        assert!(glob_match("*", ""));
        assert!(glob_match("/dev/*b*", "/dev/sdb1"));
        assert!(!glob_match("/dev/loop1", "/dev/loop12"));
        assert!(glob_match("/dev/loop1", "/dev/loop1"));
    }
}
