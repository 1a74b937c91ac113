//! `network.wireguard`: the node's interface on the mesh and its peers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU16;

use ipnet::IpNet;

use super::checker::{Checker, Items, first_seen};
use crate::defaults;
use crate::document::{PeerDoc, WireguardDoc};
use crate::limits::{MAX_ADDRESSES, MAX_ALLOWED_IPS, MAX_PEERS};
use crate::model::{Peer, Wireguard};
use crate::types::{Endpoint, IfName, NodeName, WgKey};

pub(super) struct WireguardParts {
    pub(super) interface: Option<IfName>,
    listen_port: Option<u16>,
    pub(super) addresses: Items<IpNet>,
    mtu: Option<u32>,
    pub(super) peers: Items<PeerParts>,
}

pub(super) struct PeerParts {
    pub(super) name: Option<NodeName>,
    public_key: Option<WgKey>,
    endpoint: Option<Option<Endpoint>>,
    pub(super) allowed_ips: Items<IpNet>,
    persistent_keepalive: Option<Option<NonZeroU16>>,
}

impl WireguardParts {
    pub(super) fn build(self) -> Option<Wireguard> {
        let peers = self
            .peers
            .build()?
            .into_iter()
            .map(PeerParts::build)
            .collect::<Option<Vec<_>>>()?;
        Some(Wireguard {
            interface: self.interface?,
            listen_port: self.listen_port?,
            addresses: self.addresses.build()?,
            mtu: self.mtu?,
            peers,
        })
    }

    /// The index and parts of the peer called `name`.
    pub(super) fn peer(&self, name: &NodeName) -> Option<(usize, &PeerParts)> {
        self.peers
            .valid()
            .find(|(_, peer)| peer.name.as_ref() == Some(name))
    }
}

impl PeerParts {
    fn build(self) -> Option<Peer> {
        Some(Peer {
            name: self.name?,
            public_key: self.public_key?,
            endpoint: self.endpoint?,
            allowed_ips: self.allowed_ips.build()?,
            persistent_keepalive: self.persistent_keepalive?,
        })
    }
}

/// Interface names zOS gives its own networks.
fn zos_owned_interface(name: &str) -> bool {
    ["w-", "n-", "b-"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || name == "br-ndmz"
        || name == "br-pub"
}

impl Checker<'_> {
    pub(super) fn wireguard(
        &mut self,
        doc: &WireguardDoc,
        node_name: Option<&NodeName>,
    ) -> WireguardParts {
        const BASE: &str = "network.wireguard";
        let mut interface = self.parse_or::<IfName>(
            "network.wireguard.interface",
            &doc.interface,
            defaults::WG_INTERFACE,
        );
        if let Some(name) = &interface
            && zos_owned_interface(name.as_str())
        {
            self.fail(
                "network.wireguard.interface",
                "names starting with w-, n- or b- and br-ndmz and br-pub belong to zOS's own networks",
            );
            interface = None;
        }
        let listen_port = match doc.listen_port {
            0 => Some(defaults::WG_LISTEN_PORT),
            port => {
                let port = u16::try_from(port).ok();
                if port.is_none() {
                    self.fail(format!("{BASE}.listen_port"), "must be 1..=65535");
                }
                port
            }
        };
        let addresses = self.wg_addresses(&doc.addresses);
        let mtu = match doc.mtu {
            0 => Some(defaults::WG_MTU),
            mtu if (1280..=9000).contains(&mtu) => Some(mtu),
            _ => {
                self.fail(format!("{BASE}.mtu"), "must be 1280..=9000");
                None
            }
        };
        let peers = self.peers(&doc.peers, node_name);
        WireguardParts {
            interface,
            listen_port,
            addresses,
            mtu,
            peers,
        }
    }

    fn wg_addresses(&mut self, addresses: &[String]) -> Items<IpNet> {
        const PATH: &str = "network.wireguard.addresses";
        if addresses.is_empty() {
            self.fail(
                PATH,
                "required: this node's address on the mesh, e.g. 10.100.0.1/24",
            );
            return Items::refused();
        }
        if !self.list_fits(PATH, addresses.len(), MAX_ADDRESSES) {
            return Items::refused();
        }
        let mut seen = HashMap::new();
        let items = addresses
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let path = format!("{PATH}[{i}]");
                let net = self.interface_address(&path, text)?;
                if let Some(first) = first_seen(&mut seen, net.addr(), i) {
                    self.fail(path, format!("same address as addresses[{first}]"));
                    return None;
                }
                Some(net)
            })
            .collect();
        Items {
            items,
            complete: true,
        }
    }

    /// An address with its prefix length, host bits allowed (`10.100.0.2/24`).
    fn interface_address(&mut self, path: &str, text: &str) -> Option<IpNet> {
        if text.is_empty() {
            self.fail(path, "required");
            return None;
        }
        if !self.fits(path, text) {
            return None;
        }
        let Ok(net) = text.parse::<IpNet>() else {
            let message = match text.parse::<IpAddr>() {
                Ok(ip) => format!("needs a prefix length, e.g. {ip}/24"),
                Err(_) => "not an address with a prefix length (e.g. 10.100.0.1/24)".to_owned(),
            };
            self.fail(path, message);
            return None;
        };
        if let IpNet::V4(v4) = net
            && v4.prefix_len() <= 30
        {
            if v4.addr() == v4.network() {
                self.fail(path, format!("is the network address of {}", v4.trunc()));
                return None;
            }
            if v4.addr() == v4.broadcast() {
                self.fail(path, format!("is the broadcast address of {}", v4.trunc()));
                return None;
            }
        }
        self.not_reserved(path, &net.trunc()).then_some(net)
    }

    fn peers(&mut self, peers: &[PeerDoc], node_name: Option<&NodeName>) -> Items<PeerParts> {
        if !self.list_fits("network.wireguard.peers", peers.len(), MAX_PEERS) {
            return Items::refused();
        }
        let mut names = HashMap::new();
        let mut keys = HashMap::new();
        let mut claimed = HashMap::new();
        let items = peers
            .iter()
            .enumerate()
            .map(|(i, doc)| Some(self.peer(i, doc, node_name, &mut names, &mut keys, &mut claimed)))
            .collect();
        Items {
            items,
            complete: true,
        }
    }

    fn peer(
        &mut self,
        i: usize,
        doc: &PeerDoc,
        node_name: Option<&NodeName>,
        names: &mut HashMap<NodeName, usize>,
        keys: &mut HashMap<WgKey, usize>,
        claimed: &mut HashMap<IpNet, usize>,
    ) -> PeerParts {
        let base = format!("network.wireguard.peers[{i}]");

        let path = format!("{base}.name");
        let mut name = self.parse::<NodeName>(&path, &doc.name);
        if let Some(n) = &name {
            if let Some(first) = first_seen(names, n.clone(), i) {
                self.fail(&path, format!("duplicate peer name, also peers[{first}]"));
                name = None;
            } else if Some(n) == node_name {
                self.fail(&path, "is this node's own name (node_name)");
                name = None;
            }
        }

        let path = format!("{base}.public_key");
        let mut public_key = self.parse::<WgKey>(&path, &doc.public_key);
        if let Some(key) = public_key {
            if let Some(first) = first_seen(keys, key, i) {
                self.fail(&path, format!("same key as peers[{first}]"));
                public_key = None;
            } else if self.ctx.own_public_key == Some(key) {
                self.fail(&path, "is this node's own public key");
                public_key = None;
            }
        }

        let endpoint = if doc.endpoint.is_empty() {
            Some(None)
        } else {
            self.parse::<Endpoint>(&format!("{base}.endpoint"), &doc.endpoint)
                .map(Some)
        };

        let allowed_ips = self.allowed_ips(&base, i, &doc.allowed_ips, claimed);

        let persistent_keepalive = match u16::try_from(doc.persistent_keepalive) {
            Ok(seconds) => Some(NonZeroU16::new(seconds)),
            Err(_) => {
                self.fail(
                    format!("{base}.persistent_keepalive"),
                    "must be at most 65535 seconds (0 disables it)",
                );
                None
            }
        };
        PeerParts {
            name,
            public_key,
            endpoint,
            allowed_ips,
            persistent_keepalive,
        }
    }

    fn allowed_ips(
        &mut self,
        base: &str,
        peer: usize,
        texts: &[String],
        claimed: &mut HashMap<IpNet, usize>,
    ) -> Items<IpNet> {
        let list = format!("{base}.allowed_ips");
        if !self.list_fits(&list, texts.len(), MAX_ALLOWED_IPS) {
            return Items::refused();
        }
        let items = texts
            .iter()
            .enumerate()
            .map(|(k, text)| {
                let path = format!("{list}[{k}]");
                let net = self.network(&path, text)?;
                match first_seen(claimed, net, peer) {
                    Some(owner) if owner == peer => {
                        self.fail(path, "listed twice");
                        None
                    }
                    // WireGuard would silently move it to whichever peer came last.
                    Some(owner) => {
                        self.fail(path, format!("also claimed by peers[{owner}]"));
                        None
                    }
                    None => Some(net),
                }
            })
            .collect();
        Items {
            items,
            complete: true,
        }
    }
}
