//! What the host can do: kernel WireGuard, wireguard-go, cgroup mode, block
//! filesystems, mounted btrfs pools. Each parser takes the text of the file
//! it reads, so it is tested on fixtures; [`probe`] reads them under a root.

use std::{
    collections::BTreeSet,
    env,
    ffi::OsStr,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// One hierarchy per controller, as zOS mounts it.
    V1,
    /// The unified hierarchy only.
    V2,
    /// v1 controllers plus a unified hierarchy beside them.
    Hybrid,
    /// No cgroup filesystem is mounted.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtrfsPool {
    pub mount_point: PathBuf,
    pub device: String,
}

/// Host capabilities as reported by `GetInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCapabilities {
    pub kernel_release: String,
    pub kernel_wireguard: bool,
    pub wireguard_go: Option<PathBuf>,
    pub cgroup_mode: CgroupMode,
    /// Block-device filesystems the kernel has: those /proc/filesystems
    /// lists (not `nodev`), plus btrfs, ext4 and xfs when their module can
    /// be loaded (the kernel lists a module only once it is loaded).
    pub filesystems: BTreeSet<String>,
    pub btrfs_pools: Vec<BtrfsPool>,
}

/// Where the probe reads: `/` on a real host, a fixture tree in tests.
#[derive(Debug, Clone)]
pub struct ProbeRoot {
    pub root: PathBuf,
    /// The PATH searched for wireguard-go.
    pub path_env: Option<std::ffi::OsString>,
}

impl ProbeRoot {
    pub fn host() -> Self {
        Self {
            root: PathBuf::from("/"),
            path_env: env::var_os("PATH"),
        }
    }

    pub(crate) fn file(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    pub(crate) fn read(&self, path: &str) -> String {
        // A missing file means the capability is absent, not an error.
        fs::read_to_string(self.file(path)).unwrap_or_default()
    }
}

/// Probes the host under `root`.
pub fn probe(root: &ProbeRoot) -> HostCapabilities {
    let modules = KernelModules::read(root);
    let mountinfo = parse_mountinfo(&root.read("/proc/self/mountinfo"));
    let kernel_wireguard = modules.present("wireguard");
    let mut filesystems = block_filesystems(&root.read("/proc/filesystems"));
    for loadable in LOADABLE_FILESYSTEMS {
        if modules.available(loadable) {
            filesystems.insert(loadable.to_owned());
        }
    }
    HostCapabilities {
        kernel_wireguard,
        wireguard_go: root
            .path_env
            .as_deref()
            .and_then(|path| find_executable(path, "wireguard-go")),
        cgroup_mode: cgroup_mode(&mountinfo),
        filesystems,
        btrfs_pools: btrfs_pools(&mountinfo),
        kernel_release: modules.release,
    }
}

/// The running kernel's modules, as the files under a probe root list them.
pub(crate) struct KernelModules<'a> {
    root: &'a ProbeRoot,
    /// The running release; empty when unknown.
    pub(crate) release: String,
    dep: String,
    builtin: String,
}

impl<'a> KernelModules<'a> {
    pub(crate) fn read(root: &'a ProbeRoot) -> Self {
        let release = root.read("/proc/sys/kernel/osrelease").trim().to_owned();
        let (dep, builtin) = if release.is_empty() {
            (String::new(), String::new())
        } else {
            let dir = format!("/lib/modules/{release}");
            (
                root.read(&format!("{dir}/modules.dep")),
                root.read(&format!("{dir}/modules.builtin")),
            )
        };
        Self {
            root,
            release,
            dep,
            builtin,
        }
    }

    /// Built in, or loadable (modules.dep or modules.builtin lists it).
    pub(crate) fn available(&self, name: &str) -> bool {
        module_listed(&self.dep, name) || module_listed(&self.builtin, name)
    }

    /// Loaded (/sys/module), built in or loadable.
    pub(crate) fn present(&self, name: &str) -> bool {
        self.root.file(&format!("/sys/module/{name}")).exists() || self.available(name)
    }
}

/// Filesystems volumes may use, counted as present when their module is.
const LOADABLE_FILESYSTEMS: [&str; 3] = ["btrfs", "ext4", "xfs"];

/// Filesystems that need a block device: the lines of /proc/filesystems
/// without the `nodev` flag.
pub fn block_filesystems(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            match (fields.next(), fields.next()) {
                (Some(name), None) => Some(name.to_owned()),
                _ => None,
            }
        })
        .collect()
}

/// One line of /proc/self/mountinfo, the fields the agent uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// `major:minor` of the filesystem (for btrfs, an anonymous `0:N`).
    pub major_minor: String,
    /// Path inside the filesystem that is mounted (`/` for its top).
    pub root: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    /// The optional fields, e.g. `shared:4` or `master:2`; none when private.
    pub propagation: Vec<String>,
    /// Per-mount options (`rw`, `noatime`, `nodev`, …).
    pub options: Vec<String>,
    /// The filesystem's options (btrfs: `subvolid=256,subvol=/x`, …).
    pub super_options: Vec<String>,
}

impl MountEntry {
    /// Whether mounts below it are shared with a peer group.
    pub fn is_shared(&self) -> bool {
        self.propagation
            .iter()
            .any(|tag| tag.starts_with("shared:"))
    }
}

/// Parses mountinfo (see proc(5)); malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let mut tail = after.split(' ');
            let fs_type = tail.next()?;
            let source = tail.next()?;
            let super_options = tail
                .next()
                .unwrap_or_default()
                .split(',')
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .collect();
            Some(MountEntry {
                major_minor: (*fields.get(2)?).to_owned(),
                propagation: fields
                    .get(6..)
                    .unwrap_or_default()
                    .iter()
                    .filter(|tag| !tag.is_empty())
                    .map(|tag| (*tag).to_owned())
                    .collect(),
                options: fields.get(5)?.split(',').map(str::to_owned).collect(),
                root: unescape_mount_field(fields.get(3)?),
                mount_point: PathBuf::from(unescape_mount_field(fields.get(4)?)),
                fs_type: fs_type.to_owned(),
                source: unescape_mount_field(source),
                super_options,
            })
        })
        .collect()
}

/// Undoes the kernel's octal escapes of space, tab, newline and backslash.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(digits)) = (bytes[i], octal) {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(value) = u8::try_from(value) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn cgroup_mode(mounts: &[MountEntry]) -> CgroupMode {
    let v1 = mounts.iter().any(|m| m.fs_type == "cgroup");
    let v2 = mounts.iter().any(|m| m.fs_type == "cgroup2");
    match (v1, v2) {
        (true, true) => CgroupMode::Hybrid,
        (true, false) => CgroupMode::V1,
        (false, true) => CgroupMode::V2,
        (false, false) => CgroupMode::None,
    }
}

/// Whole btrfs filesystems mounted at their top (zOS pools at /mnt/<label>);
/// subvolume mounts are not pools.
pub fn btrfs_pools(mounts: &[MountEntry]) -> Vec<BtrfsPool> {
    let mut seen = BTreeSet::new();
    mounts
        .iter()
        .filter(|m| m.fs_type == "btrfs" && m.root == "/")
        .filter(|m| seen.insert(m.mount_point.clone()))
        .map(|m| BtrfsPool {
            mount_point: m.mount_point.clone(),
            device: m.source.clone(),
        })
        .collect()
}

/// Whether modules.dep or modules.builtin lists `name.ko` (any compression).
pub fn module_listed(text: &str, name: &str) -> bool {
    text.lines().any(|line| {
        let path = line.split(':').next().unwrap_or_default();
        let file = path.rsplit('/').next().unwrap_or_default();
        file.strip_prefix(name)
            .is_some_and(|rest| rest == ".ko" || rest.starts_with(".ko."))
    })
}

/// The first executable `name` in a PATH-style list.
pub fn find_executable(path_env: &OsStr, name: &str) -> Option<PathBuf> {
    env::split_paths(path_env)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const FILESYSTEMS: &str = "nodev\tsysfs\nnodev\ttmpfs\nnodev\tcgroup\nnodev\tcgroup2\n\tbtrfs\n\text4\n\tvfat\nnodev\toverlay\n";

    // Shaped after a zOS node: cgroup v1 per controller, a btrfs pool with
    // a subvolume mounted elsewhere, a path with a space.
    const MOUNTINFO_ZOS: &str = "\
22 1 0:20 / / rw,relatime - tmpfs rootfs rw
25 22 0:22 / /sys/fs/cgroup rw - tmpfs cgroup_root rw
26 25 0:23 / /sys/fs/cgroup/cpu rw - cgroup cpu rw,cpu
27 25 0:24 / /sys/fs/cgroup/memory rw - cgroup memory rw,memory
40 22 8:16 / /mnt/sdb rw,relatime - btrfs /dev/sdb rw,space_cache
41 22 8:16 /vol1 /var/lib/rancher rw - btrfs /dev/sdb rw
42 22 8:32 / /mnt/with\\040space rw - btrfs /dev/sdc rw
garbage line
";

    const MOUNTINFO_V2: &str = "\
30 1 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate
31 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
";

    #[test]
    fn block_filesystems_skip_nodev_ones() {
        let found = block_filesystems(FILESYSTEMS);
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            vec!["btrfs", "ext4", "vfat"]
        );
    }

    #[test]
    fn mountinfo_is_parsed_and_unescaped() {
        let mounts = parse_mountinfo(MOUNTINFO_ZOS);
        assert_eq!(mounts.len(), 7, "the garbage line is skipped");
        assert_eq!(mounts[5].root, "/vol1");
        assert_eq!(mounts[6].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(mounts[6].source, "/dev/sdc");
        assert_eq!(mounts[5].major_minor, "8:16");
        assert_eq!(mounts[0].options, vec!["rw", "relatime"]);
        assert_eq!(mounts[4].super_options, vec!["rw", "space_cache"]);
        assert!(
            mounts.iter().all(|m| !m.is_shared()),
            "zOS fixture is private"
        );
        let v2 = parse_mountinfo(MOUNTINFO_V2);
        assert_eq!(v2[1].propagation, vec!["shared:1".to_owned()]);
        assert!(v2[1].is_shared());
        let peer = parse_mountinfo("40 1 0:5 / /a rw shared:3 master:1 - tmpfs t rw\n");
        assert_eq!(peer[0].propagation, vec!["shared:3", "master:1"]);
    }

    #[test]
    fn cgroup_modes() {
        assert_eq!(cgroup_mode(&parse_mountinfo(MOUNTINFO_ZOS)), CgroupMode::V1);
        assert_eq!(cgroup_mode(&parse_mountinfo(MOUNTINFO_V2)), CgroupMode::V2);
        let hybrid =
            format!("{MOUNTINFO_ZOS}50 25 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
        assert_eq!(cgroup_mode(&parse_mountinfo(&hybrid)), CgroupMode::Hybrid);
        assert_eq!(cgroup_mode(&[]), CgroupMode::None);
    }

    #[test]
    fn only_top_level_btrfs_mounts_are_pools() {
        let pools = btrfs_pools(&parse_mountinfo(MOUNTINFO_ZOS));
        assert_eq!(
            pools,
            vec![
                BtrfsPool {
                    mount_point: "/mnt/sdb".into(),
                    device: "/dev/sdb".into()
                },
                BtrfsPool {
                    mount_point: "/mnt/with space".into(),
                    device: "/dev/sdc".into()
                },
            ]
        );
    }

    #[test]
    fn modules_are_matched_by_file_name() {
        let dep = "kernel/drivers/net/wireguard/wireguard.ko.xz: kernel/lib/crypto/libchacha.ko\nkernel/net/foo/wireguardx.ko:\n";
        assert!(module_listed(dep, "wireguard"));
        assert!(!module_listed(
            "kernel/net/foo/wireguardx.ko:\n",
            "wireguard"
        ));
        assert!(module_listed(
            "kernel/drivers/net/wireguard/wireguard.ko\n",
            "wireguard"
        ));
        assert!(!module_listed("", "wireguard"));
    }

    #[test]
    fn probe_reads_a_fixture_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let write = |path: &str, text: &str| {
            let file = root.join(path);
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(file, text).unwrap();
        };
        write("proc/sys/kernel/osrelease", "6.1.21-zos\n");
        write("proc/filesystems", FILESYSTEMS);
        write("proc/self/mountinfo", MOUNTINFO_ZOS);
        write(
            "lib/modules/6.1.21-zos/modules.dep",
            "kernel/drivers/net/wireguard/wireguard.ko:\nkernel/fs/xfs/xfs.ko.zst: kernel/lib/libcrc32c.ko\n",
        );
        let bin = root.join("bin");
        write("bin/wireguard-go", "#!/bin/sh\n");
        fs::set_permissions(bin.join("wireguard-go"), fs::Permissions::from_mode(0o755)).unwrap();
        write("notexec/wireguard-go", "");

        let caps = probe(&ProbeRoot {
            root: root.to_owned(),
            path_env: Some(env::join_paths([root.join("notexec"), bin.clone()]).unwrap()),
        });
        assert_eq!(caps.kernel_release, "6.1.21-zos");
        assert!(caps.kernel_wireguard);
        assert_eq!(caps.wireguard_go, Some(bin.join("wireguard-go")));
        assert_eq!(caps.cgroup_mode, CgroupMode::V1);
        assert!(caps.filesystems.contains("btrfs") && !caps.filesystems.contains("tmpfs"));
        assert!(caps.filesystems.contains("xfs"), "a loadable module counts");
        assert!(!caps.filesystems.contains("ext4") || FILESYSTEMS.contains("ext4"));
        assert_eq!(caps.btrfs_pools.len(), 2);

        let empty = tempfile::tempdir().unwrap();
        let none = probe(&ProbeRoot {
            root: empty.path().to_owned(),
            path_env: None,
        });
        assert!(!none.kernel_wireguard);
        assert_eq!(none.wireguard_go, None);
        assert_eq!(none.cgroup_mode, CgroupMode::None);
    }
}
