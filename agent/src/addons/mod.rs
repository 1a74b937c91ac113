//! Add-ons: the manifests k3s auto-deploys on servers (MetalLB,
//! ingress-nginx, cert-manager with Let's Encrypt, Longhorn, local-path).
//!
//! Not implemented in this build: the step reports what the spec asks of it
//! and that it cannot carry it out, and changes nothing.

pub mod prereq;

use crate::{
    reconcile::{StepName, Unimplemented},
    spec::{Addons, NodeSpec},
};

/// What the spec asks of this step, one line each (empty: nothing).
pub fn wants(desired: &Addons) -> Vec<String> {
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
    if enabled.is_empty() {
        Vec::new()
    } else {
        vec![format!("add-ons {}", enabled.join(", "))]
    }
}

/// The addons step of this build.
pub fn step() -> Unimplemented {
    Unimplemented::new(StepName::Addons, |desired: &NodeSpec| {
        wants(&desired.addons)
    })
}
