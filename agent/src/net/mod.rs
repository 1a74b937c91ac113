//! Network: the cluster's WireGuard interface, its addresses and peers.
//!
//! Not implemented in this build: the step plans what the spec asks for and
//! reports itself as not implemented, changing nothing.

use std::convert::Infallible;

use async_trait::async_trait;

use crate::{
    reconcile::{Capability, Plan, StepError, StepName},
    spec::{Network, NodeSpec},
};

/// What this step would manage for `desired`.
pub fn plan(desired: &Network) -> Plan<Infallible> {
    let wg = &desired.wireguard;
    let addresses: Vec<String> = wg.addresses.iter().map(ToString::to_string).collect();
    Plan::NotImplemented {
        wants: vec![format!(
            "wireguard interface {} ({}, port {}, mtu {}) with {} peer(s)",
            wg.interface,
            addresses.join(", "),
            wg.listen_port,
            wg.mtu,
            wg.peers.len()
        )],
    }
}

#[derive(Debug, Default)]
pub struct NetworkStep;

#[async_trait]
impl Capability for NetworkStep {
    type Observed = ();
    type Change = Infallible;

    fn step(&self) -> StepName {
        StepName::Network
    }

    async fn observe(&self, _desired: &NodeSpec) -> Result<(), StepError> {
        Ok(())
    }

    fn plan(desired: &NodeSpec, _observed: &()) -> Plan<Infallible> {
        plan(&desired.network)
    }

    async fn apply(&self, _desired: &NodeSpec, changes: &[Infallible]) -> Result<(), StepError> {
        // A not-implemented plan has no changes to make.
        match changes.first() {
            None => Ok(()),
            Some(&never) => match never {},
        }
    }
}
