//! The pure half of storage: what the host looks like ([`Observed`]) and
//! the changes that take it to the spec ([`plan`]). No I/O here, so every
//! rule is unit-tested.
//!
//! Safety rules the plan enforces:
//! - a device is formatted only when `blkid -p` found nothing on it
//!   (`if-blank`), or when it holds exactly the signature `wipe_signature`
//!   names (`wipe`); a filesystem is mounted as it is only with `never`, or
//!   when tfagent created it (its UUID is in the records);
//! - only mounts tfagent made (recorded) are ever unmounted; a foreign mount
//!   where a volume goes is reported, not replaced;
//! - every refusal comes first in the plan, so a refused plan changes
//!   nothing at all.

use std::{collections::BTreeMap, fmt};

use super::{
    ports::{DeviceNode, MountSource, PathKind, QuotaState, Signature},
    records::{OwnedMount, Records},
};
use crate::host::probe::MountEntry;
use tfagent_spec::{
    AbsPath, ByteSize, Filesystem, FormatPolicy, NodeSpec, Propagation, Volume, VolumeSource,
    WipeSignature,
};

/// A device volume's device as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceState {
    /// The boot config's device rules refuse it (with why).
    NotAllowed(String),
    Missing,
    /// It could not be examined.
    Unreadable(String),
    Present {
        node: DeviceNode,
        /// `None` when not probed: the volume was already mounted.
        signatures: Option<Vec<Signature>>,
    },
}

/// A pool as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolState {
    /// No btrfs filesystem is mounted at its top there.
    NotMounted,
    Mounted {
        /// mountinfo source and root of the pool mount.
        source: String,
        root: String,
        quota_enabled: bool,
    },
}

/// A pool volume's subvolume as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubvolumeState {
    pub kind: PathKind,
    /// `None` when not read (missing subvolume, quotas off).
    pub quota: Option<QuotaState>,
}

/// Everything the plan looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub mounts: Vec<MountEntry>,
    /// By device path as the spec writes it.
    pub devices: BTreeMap<String, DeviceState>,
    /// By pool path.
    pub pools: BTreeMap<String, PoolState>,
    /// By volume name.
    pub subvolumes: BTreeMap<String, SubvolumeState>,
    pub records: Records,
    /// Mount points (volumes' and persisted paths) with a symlink on the
    /// way, each with the symlink: a mount there would land elsewhere.
    pub symlinked: BTreeMap<String, String>,
    /// Recorded mounts not found at their target, by target: where the
    /// target really is, symlinks followed (an older agent's mount through
    /// a symlink landed there).
    pub landed: BTreeMap<String, String>,
}

/// The subvolume of pool volume `name`: `<pool>/tfagent-<name>`.
pub fn subvolume_path(pool: &AbsPath, name: &str) -> String {
    format!("{pool}/tfagent-{name}")
}

/// `root` of a mount joined with a relative path, as mountinfo writes it.
fn join_root(root: &str, relative: &str) -> String {
    format!("{}/{relative}", root.trim_end_matches('/'))
}

/// The mount visible at `target`: the last one mounted there.
pub fn top_mount<'a>(mounts: &'a [MountEntry], target: &str) -> Option<&'a MountEntry> {
    mounts
        .iter()
        .rev()
        .find(|m| m.mount_point.as_os_str() == target)
}

/// Per-mount flags the agent keeps as the spec says; others (`relatime`,
/// the filesystem's own options) are left as the kernel sets them.
pub const MANAGED_FLAGS: [&str; 6] = ["ro", "noatime", "nodiratime", "nosuid", "nodev", "noexec"];

fn managed_flags<'a>(options: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut flags: Vec<String> = options
        .into_iter()
        .filter(|o| MANAGED_FLAGS.contains(&o.as_str()))
        .cloned()
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

fn is(entry: &MountEntry, identity: &OwnedMount) -> bool {
    entry.source == identity.source && entry.root == identity.root
}

/// One host change. Its Display is what plans and events show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing may be done: applying fails here, before any change.
    Refuse {
        subject: String,
        reason: String,
    },
    /// Unmount a mount tfagent made.
    Unmount {
        target: String,
        why: &'static str,
    },
    /// Drop the record of a mount that is gone or was replaced by someone else.
    Forget {
        target: String,
    },
    EnableQuota {
        pool: String,
    },
    /// Create a filesystem; `wipe` first erases `expected`, which must
    /// still be exactly what the device holds.
    Format {
        volume: String,
        device: String,
        filesystem: Filesystem,
        expected: Vec<Signature>,
        wipe: bool,
    },
    CreateSubvolume {
        volume: String,
        path: String,
    },
    SetQuota {
        volume: String,
        path: String,
        size: ByteSize,
        from: Option<u64>,
    },
    Mount {
        /// The volume, or `persist` for a persisted path.
        subject: String,
        source: MountSource,
        target: String,
        options: Vec<String>,
        propagation: Option<Propagation>,
        /// A persisted path: first copy what is at `target` into a new,
        /// empty source directory.
        seed: bool,
        /// How mountinfo will show it, for the ownership record.
        record: OwnedMount,
    },
    SetPropagation {
        target: String,
        propagation: Propagation,
    },
    /// Set the per-mount flags of a mounted volume to those of the spec.
    Remount {
        subject: String,
        target: String,
        flags: Vec<String>,
    },
}

impl Change {
    /// The volume (or `persist`) a change is about, for per-volume errors.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Change::Refuse { subject, .. }
            | Change::Mount { subject, .. }
            | Change::Remount { subject, .. } => Some(subject),
            Change::Format { volume, .. }
            | Change::CreateSubvolume { volume, .. }
            | Change::SetQuota { volume, .. } => Some(volume),
            _ => None,
        }
    }

    /// Whether applying it changes the host.
    pub fn mutates(&self) -> bool {
        !matches!(self, Change::Refuse { .. } | Change::Forget { .. })
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Refuse { subject, reason } => write!(f, "refuse {subject}: {reason}"),
            Change::Unmount { target, why } => write!(f, "unmount {target} ({why})"),
            Change::Forget { target } => {
                write!(f, "forget {target}: no longer the mount tfagent made")
            }
            Change::EnableQuota { pool } => write!(f, "enable quotas on pool {pool}"),
            Change::Format {
                volume,
                device,
                filesystem,
                expected,
                wipe,
            } => {
                if *wipe {
                    let what: Vec<String> = expected.iter().map(ToString::to_string).collect();
                    write!(
                        f,
                        "wipe {} on {device} and format it {filesystem} for volume {volume}",
                        what.join(", ")
                    )
                } else {
                    write!(f, "format blank {device} {filesystem} for volume {volume}")
                }
            }
            Change::CreateSubvolume { volume, path } => {
                write!(f, "create subvolume {path} for volume {volume}")
            }
            Change::SetQuota {
                path, size, from, ..
            } => match from {
                Some(from) => write!(
                    f,
                    "change quota of {path} from {} to {size}",
                    ByteSize::from_bytes(*from)
                ),
                None => write!(f, "set quota of {path} to {size}"),
            },
            Change::Mount {
                source,
                target,
                options,
                propagation,
                ..
            } => {
                match source {
                    MountSource::Device { device, filesystem } => {
                        write!(f, "mount {device} ({filesystem}) at {target}")?;
                    }
                    MountSource::Bind { dir } => write!(f, "bind-mount {dir} at {target}")?,
                }
                if !options.is_empty() {
                    write!(f, " with {}", options.join(","))?;
                }
                if let Some(propagation) = propagation {
                    write!(f, ", {propagation}")?;
                }
                Ok(())
            }
            Change::SetPropagation {
                target,
                propagation,
            } => write!(f, "make {target} {propagation}"),
            Change::Remount { target, flags, .. } if flags.is_empty() => {
                write!(f, "remount {target} with the default flags")
            }
            Change::Remount { target, flags, .. } => {
                write!(f, "remount {target} with {}", flags.join(","))
            }
        }
    }
}

/// What may be done with a device volume's device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceVerdict {
    /// Mount the filesystem it holds.
    Mount,
    /// Create the filesystem (erasing the expected signature first when
    /// `wipe`).
    Format {
        wipe: bool,
    },
    Refuse(String),
}

fn describe(signatures: &[Signature]) -> String {
    signatures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The format policy applied to what the device holds. `ours` is the UUID
/// of the filesystem tfagent created for this volume, if it did.
pub fn device_verdict(
    volume: &Volume,
    device: &str,
    signatures: &[Signature],
    ours: Option<&str>,
) -> DeviceVerdict {
    let fs = volume.filesystem;
    let expected = volume.wipe_signature.as_ref();
    if signatures.is_empty() {
        return match (volume.format, expected) {
            (FormatPolicy::Never, _) => DeviceVerdict::Refuse(format!(
                "{device} is blank and format is never; set format: if-blank to let tfagent create a {fs} filesystem"
            )),
            (FormatPolicy::IfBlank, _)
            | (FormatPolicy::Wipe, Some(WipeSignature::Blank) | None) => {
                DeviceVerdict::Format { wipe: false }
            }
            (FormatPolicy::Wipe, Some(WipeSignature::Uuid(uuid))) => {
                DeviceVerdict::Refuse(format!(
                    "{device} is blank, not the filesystem {uuid} that wipe_signature names; the spec is stale"
                ))
            }
        };
    }
    if let [only] = signatures
        && only.is_filesystem()
        && only.kind == fs.as_str()
    {
        let created_by_us = ours.is_some() && only.uuid.as_deref() == ours;
        if volume.format == FormatPolicy::Never || created_by_us {
            return DeviceVerdict::Mount;
        }
    }
    let found = describe(signatures);
    if volume.format == FormatPolicy::Wipe {
        return match expected {
            // Exactly what the spec names, and nothing else: wiping erases
            // every signature, so one it does not name is refused.
            Some(WipeSignature::Uuid(uuid))
                if signatures.len() == 1 && signatures[0].uuid.as_deref() == Some(uuid) =>
            {
                DeviceVerdict::Format { wipe: true }
            }
            Some(WipeSignature::Uuid(uuid))
                if signatures.iter().any(|s| s.uuid.as_deref() == Some(uuid)) =>
            {
                DeviceVerdict::Refuse(format!(
                    "{device} holds {found}: more than the {uuid} that wipe_signature names; \
                     wiping would destroy them all, so it is refused"
                ))
            }
            Some(expected) => DeviceVerdict::Refuse(format!(
                "{device} holds {found}, not {expected} that wipe_signature names; \
                 refused so a stale spec never wipes a disk that was reused"
            )),
            None => DeviceVerdict::Refuse(format!(
                "{device} holds {found} and wipe_signature is empty"
            )),
        };
    }
    if volume.format == FormatPolicy::Never {
        return DeviceVerdict::Refuse(format!(
            "{device} holds {found}, not a {fs} filesystem; format is never, so it is left as it is"
        ));
    }
    let uuid = signatures
        .iter()
        .find_map(|s| s.uuid.clone())
        .unwrap_or_else(|| "<its UUID>".to_owned());
    DeviceVerdict::Refuse(format!(
        "{device} holds {found}; format if-blank formats only blank devices and tfagent did not \
         create this one. Set format: never to mount a {fs} filesystem as it is, or format: wipe \
         with wipe_signature: {uuid} to destroy it"
    ))
}

/// A mount the spec wants, before ordering.
struct Wanted {
    /// 0: volumes not under a persisted path; 1: persisted paths; 2: volumes
    /// under a persisted path (they go on top of the bind mount).
    phase: u8,
    change: Change,
}

fn depth(path: &str) -> usize {
    path.split('/').filter(|c| !c.is_empty()).count()
}

/// The changes that take `observed` to `spec`, refusals first, then
/// unmounts (deepest first), then preparation, then mounts (outermost first).
pub fn plan(spec: &NodeSpec, observed: &Observed) -> Vec<Change> {
    let mut refusals = Vec::new();
    let mut prepare = Vec::new();
    let mut wanted: Vec<Wanted> = Vec::new();
    let mut unmounts: Vec<Change> = Vec::new();
    let mut forgets = Vec::new();
    // Where each volume's filesystem is, as mountinfo shows it.
    let mut identities: BTreeMap<String, OwnedMount> = BTreeMap::new();
    let persist_paths: Vec<&AbsPath> = spec
        .storage
        .persist
        .iter()
        .flat_map(|p| p.paths.iter().map(|p| &p.path))
        .collect();
    let records = &observed.records;

    // Checks the mount point of something the spec wants mounted with
    // `identity`; returns whether it must still be mounted.
    let check_target = |subject: &str,
                        target: &str,
                        identity: &OwnedMount,
                        refusals: &mut Vec<Change>,
                        unmounts: &mut Vec<Change>|
     -> bool {
        if let Some(link) = observed.symlinked.get(target) {
            refusals.push(Change::Refuse {
                subject: subject.to_owned(),
                reason: format!(
                    "{link} is a symlink: a mount at {target} would land on its target; \
                     tfagent mounts only on real directories"
                ),
            });
            return false;
        }
        match top_mount(&observed.mounts, target) {
            Some(entry) if is(entry, identity) => false,
            Some(entry) => match records.owned(target) {
                Some(owned) if is(entry, owned) => {
                    unmounts.push(Change::Unmount {
                        target: target.to_owned(),
                        why: "replaced by what the spec now asks",
                    });
                    true
                }
                _ => {
                    refusals.push(Change::Refuse {
                        subject: subject.to_owned(),
                        reason: format!(
                            "{target} already has {} ({}) mounted, which tfagent did not mount; \
                             it never unmounts a foreign mount",
                            entry.source, entry.fs_type
                        ),
                    });
                    false
                }
            },
            None => true,
        }
    };

    let mut quota_pools = Vec::new();
    for volume in &spec.storage.volumes {
        let name = volume.name.to_string();
        let subject = format!("volume {name}");
        let target = volume.mount_point.to_string();
        let phase = if persist_paths
            .iter()
            .any(|p| volume.mount_point.is_within(p) && volume.mount_point != **p)
        {
            2
        } else {
            0
        };
        match &volume.source {
            VolumeSource::Device(device) => {
                let device = device.to_string();
                let (node, signatures) = match observed.devices.get(&device) {
                    Some(DeviceState::Present { node, signatures }) => (node, signatures),
                    Some(DeviceState::NotAllowed(reason)) => {
                        refusals.push(Change::Refuse {
                            subject,
                            reason: reason.clone(),
                        });
                        continue;
                    }
                    Some(DeviceState::Unreadable(error)) => {
                        refusals.push(Change::Refuse {
                            subject,
                            reason: format!("cannot examine {device}: {error}"),
                        });
                        continue;
                    }
                    Some(DeviceState::Missing) | None => {
                        refusals.push(Change::Refuse {
                            subject,
                            reason: format!("{device} does not exist"),
                        });
                        continue;
                    }
                };
                let identity = OwnedMount {
                    target: target.clone(),
                    source: node.path.clone(),
                    root: "/".to_owned(),
                };
                identities.insert(name.clone(), identity.clone());
                if !check_target(&subject, &target, &identity, &mut refusals, &mut unmounts) {
                    continue;
                }
                let Some(signatures) = signatures else {
                    refusals.push(Change::Refuse {
                        subject,
                        reason: format!("{device} was not probed"),
                    });
                    continue;
                };
                match device_verdict(volume, &device, signatures, records.formatted(&name)) {
                    DeviceVerdict::Refuse(reason) => {
                        refusals.push(Change::Refuse { subject, reason });
                        continue;
                    }
                    DeviceVerdict::Format { wipe } => prepare.push(Change::Format {
                        volume: name.clone(),
                        device: node.path.clone(),
                        filesystem: volume.filesystem,
                        expected: signatures.clone(),
                        wipe,
                    }),
                    DeviceVerdict::Mount => {}
                }
                wanted.push(Wanted {
                    phase,
                    change: Change::Mount {
                        subject,
                        source: MountSource::Device {
                            device: node.path.clone(),
                            filesystem: volume.filesystem,
                        },
                        target,
                        options: volume.mount_options.clone(),
                        propagation: None,
                        seed: false,
                        record: identity,
                    },
                });
            }
            VolumeSource::Pool { pool, size } => {
                let Some(PoolState::Mounted {
                    source,
                    root,
                    quota_enabled,
                }) = observed.pools.get(pool.as_str())
                else {
                    refusals.push(Change::Refuse {
                        subject,
                        reason: format!("no btrfs pool is mounted at {pool}"),
                    });
                    continue;
                };
                let subvolume = subvolume_path(pool, &name);
                let identity = OwnedMount {
                    target: target.clone(),
                    source: source.clone(),
                    root: join_root(root, &format!("tfagent-{name}")),
                };
                identities.insert(name.clone(), identity.clone());
                let state = observed.subvolumes.get(&name);
                if state.is_some_and(|s| s.kind == PathKind::Other) {
                    refusals.push(Change::Refuse {
                        subject,
                        reason: format!("{subvolume} exists and is not a btrfs subvolume"),
                    });
                    continue;
                }
                if !quota_enabled && !quota_pools.contains(&pool.to_string()) {
                    quota_pools.push(pool.to_string());
                    prepare.push(Change::EnableQuota {
                        pool: pool.to_string(),
                    });
                }
                let exists = state.is_some_and(|s| s.kind == PathKind::Subvolume);
                if !exists {
                    prepare.push(Change::CreateSubvolume {
                        volume: name.clone(),
                        path: subvolume.clone(),
                    });
                }
                let limit = match state.and_then(|s| s.quota) {
                    Some(QuotaState::Enabled { limit, .. }) if exists => limit,
                    _ => None,
                };
                if limit != Some(size.bytes()) {
                    prepare.push(Change::SetQuota {
                        volume: name.clone(),
                        path: subvolume.clone(),
                        size: *size,
                        from: limit,
                    });
                }
                if check_target(&subject, &target, &identity, &mut refusals, &mut unmounts) {
                    wanted.push(Wanted {
                        phase,
                        change: Change::Mount {
                            subject,
                            source: MountSource::Bind { dir: subvolume },
                            target,
                            options: volume.mount_options.clone(),
                            propagation: None,
                            seed: false,
                            record: identity,
                        },
                    });
                }
            }
        }
    }

    // Mounted volumes whose per-mount flags differ from the spec.
    for volume in &spec.storage.volumes {
        let target = volume.mount_point.as_str();
        let Some(identity) = identities.get(volume.name.as_str()) else {
            continue;
        };
        let Some(entry) = top_mount(&observed.mounts, target).filter(|e| is(e, identity)) else {
            continue;
        };
        let wanted = managed_flags(&volume.mount_options);
        if managed_flags(&entry.options) != wanted {
            prepare.push(Change::Remount {
                subject: format!("volume {}", volume.name),
                target: target.to_owned(),
                flags: wanted,
            });
        }
    }

    if let Some(persist) = &spec.storage.persist
        && let Some(holder) = spec
            .storage
            .volumes
            .iter()
            .find(|v| v.name == persist.volume)
        && let Some(holder_identity) = identities.get(holder.name.as_str())
    {
        for path in &persist.paths {
            let target = path.path.to_string();
            let identity = OwnedMount {
                target: target.clone(),
                source: holder_identity.source.clone(),
                root: join_root(&holder_identity.root, &path.subdir()),
            };
            let mounted = top_mount(&observed.mounts, &target).filter(|e| is(e, &identity));
            if let Some(entry) = mounted {
                let shared = entry.is_shared();
                let wrong = match path.propagation {
                    Propagation::Rshared => !shared,
                    Propagation::Private => shared || !entry.propagation.is_empty(),
                };
                if wrong {
                    prepare.push(Change::SetPropagation {
                        target,
                        propagation: path.propagation,
                    });
                }
                continue;
            }
            if check_target("persist", &target, &identity, &mut refusals, &mut unmounts) {
                wanted.push(Wanted {
                    phase: 1,
                    change: Change::Mount {
                        subject: "persist".to_owned(),
                        source: MountSource::Bind {
                            dir: format!("{}/{}", holder.mount_point, path.subdir()),
                        },
                        target,
                        options: Vec::new(),
                        propagation: Some(path.propagation),
                        seed: true,
                        record: identity,
                    },
                });
            }
        }
    }

    // Mounts tfagent made that the spec no longer wants.
    let desired_targets: Vec<String> = spec
        .storage
        .volumes
        .iter()
        .map(|v| v.mount_point.to_string())
        .chain(persist_paths.iter().map(ToString::to_string))
        .collect();
    for owned in &records.mounts {
        let still_ours = top_mount(&observed.mounts, &owned.target).is_some_and(|e| is(e, owned));
        if !still_ours {
            // Mounted through a symlink (by an older agent): it is taken
            // back where it landed, unless the spec wants it there.
            if let Some(real) = observed.landed.get(&owned.target)
                && top_mount(&observed.mounts, real).is_some_and(|e| is(e, owned))
                && !desired_targets.contains(real)
            {
                unmounts.push(Change::Unmount {
                    target: real.clone(),
                    why: "mounted through a symlink, where it landed",
                });
            }
            forgets.push(Change::Forget {
                target: owned.target.clone(),
            });
        } else if !desired_targets.contains(&owned.target) {
            unmounts.push(Change::Unmount {
                target: owned.target.clone(),
                why: "no longer in the spec",
            });
        }
    }

    unmounts.sort_by_key(|c| match c {
        Change::Unmount { target, .. } => std::cmp::Reverse(depth(target)),
        _ => std::cmp::Reverse(0),
    });
    wanted.sort_by_key(|w| {
        let target = match &w.change {
            Change::Mount { target, .. } => depth(target),
            _ => 0,
        };
        (w.phase, target)
    });
    refusals
        .into_iter()
        .chain(unmounts)
        .chain(forgets)
        .chain(prepare)
        .chain(wanted.into_iter().map(|w| w.change))
        .collect()
}

#[cfg(test)]
mod tests;
