//! The pure diff of the desired WireGuard section against the observed
//! interface: what to create, which peers to add, update or remove, and
//! which MTU, addresses and routes to set. An unchanged spec plans nothing.
//!
//! The desired section is the spec's with the VIP where the vip engine put
//! it ([`with_vip`]): VIP/32 on this node's interface (it holds the VIP) or
//! in one peer's allowed IPs (that server holds it), so a resync never
//! undoes a move.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, SocketAddr},
};

use ipnet::IpNet;

use super::{
    backend::Backend,
    ports::{DeviceState, LinkState, PeerState, PeerUpdate},
};
use crate::vip::Placement;
use tfagent_spec::{Endpoint, Host, Peer, WgKey, Wireguard};

/// What the network step reads of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub backend: Backend,
    /// The public key of the node's own private key.
    pub own_key: WgKey,
    /// `None`: the interface does not exist.
    pub link: Option<LinkState>,
    /// `None`: no WireGuard device answers under the interface's name.
    pub device: Option<DeviceState>,
    /// The spec's peer endpoints that are DNS names, resolved; a name that
    /// does not resolve is missing, and that peer's endpoint is left alone.
    /// (IP endpoints need no lookup: see [`Observed::endpoint`].)
    pub endpoints: BTreeMap<Endpoint, SocketAddr>,
    /// Where the vip engine put the VIP when this was read.
    pub vip: Option<VipOverlay>,
}

impl Observed {
    /// Where `endpoint` points: itself for an IP, the lookup for a name.
    pub fn endpoint(&self, endpoint: &Endpoint) -> Option<SocketAddr> {
        match endpoint.host() {
            Host::Ip(ip) => Some(SocketAddr::new(*ip, endpoint.port())),
            Host::Name(_) => self.endpoints.get(endpoint).copied(),
        }
    }
}

/// Where the VIP is, as the network step plans it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipOverlay {
    pub vip: IpAddr,
    pub placement: Placement,
}

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

/// `wireguard` as it must be with the VIP placed as `overlay` says.
pub fn with_vip(wireguard: &Wireguard, overlay: Option<VipOverlay>) -> Wireguard {
    let mut effective = wireguard.clone();
    let Some(overlay) = overlay else {
        return effective;
    };
    let vip = host_net(overlay.vip);
    match overlay.placement {
        Placement::Local => {
            if !effective.addresses.contains(&vip) {
                effective.addresses.push(vip);
            }
        }
        Placement::Peer(key) => {
            if let Some(peer) = effective.peers.iter_mut().find(|p| p.public_key == key)
                && !peer.allowed_ips.contains(&vip)
            {
                peer.allowed_ips.push(vip);
            }
        }
        Placement::Nowhere => {}
    }
    effective
}

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
mod tests;
