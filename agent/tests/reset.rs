//! `tfagentctl reset` on a real agent: the WireGuard interface (userspace,
//! in namespaces of the test's own), the supervised services and the
//! volume's mount (on a loop device) go, the spec is forgotten, the node's
//! key stays, and a new apply brings it all back under the next generation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    thread,
    time::{Duration, Instant},
};

use tfagent_testkit as common;

use common::{crash::Bed, nsagent::cannot_run};

#[test]
fn reset_takes_down_what_the_agent_set_up_and_keeps_the_key() {
    if let Some(why) = cannot_run() {
        println!("skipped: {why}");
        return;
    }
    let bed = Bed::new();
    let agent = &bed.agent;
    let key = agent.json(&["info"])["wireguard_public_key"].clone();
    // A variant with the volume, two peers and one address.
    let file = agent.spec_file(&bed.spec(4));
    agent.ok(&["apply", "-f", file.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while bed.verify().is_err() {
        assert!(Instant::now() < deadline, "{:?}", bed.verify());
        thread::sleep(Duration::from_millis(100));
    }

    // A stray call is refused and changes nothing.
    let stray = agent.ctl(&["reset", "--node-name", "some-other-node"]);
    assert!(!stray.status.success());
    let stderr = String::from_utf8_lossy(&stray.stderr);
    assert!(stderr.contains("confirm_node_name"), "{stderr}");
    bed.verify().unwrap();

    let done = agent.ok(&["reset", "--node-name", "crash-node"]);
    assert!(done.contains("generation 1 reset"), "{done}");
    assert!(done.contains("stop wireguard-go"), "{done}");
    assert!(done.contains("stop containerd"), "{done}");
    assert!(done.contains("unmount"), "{done}");
    let mounts = agent.ns.mount_points();
    assert!(
        !mounts
            .iter()
            .any(|m| m.starts_with(agent.path().to_str().unwrap())),
        "{mounts:?}"
    );
    // The interface went with wireguard-go; no service runs.
    let links = agent.ns.ip(&["-o", "link", "show"]);
    assert!(!links.contains(&agent.interface), "{links}");
    let status = agent.json(&["status"]);
    assert_eq!(status["desired_generation"], 0, "{status}");
    assert!(
        status["services"]
            .as_array()
            .is_none_or(|s| s.iter().all(|s| s["state"] != "running")),
        "{status}"
    );
    assert!(!agent.ctl(&["get", "spec"]).status.success());
    // Nothing comes back on its own, even across a resync.
    thread::sleep(Duration::from_secs(3));
    let links = agent.ns.ip(&["-o", "link", "show"]);
    assert!(!links.contains(&agent.interface), "{links}");

    // A new apply brings the node back, with the same key.
    let again = agent.json(&["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(again["generation"], 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while bed.verify().is_err() {
        assert!(Instant::now() < deadline, "{:?}", bed.verify());
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(agent.json(&["info"])["wireguard_public_key"], key);
}
