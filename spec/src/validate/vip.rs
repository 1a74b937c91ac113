//! `network.vip`: the VRRP election of the servers that may hold
//! `cluster.vip`, and the rules that tie `cluster` to the mesh.

use std::collections::HashMap;
use std::net::IpAddr;

use super::checker::{Checker, first_seen};
use super::cluster::ClusterParts;
use super::wireguard::WireguardParts;
use crate::defaults;
use crate::document::{ClusterDoc, VipDoc, VipServerDoc};
use crate::limits::MAX_VIP_SERVERS;
use crate::model::{Vip, VipServer};
use crate::types::{NodeName, Role, nets_overlap};

impl Checker<'_> {
    pub(super) fn vip(
        &mut self,
        doc: &VipDoc,
        cluster: &ClusterDoc,
        node_name: Option<&NodeName>,
        role: Option<Role>,
        wg: &WireguardParts,
    ) -> Option<Option<Vip>> {
        const BASE: &str = "network.vip";
        if *doc == VipDoc::default() {
            return Some(None);
        }
        let mut complete = true;
        if cluster.vip.is_empty() {
            self.fail(BASE, "needs cluster.vip, the address the servers share");
            complete = false;
        }
        let virtual_router_id = match doc.virtual_router_id {
            0 => Some(defaults::VIP_VIRTUAL_ROUTER_ID),
            id => u8::try_from(id).ok(),
        };
        if virtual_router_id.is_none() {
            self.fail(format!("{BASE}.virtual_router_id"), "must be 1..=255");
        }
        let priority = match doc.priority {
            0 => Some(defaults::VIP_PRIORITY),
            p if p <= 254 => u8::try_from(p).ok(),
            _ => None,
        };
        if priority.is_none() {
            self.fail(
                format!("{BASE}.priority"),
                "must be 1..=254 (VRRP keeps 255 for the address owner)",
            );
        }
        let advert_interval_ms = match doc.advert_interval_ms {
            0 => Some(defaults::VIP_ADVERT_INTERVAL_MS),
            ms if (10..=40950).contains(&ms) && ms.is_multiple_of(10) => Some(ms),
            _ => {
                self.fail(
                    format!("{BASE}.advert_interval_ms"),
                    "must be 10..=40950 and a multiple of 10 (VRRPv3 counts centiseconds)",
                );
                None
            }
        };
        let announce_port = match doc.announce_port {
            0 => Some(defaults::VIP_ANNOUNCE_PORT),
            port => u16::try_from(port).ok(),
        };
        if announce_port.is_none() {
            self.fail(format!("{BASE}.announce_port"), "must be 1..=65535");
        }
        let servers = self.vip_servers(&doc.servers, node_name, role, wg);
        // VRRP runs one address family per instance.
        if let (Some(servers), Ok(vip)) = (&servers, cluster.vip.parse::<IpAddr>()) {
            for (i, server) in servers.iter().enumerate() {
                if server.address.is_ipv4() != vip.is_ipv4() {
                    self.fail(
                        format!("{BASE}.servers[{i}].address"),
                        format!("not the address family of cluster.vip ({vip})"),
                    );
                    complete = false;
                }
            }
        }
        if !complete {
            return None;
        }
        Some(Some(Vip {
            virtual_router_id: virtual_router_id?,
            priority: priority?,
            advert_interval_ms: advert_interval_ms?,
            servers: servers?,
            announce_port: announce_port?,
        }))
    }

    fn vip_servers(
        &mut self,
        servers: &[VipServerDoc],
        node_name: Option<&NodeName>,
        role: Option<Role>,
        wg: &WireguardParts,
    ) -> Option<Vec<VipServer>> {
        const PATH: &str = "network.vip.servers";
        if servers.is_empty() {
            self.fail(
                PATH,
                "required: the servers that may hold the VIP, this node included if it is a server",
            );
            return None;
        }
        if !self.list_fits(PATH, servers.len(), MAX_VIP_SERVERS) {
            return None;
        }
        // Only claim "no such peer" when every peer name could be read.
        let peer_names_known =
            wg.peers.all_valid() && wg.peers.valid().all(|(_, p)| p.name.is_some());
        let mut names = HashMap::new();
        let mut addresses = HashMap::new();
        let mut own_listed = false;
        let mut items = Vec::with_capacity(servers.len());
        for (i, doc) in servers.iter().enumerate() {
            let name_path = format!("{PATH}[{i}].name");
            let address_path = format!("{PATH}[{i}].address");
            let mut name = self.parse::<NodeName>(&name_path, &doc.name);
            let mut address = self.ip(&address_path, &doc.address);
            if let Some(n) = &name
                && let Some(first) = first_seen(&mut names, n.clone(), i)
            {
                self.fail(&name_path, format!("duplicate, also servers[{first}]"));
                name = None;
            }
            if let Some(ip) = address
                && let Some(first) = first_seen(&mut addresses, ip, i)
            {
                self.fail(&address_path, format!("same address as servers[{first}]"));
                address = None;
            }
            if let Some(n) = &name {
                if Some(n) == node_name {
                    own_listed = true;
                    if role == Some(Role::Agent) {
                        self.fail(
                            &name_path,
                            "is this node, an agent; only servers may hold the VIP",
                        );
                        name = None;
                    }
                    if let Some(ip) = address
                        && wg.addresses.all_valid()
                        && !wg.addresses.valid().any(|(_, net)| net.addr() == ip)
                    {
                        self.fail(
                            &address_path,
                            "not one of this node's network.wireguard.addresses",
                        );
                        address = None;
                    }
                } else if let Some((j, peer)) = wg.peer(n) {
                    if let Some(ip) = address
                        && peer.allowed_ips.all_valid()
                        && !peer.allowed_ips.valid().any(|(_, net)| net.contains(&ip))
                    {
                        self.fail(
                            &address_path,
                            format!(
                                "not inside the allowed_ips of network.wireguard.peers[{j}] ({n})"
                            ),
                        );
                        address = None;
                    }
                } else if node_name.is_some() && peer_names_known {
                    self.fail(
                        &name_path,
                        "neither this node (node_name) nor a peer in network.wireguard.peers",
                    );
                    name = None;
                }
            }
            items.push(
                name.zip(address)
                    .map(|(name, address)| VipServer { name, address }),
            );
        }
        if let (Some(own), Some(role)) = (node_name, role)
            && role.is_server()
            && !own_listed
        {
            self.fail(
                PATH,
                format!("must include this node ({own}): it is a server"),
            );
            return None;
        }
        items.into_iter().collect()
    }

    /// Rules that tie `cluster` to the mesh.
    pub(super) fn cluster_vs_mesh(&mut self, cluster: &ClusterParts, wg: &WireguardParts) {
        for (i, address) in wg.addresses.valid() {
            let mesh = address.trunc();
            for (path, net) in cluster.cidrs() {
                if nets_overlap(&net, &mesh) {
                    self.fail(
                        path,
                        format!(
                            "overlaps the mesh network {mesh} (network.wireguard.addresses[{i}])"
                        ),
                    );
                }
            }
        }
        let Some(Some(vip)) = cluster.vip else { return };
        for (i, address) in wg.addresses.valid() {
            if address.addr() == vip {
                self.fail(
                    "cluster.vip",
                    format!("is this node's own address (network.wireguard.addresses[{i}])"),
                );
            }
        }
        for (j, peer) in wg.peers.valid() {
            for (k, net) in peer.allowed_ips.valid() {
                if net.contains(&vip) {
                    self.fail(
                        "cluster.vip",
                        format!(
                            "lies inside network.wireguard.peers[{j}].allowed_ips[{k}] ({net}); \
                             the agent routes the VIP itself, leave it out of allowed_ips"
                        ),
                    );
                }
            }
        }
        for (path, net) in cluster.cidrs() {
            if net.contains(&vip) {
                self.fail("cluster.vip", format!("lies inside {path} ({net})"));
            }
        }
    }
}
