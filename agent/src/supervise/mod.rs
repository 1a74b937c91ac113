//! Services: supervises containerd and k3s (config, start order, readiness,
//! restarts with back-off, logs).
//!
//! Not implemented in this build: the step plans what the spec asks for and
//! reports itself as not implemented, changing nothing.

use async_trait::async_trait;

use crate::{
    reconcile::{Step, StepError, StepName, StepPlan},
    spec::NodeSpec,
};

/// What this step would manage for `desired`.
pub fn plan(desired: &NodeSpec) -> StepPlan {
    let services = &desired.services;
    let k3s_mode = if desired.role.is_server() {
        "server"
    } else {
        "agent"
    };
    StepPlan::not_implemented(
        StepName::Services,
        vec![
            format!("containerd from {}", services.containerd.binary),
            format!(
                "k3s {k3s_mode} ({}) from {}",
                desired.role, services.k3s.binary
            ),
        ],
    )
}

#[derive(Debug, Default)]
pub struct ServicesStep;

#[async_trait]
impl Step for ServicesStep {
    fn name(&self) -> StepName {
        StepName::Services
    }

    async fn plan(&self, desired: &NodeSpec) -> Result<StepPlan, StepError> {
        Ok(plan(desired))
    }

    async fn apply(&self, _desired: &NodeSpec, _plan: &StepPlan) -> Result<(), StepError> {
        Err(StepError::NotImplemented(StepName::Services))
    }
}
