//! VIP: the floating control-plane address over WireGuard — keepalived's
//! election among the servers, and the mesh-wide move of VIP/32 into the
//! holder's peer entry.
//!
//! Not implemented in this build: the step reports what the spec asks of it
//! and that it cannot carry it out, and changes nothing.

use crate::{
    reconcile::{StepName, Unimplemented},
    spec::NodeSpec,
};

/// What the spec asks of this step, one line each (empty: nothing).
pub fn wants(desired: &NodeSpec) -> Vec<String> {
    match (&desired.cluster.vip, &desired.network.vip) {
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
    }
}

/// The vip step of this build.
pub fn step() -> Unimplemented {
    Unimplemented::new(StepName::Vip, wants)
}
