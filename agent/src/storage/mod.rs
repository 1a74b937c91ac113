//! Storage: formats (only when safe) and mounts the reserved disks that k3s,
//! containerd, local-path and Longhorn keep their data on, and bind-mounts
//! the persisted paths from a volume.
//!
//! observe (mountinfo, `blkid -p`, btrfs, the ownership records) → pure
//! [`plan`] → apply through [`StorageOps`]. See `plan.rs` for the safety
//! rules.

pub mod devices;
pub mod linux;
pub mod plan;
pub mod ports;
pub mod records;

#[cfg(test)]
pub(crate) mod fake;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use tracing::{info, warn};

pub use devices::{DevicePolicy, DiskInfo};
pub use plan::{Change, Observed};
pub use ports::{OpsError, StorageOps};

use self::{
    plan::{DeviceState, PoolState, SubvolumeState, subvolume_path, top_mount},
    ports::{MountSource, PathKind, QuotaState},
    records::{Records, RecordsError},
};
use crate::{
    host::probe::parse_mountinfo,
    step::{Capability, StepError, StepName},
};
use tfagent_spec::{AbsPath, NodeSpec, SpecDocument, VolumeSource, limits};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Ops(#[from] OpsError),
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// A refused change: the reason is the whole message.
    #[error("{0}")]
    Refused(String),
    #[error("{device} changed since it was examined (now: {now}); not formatting it")]
    DeviceChanged { device: String, now: String },
    #[error("{device} shows no UUID after mkfs")]
    NoUuid { device: String },
    #[error("internal error: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The storage step, and the storage views the API serves (volume status,
/// disks, device admission). Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ops: Arc<dyn StorageOps>,
    /// Where the ownership records live.
    state_dir: PathBuf,
    policy: DevicePolicy,
    /// The last error of each volume (or `persist`), until a pass succeeds.
    errors: Mutex<BTreeMap<String, String>>,
}

/// One volume as `GetStatus` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeStatus {
    pub name: String,
    pub source: String,
    pub filesystem: String,
    pub uuid: Option<String>,
    pub mount_point: String,
    /// For a pool volume with a quota: the quota, its use and what is left;
    /// otherwise statvfs of the mounted filesystem.
    pub size_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub quota_bytes: Option<u64>,
    pub state: VolumeState,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VolumeState {
    Mounted,
    /// Not mounted yet; the next pass will.
    #[default]
    Pending,
    /// The plan refuses it (see `last_error`).
    Refused,
    /// The last pass failed on it.
    Failed,
}

impl VolumeState {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeState::Mounted => "mounted",
            VolumeState::Pending => "pending",
            VolumeState::Refused => "refused",
            VolumeState::Failed => "failed",
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Storage {
    pub fn new(ops: Arc<dyn StorageOps>, state_dir: &Path, policy: DevicePolicy) -> Self {
        Self {
            inner: Arc::new(Inner {
                ops,
                state_dir: state_dir.to_owned(),
                policy,
                errors: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// The step on the running host.
    pub fn linux(state_dir: &Path, allowed_devices: Option<Vec<String>>) -> Self {
        Self::new(
            Arc::new(linux::LinuxStorage::new()),
            state_dir,
            DevicePolicy::new(allowed_devices, state_dir),
        )
    }

    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// Devices a document names that volumes may not use, each with why
    /// (for validation).
    pub async fn refused_devices(
        &self,
        document: &SpecDocument,
    ) -> Result<BTreeMap<String, String>, StorageError> {
        let devices: Vec<String> = document
            .storage
            .volumes
            .iter()
            .filter_map(|v| v.device.clone())
            .collect();
        if devices.is_empty() {
            return Ok(BTreeMap::new());
        }
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mounts = parse_mountinfo(&inner.ops.mountinfo()?);
            Ok(devices
                .into_iter()
                .filter_map(|device| {
                    let reason = inner.policy.refusal(&*inner.ops, &mounts, &device)?;
                    Some((device, reason))
                })
                .collect())
        })
        .await?
    }

    /// Mount points and persisted paths a document names that pass
    /// through a symlink on this host, each with the symlink (for
    /// validation). Only canonical absolute paths are looked up, and only
    /// while the lists are within their limits: validation refuses the rest.
    pub async fn symlinked_paths(
        &self,
        document: &SpecDocument,
    ) -> Result<BTreeMap<String, String>, StorageError> {
        let storage = &document.storage;
        if storage.volumes.len() > limits::MAX_VOLUMES
            || storage.persist.paths.len() > limits::MAX_PERSIST_PATHS
        {
            return Ok(BTreeMap::new());
        }
        let paths: Vec<AbsPath> = storage
            .volumes
            .iter()
            .map(|v| &v.mount_point)
            .chain(storage.persist.paths.iter().map(|p| &p.path))
            .filter_map(|text| text.parse().ok())
            .collect();
        if paths.is_empty() {
            return Ok(BTreeMap::new());
        }
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut found = BTreeMap::new();
            for path in paths {
                if let Some(link) = inner.ops.symlink_in(path.as_path())? {
                    found.insert(path.to_string(), link.display().to_string());
                }
            }
            Ok(found)
        })
        .await?
    }

    /// Block devices with their signatures and admission.
    pub async fn disks(&self) -> Result<Vec<DiskInfo>, StorageError> {
        let inner = Arc::clone(&self.inner);
        Ok(
            tokio::task::spawn_blocking(move || devices::list_disks(&*inner.ops, &inner.policy))
                .await??,
        )
    }

    /// Each volume of `spec` as the host has it now.
    pub async fn volume_status(&self, spec: &NodeSpec) -> Result<Vec<VolumeStatus>, StorageError> {
        let inner = Arc::clone(&self.inner);
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || inner.volume_status(&spec)).await?
    }
}

impl Inner {
    /// Reads what the plan needs; never changes anything.
    fn observe(&self, spec: &NodeSpec) -> Result<Observed, StorageError> {
        let ops = &*self.ops;
        let mounts = parse_mountinfo(&ops.mountinfo()?);
        let records = Records::load(&self.state_dir)?;
        let mut observed = Observed {
            records,
            ..Observed::default()
        };
        // Pools whose quota state is known from one of their subvolumes.
        let mut pool_quota: BTreeMap<String, bool> = BTreeMap::new();
        for volume in &spec.storage.volumes {
            let target = volume.mount_point.as_str();
            match &volume.source {
                VolumeSource::Device(device) => {
                    let device = device.to_string();
                    if let Some(reason) = self.policy.refusal(ops, &mounts, &device) {
                        observed
                            .devices
                            .insert(device, DeviceState::NotAllowed(reason));
                        continue;
                    }
                    let state = match ops.resolve_device(Path::new(&device)) {
                        Ok(None) => DeviceState::Missing,
                        Err(error) => DeviceState::Unreadable(error.to_string()),
                        Ok(Some(node)) => {
                            // A volume already mounted is not probed again.
                            let mounted = top_mount(&mounts, target)
                                .is_some_and(|m| m.source == node.path && m.root == "/");
                            if mounted {
                                DeviceState::Present {
                                    node,
                                    signatures: None,
                                }
                            } else {
                                match ops.signatures(&node.path) {
                                    Ok(signatures) => DeviceState::Present {
                                        node,
                                        signatures: Some(signatures),
                                    },
                                    Err(error) => DeviceState::Unreadable(error.to_string()),
                                }
                            }
                        }
                    };
                    observed.devices.insert(device, state);
                }
                VolumeSource::Pool { pool, .. } => {
                    let pool_mount = top_mount(&mounts, pool.as_str())
                        .filter(|m| m.fs_type == "btrfs")
                        .cloned();
                    let Some(pool_mount) = pool_mount else {
                        observed
                            .pools
                            .insert(pool.to_string(), PoolState::NotMounted);
                        continue;
                    };
                    let path = subvolume_path(pool, volume.name.as_str());
                    let kind = ops.path_kind(Path::new(&path))?;
                    let quota = if kind == PathKind::Subvolume {
                        let quota = ops.quota(Path::new(&path))?;
                        pool_quota.insert(pool.to_string(), quota != QuotaState::Disabled);
                        Some(quota)
                    } else {
                        None
                    };
                    observed
                        .subvolumes
                        .insert(volume.name.to_string(), SubvolumeState { kind, quota });
                    observed.pools.insert(
                        pool.to_string(),
                        PoolState::Mounted {
                            source: pool_mount.source,
                            root: pool_mount.root,
                            quota_enabled: false,
                        },
                    );
                }
            }
        }
        let persisted = spec.storage.persist.iter().flat_map(|p| &p.paths);
        for target in spec
            .storage
            .volumes
            .iter()
            .map(|v| &v.mount_point)
            .chain(persisted.map(|p| &p.path))
        {
            if let Some(link) = ops.symlink_in(target.as_path())? {
                observed
                    .symlinked
                    .insert(target.to_string(), link.display().to_string());
            }
        }
        for owned in &observed.records.mounts {
            if top_mount(&mounts, &owned.target)
                .is_some_and(|m| m.source == owned.source && m.root == owned.root)
            {
                continue;
            }
            if let Some(real) = ops.resolve_symlinks(Path::new(&owned.target))
                && real != Path::new(&owned.target)
            {
                observed
                    .landed
                    .insert(owned.target.clone(), real.display().to_string());
            }
        }
        for (pool, state) in &mut observed.pools {
            if let PoolState::Mounted { quota_enabled, .. } = state {
                *quota_enabled = match pool_quota.get(pool) {
                    Some(known) => *known,
                    None => ops.quota(Path::new(pool))? != QuotaState::Disabled,
                };
            }
        }
        observed.mounts = mounts;
        Ok(observed)
    }

    /// Makes the changes in order; stops at the first failure.
    fn apply(&self, changes: &[Change]) -> Result<(), StepError> {
        let mut records = Records::load(&self.state_dir).map_err(|e| StepError::Observe {
            what: "the storage records".into(),
            source: Box::new(e),
        })?;
        for change in changes {
            if let Err(error) = self.apply_one(change, &mut records) {
                let message = error.to_string();
                if let Some(subject) = change.subject() {
                    lock(&self.errors).insert(subject.to_owned(), message.clone());
                }
                return Err(match change {
                    Change::Refuse { subject, .. } => StepError::Apply {
                        change: subject.clone(),
                        source: Box::new(error),
                    },
                    _ => StepError::Apply {
                        change: change.to_string(),
                        source: Box::new(error),
                    },
                });
            }
            if change.mutates() {
                info!(change = %change, "storage changed");
            }
        }
        lock(&self.errors).clear();
        Ok(())
    }

    fn apply_one(&self, change: &Change, records: &mut Records) -> Result<(), StorageError> {
        let ops = &*self.ops;
        let save = |records: &Records| records.save(&self.state_dir);
        match change {
            Change::Refuse { reason, .. } => return Err(StorageError::Refused(reason.clone())),
            Change::Unmount { target, .. } => {
                ops.unmount(Path::new(target))?;
                records.forget_mount(target);
                save(records)?;
            }
            Change::Forget { target } => {
                records.forget_mount(target);
                save(records)?;
            }
            Change::EnableQuota { pool } => ops.enable_quota(Path::new(pool))?,
            Change::Format {
                volume,
                device,
                filesystem,
                expected,
                wipe,
            } => {
                // The last look before anything is destroyed: the device
                // must still hold exactly what the plan was made from.
                let now = ops.signatures(device)?;
                if &now != expected {
                    let now: Vec<String> = now.iter().map(ToString::to_string).collect();
                    return Err(StorageError::DeviceChanged {
                        device: device.clone(),
                        now: if now.is_empty() {
                            "blank".into()
                        } else {
                            now.join(", ")
                        },
                    });
                }
                // Recorded before mkfs runs: killed in between, the agent
                // still finds the new filesystem its own, not a stranger's.
                let uuid = ops.new_uuid()?;
                records.record_formatted(volume, uuid.clone());
                save(records)?;
                if *wipe {
                    warn!(device = %device, volume = %volume, "wiping the signature the spec names");
                    ops.wipe(device)?;
                }
                let label: String = volume.chars().take(12).collect();
                ops.format(device, *filesystem, &label, &uuid)?;
                let made = ops
                    .signatures(device)?
                    .into_iter()
                    .find_map(|s| s.uuid)
                    .ok_or_else(|| StorageError::NoUuid {
                        device: device.clone(),
                    })?;
                if made != uuid {
                    records.record_formatted(volume, made);
                    save(records)?;
                }
            }
            Change::CreateSubvolume { path, .. } => ops.create_subvolume(Path::new(path))?,
            Change::SetQuota { path, size, .. } => ops.set_quota(Path::new(path), size.bytes())?,
            Change::Mount {
                source,
                target,
                options,
                propagation,
                seed,
                record,
                ..
            } => {
                let target_path = Path::new(target);
                // Made (or found) without a symlink on the way before
                // anything is read from it or copied out of it.
                ops.make_dir(target_path)?;
                if let (MountSource::Bind { dir }, true) = (source, seed) {
                    let dir = Path::new(dir);
                    let fresh = !ops.has_entries(dir)?;
                    ops.make_dir(dir)?;
                    // What is already at the path (e.g. the agent's state)
                    // moves onto the volume with it.
                    if fresh && ops.has_entries(target_path)? {
                        ops.copy_contents(target_path, dir)?;
                    }
                }
                ops.mount(source, target_path, options)?;
                records.record_mount(record.clone());
                save(records)?;
                if let Some(propagation) = propagation {
                    ops.set_propagation(target_path, *propagation)?;
                }
            }
            Change::SetPropagation {
                target,
                propagation,
            } => ops.set_propagation(Path::new(target), *propagation)?,
            Change::Remount { target, flags, .. } => ops.remount(Path::new(target), flags)?,
        }
        Ok(())
    }

    fn volume_status(&self, spec: &NodeSpec) -> Result<Vec<VolumeStatus>, StorageError> {
        let observed = self.observe(spec)?;
        let changes = plan::plan(spec, &observed);
        let errors = lock(&self.errors).clone();
        let mut statuses = Vec::new();
        for volume in &spec.storage.volumes {
            let name = volume.name.to_string();
            let subject = format!("volume {name}");
            let target = volume.mount_point.as_str();
            let mut status = VolumeStatus {
                name: name.clone(),
                filesystem: volume.filesystem.to_string(),
                mount_point: target.to_owned(),
                ..VolumeStatus::default()
            };
            let mut mounted = false;
            match &volume.source {
                VolumeSource::Device(device) => {
                    status.source = device.to_string();
                    if let Some(DeviceState::Present { node, signatures }) =
                        observed.devices.get(device.as_str())
                    {
                        mounted = top_mount(&observed.mounts, target)
                            .is_some_and(|m| m.source == node.path && m.root == "/");
                        // A mounted device was not probed by observe.
                        let probed = match signatures {
                            Some(signatures) => signatures.clone(),
                            None => self.ops.signatures(&node.path).unwrap_or_default(),
                        };
                        status.uuid = probed.into_iter().find_map(|s| s.uuid);
                    }
                }
                VolumeSource::Pool { pool, .. } => {
                    status.source = subvolume_path(pool, &name);
                    if let Some(PoolState::Mounted { source, root, .. }) =
                        observed.pools.get(pool.as_str())
                    {
                        // The pool's filesystem.
                        status.uuid = self
                            .ops
                            .signatures(source)
                            .unwrap_or_default()
                            .into_iter()
                            .find_map(|s| s.uuid);
                        let expected_root =
                            format!("{}/tfagent-{name}", root.trim_end_matches('/'));
                        mounted = top_mount(&observed.mounts, target)
                            .is_some_and(|m| &m.source == source && m.root == expected_root);
                    }
                    if let Some(SubvolumeState {
                        quota: Some(QuotaState::Enabled { limit, used }),
                        ..
                    }) = observed.subvolumes.get(&name)
                    {
                        status.quota_bytes = *limit;
                        if let Some(limit) = limit {
                            status.size_bytes = *limit;
                            status.used_bytes = *used;
                            status.free_bytes = limit.saturating_sub(*used);
                        }
                    }
                }
            }
            if mounted {
                status.state = VolumeState::Mounted;
                if status.quota_bytes.is_none()
                    && let Ok(usage) = self.ops.usage(Path::new(target))
                {
                    status.size_bytes = usage.size;
                    status.used_bytes = usage.used;
                    status.free_bytes = usage.free;
                }
            }
            let refusal = changes.iter().find_map(|c| match c {
                Change::Refuse { subject: s, reason } if *s == subject => Some(reason.clone()),
                _ => None,
            });
            if let Some(reason) = refusal {
                status.state = VolumeState::Refused;
                status.last_error = Some(reason);
            } else if let Some(error) = errors.get(&subject) {
                if !mounted {
                    status.state = VolumeState::Failed;
                }
                status.last_error = Some(error.clone());
            }
            statuses.push(status);
        }
        Ok(statuses)
    }
}

fn observe_error(error: StorageError) -> StepError {
    StepError::Observe {
        what: "storage".into(),
        source: Box::new(error),
    }
}

#[async_trait]
impl Capability for Storage {
    type Observed = Observed;
    type Change = Change;

    fn step(&self) -> StepName {
        StepName::Storage
    }

    async fn observe(&self, desired: &NodeSpec) -> Result<Observed, StepError> {
        let inner = Arc::clone(&self.inner);
        let spec = desired.clone();
        tokio::task::spawn_blocking(move || inner.observe(&spec))
            .await
            .map_err(|e| observe_error(e.into()))?
            .map_err(observe_error)
    }

    fn plan(desired: &NodeSpec, observed: &Observed) -> Vec<Change> {
        plan::plan(desired, observed)
    }

    async fn apply(&self, _desired: &NodeSpec, changes: &[Change]) -> Result<(), StepError> {
        let inner = Arc::clone(&self.inner);
        let changes = changes.to_vec();
        tokio::task::spawn_blocking(move || inner.apply(&changes))
            .await
            .map_err(|e| StepError::Apply {
                change: "storage".into(),
                source: Box::new(StorageError::from(e)),
            })?
    }

    /// Unmounts what tfagent mounted, deepest first: the plan of a spec
    /// without volumes, of which only unmounts and forgets are kept, so
    /// nothing is ever formatted, wiped or deleted.
    async fn teardown(&self, last: &NodeSpec) -> Result<Vec<String>, StepError> {
        let mut bare = last.clone();
        bare.storage = tfagent_spec::Storage::default();
        let observed = Capability::observe(self, &bare).await?;
        let changes: Vec<Change> = plan::plan(&bare, &observed)
            .into_iter()
            .filter(|c| matches!(c, Change::Unmount { .. } | Change::Forget { .. }))
            .collect();
        Capability::apply(self, &bare, &changes).await?;
        Ok(changes.iter().map(ToString::to_string).collect())
    }
}

#[cfg(test)]
mod tests;
