//! Storage: formats (only when safe) and mounts the reserved disks that k3s,
//! containerd, local-path and Longhorn keep their data on.
//!
//! Not implemented in this build: the step plans what the spec asks for and
//! reports itself as not implemented, changing nothing.

use async_trait::async_trait;

use crate::{
    reconcile::{Step, StepError, StepName, StepPlan},
    spec::{NodeSpec, Storage, VolumeSource},
};

/// What this step would manage for `desired`.
pub fn plan(desired: &Storage) -> StepPlan {
    let mut wants: Vec<String> = desired
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
    if wants.is_empty() {
        wants.push("no volumes".into());
    }
    StepPlan::not_implemented(StepName::Storage, wants)
}

#[derive(Debug, Default)]
pub struct StorageStep;

#[async_trait]
impl Step for StorageStep {
    fn name(&self) -> StepName {
        StepName::Storage
    }

    async fn plan(&self, desired: &NodeSpec) -> Result<StepPlan, StepError> {
        Ok(plan(&desired.storage))
    }

    async fn apply(&self, _desired: &NodeSpec, _plan: &StepPlan) -> Result<(), StepError> {
        Err(StepError::NotImplemented(StepName::Storage))
    }
}
