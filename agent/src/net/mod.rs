//! Network: the cluster's WireGuard interface, its addresses and peers.
//!
//! Not implemented in this build: the step plans what the spec asks for and
//! reports itself as not implemented, changing nothing.

use async_trait::async_trait;

use crate::{
    reconcile::{Step, StepError, StepName, StepPlan},
    spec::{Network, NodeSpec},
};

/// What this step would manage for `desired`.
pub fn plan(desired: &Network) -> StepPlan {
    let wg = &desired.wireguard;
    let addresses: Vec<String> = wg.addresses.iter().map(ToString::to_string).collect();
    StepPlan::not_implemented(
        StepName::Network,
        vec![format!(
            "wireguard interface {} ({}, port {}, mtu {}) with {} peer(s)",
            wg.interface,
            addresses.join(", "),
            wg.listen_port,
            wg.mtu,
            wg.peers.len()
        )],
    )
}

#[derive(Debug, Default)]
pub struct NetworkStep;

#[async_trait]
impl Step for NetworkStep {
    fn name(&self) -> StepName {
        StepName::Network
    }

    async fn plan(&self, desired: &NodeSpec) -> Result<StepPlan, StepError> {
        Ok(plan(&desired.network))
    }

    async fn apply(&self, _desired: &NodeSpec, _plan: &StepPlan) -> Result<(), StepError> {
        Err(StepError::NotImplemented(StepName::Network))
    }
}
