//! VIP: the floating control-plane address over WireGuard — keepalived's
//! election among the servers, and the mesh-wide move of VIP/32 into the
//! holder's peer entry.
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
    let wants = match (&desired.cluster.vip, &desired.network.vip) {
        (Some(vip), Some(election)) => {
            let servers: Vec<&str> = election.servers.iter().map(|s| s.name.as_str()).collect();
            let part = if desired.role.is_server() {
                format!("take part with priority {}", election.priority)
            } else {
                "follow the holder".to_owned()
            };
            vec![format!(
                "VIP {vip} among {} (vrid {}, advert {} ms): {part}",
                servers.join(", "),
                election.virtual_router_id,
                election.advert_interval_ms
            )]
        }
        _ => Vec::new(),
    };
    Plan::NotImplemented { wants }
}

#[derive(Debug, Default)]
pub struct VipStep;

#[async_trait]
impl Capability for VipStep {
    type Observed = ();
    type Change = Infallible;

    fn step(&self) -> StepName {
        StepName::Vip
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
