#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use crate::{
    network::fake::FakeNet,
    step::{Step, StepOutcome},
};
use tfagent_spec::fixtures::{example_spec, wireguard};

fn spec_with(wg: Wireguard) -> NodeSpec {
    let mut spec = example_spec("agent");
    spec.network.wireguard = wg;
    spec
}

fn step(fake: &FakeNet) -> NetworkStep {
    NetworkStep::new(
        Backend::Userspace,
        Arc::new(KeyPair::generate()),
        fake.host(),
    )
}

#[tokio::test]
async fn converges_in_one_pass_then_changes_nothing() {
    let fake = FakeNet::default();
    let step = step(&fake);
    let spec = spec_with(wireguard(3));
    let outcome = step.converge(&spec).await.unwrap();
    assert!(
        matches!(outcome, StepOutcome::Applied { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        fake.take_calls(),
        [
            "start wireguard-go",
            "configure 3 peer(s)",
            "mtu 1420",
            "add address 10.100.0.1/24",
            "up",
            "add route 10.200.0.0/16",
        ]
    );
    assert_eq!(step.converge(&spec).await.unwrap(), StepOutcome::UpToDate);
    assert_eq!(fake.take_calls(), ["read device"]);
    let device = fake.state().device.clone().unwrap();
    assert_eq!(device.public_key, Some(step.public_key()));
    assert_eq!(device.peers.len(), 3);
}

#[tokio::test]
async fn a_teardown_strips_the_interface_and_stops_wireguard_go_and_the_key_stays() {
    let fake = FakeNet::default();
    let step = step(&fake);
    let spec = spec_with(wireguard(3));
    step.converge(&spec).await.unwrap();
    fake.take_calls();
    let done = Step::teardown(&step, &spec).await.unwrap();
    let calls = fake.take_calls();
    assert!(
        calls.contains(&"remove address 10.100.0.1/24".to_owned()),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"remove route 10.200.0.0/16".to_owned()),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"configure 3 peer(s)".to_owned()),
        "{calls:?}"
    );
    assert_eq!(calls.last().map(String::as_str), Some("stop wireguard-go"));
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("add") || c.starts_with("start"))
    );
    assert_eq!(done.len(), 3 + 2 + 1, "{done:?}");
    assert!(fake.state().link.is_none());
    // Nothing left: a second teardown only makes sure wireguard-go is
    // stopped.
    let again = Step::teardown(&step, &spec).await.unwrap();
    assert_eq!(again, ["stop wireguard-go for wg-test"]);
    // A new spec after it converges from scratch with the same key.
    let public = step.public_key();
    step.converge(&spec).await.unwrap();
    assert_eq!(
        fake.state().device.clone().unwrap().public_key,
        Some(public)
    );
}

#[tokio::test]
async fn a_kernel_teardown_leaves_the_link_empty() {
    let fake = FakeNet::default();
    let step = NetworkStep::new(Backend::Kernel, Arc::new(KeyPair::generate()), fake.host());
    let spec = spec_with(wireguard(2));
    step.converge(&spec).await.unwrap();
    fake.take_calls();
    Step::teardown(&step, &spec).await.unwrap();
    let state = fake.state();
    let link = state.link.clone().unwrap();
    assert!(
        link.addresses.is_empty() && link.routes.is_empty(),
        "{link:?}"
    );
    assert!(state.device.clone().unwrap().peers.is_empty());
    assert!(!state.calls.iter().any(|c| c.contains("wireguard-go")));
}

#[tokio::test]
async fn the_kernel_backend_creates_the_link_and_configures_it_the_same_way() {
    let fake = FakeNet::default();
    let step = NetworkStep::new(Backend::Kernel, Arc::new(KeyPair::generate()), fake.host());
    let spec = spec_with(wireguard(2));
    step.converge(&spec).await.unwrap();
    assert_eq!(
        fake.take_calls(),
        [
            "create link",
            "configure 2 peer(s)",
            "mtu 1420",
            "add address 10.100.0.1/24",
            "up",
            "add route 10.200.0.0/16",
        ]
    );
    assert_eq!(step.converge(&spec).await.unwrap(), StepOutcome::UpToDate);
    assert_eq!(step.backend(), Backend::Kernel);
}

#[tokio::test]
async fn a_new_spec_is_planned_against_what_was_written_and_touches_one_peer() {
    let fake = FakeNet::default();
    let step = step(&fake);
    step.converge(&spec_with(wireguard(5))).await.unwrap();
    // A resync reads the device; the next spec needs no read.
    step.converge(&spec_with(wireguard(5))).await.unwrap();
    fake.take_calls();
    let mut changed = wireguard(5);
    changed.peers[3]
        .allowed_ips
        .push("10.100.0.128/25".parse().unwrap());
    let outcome = step.converge(&spec_with(changed.clone())).await.unwrap();
    assert_eq!(outcome, StepOutcome::Applied { changes: 1 });
    assert_eq!(fake.take_calls(), ["configure 1 peer(s)"]);
    // Drift while the spec stays: the resync reads and heals it.
    fake.state().device.as_mut().unwrap().peers.clear();
    let outcome = step.converge(&spec_with(changed)).await.unwrap();
    assert_eq!(outcome, StepOutcome::Applied { changes: 5 });
}

#[tokio::test]
async fn a_failed_apply_forgets_what_was_written() {
    let fake = FakeNet::default();
    let step = step(&fake);
    step.converge(&spec_with(wireguard(2))).await.unwrap();
    fake.state().fail = Some("configure".into());
    let error = step.converge(&spec_with(wireguard(3))).await.unwrap_err();
    assert!(error.to_string().contains("add peer node-3"), "{error}");
    assert!(error.to_string().contains("injected failure"), "{error}");
    fake.state().fail = None;
    fake.take_calls();
    step.converge(&spec_with(wireguard(3))).await.unwrap();
    assert_eq!(fake.take_calls()[0], "read device");
}

#[tokio::test]
async fn status_names_the_peers_the_spec_knows() {
    let fake = FakeNet::default();
    let step = step(&fake);
    let spec = spec_with(wireguard(2));
    assert_eq!(step.status(None).await, None);
    step.converge(&spec).await.unwrap();
    let status = step.status(Some(&spec.network.wireguard)).await.unwrap();
    assert!(status.up);
    assert_eq!(status.listen_port, 51820);
    assert_eq!(status.backend, Backend::Userspace);
    let names: Vec<&str> = status.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["node-1", "node-2"]);
    assert_eq!(status.peers[0].allowed_ips.len(), 2);
}
