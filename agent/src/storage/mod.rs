//! Storage: formats (only when safe) and mounts the reserved disks that k3s,
//! containerd, local-path and Longhorn keep their data on.
//!
//! Not implemented in this build: the step reports what the spec asks of it
//! and that it cannot carry it out, and changes nothing.

use crate::{
    reconcile::{StepName, Unimplemented},
    spec::{NodeSpec, Storage, VolumeSource},
};

/// What the spec asks of this step, one line each (empty: nothing).
pub fn wants(desired: &Storage) -> Vec<String> {
    desired
        .volumes
        .iter()
        .map(|volume| match &volume.source {
            VolumeSource::Device(device) => {
                format!(
                    "volume {}: {device} mounted at {}",
                    volume.name, volume.mount_point
                )
            }
            VolumeSource::Pool { pool, size } => format!(
                "volume {}: {size} subvolume of pool {pool} mounted at {}",
                volume.name, volume.mount_point
            ),
        })
        .collect()
}

/// The storage step of this build.
pub fn step() -> Unimplemented {
    Unimplemented::new(StepName::Storage, |desired: &NodeSpec| {
        wants(&desired.storage)
    })
}
