//! Services: supervises containerd and k3s (config, start order, readiness,
//! restarts with back-off, logs).
//!
//! Not implemented in this build: the step plans what the spec asks for and
//! reports itself as not implemented, changing nothing.

use std::convert::Infallible;

use async_trait::async_trait;

use crate::{
    reconcile::{Capability, Plan, StepError, StepName},
    spec::NodeSpec,
};

/// What this step would manage for `desired`.
pub fn plan(desired: &NodeSpec) -> Plan<Infallible> {
    let services = &desired.services;
    let k3s_mode = if desired.role.is_server() {
        "server"
    } else {
        "agent"
    };
    Plan::NotImplemented {
        wants: vec![
            format!("containerd from {}", services.containerd.binary),
            format!(
                "k3s {k3s_mode} ({}) from {}",
                desired.role, services.k3s.binary
            ),
        ],
    }
}

#[derive(Debug, Default)]
pub struct ServicesStep;

#[async_trait]
impl Capability for ServicesStep {
    type Observed = ();
    type Change = Infallible;

    fn step(&self) -> StepName {
        StepName::Services
    }

    async fn observe(&self, _desired: &NodeSpec) -> Result<(), StepError> {
        Ok(())
    }

    fn plan(desired: &NodeSpec, _observed: &()) -> Plan<Infallible> {
        plan(desired)
    }

    async fn apply(&self, _desired: &NodeSpec, changes: &[Infallible]) -> Result<(), StepError> {
        // A not-implemented plan has no changes to make.
        match changes.first() {
            None => Ok(()),
            Some(&never) => match never {},
        }
    }
}
