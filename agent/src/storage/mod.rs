//! Storage: formats (only when safe) and mounts the reserved disks that k3s,
//! containerd, local-path and Longhorn keep their data on.
//!
//! Not implemented in this build: the step plans what the spec asks for and
//! reports itself as not implemented, changing nothing.

use std::convert::Infallible;

use async_trait::async_trait;

use crate::{
    reconcile::{Capability, Plan, StepError, StepName},
    spec::{NodeSpec, Storage, VolumeSource},
};

/// What this step would manage for `desired`.
pub fn plan(desired: &Storage) -> Plan<Infallible> {
    let wants = desired
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
        .collect();
    Plan::NotImplemented { wants }
}

#[derive(Debug, Default)]
pub struct StorageStep;

#[async_trait]
impl Capability for StorageStep {
    type Observed = ();
    type Change = Infallible;

    fn step(&self) -> StepName {
        StepName::Storage
    }

    async fn observe(&self, _desired: &NodeSpec) -> Result<(), StepError> {
        Ok(())
    }

    fn plan(desired: &NodeSpec, _observed: &()) -> Plan<Infallible> {
        plan(&desired.storage)
    }

    async fn apply(&self, _desired: &NodeSpec, changes: &[Infallible]) -> Result<(), StepError> {
        // A not-implemented plan has no changes to make.
        match changes.first() {
            None => Ok(()),
            Some(&never) => match never {},
        }
    }
}
