//! Rules of `network.vip`.

use super::*;

#[test]
fn vip_rules() {
    check_faults(
        with_vip,
        &[
            (
                |d| d.cluster.vip.clear(),
                "network.vip",
                "needs cluster.vip",
            ),
            (
                |d| {
                    d.network.vip.priority = 100;
                    d.network.vip.servers.clear();
                },
                "network.vip.servers",
                "required",
            ),
            (
                |d| d.network.vip.virtual_router_id = 256,
                "network.vip.virtual_router_id",
                "1..=255",
            ),
            (
                |d| d.network.vip.priority = 255,
                "network.vip.priority",
                "1..=254",
            ),
            (
                |d| d.network.vip.advert_interval_ms = 5,
                "network.vip.advert_interval_ms",
                "multiple of 10",
            ),
            (
                |d| d.network.vip.advert_interval_ms = 15,
                "network.vip.advert_interval_ms",
                "multiple of 10",
            ),
            (
                |d| d.network.vip.advert_interval_ms = 40960,
                "network.vip.advert_interval_ms",
                "10..=40950",
            ),
            (
                |d| d.network.vip.servers[1].name = "node-9".into(),
                "network.vip.servers[1].name",
                "neither this node (node_name) nor a peer",
            ),
            (
                |d| d.network.vip.announce_port = 70000,
                "network.vip.announce_port",
                "1..=65535",
            ),
            (
                |d| {
                    d.network.vip.servers[1].address = "fd00::2".into();
                    for peer in &mut d.network.wireguard.peers {
                        if peer.name == "node-2" {
                            peer.allowed_ips.push("fd00::2/128".into());
                        }
                    }
                },
                "network.vip.servers[1].address",
                "not the address family of cluster.vip",
            ),
            (
                |d| d.network.vip.servers[1].name = "node-1".into(),
                "network.vip.servers[1].name",
                "duplicate, also servers[0]",
            ),
            (
                |d| d.network.vip.servers[1].address = "10.100.0.1".into(),
                "network.vip.servers[1].address",
                "same address as servers[0]",
            ),
            (
                |d| d.network.vip.servers[1].address = "".into(),
                "network.vip.servers[1].address",
                "required",
            ),
            (
                |d| d.network.vip.servers[1].address = "10.100.0.2/32".into(),
                "network.vip.servers[1].address",
                "not an IP address",
            ),
            (
                |d| {
                    d.network.vip.servers.remove(0);
                },
                "network.vip.servers",
                "must include this node (node-1): it is a server",
            ),
            (
                |d| d.network.vip.servers[0].address = "10.100.0.9".into(),
                "network.vip.servers[0].address",
                "not one of this node's network.wireguard.addresses",
            ),
            (
                |d| d.network.vip.servers[1].address = "10.100.0.3".into(),
                "network.vip.servers[1].address",
                "not inside the allowed_ips of network.wireguard.peers[0] (node-2)",
            ),
            (
                |d| {
                    d.role = "agent".into();
                    d.cluster.join_url = "https://10.100.0.250:6443".into();
                },
                "network.vip.servers[0].name",
                "is this node, an agent",
            ),
        ],
    );
    check_valid(
        with_vip,
        &[
            |d| {
                d.network.vip.virtual_router_id = 255;
                d.network.vip.priority = 254;
                d.network.vip.advert_interval_ms = 40950;
            },
            |d| {
                d.network.vip.virtual_router_id = 1;
                d.network.vip.priority = 1;
                d.network.vip.advert_interval_ms = 10;
            },
            // An agent lists the servers so it knows who may announce the VIP.
            |d| {
                d.role = "agent".into();
                d.cluster.join_url = "https://10.100.0.250:6443".into();
                d.network.vip.servers.remove(0);
            },
        ],
    );
}
