//! User access: a wg-quick config for a person who joins the mesh through
//! this node (the hub), and the peer entry that admits them. The person's
//! key pair is made on their side (by `tfagentctl`); the agent never sees
//! the private key.

use std::fmt::Write;

use ipnet::IpNet;

use crate::{WgKey, Wireguard};

/// Keepalive the user's side sends, so NAT mappings stay open.
pub const USER_KEEPALIVE: u16 = 25;

/// What the node tells about itself for a user's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubInfo {
    pub public_key: WgKey,
    pub listen_port: u16,
    pub mtu: u32,
    /// What the user routes through this node: the mesh networks and the
    /// VIP.
    pub allowed_ips: Vec<IpNet>,
    /// The spec's peer of the asked name, if there is one: its allowed IPs.
    pub existing_peer: Option<(WgKey, Vec<IpNet>)>,
}

/// The hub's side of a user's config, from the spec.
pub fn hub_info(
    wireguard: &Wireguard,
    vip: Option<std::net::IpAddr>,
    public_key: WgKey,
    name: &str,
) -> HubInfo {
    let mut allowed_ips: Vec<IpNet> = wireguard.addresses.iter().map(IpNet::trunc).collect();
    if let Some(vip) = vip {
        allowed_ips.push(IpNet::from(vip));
    }
    allowed_ips.sort();
    allowed_ips.dedup();
    let existing_peer = wireguard
        .peers
        .iter()
        .find(|p| p.name.as_str() == name)
        .map(|p| (p.public_key, p.allowed_ips.clone()));
    HubInfo {
        public_key,
        listen_port: wireguard.listen_port,
        mtu: wireguard.mtu,
        allowed_ips,
        existing_peer,
    }
}

fn join(nets: &[IpNet]) -> String {
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The wg-quick config of the user. `private_key` is the user's, when it was
/// just made for them; otherwise a placeholder they fill in.
pub fn render_config(
    hub: &HubInfo,
    endpoint: &str,
    user_address: &[IpNet],
    private_key: Option<&str>,
) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "[Interface]");
    match private_key {
        Some(key) => {
            let _ = writeln!(text, "PrivateKey = {key}");
        }
        None => {
            let _ = writeln!(
                text,
                "# Fill in your own private key: the node never had it."
            );
            let _ = writeln!(text, "PrivateKey = <your private key>");
        }
    }
    let _ = writeln!(text, "Address = {}", join(user_address));
    let _ = writeln!(text, "MTU = {}", hub.mtu);
    let _ = writeln!(text);
    let _ = writeln!(text, "[Peer]");
    let _ = writeln!(text, "PublicKey = {}", hub.public_key);
    let _ = writeln!(text, "Endpoint = {endpoint}");
    let _ = writeln!(text, "AllowedIPs = {}", join(&hub.allowed_ips));
    let _ = writeln!(text, "PersistentKeepalive = {USER_KEEPALIVE}");
    text
}

/// The peer entry (spec YAML) that admits the user on the hub.
pub fn render_peer_entry(name: &str, public_key: WgKey, address: &[IpNet]) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "- name: {name}");
    let _ = writeln!(text, "  public_key: \"{public_key}\"");
    let _ = writeln!(text, "  allowed_ips:");
    for net in address {
        let _ = writeln!(text, "    - {}", net.trunc());
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::fixtures::{key, wireguard};

    #[test]
    fn the_config_routes_the_mesh_and_the_vip_through_the_hub() {
        let hub = hub_info(
            &wireguard(2),
            Some("10.100.0.254".parse().unwrap()),
            key(0),
            "user",
        );
        assert_eq!(hub.existing_peer, None);
        let address = vec!["10.100.0.200/32".parse().unwrap()];
        let text = render_config(&hub, "192.0.2.1:51820", &address, Some("PRIVATE"));
        assert_eq!(
            text,
            format!(
                "[Interface]\nPrivateKey = PRIVATE\nAddress = 10.100.0.200/32\nMTU = 1420\n\n\
                 [Peer]\nPublicKey = {}\nEndpoint = 192.0.2.1:51820\n\
                 AllowedIPs = 10.100.0.0/24, 10.100.0.254/32\nPersistentKeepalive = 25\n",
                key(0)
            )
        );
        let entry = render_peer_entry("user", key(9), &address);
        assert_eq!(
            entry,
            format!(
                "- name: user\n  public_key: \"{}\"\n  allowed_ips:\n    - 10.100.0.200/32\n",
                key(9)
            )
        );
    }

    #[test]
    fn a_known_peer_gets_a_placeholder_key_and_its_own_address() {
        let hub = hub_info(&wireguard(2), None, key(0), "node-2");
        let (peer_key, allowed) = hub.existing_peer.clone().unwrap();
        assert_eq!(peer_key, key(2));
        let text = render_config(&hub, "192.0.2.1:51820", &allowed, None);
        assert!(text.contains("PrivateKey = <your private key>"), "{text}");
        assert!(text.contains("Address = 10.100.0.3/32"), "{text}");
        assert!(text.contains("AllowedIPs = 10.100.0.0/24\n"), "{text}");
    }
}
