//! `storage`: the volumes to format and mount, and the paths persisted on
//! one of them.

use std::collections::HashMap;

use super::checker::{Checker, first_seen};
use crate::defaults;
use crate::document::{AddonsDoc, PersistDoc, StorageDoc, VolumeDoc};
use crate::limits::{MAX_MOUNT_OPTIONS, MAX_PERSIST_PATHS, MAX_VOLUMES};
use crate::model::{Persist, PersistPath, Volume, VolumeSource};
use crate::types::{
    AbsPath, ByteSize, Filesystem, FormatPolicy, Label, Propagation, WipeSignature,
};

/// Mount options that are per-mount flags, not filesystem options.
const PER_MOUNT_FLAGS: &[&str] = &[
    "ro",
    "rw",
    "defaults",
    "noatime",
    "nodiratime",
    "relatime",
    "strictatime",
    "lazytime",
    "nosuid",
    "nodev",
    "noexec",
    "sync",
    "dirsync",
];

impl Checker<'_> {
    pub(super) fn storage(&mut self, doc: &StorageDoc) -> Option<Vec<Volume>> {
        if !self.list_fits("storage.volumes", doc.volumes.len(), MAX_VOLUMES) {
            return None;
        }
        let mut names = HashMap::new();
        let mut mounts = HashMap::new();
        let mut devices = HashMap::new();
        let volumes: Vec<Option<Volume>> = doc
            .volumes
            .iter()
            .enumerate()
            .map(|(i, volume)| self.volume(i, volume, &mut names, &mut mounts, &mut devices))
            .collect();
        let nested_ok = self.volume_nesting(&volumes);
        let volumes: Vec<Volume> = volumes.into_iter().collect::<Option<_>>()?;
        nested_ok.then_some(volumes)
    }

    /// A volume mounted over a pool (or a pool inside a volume's mount
    /// point) would hide the pool the subvolumes live in.
    fn volume_nesting(&mut self, volumes: &[Option<Volume>]) -> bool {
        let mut ok = true;
        let valid = || {
            volumes
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Some((i, v.as_ref()?)))
        };
        for (i, volume) in valid() {
            for (j, other) in valid() {
                let VolumeSource::Pool { pool, .. } = &other.source else {
                    continue;
                };
                if volume.mount_point.is_within(pool) {
                    self.fail(
                        format!("storage.volumes[{i}].mount_point"),
                        format!(
                            "lies in pool {pool} of volumes[{j}]; mount volumes outside the pools"
                        ),
                    );
                    ok = false;
                } else if pool.is_within(&volume.mount_point) {
                    self.fail(
                        format!("storage.volumes[{i}].mount_point"),
                        format!("would hide pool {pool} of volumes[{j}], which lies inside it"),
                    );
                    ok = false;
                }
            }
        }
        ok
    }

    /// The persisted paths: as written, or the defaults every role needs,
    /// less those a volume already covers.
    pub(super) fn persist(
        &mut self,
        doc: &PersistDoc,
        volumes: Option<&[Volume]>,
        addons: &AddonsDoc,
    ) -> Option<Option<Persist>> {
        let base = "storage.persist";
        if !self.list_fits(&format!("{base}.paths"), doc.paths.len(), MAX_PERSIST_PATHS) {
            return None;
        }
        // Where Longhorn keeps its data; its directory needs rshared.
        let longhorn: AbsPath = if addons.longhorn.data_path.is_empty() {
            defaults::LONGHORN_DATA_PATH.parse().ok()?
        } else {
            addons
                .longhorn
                .data_path
                .parse()
                .unwrap_or(defaults::LONGHORN_DATA_PATH.parse().ok()?)
        };
        let dirs = self.ctx.service_dirs.clone().unwrap_or_default();
        let rshared_by_default = |path: &AbsPath| *path == dirs.kubelet_dir || *path == longhorn;
        if volumes.is_some_and(<[Volume]>::is_empty)
            || (volumes.is_none() && doc == &PersistDoc::default())
        {
            if doc != &PersistDoc::default() {
                self.fail(
                    base,
                    "needs a volume to keep the paths on; add one to storage.volumes",
                );
                return None;
            }
            return Some(None);
        }
        let volume_path = format!("{base}.volume");
        let volume = if doc.volume.is_empty() {
            volumes.and_then(|v| v.first()).map(|v| v.name.clone())
        } else {
            let name = self.parse::<Label>(&volume_path, &doc.volume)?;
            if let Some(volumes) = volumes
                && !volumes.iter().any(|v| v.name == name)
            {
                self.fail(&volume_path, format!("no volume is named {name}"));
                return None;
            }
            Some(name)
        };
        let volumes = volumes?;
        let volume = volume?;
        let holder = volumes.iter().find(|v| v.name == volume)?;
        let covering = |path: &AbsPath| volumes.iter().find(|v| path.is_within(&v.mount_point));

        // The agent's own state dir is never bind-mounted: the agent holds
        // it open from its start, before storage runs, so a mount over it
        // would hide the spec it booted from (`data_dir` refuses it). It
        // belongs on persistent storage by the boot config (zOS keeps
        // /var/cache/modules).
        let mut paths: Vec<PersistPath> = Vec::new();
        if doc.paths.is_empty() {
            let local_path = if addons.local_path.path.is_empty() {
                defaults::LOCAL_PATH_PATH.parse().ok()
            } else {
                addons.local_path.path.parse().ok()
            };
            let wanted = [
                defaults::RANCHER_ETC.parse().ok(),
                Some(dirs.k3s_data_dir.clone()),
                Some(dirs.kubelet_dir.clone()),
                Some(longhorn.clone()),
                Some(dirs.containerd_root.clone()),
                local_path,
            ];
            for path in wanted.into_iter().flatten() {
                let nested = paths.iter().any(|p: &PersistPath| path.is_within(&p.path));
                if covering(&path).is_some() || nested || holder.mount_point.is_within(&path) {
                    continue;
                }
                let propagation = if rshared_by_default(&path) {
                    Propagation::Rshared
                } else {
                    Propagation::Private
                };
                paths.push(PersistPath { path, propagation });
            }
            return Some(Some(Persist { volume, paths }));
        }

        let mut ok = true;
        let mut seen = HashMap::new();
        for (k, entry) in doc.paths.iter().enumerate() {
            let path_field = format!("{base}.paths[{k}].path");
            let Some(path) = self.data_dir(&path_field, &entry.path, "") else {
                ok = false;
                continue;
            };
            if let Some(first) = first_seen(&mut seen, path.clone(), k) {
                self.fail(&path_field, format!("also paths[{first}]"));
                ok = false;
                continue;
            }
            if let Some(v) = covering(&path) {
                self.fail(
                    &path_field,
                    format!(
                        "already on volume {} (mounted at {})",
                        v.name, v.mount_point
                    ),
                );
                ok = false;
            }
            if holder.mount_point.is_within(&path) {
                self.fail(
                    &path_field,
                    format!(
                        "would hide volume {} at {}, which holds the persisted paths",
                        holder.name, holder.mount_point
                    ),
                );
                ok = false;
            }
            let propagation = if entry.propagation.is_empty() {
                Some(if rshared_by_default(&path) {
                    Propagation::Rshared
                } else {
                    Propagation::Private
                })
            } else {
                self.parse::<Propagation>(
                    &format!("{base}.paths[{k}].propagation"),
                    &entry.propagation,
                )
            };
            match propagation {
                Some(propagation) => paths.push(PersistPath { path, propagation }),
                None => ok = false,
            }
        }
        for (k, entry) in paths.iter().enumerate() {
            if let Some((j, outer)) = paths
                .iter()
                .enumerate()
                .find(|(j, other)| *j != k && entry.path.is_within(&other.path))
            {
                self.fail(
                    format!("{base}.paths[{k}].path"),
                    format!(
                        "lies inside paths[{j}] ({}); persist one or the other",
                        outer.path
                    ),
                );
                ok = false;
            }
        }
        ok.then_some(Some(Persist { volume, paths }))
    }

    fn volume(
        &mut self,
        i: usize,
        doc: &VolumeDoc,
        names: &mut HashMap<Label, usize>,
        mounts: &mut HashMap<AbsPath, usize>,
        devices: &mut HashMap<String, usize>,
    ) -> Option<Volume> {
        let base = format!("storage.volumes[{i}]");
        let mut name = self.parse::<Label>(&format!("{base}.name"), &doc.name);
        if let Some(n) = &name
            && let Some(first) = first_seen(names, n.clone(), i)
        {
            self.fail(
                format!("{base}.name"),
                format!("duplicate volume name, also volumes[{first}]"),
            );
            name = None;
        }
        let format =
            self.parse_or::<FormatPolicy>(&format!("{base}.format"), &doc.format, "if-blank");
        let filesystem =
            self.parse_or::<Filesystem>(&format!("{base}.filesystem"), &doc.filesystem, "btrfs");
        let mut source = self.volume_source(&base, doc, filesystem, format);
        if let Some(VolumeSource::Device(device)) = &source
            && let Some(first) = first_seen(devices, device.to_string(), i)
        {
            self.fail(
                format!("{base}.device"),
                format!("also the device of volumes[{first}]"),
            );
            source = None;
        }
        let mount_point = self.mount_point(&base, &doc.mount_point, mounts, i);
        let mut mount_options = self.mount_options(&base, &doc.mount_options);
        if let (Some(VolumeSource::Pool { .. }), Some(options)) = (&source, &mount_options)
            && let Some(k) = options
                .iter()
                .position(|o| !PER_MOUNT_FLAGS.contains(&o.as_str()))
        {
            self.fail(
                format!("{base}.mount_options[{k}]"),
                format!(
                    "a pool volume shares its pool's filesystem, so only per-mount flags apply ({})",
                    PER_MOUNT_FLAGS.join(", ")
                ),
            );
            mount_options = None;
        }

        let path = format!("{base}.wipe_signature");
        let wipe_signature = if doc.wipe_signature.is_empty() {
            if format == Some(FormatPolicy::Wipe) {
                self.fail(
                    &path,
                    "required with format wipe: `blank` or the filesystem UUID now on the device, \
                     so a stale spec can never wipe a reused disk",
                );
                None
            } else {
                Some(None)
            }
        } else {
            let signature = self.parse::<WipeSignature>(&path, &doc.wipe_signature);
            if signature.is_some() && format.is_some_and(|f| f != FormatPolicy::Wipe) {
                self.fail(&path, "only allowed with format: wipe");
                None
            } else {
                signature.map(Some)
            }
        };
        Some(Volume {
            name: name?,
            source: source?,
            filesystem: filesystem?,
            mount_point: mount_point?,
            mount_options: mount_options?,
            format: format?,
            wipe_signature: wipe_signature?,
        })
    }

    fn volume_source(
        &mut self,
        base: &str,
        doc: &VolumeDoc,
        filesystem: Option<Filesystem>,
        format: Option<FormatPolicy>,
    ) -> Option<VolumeSource> {
        match (&doc.device, &doc.pool) {
            (Some(_), Some(_)) => {
                self.fail(base, "has both device and pool; give exactly one");
                None
            }
            (None, None) => {
                self.fail(base, "needs a device or a pool");
                None
            }
            (Some(device), None) => {
                let path = format!("{base}.device");
                let mut device = self.parse::<AbsPath>(&path, device);
                if let Some(dev) = &device
                    && !(dev.as_str().starts_with("/dev/"))
                {
                    self.fail(&path, "must be a block device under /dev/");
                    device = None;
                }
                if let Some(dev) = &device
                    && let Some(reason) = self.ctx.refused_devices.get(dev.as_str())
                {
                    self.fail(&path, reason);
                    device = None;
                }
                let mut ok = true;
                if !doc.size.is_empty() {
                    self.fail(
                        format!("{base}.size"),
                        "only a pool volume takes a size; a device volume is the whole device",
                    );
                    ok = false;
                }
                if let (Some(fs), Some(supported)) = (filesystem, &self.ctx.kernel_filesystems)
                    && !supported.contains(fs.as_str())
                {
                    let list = supported.iter().cloned().collect::<Vec<_>>().join(", ");
                    self.fail(
                        format!("{base}.filesystem"),
                        format!("the kernel does not support {fs} (it has: {list})"),
                    );
                    ok = false;
                }
                device.filter(|_| ok).map(VolumeSource::Device)
            }
            (None, Some(pool)) => {
                let pool = self.parse::<AbsPath>(&format!("{base}.pool"), pool);
                let path = format!("{base}.size");
                let size = if doc.size.is_empty() {
                    self.fail(&path, "required for a pool volume: its quota, e.g. 50GiB");
                    None
                } else {
                    self.parse::<ByteSize>(&path, &doc.size)
                };
                let size = match size {
                    Some(size) if size.bytes() == 0 => {
                        self.fail(&path, "must be more than zero");
                        None
                    }
                    size => size,
                };
                let mut ok = true;
                if filesystem.is_some_and(|fs| fs != Filesystem::Btrfs) {
                    self.fail(
                        format!("{base}.filesystem"),
                        "a pool volume is a btrfs subvolume; leave filesystem empty or btrfs",
                    );
                    ok = false;
                }
                if format == Some(FormatPolicy::Wipe) {
                    self.fail(
                        format!("{base}.format"),
                        "a pool volume is never formatted; wipe is for devices",
                    );
                    ok = false;
                }
                let (pool, size) = (pool?, size?);
                ok.then_some(VolumeSource::Pool { pool, size })
            }
        }
    }

    fn mount_point(
        &mut self,
        base: &str,
        text: &str,
        mounts: &mut HashMap<AbsPath, usize>,
        i: usize,
    ) -> Option<AbsPath> {
        let path = format!("{base}.mount_point");
        if text.is_empty() {
            self.fail(&path, "required");
            return None;
        }
        let mount_point = self.data_dir(&path, text, "")?;
        if let Some(first) = first_seen(mounts, mount_point.clone(), i) {
            self.fail(&path, format!("also the mount point of volumes[{first}]"));
            return None;
        }
        Some(mount_point)
    }

    fn mount_options(&mut self, base: &str, options: &[String]) -> Option<Vec<String>> {
        let list = format!("{base}.mount_options");
        if !self.list_fits(&list, options.len(), MAX_MOUNT_OPTIONS) {
            return None;
        }
        let mut ok = true;
        for (k, option) in options.iter().enumerate() {
            let path = format!("{list}[{k}]");
            if !self.fits(&path, option) {
                ok = false;
            } else if option.is_empty() {
                self.fail(path, "empty option");
                ok = false;
            } else if option
                .chars()
                .any(|c| c == ',' || c.is_whitespace() || c.is_control())
            {
                self.fail(
                    path,
                    "one option per entry, without commas, whitespace or control characters",
                );
                ok = false;
            }
        }
        ok.then(|| options.to_vec())
    }
}
