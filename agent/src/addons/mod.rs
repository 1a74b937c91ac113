//! Add-ons: the manifests k3s auto-deploys on servers (MetalLB,
//! ingress-nginx, cert-manager with Let's Encrypt, Longhorn, local-path).
//!
//! Not implemented in this build: the step plans what the spec asks for and
//! reports itself as not implemented, changing nothing.

use std::convert::Infallible;

use async_trait::async_trait;

use crate::{
    reconcile::{Capability, Plan, StepError, StepName},
    spec::{Addons, NodeSpec},
};

/// What this step would manage for `desired`.
pub fn plan(desired: &Addons) -> Plan<Infallible> {
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
        Vec::new()
    } else {
        vec![format!("add-ons {}", enabled.join(", "))]
    };
    Plan::NotImplemented { wants }
}

#[derive(Debug, Default)]
pub struct AddonsStep;

#[async_trait]
impl Capability for AddonsStep {
    type Observed = ();
    type Change = Infallible;

    fn step(&self) -> StepName {
        StepName::Addons
    }

    async fn observe(&self, _desired: &NodeSpec) -> Result<(), StepError> {
        Ok(())
    }

    fn plan(desired: &NodeSpec, _observed: &()) -> Plan<Infallible> {
        plan(&desired.addons)
    }

    async fn apply(&self, _desired: &NodeSpec, changes: &[Infallible]) -> Result<(), StepError> {
        // A not-implemented plan has no changes to make.
        match changes.first() {
            None => Ok(()),
            Some(&never) => match never {},
        }
    }
}
