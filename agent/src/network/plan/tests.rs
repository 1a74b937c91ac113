#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::num::NonZeroU16;

use proptest::prelude::*;

use super::*;
use tfagent_spec::{
    Endpoint,
    fixtures::{key, peer, wireguard},
};

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

/// The host exactly as `desired` wants it.
fn converged(desired: &Wireguard, backend: Backend) -> Observed {
    let observed = Observed {
        backend,
        own_key: key(0),
        link: None,
        device: None,
        endpoints: endpoints(desired),
        vip: None,
    };
    let changes = plan(desired, &observed);
    let device = device_after(&observed, &changes);
    Observed {
        link: Some(LinkState {
            index: 7,
            up: true,
            mtu: desired.mtu,
            addresses: desired.addresses.iter().copied().collect(),
            routes: wanted_routes(desired),
        }),
        device: Some(device),
        ..observed
    }
}

fn endpoints(desired: &Wireguard) -> BTreeMap<Endpoint, SocketAddr> {
    desired
        .peers
        .iter()
        .filter_map(|p| p.endpoint.clone())
        .map(|e| {
            let ip = match e.host() {
                Host::Ip(ip) => *ip,
                Host::Name(_) => "192.0.2.200".parse().unwrap(),
            };
            (e.clone(), SocketAddr::new(ip, e.port()))
        })
        .collect()
}

fn peer_changes(changes: &[Change]) -> Vec<&PeerChange> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Peer(p) => Some(p),
            _ => None,
        })
        .collect()
}

#[test]
fn a_fresh_userspace_interface_is_built_in_one_pass_in_order() {
    let desired = wireguard(3);
    let observed = Observed {
        backend: Backend::Userspace,
        own_key: key(0),
        link: None,
        device: None,
        endpoints: endpoints(&desired),
        vip: None,
    };
    let changes = plan(&desired, &observed);
    let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
    assert_eq!(text[0], "start wireguard-go for the interface");
    assert!(
        text[1].starts_with("set the node's private key (public key "),
        "{text:?}"
    );
    assert_eq!(text[2], "set listen port 51820");
    assert!(text[3].starts_with("add peer node-1 ("), "{text:?}");
    assert!(text[3].contains("allowed IPs 10.100.0.2/32"), "{text:?}");
    assert!(text[3].contains("endpoint 192.0.2.2:51820"), "{text:?}");
    assert!(text[3].contains("keepalive 25s"), "{text:?}");
    let tail = &text[6..];
    assert_eq!(
        tail,
        [
            "set MTU 1420",
            "add address 10.100.0.1/24",
            "bring the link up",
            "add route 10.200.0.0/16",
        ]
    );
}

#[test]
fn the_kernel_backend_creates_the_link_instead() {
    let desired = wireguard(1);
    let observed = Observed {
        backend: Backend::Kernel,
        own_key: key(0),
        link: None,
        device: None,
        endpoints: endpoints(&desired),
        vip: None,
    };
    assert_eq!(plan(&desired, &observed)[0], Change::CreateLink);
    // The link exists but reads as no device: not the kernel's job to start.
    let mut observed = converged(&desired, Backend::Kernel);
    assert!(plan(&desired, &observed).is_empty());
    observed.device = None;
    let changes = plan(&desired, &observed);
    assert!(!changes.contains(&Change::CreateLink));
    assert!(!changes.contains(&Change::StartUserspace));
}

#[test]
fn an_unchanged_spec_plans_nothing() {
    for n in [0, 1, 5, 50] {
        for backend in [Backend::Kernel, Backend::Userspace] {
            let desired = wireguard(n);
            let observed = converged(&desired, backend);
            assert_eq!(plan(&desired, &observed), vec![], "{n} peers, {backend}");
        }
    }
}

#[test]
fn a_dead_wireguard_go_is_started_again() {
    let desired = wireguard(2);
    let mut observed = converged(&desired, Backend::Userspace);
    observed.device = None;
    let changes = plan(&desired, &observed);
    assert_eq!(changes[0], Change::StartUserspace);
    assert_eq!(peer_changes(&changes).len(), 2);
}

#[test]
fn changing_one_peers_allowed_ips_touches_only_that_peer() {
    let before = wireguard(5);
    let observed = converged(&before, Backend::Userspace);
    let mut after = before.clone();
    after.peers[2].allowed_ips.push(net("10.101.0.0/24"));
    let changes = plan(&after, &observed);
    assert_eq!(
        changes,
        vec![
            Change::Peer(PeerChange::Update {
                name: "node-3".into(),
                key: key(3),
                endpoint: None,
                persistent_keepalive: None,
                allowed_ips: Some(vec![net("10.100.0.4/32"), net("10.101.0.0/24")]),
            }),
            Change::AddRoute(net("10.101.0.0/24")),
        ]
    );
    assert_eq!(
        changes[0].to_string(),
        format!(
            "update peer node-3 ({}): allowed IPs 10.100.0.4/32, 10.101.0.0/24",
            key(3)
        )
    );
}

#[test]
fn removing_a_peer_removes_only_it_and_its_routes() {
    let before = wireguard(3);
    let observed = converged(&before, Backend::Userspace);
    let mut after = before.clone();
    let gone = after.peers.remove(0);
    let changes = plan(&after, &observed);
    assert_eq!(
        changes,
        vec![
            Change::Peer(PeerChange::Remove {
                key: gone.public_key
            }),
            Change::RemoveRoute(net("10.200.0.0/16")),
        ]
    );
}

#[test]
fn keepalive_endpoint_and_link_drift_are_planned() {
    let desired = wireguard(2);
    let mut observed = converged(&desired, Backend::Userspace);
    let device = observed.device.as_mut().unwrap();
    device.listen_port = 1;
    device.public_key = Some(key(99));
    let first = device.peers.get_mut(&key(1)).unwrap();
    first.persistent_keepalive = 0;
    first.endpoint = Some("198.51.100.7:1".parse().unwrap());
    let link = observed.link.as_mut().unwrap();
    link.up = false;
    link.mtu = 1500;
    link.addresses.insert(net("10.9.9.9/32"));
    link.routes.insert(net("10.8.0.0/16"));
    let text: Vec<String> = plan(&desired, &observed)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(text.len(), 7, "{text:?}");
    assert!(text[0].starts_with("set the node's private key"));
    assert_eq!(text[1], "set listen port 51820");
    assert!(
        text[2].ends_with("endpoint 192.0.2.2:51820, keepalive 25s"),
        "{text:?}"
    );
    assert_eq!(
        &text[3..],
        [
            "set MTU 1420",
            "remove address 10.9.9.9/32",
            "bring the link up",
            "remove route 10.8.0.0/16",
        ]
    );
}

#[test]
fn a_roamed_endpoint_of_a_peer_without_one_is_left_alone() {
    let mut desired = wireguard(1);
    desired.peers[0].endpoint = None;
    let mut observed = converged(&desired, Backend::Userspace);
    let peer = observed
        .device
        .as_mut()
        .unwrap()
        .peers
        .get_mut(&key(1))
        .unwrap();
    peer.endpoint = Some("203.0.113.9:4444".parse().unwrap());
    assert!(plan(&desired, &observed).is_empty());
}

#[test]
fn an_unresolved_endpoint_is_not_set() {
    let mut desired = wireguard(1);
    desired.peers[0].endpoint = Some("node-1.example.net:51820".parse().unwrap());
    let mut observed = converged(&desired, Backend::Userspace);
    observed.endpoints.clear();
    let peer = observed
        .device
        .as_mut()
        .unwrap()
        .peers
        .get_mut(&key(1))
        .unwrap();
    peer.endpoint = None;
    assert!(plan(&desired, &observed).is_empty());
}

#[test]
fn an_allowed_ip_listed_twice_still_converges() {
    let mut desired = wireguard(1);
    desired.peers[0].allowed_ips.push(net("10.200.0.0/16"));
    let observed = converged(&desired, Backend::Userspace);
    assert_eq!(plan(&desired, &observed), vec![]);
}

#[test]
fn link_after_follows_the_link_changes() {
    let desired = wireguard(2);
    let observed = Observed {
        backend: Backend::Userspace,
        own_key: key(0),
        link: None,
        device: None,
        endpoints: endpoints(&desired),
        vip: None,
    };
    let changes = plan(&desired, &observed);
    let link = link_after(&observed, &changes);
    let converged = Observed {
        link: Some(link),
        device: Some(device_after(&observed, &changes)),
        ..observed
    };
    assert_eq!(plan(&desired, &converged), vec![]);
}

#[test]
fn routes_skip_connected_networks_and_default_routes() {
    let mut desired = wireguard(0);
    desired
        .peers
        .push(peer(7, &["10.100.0.9/32", "0.0.0.0/0", "10.50.0.0/16"]));
    assert_eq!(
        wanted_routes(&desired),
        BTreeSet::from([net("10.50.0.0/16")])
    );
}

#[test]
fn moving_an_allowed_ip_between_peers_is_one_update_each() {
    let before = wireguard(3);
    let observed = converged(&before, Backend::Userspace);
    let mut after = before.clone();
    // The VIP case: a /32 moves from peer 1 to peer 2.
    after.peers[0].allowed_ips = vec![net("10.100.0.2/32")];
    after.peers[1].allowed_ips.push(net("10.200.0.0/16"));
    let changes = plan(&after, &observed);
    assert_eq!(peer_changes(&changes).len(), 2, "{changes:?}");
    let device = device_after(&observed, &changes);
    assert!(
        device.peers[&key(2)]
            .allowed_ips
            .contains(&net("10.200.0.0/16"))
    );
    assert!(
        !device.peers[&key(1)]
            .allowed_ips
            .contains(&net("10.200.0.0/16"))
    );
}

fn arb_wireguard() -> impl Strategy<Value = Wireguard> {
    (
        proptest::collection::btree_set(1u8..40, 0..12),
        proptest::option::of(1u16..100),
        1280u32..1500,
    )
        .prop_map(|(ids, keepalive, mtu)| {
            let mut w = wireguard(0);
            w.mtu = mtu;
            for id in ids {
                let mut p = peer(id, &[&format!("10.100.0.{id}/32")]);
                if id % 3 == 0 {
                    p.allowed_ips
                        .push(format!("10.{id}.0.0/16").parse().unwrap());
                }
                p.persistent_keepalive = keepalive.and_then(NonZeroU16::new);
                if id % 2 == 0 {
                    p.endpoint = None;
                }
                w.peers.push(p);
            }
            w
        })
}

proptest! {
    /// Whatever the host had, applying the plan converges in one pass,
    /// and peers equal in both specs are never named in the plan.
    #[test]
    fn one_pass_converges_and_leaves_equal_peers_alone(
        before in arb_wireguard(),
        after in arb_wireguard(),
    ) {
        let observed = converged(&before, Backend::Userspace);
        let mut observed = Observed { endpoints: endpoints(&after), ..observed };
        let changes = plan(&after, &observed);
        for change in peer_changes(&changes) {
            let key = match change {
                PeerChange::Add { key, .. }
                | PeerChange::Update { key, .. }
                | PeerChange::Remove { key } => key,
            };
            let old = before.peers.iter().find(|p| p.public_key == *key);
            let new = after.peers.iter().find(|p| p.public_key == *key);
            prop_assert!(old != new || old.is_none(), "an equal peer was touched: {change}");
        }
        observed.device = Some(device_after(&observed, &changes));
        observed.link = Some(LinkState {
            index: 7,
            up: true,
            mtu: after.mtu,
            addresses: after.addresses.iter().copied().collect(),
            routes: wanted_routes(&after),
        });
        prop_assert_eq!(plan(&after, &observed), vec![]);
    }
}
