//! Network: the cluster's WireGuard interface, its addresses and peers.
//!
//! Not implemented in this build: the step reports what the spec asks of it
//! and that it cannot carry it out, and changes nothing.

use crate::{
    reconcile::{StepName, Unimplemented},
    spec::{Network, NodeSpec},
};

/// What the spec asks of this step, one line each (empty: nothing).
pub fn wants(desired: &Network) -> Vec<String> {
    let wg = &desired.wireguard;
    let addresses: Vec<String> = wg.addresses.iter().map(ToString::to_string).collect();
    vec![format!(
        "wireguard interface {} ({}, port {}, mtu {}) with {} peer(s)",
        wg.interface,
        addresses.join(", "),
        wg.listen_port,
        wg.mtu,
        wg.peers.len()
    )]
}

/// The network step of this build.
pub fn step() -> Unimplemented {
    Unimplemented::new(StepName::Network, |desired: &NodeSpec| {
        wants(&desired.network)
    })
}
