//! A cgroup per service, on cgroup v1 as zOS mounts it (one hierarchy per
//! controller under /sys/fs/cgroup/<controller>) and on v2 (one unified
//! hierarchy). The child joins its cgroups itself before exec.

use std::{
    fs::{self, File, OpenOptions},
    io,
    path::{Path, PathBuf},
};

/// The cgroup hierarchies of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// One mount point per v1 hierarchy that has a controller.
    V1(Vec<PathBuf>),
    /// The unified hierarchy's mount point.
    V2(PathBuf),
    /// No cgroups (or not wanted): services run in the agent's cgroup.
    None,
}

impl CgroupLayout {
    /// The host's layout, from /proc/self/mountinfo.
    pub fn detect() -> Self {
        fs::read_to_string("/proc/self/mountinfo")
            .map(|text| Self::from_mountinfo(&text))
            .unwrap_or(CgroupLayout::None)
    }

    /// Parses mountinfo text. v1 hierarchies with a controller win over a
    /// v2 mount (hybrid hosts keep their controllers on v1); hierarchies
    /// mounted twice count once; named ones without a controller
    /// (`name=systemd`) are skipped.
    pub fn from_mountinfo(text: &str) -> Self {
        let mut v1: Vec<(String, PathBuf)> = Vec::new();
        let mut v2 = None;
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = left.split_whitespace().nth(4);
            let mut right = right.split_whitespace();
            let (Some(fstype), Some(_source), Some(options), Some(mount_point)) =
                (right.next(), right.next(), right.next(), mount_point)
            else {
                continue;
            };
            let mount_point = PathBuf::from(unescape(mount_point));
            match fstype {
                "cgroup2" => v2 = v2.or(Some(mount_point)),
                "cgroup" => {
                    let mut controllers: Vec<&str> =
                        options.split(',').filter(|o| is_controller(o)).collect();
                    if controllers.is_empty() {
                        continue;
                    }
                    controllers.sort_unstable();
                    let key = controllers.join(",");
                    if !v1.iter().any(|(k, _)| *k == key) {
                        v1.push((key, mount_point));
                    }
                }
                _ => {}
            }
        }
        if !v1.is_empty() {
            CgroupLayout::V1(v1.into_iter().map(|(_, path)| path).collect())
        } else if let Some(root) = v2 {
            CgroupLayout::V2(root)
        } else {
            CgroupLayout::None
        }
    }

    /// The directories of one service's cgroup (`<hierarchy>/<parent>/<name>`).
    pub fn service_dirs(&self, parent: &str, name: &str) -> Vec<PathBuf> {
        let roots: Vec<&PathBuf> = match self {
            CgroupLayout::V1(roots) => roots.iter().collect(),
            CgroupLayout::V2(root) => vec![root],
            CgroupLayout::None => Vec::new(),
        };
        roots
            .into_iter()
            .map(|root| root.join(parent).join(name))
            .collect()
    }
}

fn is_controller(option: &str) -> bool {
    const NOT_CONTROLLERS: [&str; 8] = [
        "rw",
        "ro",
        "nosuid",
        "nodev",
        "noexec",
        "relatime",
        "clone_children",
        "noprefix",
    ];
    !NOT_CONTROLLERS.contains(&option) && !option.contains('=')
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Creates the service's cgroups and opens their `cgroup.procs` for the
/// child to join. A cpuset hierarchy needs its cpus and mems copied from
/// the parent before anything can join.
pub fn prepare(dirs: &[PathBuf]) -> io::Result<Vec<File>> {
    let mut procs = Vec::with_capacity(dirs.len());
    for dir in dirs {
        if let Some(parent) = dir.parent() {
            create(parent)?;
        }
        create(dir)?;
        procs.push(
            OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))?,
        );
    }
    Ok(procs)
}

fn create(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Made by another service starting at the same time, or by an
        // earlier start that failed before its cpuset was filled: filled
        // below either way, or nothing could join it.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = dir.join(file);
        let Some(parent) = dir.parent() else { continue };
        if own.exists() && fs::read_to_string(&own)?.trim().is_empty() {
            fs::write(&own, fs::read_to_string(parent.join(file))?.trim())?;
        }
    }
    Ok(())
}

/// The pids in a service's cgroups.
pub fn pids(dirs: &[PathBuf]) -> Vec<i32> {
    let mut pids: Vec<i32> = dirs
        .iter()
        .filter_map(|dir| fs::read_to_string(dir.join("cgroup.procs")).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Removes the (empty) cgroups of a removed service. The parent stays.
pub fn remove(dirs: &[PathBuf]) -> io::Result<()> {
    for dir in dirs {
        match fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn a_cpuset_made_but_not_filled_is_filled_on_the_next_try() {
        // As another service's start leaves it, racing this one: the
        // directory exists, its cpus and mems are still empty.
        let root = tempfile::tempdir().unwrap();
        let parent = root.path().join("tfagent");
        let child = parent.join("k3s");
        fs::create_dir_all(&child).unwrap();
        for (file, value) in [("cpuset.cpus", "0-3"), ("cpuset.mems", "0")] {
            fs::write(root.path().join(file), value).unwrap();
            fs::write(parent.join(file), "").unwrap();
            fs::write(child.join(file), "\n").unwrap();
        }
        create(&parent).unwrap();
        create(&child).unwrap();
        for (file, value) in [("cpuset.cpus", "0-3"), ("cpuset.mems", "0")] {
            let got = fs::read_to_string(child.join(file)).unwrap();
            assert_eq!(got, value, "{file}");
        }
    }

    const ZOS_LIKE: &str = "\
25 1 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
27 25 0:24 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
28 25 0:25 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
29 25 0:26 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
30 25 0:25 / /mnt/memory\\040again rw,relatime - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/pids rw,relatime shared:4 - cgroup cgroup rw,nosuid,pids
";

    #[test]
    fn v1_one_hierarchy_per_controller() {
        let layout = CgroupLayout::from_mountinfo(ZOS_LIKE);
        assert_eq!(
            layout,
            CgroupLayout::V1(vec![
                "/sys/fs/cgroup/cpu".into(),
                "/sys/fs/cgroup/cpuacct".into(),
                "/sys/fs/cgroup/memory".into(),
                "/sys/fs/cgroup/pids".into(),
            ])
        );
        assert_eq!(
            layout.service_dirs("tfagent", "k3s")[2],
            PathBuf::from("/sys/fs/cgroup/memory/tfagent/k3s")
        );
    }

    #[test]
    fn v2_and_hybrid_and_none() {
        let v2 = "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            CgroupLayout::from_mountinfo(v2),
            CgroupLayout::V2("/sys/fs/cgroup".into())
        );
        let hybrid =
            format!("{ZOS_LIKE}40 25 0:40 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
        assert!(matches!(
            CgroupLayout::from_mountinfo(&hybrid),
            CgroupLayout::V1(_)
        ));
        assert_eq!(
            CgroupLayout::from_mountinfo("garbage\n"),
            CgroupLayout::None
        );
        assert!(CgroupLayout::None.service_dirs("p", "s").is_empty());
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b\\011c\\"), "/a b\tc\\");
    }
}
