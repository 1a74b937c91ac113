//! The pure diff of the desired WireGuard section against the observed
//! interface: what to create, which peers to add, update or remove, and
//! which MTU, addresses and routes to set. An unchanged spec plans nothing.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::SocketAddr,
};

use ipnet::IpNet;

use super::{Backend, DeviceState, LinkState, Observed, PeerState, PeerUpdate};
use tfagent_spec::{Peer, WgKey, Wireguard};

/// One change to the interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Start wireguard-go for the interface (userspace backend).
    StartUserspace,
    /// Create the WireGuard link (kernel backend).
    CreateLink,
    /// Give the device the node's private key; shows only the public one.
    SetPrivateKey {
        public_key: WgKey,
    },
    SetListenPort(u16),
    Peer(PeerChange),
    SetMtu(u32),
    RemoveAddress(IpNet),
    AddAddress(IpNet),
    SetUp,
    RemoveRoute(IpNet),
    AddRoute(IpNet),
}

/// One peer's change. Peers not named in a plan are not touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerChange {
    Add {
        name: String,
        key: WgKey,
        endpoint: Option<SocketAddr>,
        persistent_keepalive: u16,
        allowed_ips: Vec<IpNet>,
    },
    /// Only the fields that are `Some` change.
    Update {
        name: String,
        key: WgKey,
        endpoint: Option<SocketAddr>,
        persistent_keepalive: Option<u16>,
        /// Replaces the peer's allowed IPs.
        allowed_ips: Option<Vec<IpNet>>,
    },
    Remove {
        key: WgKey,
    },
}

impl PeerChange {
    /// The device update that makes this change.
    pub fn to_update(&self) -> PeerUpdate {
        match self {
            PeerChange::Add {
                key,
                endpoint,
                persistent_keepalive,
                allowed_ips,
                ..
            } => PeerUpdate::Set {
                key: *key,
                update_only: false,
                endpoint: *endpoint,
                persistent_keepalive: Some(*persistent_keepalive),
                allowed_ips: Some(allowed_ips.clone()),
            },
            PeerChange::Update {
                key,
                endpoint,
                persistent_keepalive,
                allowed_ips,
                ..
            } => PeerUpdate::Set {
                key: *key,
                update_only: true,
                endpoint: *endpoint,
                persistent_keepalive: *persistent_keepalive,
                allowed_ips: allowed_ips.clone(),
            },
            PeerChange::Remove { key } => PeerUpdate::Remove { key: *key },
        }
    }
}

fn join(nets: &[IpNet]) -> String {
    if nets.is_empty() {
        return "none".into();
    }
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::StartUserspace => f.write_str("start wireguard-go for the interface"),
            Change::CreateLink => f.write_str("create the WireGuard link"),
            Change::SetPrivateKey { public_key } => {
                write!(f, "set the node's private key (public key {public_key})")
            }
            Change::SetListenPort(port) => write!(f, "set listen port {port}"),
            Change::Peer(peer) => peer.fmt(f),
            Change::SetMtu(mtu) => write!(f, "set MTU {mtu}"),
            Change::RemoveAddress(net) => write!(f, "remove address {net}"),
            Change::AddAddress(net) => write!(f, "add address {net}"),
            Change::SetUp => f.write_str("bring the link up"),
            Change::RemoveRoute(net) => write!(f, "remove route {net}"),
            Change::AddRoute(net) => write!(f, "add route {net}"),
        }
    }
}

impl fmt::Display for PeerChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerChange::Add {
                name,
                key,
                endpoint,
                persistent_keepalive,
                allowed_ips,
            } => {
                write!(
                    f,
                    "add peer {name} ({key}): allowed IPs {}",
                    join(allowed_ips)
                )?;
                if let Some(endpoint) = endpoint {
                    write!(f, ", endpoint {endpoint}")?;
                }
                if *persistent_keepalive > 0 {
                    write!(f, ", keepalive {persistent_keepalive}s")?;
                }
                Ok(())
            }
            PeerChange::Update {
                name,
                key,
                endpoint,
                persistent_keepalive,
                allowed_ips,
            } => {
                let mut parts = Vec::new();
                if let Some(allowed_ips) = allowed_ips {
                    parts.push(format!("allowed IPs {}", join(allowed_ips)));
                }
                if let Some(endpoint) = endpoint {
                    parts.push(format!("endpoint {endpoint}"));
                }
                if let Some(keepalive) = persistent_keepalive {
                    parts.push(format!("keepalive {keepalive}s"));
                }
                write!(f, "update peer {name} ({key}): {}", parts.join(", "))
            }
            PeerChange::Remove { key } => write!(f, "remove peer {key}"),
        }
    }
}

fn keepalive(peer: &Peer) -> u16 {
    peer.persistent_keepalive.map_or(0, |k| k.get())
}

/// Routes the allowed IPs need: those not already on a connected network of
/// the interface's own addresses. Default routes are never installed: a
/// peer that carries everything must not take the node's own uplink.
pub fn wanted_routes(desired: &Wireguard) -> BTreeSet<IpNet> {
    let connected: Vec<IpNet> = desired.addresses.iter().map(IpNet::trunc).collect();
    desired
        .peers
        .iter()
        .flat_map(|p| p.allowed_ips.iter())
        .filter(|net| net.prefix_len() > 0)
        .filter(|net| !connected.iter().any(|c| c.contains(*net)))
        .map(IpNet::trunc)
        .collect()
}

/// The changes that take `observed` to `desired`, in the order they must be
/// made: the device (created or started), its key and port, peers (removed
/// first, so their allowed IPs are free for others), then the link: MTU,
/// addresses, up, routes.
pub fn plan(desired: &Wireguard, observed: &Observed) -> Vec<Change> {
    let mut changes = Vec::new();
    let no_link = LinkState::default();
    let no_device = DeviceState::default();
    let link = observed.link.as_ref().unwrap_or(&no_link);
    let device = observed.device.as_ref().unwrap_or(&no_device);

    match observed.backend {
        Backend::Userspace if observed.link.is_none() || observed.device.is_none() => {
            changes.push(Change::StartUserspace);
        }
        Backend::Kernel if observed.link.is_none() => changes.push(Change::CreateLink),
        _ => {}
    }
    if device.public_key != Some(observed.own_key) {
        changes.push(Change::SetPrivateKey {
            public_key: observed.own_key,
        });
    }
    if device.listen_port != desired.listen_port {
        changes.push(Change::SetListenPort(desired.listen_port));
    }

    changes.extend(plan_peers(desired, observed, &device.peers));

    if link.mtu != desired.mtu {
        changes.push(Change::SetMtu(desired.mtu));
    }
    let addresses: BTreeSet<IpNet> = desired.addresses.iter().copied().collect();
    changes.extend(
        link.addresses
            .difference(&addresses)
            .map(|a| Change::RemoveAddress(*a)),
    );
    changes.extend(
        addresses
            .difference(&link.addresses)
            .map(|a| Change::AddAddress(*a)),
    );
    if !link.up {
        changes.push(Change::SetUp);
    }
    let routes = wanted_routes(desired);
    changes.extend(
        link.routes
            .difference(&routes)
            .map(|r| Change::RemoveRoute(*r)),
    );
    changes.extend(
        routes
            .difference(&link.routes)
            .map(|r| Change::AddRoute(*r)),
    );
    changes
}

fn plan_peers(
    desired: &Wireguard,
    observed: &Observed,
    current: &BTreeMap<WgKey, PeerState>,
) -> Vec<Change> {
    let wanted: BTreeSet<WgKey> = desired.peers.iter().map(|p| p.public_key).collect();
    let mut removes = Vec::new();
    let mut updates = Vec::new();
    let mut adds = Vec::new();
    for key in current.keys().filter(|k| !wanted.contains(k)) {
        removes.push(Change::Peer(PeerChange::Remove { key: *key }));
    }
    for peer in &desired.peers {
        let endpoint = peer.endpoint.as_ref().and_then(|e| observed.endpoint(e));
        let key = peer.public_key;
        let allowed = || -> Vec<IpNet> {
            let set: BTreeSet<IpNet> = peer.allowed_ips.iter().copied().collect();
            set.into_iter().collect()
        };
        match current.get(&key) {
            None => adds.push(Change::Peer(PeerChange::Add {
                name: peer.name.to_string(),
                key,
                endpoint,
                persistent_keepalive: keepalive(peer),
                allowed_ips: allowed(),
            })),
            Some(have) => {
                // A peer without an endpoint in the spec keeps whatever it
                // roamed to.
                let endpoint = endpoint.filter(|e| have.endpoint != Some(*e));
                let persistent_keepalive =
                    (have.persistent_keepalive != keepalive(peer)).then_some(keepalive(peer));
                // No allocation in the common, equal case; a spec listing
                // an IP twice still compares as a set.
                let same_ips = if have.allowed_ips.len() == peer.allowed_ips.len() {
                    peer.allowed_ips
                        .iter()
                        .all(|net| have.allowed_ips.contains(net))
                } else {
                    have.allowed_ips.iter().copied().eq(allowed())
                };
                let allowed_ips = (!same_ips).then(allowed);
                if endpoint.is_some() || persistent_keepalive.is_some() || allowed_ips.is_some() {
                    updates.push(Change::Peer(PeerChange::Update {
                        name: peer.name.to_string(),
                        key,
                        endpoint,
                        persistent_keepalive,
                        allowed_ips,
                    }));
                }
            }
        }
    }
    removes.into_iter().chain(updates).chain(adds).collect()
}

/// The link as it is after `changes` were made to what `observed` saw.
pub fn link_after(observed: &Observed, changes: &[Change]) -> LinkState {
    let mut link = observed.link.clone().unwrap_or_default();
    for change in changes {
        match change {
            Change::SetMtu(mtu) => link.mtu = *mtu,
            Change::SetUp => link.up = true,
            Change::AddAddress(net) => {
                link.addresses.insert(*net);
            }
            Change::RemoveAddress(net) => {
                link.addresses.remove(net);
            }
            Change::AddRoute(net) => {
                link.routes.insert(*net);
            }
            Change::RemoveRoute(net) => {
                link.routes.remove(net);
            }
            _ => {}
        }
    }
    link
}

/// The device as it is after `changes` were made to what `observed` saw.
pub fn device_after(observed: &Observed, changes: &[Change]) -> DeviceState {
    let mut device = observed.device.clone().unwrap_or_default();
    for change in changes {
        match change {
            Change::SetPrivateKey { public_key } => device.public_key = Some(*public_key),
            Change::SetListenPort(port) => device.listen_port = *port,
            Change::Peer(PeerChange::Add {
                key,
                endpoint,
                persistent_keepalive,
                allowed_ips,
                ..
            }) => {
                // An allowed IP moves to the peer that claims it last.
                for peer in device.peers.values_mut() {
                    peer.allowed_ips.retain(|net| !allowed_ips.contains(net));
                }
                device.peers.insert(
                    *key,
                    PeerState {
                        endpoint: *endpoint,
                        allowed_ips: allowed_ips.iter().copied().collect(),
                        persistent_keepalive: *persistent_keepalive,
                        ..PeerState::default()
                    },
                );
            }
            Change::Peer(PeerChange::Update {
                key,
                endpoint,
                persistent_keepalive,
                allowed_ips,
                ..
            }) => {
                if let Some(allowed_ips) = allowed_ips {
                    for (other, peer) in device.peers.iter_mut() {
                        if other != key {
                            peer.allowed_ips.retain(|net| !allowed_ips.contains(net));
                        }
                    }
                }
                if let Some(peer) = device.peers.get_mut(key) {
                    if let Some(endpoint) = endpoint {
                        peer.endpoint = Some(*endpoint);
                    }
                    if let Some(keepalive) = persistent_keepalive {
                        peer.persistent_keepalive = *keepalive;
                    }
                    if let Some(allowed_ips) = allowed_ips {
                        peer.allowed_ips = allowed_ips.iter().copied().collect();
                    }
                }
            }
            Change::Peer(PeerChange::Remove { key }) => {
                device.peers.remove(key);
            }
            _ => {}
        }
    }
    device
}

#[cfg(test)]
mod tests {
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
                    tfagent_spec::Host::Ip(ip) => *ip,
                    tfagent_spec::Host::Name(_) => "192.0.2.200".parse().unwrap(),
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
}
