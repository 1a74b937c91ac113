//! VIP: the floating control-plane address over WireGuard — keepalived's
//! election among the servers, and the mesh-wide move of VIP/32 into the
//! holder's peer entry.
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
        _ => vec!["no VIP".to_owned()],
    };
    StepPlan::not_implemented(StepName::Vip, wants)
}

#[derive(Debug, Default)]
pub struct VipStep;

#[async_trait]
impl Step for VipStep {
    fn name(&self) -> StepName {
        StepName::Vip
    }

    async fn plan(&self, desired: &NodeSpec) -> Result<StepPlan, StepError> {
        Ok(plan(desired))
    }

    async fn apply(&self, _desired: &NodeSpec, _plan: &StepPlan) -> Result<(), StepError> {
        Err(StepError::NotImplemented(StepName::Vip))
    }
}
