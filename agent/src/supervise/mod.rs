//! Services: supervises containerd and k3s (config, start order, readiness,
//! restarts with back-off, logs).
//!
//! Not implemented in this build: the step reports what the spec asks of it
//! and that it cannot carry it out, and changes nothing.

use crate::{
    reconcile::{StepName, Unimplemented},
    spec::NodeSpec,
};

/// What the spec asks of this step, one line each (empty: nothing).
pub fn wants(desired: &NodeSpec) -> Vec<String> {
    let services = &desired.services;
    let k3s_mode = if desired.role.is_server() {
        "server"
    } else {
        "agent"
    };
    vec![
        format!("containerd from {}", services.containerd.binary),
        format!(
            "k3s {k3s_mode} ({}) from {}",
            desired.role, services.k3s.binary
        ),
    ]
}

/// The services step of this build.
pub fn step() -> Unimplemented {
    Unimplemented::new(StepName::Services, wants)
}
