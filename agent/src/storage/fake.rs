//! A recording fake of [`StorageOps`]: an in-memory host whose changes
//! behave like the real ones (a mount shows up in mountinfo, mkfs leaves a
//! filesystem signature), and a log of every call.
#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
};

use super::ports::{
    BlockDevice, DeviceNode, MountSource, OpsError, PathKind, QuotaState, Signature, StorageOps,
    Usage,
};
use tfagent_spec::{Filesystem, Propagation};

#[derive(Debug, Clone)]
pub struct FakeMount {
    pub major_minor: String,
    pub root: String,
    pub target: String,
    pub fs_type: String,
    pub source: String,
    pub shared: bool,
    /// Per-mount flags.
    pub flags: Vec<String>,
}

#[derive(Debug, Default)]
pub struct FakeState {
    pub mounts: Vec<FakeMount>,
    /// Device path (as written and resolved) → node.
    pub nodes: BTreeMap<String, DeviceNode>,
    /// Resolved device → signatures.
    pub signatures: BTreeMap<String, Vec<Signature>>,
    pub paths: BTreeMap<String, PathKind>,
    /// Subvolume → (limit, used).
    pub quotas: BTreeMap<String, (Option<u64>, u64)>,
    pub quota_pools: Vec<String>,
    /// Directories that hold something.
    pub non_empty: Vec<String>,
    /// Symlinks on the fake host: link → where it points (absolute).
    pub symlinks: BTreeMap<String, String>,
    /// Targets whose unmount fails as busy.
    pub busy: Vec<String>,
    /// Every call, in order: `name arg…`.
    pub calls: Vec<String>,
    pub uuid_counter: u32,
    /// `format` makes the filesystem, then fails as if the agent had died
    /// before it could record it.
    pub die_after_format: bool,
}

#[derive(Debug, Default)]
pub struct FakeOps {
    pub state: Mutex<FakeState>,
}

/// Calls that change the host.
pub const MUTATING: [&str; 11] = [
    "remount",
    "make_dir",
    "wipe",
    "format",
    "enable_quota",
    "create_subvolume",
    "set_quota",
    "mount",
    "set_propagation",
    "unmount",
    "copy_contents",
];

impl FakeOps {
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }

    pub fn add_device(
        &self,
        path: &str,
        node: &str,
        major_minor: &str,
        signatures: Vec<Signature>,
    ) {
        let mut state = self.state();
        let node = DeviceNode {
            path: node.to_owned(),
            major_minor: major_minor.to_owned(),
        };
        state.nodes.insert(path.to_owned(), node.clone());
        state.nodes.insert(node.path.clone(), node.clone());
        state.signatures.insert(node.path, signatures);
    }

    pub fn add_mount(&self, mount: FakeMount) {
        self.state().mounts.push(mount);
    }

    /// A btrfs pool mounted at `target` from `device`.
    pub fn add_pool(&self, target: &str, device: &str, quotas: bool) {
        self.add_mount(FakeMount {
            major_minor: "0:50".into(),
            root: "/".into(),
            target: target.into(),
            fs_type: "btrfs".into(),
            source: device.into(),
            shared: false,
            flags: Vec::new(),
        });
        if quotas {
            self.state().quota_pools.push(target.into());
        }
    }

    pub fn mutations(&self) -> Vec<String> {
        self.state()
            .calls
            .iter()
            .filter(|c| MUTATING.contains(&c.split(' ').next().unwrap_or_default()))
            .cloned()
            .collect()
    }

    pub fn clear_calls(&self) {
        self.state().calls.clear();
    }

    fn call(&self, text: String) -> MutexGuard<'_, FakeState> {
        let mut state = self.state();
        state.calls.push(text);
        state
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// The first prefix of `path` that is one of `symlinks`.
fn first_symlink(symlinks: &BTreeMap<String, String>, path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .find(|prefix| symlinks.contains_key(&p(prefix)))
        .map(Path::to_path_buf)
}

impl FakeState {
    /// A change through a symlink fails as the Linux implementation does.
    fn no_symlink(&self, path: &Path) -> Result<(), OpsError> {
        match first_symlink(&self.symlinks, path) {
            Some(link) => Err(OpsError::Symlink {
                path: path.to_owned(),
                link,
            }),
            None => Ok(()),
        }
    }
}

impl StorageOps for FakeOps {
    fn mountinfo(&self) -> Result<String, OpsError> {
        let state = self.call("mountinfo".into());
        let mut text = String::from("1 0 0:1 / / rw - tmpfs rootfs rw\n");
        for (i, m) in state.mounts.iter().enumerate() {
            let tag = if m.shared { " shared:7" } else { "" };
            text.push_str(&format!(
                "{} 1 {} {} {} {}{tag} - {} {} rw\n",
                i + 10,
                m.major_minor,
                m.root.replace(' ', "\\040"),
                m.target.replace(' ', "\\040"),
                ["rw".to_owned()]
                    .iter()
                    .chain(&m.flags)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(","),
                m.fs_type,
                m.source
            ));
        }
        Ok(text)
    }

    fn resolve_device(&self, path: &Path) -> Result<Option<DeviceNode>, OpsError> {
        let state = self.call(format!("resolve_device {}", p(path)));
        Ok(state.nodes.get(&p(path)).cloned())
    }

    fn signatures(&self, device: &str) -> Result<Vec<Signature>, OpsError> {
        let state = self.call(format!("signatures {device}"));
        Ok(state.signatures.get(device).cloned().unwrap_or_default())
    }

    fn whole_disk(&self, major_minor: &str) -> String {
        major_minor.to_owned()
    }

    fn path_kind(&self, path: &Path) -> Result<PathKind, OpsError> {
        let state = self.call(format!("path_kind {}", p(path)));
        Ok(state
            .paths
            .get(&p(path))
            .copied()
            .unwrap_or(PathKind::Missing))
    }

    fn quota(&self, subvolume: &Path) -> Result<QuotaState, OpsError> {
        let state = self.call(format!("quota {}", p(subvolume)));
        let path = p(subvolume);
        let enabled = state.quota_pools.iter().any(|pool| path.starts_with(pool));
        if !enabled {
            return Ok(QuotaState::Disabled);
        }
        let (limit, used) = state.quotas.get(&path).copied().unwrap_or((None, 0));
        Ok(QuotaState::Enabled { limit, used })
    }

    fn usage(&self, _path: &Path) -> Result<Usage, OpsError> {
        Ok(Usage {
            size: 1000,
            used: 100,
            free: 900,
        })
    }

    fn block_devices(&self) -> Result<Vec<BlockDevice>, OpsError> {
        let state = self.call("block_devices".into());
        Ok(state
            .signatures
            .keys()
            .map(|path| BlockDevice {
                path: path.clone(),
                major_minor: state.nodes[path].major_minor.clone(),
                size_bytes: 1 << 30,
            })
            .collect())
    }

    fn has_entries(&self, dir: &Path) -> Result<bool, OpsError> {
        let state = self.call(format!("has_entries {}", p(dir)));
        Ok(state.non_empty.contains(&p(dir)))
    }

    // Path lookups are not logged as calls: they read no device and
    // change nothing (validation makes them for every spec).
    fn symlink_in(&self, path: &Path) -> Result<Option<PathBuf>, OpsError> {
        Ok(first_symlink(&self.state().symlinks, path))
    }

    fn resolve_symlinks(&self, path: &Path) -> Option<PathBuf> {
        let state = self.state();
        let link = first_symlink(&state.symlinks, path)?;
        let rest = path.strip_prefix(&link).ok()?;
        Some(Path::new(&state.symlinks[&p(&link)]).join(rest))
    }

    fn make_dir(&self, path: &Path) -> Result<(), OpsError> {
        self.call(format!("make_dir {}", p(path))).no_symlink(path)
    }

    fn wipe(&self, device: &str) -> Result<(), OpsError> {
        let mut state = self.call(format!("wipe {device}"));
        state.signatures.insert(device.to_owned(), Vec::new());
        Ok(())
    }

    fn new_uuid(&self) -> Result<String, OpsError> {
        let mut state = self.state();
        state.uuid_counter += 1;
        Ok(format!(
            "00000000-0000-0000-0000-{:012}",
            state.uuid_counter
        ))
    }

    fn format(
        &self,
        device: &str,
        filesystem: Filesystem,
        label: &str,
        uuid: &str,
    ) -> Result<(), OpsError> {
        let mut state = self.call(format!("format {device} {filesystem} {label}"));
        if !state.signatures.get(device).is_none_or(Vec::is_empty) {
            return Err(OpsError::Tool {
                tool: format!("mkfs.{filesystem} {device}"),
                status: "exit 1".into(),
                stderr: format!("{device} is not blank"),
            });
        }
        state.signatures.insert(
            device.to_owned(),
            vec![Signature {
                kind: filesystem.to_string(),
                usage: "filesystem".into(),
                uuid: Some(uuid.to_owned()),
            }],
        );
        if state.die_after_format {
            return Err(OpsError::io(
                "formatting",
                device,
                io::Error::other("the agent died after mkfs"),
            ));
        }
        Ok(())
    }

    fn enable_quota(&self, pool: &Path) -> Result<(), OpsError> {
        let mut state = self.call(format!("enable_quota {}", p(pool)));
        state.quota_pools.push(p(pool));
        Ok(())
    }

    fn create_subvolume(&self, path: &Path) -> Result<(), OpsError> {
        let mut state = self.call(format!("create_subvolume {}", p(path)));
        state.paths.insert(p(path), PathKind::Subvolume);
        Ok(())
    }

    fn set_quota(&self, subvolume: &Path, bytes: u64) -> Result<(), OpsError> {
        let mut state = self.call(format!("set_quota {} {bytes}", p(subvolume)));
        let entry = state.quotas.entry(p(subvolume)).or_insert((None, 0));
        entry.0 = Some(bytes);
        Ok(())
    }

    fn mount(
        &self,
        source: &MountSource,
        target: &Path,
        options: &[String],
    ) -> Result<(), OpsError> {
        let mut state = self.call(format!(
            "mount {source:?} {} {}",
            p(target),
            options.join(",")
        ));
        state.no_symlink(target)?;
        let mount = match source {
            MountSource::Device { device, filesystem } => FakeMount {
                major_minor: "0:60".into(),
                root: "/".into(),
                target: p(target),
                fs_type: filesystem.to_string(),
                source: device.clone(),
                shared: false,
                flags: super::plan::MANAGED_FLAGS
                    .iter()
                    .filter(|f| options.iter().any(|o| o == *f))
                    .map(|f| (*f).to_owned())
                    .collect(),
            },
            MountSource::Bind { dir } => {
                // The mount whose target is the longest prefix of `dir`.
                let under = state
                    .mounts
                    .iter()
                    .filter(|m| Path::new(dir).starts_with(&m.target))
                    .max_by_key(|m| m.target.len())
                    .cloned()
                    .ok_or_else(|| {
                        let cause = io::Error::other(format!("{dir} is on no mount"));
                        OpsError::io("mounting at", target, cause)
                    })?;
                let rest = Path::new(dir)
                    .strip_prefix(&under.target)
                    .unwrap()
                    .display()
                    .to_string();
                FakeMount {
                    root: format!("{}/{rest}", under.root.trim_end_matches('/')),
                    target: p(target),
                    flags: super::plan::MANAGED_FLAGS
                        .iter()
                        .filter(|f| options.iter().any(|o| o == *f))
                        .map(|f| (*f).to_owned())
                        .collect(),
                    ..under
                }
            }
        };
        state.mounts.push(mount);
        Ok(())
    }

    fn remount(&self, target: &Path, options: &[String]) -> Result<(), OpsError> {
        let mut state = self.call(format!("remount {} {}", p(target), options.join(",")));
        let target = p(target);
        let mount = state
            .mounts
            .iter_mut()
            .rev()
            .find(|m| m.target == target)
            .ok_or_else(|| not_mounted("remounting", &target))?;
        mount.flags = options.to_vec();
        Ok(())
    }

    fn set_propagation(&self, target: &Path, propagation: Propagation) -> Result<(), OpsError> {
        let mut state = self.call(format!("set_propagation {} {propagation}", p(target)));
        let target = p(target);
        let mount = state
            .mounts
            .iter_mut()
            .rev()
            .find(|m| m.target == target)
            .ok_or_else(|| not_mounted("setting the propagation of", &target))?;
        mount.shared = propagation == Propagation::Rshared;
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<(), OpsError> {
        let mut state = self.call(format!("unmount {}", p(target)));
        let target = p(target);
        if state.busy.contains(&target) {
            return Err(OpsError::Busy { target });
        }
        let index = state
            .mounts
            .iter()
            .rposition(|m| m.target == target)
            .ok_or_else(|| not_mounted("unmounting", &target))?;
        state.mounts.remove(index);
        Ok(())
    }

    fn copy_contents(&self, from: &Path, to: &Path) -> Result<(), OpsError> {
        drop(self.call(format!("copy_contents {} {}", p(from), p(to))));
        Ok(())
    }
}

/// What the kernel says of a target that is no mount point.
fn not_mounted(what: &'static str, target: &str) -> OpsError {
    OpsError::io(what, target, io::Error::from_raw_os_error(libc::EINVAL))
}
