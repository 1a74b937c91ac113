//! The host operations storage needs, behind one small trait, with what
//! they read and their errors: a Linux implementation
//! ([`super::linux::LinuxStorage`]) and a recording fake in the unit tests.
//! Every method is blocking; callers run them off the async threads.

use std::{
    fmt, io,
    path::{Path, PathBuf},
};

use tfagent_spec::{Filesystem, Propagation};

/// Why a host operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// A file operation or a syscall on `path` (`what`: "reading",
    /// "unmounting", …).
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A tool could not be started.
    #[error("running {tool}: {source}")]
    Spawn {
        tool: String,
        #[source]
        source: io::Error,
    },
    /// A tool ran and said no.
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        tool: String,
        status: String,
        stderr: String,
    },
    #[error("{} is not a block device", path.display())]
    NotBlockDevice { path: PathBuf },
    /// The tools take paths as text.
    #[error("{} is not UTF-8", path.display())]
    NotUtf8 { path: PathBuf },
    /// `btrfs qgroup show` succeeded but listed no qgroup of the subvolume.
    #[error("btrfs qgroup show {}: no qgroup row", path.display())]
    NoQgroup { path: PathBuf },
    /// A component of a path tfagent creates or mounts on is a symlink:
    /// following it would put the mount somewhere else.
    #[error(
        "{} is a symlink (on the way to {}); tfagent does not create or mount through symlinks",
        link.display(),
        path.display()
    )]
    Symlink { path: PathBuf, link: PathBuf },
    /// The mount is in use; it is reported, never forced.
    #[error("{target} is busy (in use by a process or another mount); not forced")]
    Busy { target: String },
}

impl OpsError {
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// One on-disk signature `blkid -p` reports: a filesystem, a partition
/// table, an LVM or RAID member, LUKS, swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// blkid's TYPE (`btrfs`, `ext4`, `crypto_LUKS`, …) or PTTYPE (`dos`, `gpt`).
    pub kind: String,
    /// blkid's USAGE (`filesystem`, `raid`, `crypto`, `other`), or
    /// `partition table`.
    pub usage: String,
    /// UUID or PTUUID, lower case.
    pub uuid: Option<String>,
}

impl Signature {
    pub fn is_filesystem(&self) -> bool {
        self.usage == "filesystem"
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let usage = if self.usage.is_empty() {
            "signature"
        } else {
            &self.usage
        };
        write!(f, "{} {usage}", self.kind)?;
        if let Some(uuid) = &self.uuid {
            write!(f, " (UUID {uuid})")?;
        }
        Ok(())
    }
}

/// A device node as found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// The path with symlinks resolved (`/dev/disk/by-id/x` → `/dev/sdb`).
    pub path: String,
    /// Its `major:minor`.
    pub major_minor: String,
}

/// What is at a pool volume's subvolume path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Missing,
    Subvolume,
    /// Something that is not a btrfs subvolume (a plain directory, a file).
    Other,
}

/// A pool subvolume's qgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaState {
    /// Quotas are off on the pool.
    Disabled,
    /// `limit` is the referenced-bytes limit, `None` when unlimited.
    Enabled { limit: Option<u64>, used: u64 },
}

/// statvfs of a mounted filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub size: u64,
    pub used: u64,
    pub free: u64,
}

/// A block device the host has (`tfagentctl disks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// `/dev/NAME`.
    pub path: String,
    pub major_minor: String,
    pub size_bytes: u64,
}

/// What to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A filesystem on a device.
    Device {
        device: String,
        filesystem: Filesystem,
    },
    /// A directory bind-mounted (a pool subvolume, a persisted path).
    Bind { dir: String },
}

/// Reads and changes of the host that storage makes.
pub trait StorageOps: Send + Sync + fmt::Debug + 'static {
    /// The text of /proc/self/mountinfo.
    fn mountinfo(&self) -> Result<String, OpsError>;

    /// Resolves a device path; `Ok(None)` when it does not exist.
    fn resolve_device(&self, path: &Path) -> Result<Option<DeviceNode>, OpsError>;

    /// The signatures on a device (`blkid -p`); empty when it is blank.
    fn signatures(&self, device: &str) -> Result<Vec<Signature>, OpsError>;

    /// The whole disk a device belongs to (itself unless it is a partition).
    fn whole_disk(&self, major_minor: &str) -> String;

    /// What is at `path`: a btrfs subvolume, something else, or nothing.
    fn path_kind(&self, path: &Path) -> Result<PathKind, OpsError>;

    /// The qgroup of the subvolume at `path`.
    fn quota(&self, subvolume: &Path) -> Result<QuotaState, OpsError>;

    /// statvfs of a mount point.
    fn usage(&self, path: &Path) -> Result<Usage, OpsError>;

    /// The block devices of the host.
    fn block_devices(&self) -> Result<Vec<BlockDevice>, OpsError>;

    /// Whether `dir` exists and holds at least one entry.
    fn has_entries(&self, dir: &Path) -> Result<bool, OpsError>;

    /// The first component of `path` that is a symlink, if any (read
    /// only; components that do not exist yet end the walk).
    fn symlink_in(&self, path: &Path) -> Result<Option<PathBuf>, OpsError>;

    /// Where `path` really is, symlinks followed (read only); `None` when
    /// it does not exist. Finds where an older agent's mount through a
    /// symlink landed.
    fn resolve_symlinks(&self, path: &Path) -> Option<PathBuf>;

    /// Creates a directory and its parents (0755), one component at a time
    /// and never through a symlink ([`OpsError::Symlink`]); no-op if it
    /// exists.
    fn make_dir(&self, path: &Path) -> Result<(), OpsError>;

    /// Erases every signature on the device (`wipefs -a`).
    fn wipe(&self, device: &str) -> Result<(), OpsError>;

    /// A fresh filesystem UUID. Chosen before `format`, so the record of a
    /// new filesystem is written before it exists: an agent killed between
    /// mkfs and the record still finds the filesystem its own.
    fn new_uuid(&self) -> Result<String, OpsError>;

    /// Creates a filesystem labelled `label`, with UUID `uuid`, on a blank
    /// device.
    fn format(
        &self,
        device: &str,
        filesystem: Filesystem,
        label: &str,
        uuid: &str,
    ) -> Result<(), OpsError>;

    fn enable_quota(&self, pool: &Path) -> Result<(), OpsError>;

    fn create_subvolume(&self, path: &Path) -> Result<(), OpsError>;

    /// Sets the referenced-bytes limit of the subvolume's qgroup.
    fn set_quota(&self, subvolume: &Path, bytes: u64) -> Result<(), OpsError>;

    /// Mounts `source` at `target` with `options` (flags like `noatime`
    /// and filesystem options like `compress=zstd` alike). `target` (and a
    /// bind source) is resolved without following symlinks, and the mount
    /// made on the directory so verified.
    fn mount(
        &self,
        source: &MountSource,
        target: &Path,
        options: &[String],
    ) -> Result<(), OpsError>;

    /// Sets the per-mount flags (`noatime`, `nodev`, …) of the mount at
    /// `target` to exactly those in `options`.
    fn remount(&self, target: &Path, options: &[String]) -> Result<(), OpsError>;

    /// Sets the propagation of the mount at `target`, recursively.
    fn set_propagation(&self, target: &Path, propagation: Propagation) -> Result<(), OpsError>;

    /// Unmounts `target`; a busy mount is [`OpsError::Busy`], never forced.
    fn unmount(&self, target: &Path) -> Result<(), OpsError>;

    /// Copies the contents of `from` into `to`, keeping owners, modes and
    /// times (seeds a persisted directory from what is already there).
    fn copy_contents(&self, from: &Path, to: &Path) -> Result<(), OpsError>;
}
