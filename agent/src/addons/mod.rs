//! Add-ons: the manifests k3s auto-deploys on servers (MetalLB,
//! ingress-nginx, cert-manager with Let's Encrypt, Longhorn, local-path).
//!
//! Not implemented in this build: the step plans what the spec asks for and
//! reports itself as not implemented, changing nothing.

use async_trait::async_trait;

use crate::{
    reconcile::{Step, StepError, StepName, StepPlan},
    spec::{Addons, NodeSpec},
};

/// What this step would manage for `desired`.
pub fn plan(desired: &Addons) -> StepPlan {
    let enabled: Vec<&str> = [
        ("metallb", desired.metallb.is_some()),
        ("ingress-nginx", desired.ingress_nginx),
        ("cert-manager", desired.cert_manager.is_some()),
        ("local-path", desired.local_path.is_some()),
        ("longhorn", desired.longhorn.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let wants = if enabled.is_empty() {
        "no add-ons".to_owned()
    } else {
        format!("add-ons {}", enabled.join(", "))
    };
    StepPlan::not_implemented(StepName::Addons, vec![wants])
}

#[derive(Debug, Default)]
pub struct AddonsStep;

#[async_trait]
impl Step for AddonsStep {
    fn name(&self) -> StepName {
        StepName::Addons
    }

    async fn plan(&self, desired: &NodeSpec) -> Result<StepPlan, StepError> {
        Ok(plan(&desired.addons))
    }

    async fn apply(&self, _desired: &NodeSpec, _plan: &StepPlan) -> Result<(), StepError> {
        Err(StepError::NotImplemented(StepName::Addons))
    }
}
