//! Shared helpers of the unit tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeSet, path::Path, sync::Arc};

use crate::{
    app,
    control::Controller,
    events::EventBus,
    host::{CgroupMode, HostCapabilities, HostInfo},
    reconcile::{StatusBoard, StepName},
    spec::{NodeSpec, SpecDocument, ValidationContext},
    state::StateStore,
};

/// The text of an example spec under examples/.
pub fn example_text(name: &str) -> &'static str {
    match name {
        "server-init" => include_str!("../../examples/server-init.yaml"),
        "server-join" => include_str!("../../examples/server-join.yaml"),
        "agent" => include_str!("../../examples/agent.yaml"),
        other => panic!("no example {other}"),
    }
}

pub fn example_document(name: &str) -> SpecDocument {
    SpecDocument::parse(example_text(name)).unwrap()
}

pub fn example_spec(name: &str) -> NodeSpec {
    example_document(name)
        .validate(&ValidationContext::default())
        .unwrap()
}

/// A host with fixed, zOS-like capabilities.
#[derive(Debug)]
pub struct FakeHost;

impl HostInfo for FakeHost {
    fn hostname(&self) -> String {
        "node-under-test".into()
    }

    fn capabilities(&self) -> HostCapabilities {
        HostCapabilities {
            kernel_release: "6.1.0-test".into(),
            kernel_wireguard: true,
            wireguard_go: None,
            cgroup_mode: CgroupMode::V1,
            filesystems: BTreeSet::from(["btrfs".to_owned()]),
            btrfs_pools: vec![],
        }
    }
}

/// A controller over a state dir, with this build's steps and [`FakeHost`].
pub fn controller(state_dir: &Path) -> Arc<Controller> {
    let (store, loaded) = StateStore::open(state_dir).unwrap();
    Arc::new(Controller::new(
        store,
        loaded,
        app::steps(Arc::new(network_step())),
        Arc::new(StatusBoard::new(&StepName::ORDER)),
        Arc::new(EventBus::default()),
        Arc::new(FakeHost),
    ))
}

// ---- network ----
/// A network step over a fake host, with a fixed-seed-free fresh key.
pub fn network_step() -> crate::net::NetworkStep {
    crate::net::NetworkStep::new(
        crate::net::Backend::Userspace,
        Arc::new(crate::net::NodeKey::generate()),
        crate::net::fake::FakeNet::default().host(),
    )
}
