//! [`StorageOps`] on Linux: mount(2)/umount2(2) through nix, statvfs, sysfs,
//! and the standard tools for what has no stable syscall interface:
//! `blkid -p` (libblkid's low-level probe), `wipefs`, `mkfs.*`, `btrfs`.

use std::{
    fs, io,
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::fs::{FileTypeExt, MetadataExt},
    },
    path::{Component, Path, PathBuf},
    process::Command,
};

use nix::{
    errno::Errno,
    fcntl::{AT_FDCWD, OFlag, openat},
    mount::{MntFlags, MsFlags},
    sys::stat::{Mode, major, minor, mkdirat},
};

use super::ports::{
    BlockDevice, DeviceNode, MountSource, OpsError, PathKind, QuotaState, Signature, StorageOps,
    Usage,
};
use crate::host::probe::parse_mountinfo;
use tfagent_spec::{Filesystem, Propagation};

/// The running host.
#[derive(Debug, Clone)]
pub struct LinuxStorage {
    /// Where /proc and /sys are (`/` on a real host).
    root: PathBuf,
}

impl Default for LinuxStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl LinuxStorage {
    pub fn new() -> Self {
        Self {
            root: PathBuf::from("/"),
        }
    }

    /// Reads /proc and /sys under `root` (fixture trees in tests).
    #[cfg(test)]
    fn with_root(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    fn sys(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// The qgroup of a mounted subvolume from sysfs (kernel 5.9+), without
    /// running a tool: what keeps an unchanged pass free of processes.
    /// `None` when sysfs cannot tell (not mounted, older kernel, quotas off);
    /// the caller then asks `btrfs`.
    fn quota_from_sysfs(&self, subvolume: &Path) -> Option<QuotaState> {
        let mounts = parse_mountinfo(&self.mountinfo().ok()?);
        let pool = mounts
            .iter()
            .filter(|m| m.fs_type == "btrfs" && subvolume.starts_with(&m.mount_point))
            .max_by_key(|m| m.mount_point.components().count())?;
        let relative = subvolume.strip_prefix(&pool.mount_point).ok()?;
        let root = Path::new(&pool.root).join(relative);
        let id = mounts
            .iter()
            .filter(|m| m.source == pool.source && Path::new(&m.root) == root)
            .find_map(|m| {
                m.super_options
                    .iter()
                    .find_map(|o| o.strip_prefix("subvolid="))
                    .map(str::to_owned)
            })?;
        let device = fs::canonicalize(&pool.source).unwrap_or_else(|_| PathBuf::from(&pool.source));
        let name = device.file_name()?;
        let filesystems = fs::read_dir(self.sys("/sys/fs/btrfs")).ok()?;
        let fs_dir = filesystems
            .flatten()
            .map(|e| e.path())
            .find(|dir| dir.join("devices").join(name).exists())?;
        let qgroups = fs_dir.join("qgroups");
        let read =
            |file: PathBuf| -> Option<u64> { fs::read_to_string(file).ok()?.trim().parse().ok() };
        if read(qgroups.join("enabled"))? != 1 {
            return None;
        }
        let qgroup = qgroups.join(format!("0_{id}"));
        let limit = read(qgroup.join("max_referenced"))?;
        let used = read(qgroup.join("referenced"))?;
        Some(QuotaState::Enabled {
            limit: (limit != 0).then_some(limit),
            used,
        })
    }
}

/// Inode number of the root directory of every btrfs subvolume.
const BTRFS_SUBVOLUME_INO: u64 = 256;

/// Runs a tool with a fixed locale; returns its stdout, or why it failed.
fn run(tool: &str, args: &[&str]) -> Result<String, OpsError> {
    let output = Command::new(tool)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .map_err(|source| OpsError::Spawn {
            tool: tool.to_owned(),
            source,
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(tool_error(tool, args, &output))
    }
}

fn tool_error(tool: &str, args: &[&str], output: &std::process::Output) -> OpsError {
    OpsError::Tool {
        tool: format!("{tool} {}", args.join(" ")),
        status: output
            .status
            .code()
            .map_or_else(|| "killed".to_owned(), |c| format!("exit {c}")),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    }
}

fn path_str(path: &Path) -> Result<&str, OpsError> {
    path.to_str().ok_or_else(|| OpsError::NotUtf8 {
        path: path.to_owned(),
    })
}

/// A directory reached without following a symlink, held open (O_PATH):
/// mounts go onto `/proc/self/fd/N`, the very directory that was checked,
/// whatever is renamed or replaced on the way meanwhile.
struct VerifiedDir {
    fd: OwnedFd,
}

impl VerifiedDir {
    /// The magic link the kernel resolves to the directory itself.
    fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

/// Walks `path` from `/` one component at a time, each opened with
/// O_NOFOLLOW relative to the one before (openat), so no symlink is ever
/// followed; with `create`, a missing directory is made (mkdirat, 0755).
fn open_dir_nofollow(path: &Path, create: bool) -> Result<VerifiedDir, OpsError> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return Err(OpsError::io(
            "resolving",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "not an absolute path"),
        ));
    }
    let mut dir = openat(AT_FDCWD, "/", flags, Mode::empty())
        .map_err(|e| OpsError::io("opening", "/", e.into()))?;
    let mut walked = PathBuf::from("/");
    for component in components {
        let name = match component {
            Component::Normal(name) => name,
            Component::CurDir => continue,
            _ => {
                return Err(OpsError::io(
                    "resolving",
                    path,
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "`..` in a path tfagent mounts on",
                    ),
                ));
            }
        };
        walked.push(name);
        let mut next = openat(&dir, name, flags, Mode::empty());
        if matches!(next, Err(Errno::ENOENT)) && create {
            match mkdirat(&dir, name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(OpsError::io("creating", &walked, e.into())),
            }
            next = openat(&dir, name, flags, Mode::empty());
        }
        dir = match next {
            Ok(fd) => fd,
            // O_PATH|O_NOFOLLOW|O_DIRECTORY on a symlink: ENOTDIR (or ELOOP).
            Err(Errno::ENOTDIR | Errno::ELOOP)
                if fs::symlink_metadata(&walked).is_ok_and(|m| m.file_type().is_symlink()) =>
            {
                return Err(OpsError::Symlink {
                    path: path.to_owned(),
                    link: walked,
                });
            }
            Err(e) => return Err(OpsError::io("opening", &walked, e.into())),
        };
    }
    Ok(VerifiedDir { fd: dir })
}

/// Parses `blkid -p -o export` output into signatures.
pub fn parse_blkid_export(text: &str) -> Vec<Signature> {
    let value = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
    };
    let mut signatures = Vec::new();
    if let Some(kind) = value("TYPE") {
        signatures.push(Signature {
            kind,
            usage: value("USAGE").unwrap_or_default(),
            uuid: value("UUID").map(|u| u.to_ascii_lowercase()),
        });
    }
    if let Some(kind) = value("PTTYPE") {
        signatures.push(Signature {
            kind,
            usage: "partition table".to_owned(),
            uuid: value("PTUUID").map(|u| u.to_ascii_lowercase()),
        });
    }
    signatures
}

/// Parses `btrfs qgroup show -re --raw -f PATH`: the first `0/ID` row is
/// the subvolume's own qgroup.
pub fn parse_qgroup_show(text: &str) -> Option<QuotaState> {
    let row = text
        .lines()
        .find(|line| line.trim_start().starts_with("0/"))?;
    let fields: Vec<&str> = row.split_whitespace().collect();
    let used = fields.get(1)?.parse().ok()?;
    let limit = match *fields.get(3)? {
        "none" => None,
        bytes => Some(bytes.parse().ok()?),
    };
    Some(QuotaState::Enabled { limit, used })
}

/// Splits mount options into mount(2) flags and the filesystem's data.
pub fn split_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in options {
        let flag = match option.as_str() {
            "ro" => MsFlags::MS_RDONLY,
            "noatime" => MsFlags::MS_NOATIME,
            "nodiratime" => MsFlags::MS_NODIRATIME,
            "relatime" => MsFlags::MS_RELATIME,
            "strictatime" => MsFlags::MS_STRICTATIME,
            "lazytime" => MsFlags::MS_LAZYTIME,
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            "sync" => MsFlags::MS_SYNCHRONOUS,
            "dirsync" => MsFlags::MS_DIRSYNC,
            "rw" | "defaults" => MsFlags::empty(),
            other => {
                data.push(other);
                continue;
            }
        };
        flags |= flag;
    }
    (flags, data.join(","))
}

impl StorageOps for LinuxStorage {
    fn mountinfo(&self) -> Result<String, OpsError> {
        let path = self.sys("/proc/self/mountinfo");
        fs::read_to_string(&path).map_err(|e| OpsError::io("reading", &path, e))
    }

    fn resolve_device(&self, path: &Path) -> Result<Option<DeviceNode>, OpsError> {
        let resolved = match fs::canonicalize(path) {
            Ok(resolved) => resolved,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(OpsError::io("resolving", path, e)),
        };
        let meta = fs::metadata(&resolved).map_err(|e| OpsError::io("examining", &resolved, e))?;
        if !meta.file_type().is_block_device() {
            return Err(OpsError::NotBlockDevice {
                path: path.to_owned(),
            });
        }
        Ok(Some(DeviceNode {
            path: path_str(&resolved)?.to_owned(),
            major_minor: format!("{}:{}", major(meta.rdev()), minor(meta.rdev())),
        }))
    }

    fn signatures(&self, device: &str) -> Result<Vec<Signature>, OpsError> {
        let args = ["-p", "-o", "export", device];
        let output = Command::new("blkid")
            .args(args)
            .env("LC_ALL", "C")
            .output()
            .map_err(|source| OpsError::Spawn {
                tool: "blkid".to_owned(),
                source,
            })?;
        match output.status.code() {
            Some(0) => Ok(parse_blkid_export(&String::from_utf8_lossy(&output.stdout))),
            // Nothing found: the device is blank.
            Some(2) => Ok(Vec::new()),
            // Several signatures that contradict each other: not blank.
            Some(8) => Ok(vec![Signature {
                kind: "ambivalent".to_owned(),
                usage: "(several signatures)".to_owned(),
                uuid: None,
            }]),
            _ => Err(tool_error("blkid", &args, &output)),
        }
    }

    fn whole_disk(&self, major_minor: &str) -> String {
        let node = self.sys(&format!("/sys/dev/block/{major_minor}"));
        let disk = fs::canonicalize(&node)
            .ok()
            .filter(|dir| dir.join("partition").exists())
            .and_then(|dir| fs::read_to_string(dir.parent()?.join("dev")).ok());
        disk.map_or_else(|| major_minor.to_owned(), |d| d.trim().to_owned())
    }

    fn path_kind(&self, path: &Path) -> Result<PathKind, OpsError> {
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PathKind::Missing),
            Err(e) => return Err(OpsError::io("examining", path, e)),
        };
        let on_btrfs = nix::sys::statfs::statfs(path)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC);
        Ok(
            if meta.is_dir() && on_btrfs && meta.ino() == BTRFS_SUBVOLUME_INO {
                PathKind::Subvolume
            } else {
                PathKind::Other
            },
        )
    }

    fn quota(&self, subvolume: &Path) -> Result<QuotaState, OpsError> {
        if let Some(quota) = self.quota_from_sysfs(subvolume) {
            return Ok(quota);
        }
        let path = path_str(subvolume)?;
        let args = ["qgroup", "show", "-re", "--raw", "-f", path];
        let output = Command::new("btrfs")
            .args(args)
            .env("LC_ALL", "C")
            .output()
            .map_err(|source| OpsError::Spawn {
                tool: "btrfs".to_owned(),
                source,
            })?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            if stderr.contains("quotas not enabled") {
                return Ok(QuotaState::Disabled);
            }
            return Err(tool_error("btrfs", &args, &output));
        }
        parse_qgroup_show(&String::from_utf8_lossy(&output.stdout)).ok_or_else(|| {
            OpsError::NoQgroup {
                path: subvolume.to_owned(),
            }
        })
    }

    fn usage(&self, path: &Path) -> Result<Usage, OpsError> {
        let stat = nix::sys::statvfs::statvfs(path)
            .map_err(|e| OpsError::io("statvfs", path, e.into()))?;
        let unit = stat.fragment_size();
        Ok(Usage {
            size: stat.blocks().saturating_mul(unit),
            used: stat
                .blocks()
                .saturating_sub(stat.blocks_free())
                .saturating_mul(unit),
            free: stat.blocks_available().saturating_mul(unit),
        })
    }

    fn block_devices(&self) -> Result<Vec<BlockDevice>, OpsError> {
        let dir = self.sys("/sys/class/block");
        let entries = fs::read_dir(&dir).map_err(|e| OpsError::io("reading", &dir, e))?;
        let mut devices = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let read = |file: &str| fs::read_to_string(entry.path().join(file)).ok();
            let sectors: u64 = read("size")
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            // Unused loop devices and RAM disks are no candidates.
            if sectors == 0 || name.starts_with("ram") {
                continue;
            }
            devices.push(BlockDevice {
                path: format!("/dev/{name}"),
                major_minor: read("dev").unwrap_or_default().trim().to_owned(),
                size_bytes: sectors.saturating_mul(512),
            });
        }
        devices.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(devices)
    }

    fn has_entries(&self, dir: &Path) -> Result<bool, OpsError> {
        match fs::read_dir(dir) {
            Ok(mut entries) => Ok(entries.next().is_some()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(OpsError::io("reading", dir, e)),
        }
    }

    fn symlink_in(&self, path: &Path) -> Result<Option<PathBuf>, OpsError> {
        let mut walked = PathBuf::new();
        for component in path.components() {
            walked.push(component);
            match fs::symlink_metadata(&walked) {
                Ok(meta) if meta.file_type().is_symlink() => return Ok(Some(walked)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(OpsError::io("examining", &walked, e)),
            }
        }
        Ok(None)
    }

    fn resolve_symlinks(&self, path: &Path) -> Option<PathBuf> {
        fs::canonicalize(path).ok()
    }

    fn make_dir(&self, path: &Path) -> Result<(), OpsError> {
        open_dir_nofollow(path, true).map(drop)
    }

    fn wipe(&self, device: &str) -> Result<(), OpsError> {
        run("wipefs", &["-a", "-q", device]).map(drop)
    }

    fn new_uuid(&self) -> Result<String, OpsError> {
        let path = "/proc/sys/kernel/random/uuid";
        fs::read_to_string(path)
            .map(|uuid| uuid.trim().to_owned())
            .map_err(|e| OpsError::io("reading", path, e))
    }

    fn format(
        &self,
        device: &str,
        filesystem: Filesystem,
        label: &str,
        uuid: &str,
    ) -> Result<(), OpsError> {
        // No force flag: the tools refuse a device that is not blank, one
        // more guard behind the probe.
        match filesystem {
            Filesystem::Btrfs => run("mkfs.btrfs", &["-q", "-L", label, "-U", uuid, device]),
            Filesystem::Ext4 => run("mkfs.ext4", &["-q", "-L", label, "-U", uuid, device]),
            Filesystem::Xfs => run(
                "mkfs.xfs",
                &["-q", "-L", label, "-m", &format!("uuid={uuid}"), device],
            ),
        }
        .map(drop)
    }

    fn enable_quota(&self, pool: &Path) -> Result<(), OpsError> {
        run("btrfs", &["quota", "enable", path_str(pool)?]).map(drop)
    }

    fn create_subvolume(&self, path: &Path) -> Result<(), OpsError> {
        run("btrfs", &["subvolume", "create", path_str(path)?]).map(drop)
    }

    fn set_quota(&self, subvolume: &Path, bytes: u64) -> Result<(), OpsError> {
        let bytes = bytes.to_string();
        run("btrfs", &["qgroup", "limit", &bytes, path_str(subvolume)?]).map(drop)
    }

    fn mount(
        &self,
        source: &MountSource,
        target: &Path,
        options: &[String],
    ) -> Result<(), OpsError> {
        let (flags, data) = split_options(options);
        let failed = |e: nix::Error| OpsError::io("mounting at", target, e.into());
        let verified = open_dir_nofollow(target, false)?;
        let at = verified.proc_path();
        match source {
            MountSource::Device { device, filesystem } => nix::mount::mount(
                Some(device.as_str()),
                &at,
                Some(filesystem.as_str()),
                flags,
                Some(data.as_str()).filter(|d| !d.is_empty()),
            )
            .map_err(failed),
            MountSource::Bind { dir } => {
                let from = open_dir_nofollow(Path::new(dir), false)?;
                nix::mount::mount(
                    Some(&from.proc_path()),
                    &at,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(failed)?;
                // Flags of a bind mount only take with a remount, on the
                // new mount (the verified path, walked again into it).
                if !flags.is_empty() {
                    let mounted = open_dir_nofollow(target, false)?;
                    nix::mount::mount(
                        None::<&str>,
                        &mounted.proc_path(),
                        None::<&str>,
                        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
                        None::<&str>,
                    )
                    .map_err(failed)?;
                }
                Ok(())
            }
        }
    }

    fn remount(&self, target: &Path, options: &[String]) -> Result<(), OpsError> {
        let (flags, _) = split_options(options);
        let mounted = open_dir_nofollow(target, false)?;
        // MS_BIND with MS_REMOUNT changes the per-mount flags only, for a
        // bind mount and a filesystem mount alike.
        nix::mount::mount(
            None::<&str>,
            &mounted.proc_path(),
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags,
            None::<&str>,
        )
        .map_err(|e| OpsError::io("remounting", target, e.into()))
    }

    fn set_propagation(&self, target: &Path, propagation: Propagation) -> Result<(), OpsError> {
        let kind = match propagation {
            Propagation::Private => MsFlags::MS_PRIVATE,
            Propagation::Rshared => MsFlags::MS_SHARED,
        };
        let mounted = open_dir_nofollow(target, false)?;
        nix::mount::mount(
            None::<&str>,
            &mounted.proc_path(),
            None::<&str>,
            kind | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| OpsError::io("setting the propagation of", target, e.into()))
    }

    fn unmount(&self, target: &Path) -> Result<(), OpsError> {
        // The parent is reached without symlinks; the last component is
        // not followed either.
        let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
            return Err(OpsError::io(
                "unmounting",
                target,
                io::Error::new(io::ErrorKind::InvalidInput, "not a mount tfagent makes"),
            ));
        };
        let parent = open_dir_nofollow(parent, false)?;
        let at = parent.proc_path().join(name);
        match nix::mount::umount2(&at, MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => Ok(()),
            Err(nix::Error::EBUSY) => Err(OpsError::Busy {
                target: target.display().to_string(),
            }),
            Err(e) => Err(OpsError::io("unmounting", target, e.into())),
        }
    }

    fn copy_contents(&self, from: &Path, to: &Path) -> Result<(), OpsError> {
        let from = format!("{}/.", path_str(from)?);
        let to = format!("{}/", path_str(to)?);
        run("cp", &["-a", &from, &to]).map(drop)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn blkid_export_of_a_filesystem_and_a_partition_table() {
        let fs = "DEVNAME=/dev/loop0\nUUID=C42DD2D4-c916-407e-b5e1-f8274ea2b197\nUUID_SUB=x\nBLOCK_SIZE=4096\nTYPE=btrfs\nUSAGE=filesystem\n";
        let sigs = parse_blkid_export(fs);
        assert_eq!(sigs.len(), 1);
        assert_eq!(sigs[0].kind, "btrfs");
        assert!(sigs[0].is_filesystem());
        assert_eq!(
            sigs[0].uuid.as_deref(),
            Some("c42dd2d4-c916-407e-b5e1-f8274ea2b197")
        );
        assert_eq!(
            sigs[0].to_string(),
            "btrfs filesystem (UUID c42dd2d4-c916-407e-b5e1-f8274ea2b197)"
        );

        let pt = parse_blkid_export("DEVNAME=/dev/loop1\nPTUUID=6b8a1a2e\nPTTYPE=dos\n");
        assert_eq!(pt[0].to_string(), "dos partition table (UUID 6b8a1a2e)");
        assert!(!pt[0].is_filesystem());

        let lvm = parse_blkid_export("TYPE=LVM2_member\nUSAGE=raid\nUUID=abc\n");
        assert_eq!(lvm[0].to_string(), "LVM2_member raid (UUID abc)");
        assert!(parse_blkid_export("DEVNAME=/dev/loop2\n").is_empty());
    }

    #[test]
    fn qgroup_rows_give_limit_and_use() {
        let text = "Qgroupid    Referenced    Exclusive  Max referenced  Max exclusive   Path \n--------    ----------    ---------  --------------  -------------   ---- \n0/256            16384        16384        52428800           none   tfagent-a\n";
        assert_eq!(
            parse_qgroup_show(text),
            Some(QuotaState::Enabled {
                limit: Some(52_428_800),
                used: 16384
            })
        );
        let unlimited = "0/257 0 0 none none x\n";
        assert_eq!(
            parse_qgroup_show(unlimited),
            Some(QuotaState::Enabled {
                limit: None,
                used: 0
            })
        );
        assert_eq!(parse_qgroup_show("garbage"), None);
    }

    #[test]
    fn a_mounted_subvolume_quota_is_read_from_sysfs() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let write = |path: &str, text: &str| {
            let file = root.join(path);
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(file, text).unwrap();
        };
        write(
            "proc/self/mountinfo",
            "64 43 0:39 / /mnt/pool rw - btrfs /dev/fixture-loop9 rw,subvolid=5,subvol=/\n\
             63 43 0:39 /tfagent-a /srv/a rw - btrfs /dev/fixture-loop9 rw,subvolid=256,subvol=/tfagent-a\n",
        );
        let fsid = "sys/fs/btrfs/7197aae6-b77b-43af-a22b-3638281b6936";
        write(&format!("{fsid}/devices/fixture-loop9"), "");
        write(&format!("{fsid}/qgroups/enabled"), "1\n");
        write(
            &format!("{fsid}/qgroups/0_256/max_referenced"),
            "52428800\n",
        );
        write(&format!("{fsid}/qgroups/0_256/referenced"), "16384\n");
        let host = LinuxStorage::with_root(root);
        assert_eq!(
            host.quota_from_sysfs(Path::new("/mnt/pool/tfagent-a")),
            Some(QuotaState::Enabled {
                limit: Some(52_428_800),
                used: 16384
            })
        );
        // Unlimited reads as 0.
        write(&format!("{fsid}/qgroups/0_256/max_referenced"), "0\n");
        assert_eq!(
            host.quota_from_sysfs(Path::new("/mnt/pool/tfagent-a")),
            Some(QuotaState::Enabled {
                limit: None,
                used: 16384
            })
        );
        // Not mounted anywhere (no subvolid to go by), or quotas off: ask btrfs.
        assert_eq!(
            host.quota_from_sysfs(Path::new("/mnt/pool/tfagent-b")),
            None
        );
        write(&format!("{fsid}/qgroups/enabled"), "0\n");
        assert_eq!(
            host.quota_from_sysfs(Path::new("/mnt/pool/tfagent-a")),
            None
        );
    }

    #[test]
    fn directories_are_made_and_opened_without_following_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let host = LinuxStorage::new();
        let deep = tmp.path().join("a/b/c");
        host.make_dir(&deep).unwrap();
        assert!(deep.is_dir());
        host.make_dir(&deep).unwrap();
        assert_eq!(host.symlink_in(&deep).unwrap(), None);

        let elsewhere = tmp.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, tmp.path().join("link")).unwrap();
        let through = tmp.path().join("link/x/y");
        let error = host.make_dir(&through).unwrap_err();
        assert!(
            matches!(&error, OpsError::Symlink { link, .. } if *link == tmp.path().join("link")),
            "{error}"
        );
        assert!(error.to_string().contains("is a symlink"), "{error}");
        assert!(!elsewhere.join("x").exists());
        assert_eq!(
            host.symlink_in(&through).unwrap(),
            Some(tmp.path().join("link"))
        );
        // The last component too.
        let error = host.make_dir(&tmp.path().join("link")).unwrap_err();
        assert!(matches!(error, OpsError::Symlink { .. }), "{error}");
        assert_eq!(
            host.resolve_symlinks(&tmp.path().join("link")),
            Some(fs::canonicalize(&elsewhere).unwrap())
        );
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let options: Vec<String> = ["noatime", "compress=zstd", "nodev", "space_cache=v2"]
            .map(String::from)
            .to_vec();
        let (flags, data) = split_options(&options);
        assert_eq!(flags, MsFlags::MS_NOATIME | MsFlags::MS_NODEV);
        assert_eq!(data, "compress=zstd,space_cache=v2");
        assert_eq!(split_options(&[]), (MsFlags::empty(), String::new()));
    }
}
