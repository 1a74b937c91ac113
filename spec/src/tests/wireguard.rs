//! Rules of `network.wireguard`.

use super::*;

#[test]
fn wireguard_rules() {
    check_faults(
        base,
        &[
            (
                |d| d.network.wireguard.interface = "w-abc".into(),
                "network.wireguard.interface",
                "zOS's own",
            ),
            (
                |d| d.network.wireguard.interface = "n-1".into(),
                "network.wireguard.interface",
                "zOS's own",
            ),
            (
                |d| d.network.wireguard.interface = "b-x".into(),
                "network.wireguard.interface",
                "zOS's own",
            ),
            (
                |d| d.network.wireguard.interface = "br-pub".into(),
                "network.wireguard.interface",
                "zOS's own",
            ),
            (
                |d| d.network.wireguard.interface = "br-ndmz".into(),
                "network.wireguard.interface",
                "zOS's own",
            ),
            (
                |d| d.network.wireguard.interface = "a-very-long-name".into(),
                "network.wireguard.interface",
                "longer than 15",
            ),
            (
                |d| d.network.wireguard.interface = "a/b".into(),
                "network.wireguard.interface",
                "must not contain",
            ),
            (
                |d| d.network.wireguard.interface = "wg 0".into(),
                "network.wireguard.interface",
                "must not contain",
            ),
            (
                |d| d.network.wireguard.interface = "..".into(),
                "network.wireguard.interface",
                "are not interface names",
            ),
            (
                |d| d.network.wireguard.listen_port = 65536,
                "network.wireguard.listen_port",
                "1..=65535",
            ),
            (
                |d| d.network.wireguard.mtu = 1279,
                "network.wireguard.mtu",
                "1280..=9000",
            ),
            (
                |d| d.network.wireguard.mtu = 9001,
                "network.wireguard.mtu",
                "1280..=9000",
            ),
            (
                |d| d.network.wireguard.addresses.clear(),
                "network.wireguard.addresses",
                "required",
            ),
            (
                |d| d.network.wireguard.addresses = vec!["10.100.0.1".into()],
                "network.wireguard.addresses[0]",
                "needs a prefix length",
            ),
            (
                |d| d.network.wireguard.addresses = vec!["mesh".into()],
                "network.wireguard.addresses[0]",
                "not an address",
            ),
            (
                |d| d.network.wireguard.addresses = vec!["10.100.0.0/24".into()],
                "network.wireguard.addresses[0]",
                "is the network address of 10.100.0.0/24",
            ),
            (
                |d| d.network.wireguard.addresses = vec!["10.100.0.255/24".into()],
                "network.wireguard.addresses[0]",
                "is the broadcast address",
            ),
            (
                |d| d.network.wireguard.addresses.push("10.100.0.1/16".into()),
                "network.wireguard.addresses[1]",
                "same address as addresses[0]",
            ),
            (
                |d| d.network.wireguard.addresses = vec!["100.64.1.1/24".into()],
                "network.wireguard.addresses[0]",
                "zOS",
            ),
            (
                |d| {
                    d.network.wireguard.addresses =
                        (1..=17).map(|i| format!("10.100.{i}.1/24")).collect()
                },
                "network.wireguard.addresses",
                "at most 16 entries",
            ),
            (
                |d| d.network.wireguard.peers[0].name.clear(),
                "network.wireguard.peers[0].name",
                "required",
            ),
            (
                |d| d.network.wireguard.peers[0].name = "Peer".into(),
                "network.wireguard.peers[0].name",
                "lower case",
            ),
            (
                |d| d.network.wireguard.peers[1].name = "node-2".into(),
                "network.wireguard.peers[1].name",
                "duplicate peer name, also peers[0]",
            ),
            (
                |d| d.network.wireguard.peers[0].name = "node-1".into(),
                "network.wireguard.peers[0].name",
                "this node's own name",
            ),
            (
                |d| d.network.wireguard.peers[0].public_key.clear(),
                "network.wireguard.peers[0].public_key",
                "required",
            ),
            (
                |d| d.network.wireguard.peers[0].public_key = "not-base64!".into(),
                "network.wireguard.peers[0].public_key",
                "not a 32-byte base64 key",
            ),
            (
                |d| d.network.wireguard.peers[0].public_key = BASE64.encode([7u8; 31]),
                "network.wireguard.peers[0].public_key",
                "not a 32-byte base64 key (it decodes to 31 bytes)",
            ),
            (
                |d| d.network.wireguard.peers[1].public_key = key(2),
                "network.wireguard.peers[1].public_key",
                "same key as peers[0]",
            ),
            (
                |d| d.network.wireguard.peers[0].endpoint = "203.0.113.2".into(),
                "network.wireguard.peers[0].endpoint",
                "host:port",
            ),
            (
                |d| d.network.wireguard.peers[0].endpoint = "2001:db8::1:51820".into(),
                "network.wireguard.peers[0].endpoint",
                "[v6]:port",
            ),
            (
                |d| d.network.wireguard.peers[0].endpoint = "host:0".into(),
                "network.wireguard.peers[0].endpoint",
                "port must be",
            ),
            (
                |d| d.network.wireguard.peers[0].endpoint = "host:+80".into(),
                "network.wireguard.peers[0].endpoint",
                "port must be",
            ),
            (
                |d| d.network.wireguard.peers[0].endpoint = "bad_host:51820".into(),
                "network.wireguard.peers[0].endpoint",
                "host is not",
            ),
            (
                |d| d.network.wireguard.peers[0].allowed_ips = vec!["10.100.0.2/24".into()],
                "network.wireguard.peers[0].allowed_ips[0]",
                "not a network address, did you mean 10.100.0.0/24",
            ),
            (
                |d| d.network.wireguard.peers[0].allowed_ips = vec!["10.100.0.2".into()],
                "network.wireguard.peers[0].allowed_ips[0]",
                "did you mean 10.100.0.2/32",
            ),
            (
                |d| {
                    d.network.wireguard.peers[1]
                        .allowed_ips
                        .push("10.100.0.2/32".into())
                },
                "network.wireguard.peers[1].allowed_ips[1]",
                "also claimed by peers[0]",
            ),
            (
                |d| {
                    d.network.wireguard.peers[0]
                        .allowed_ips
                        .push("10.100.0.2/32".into())
                },
                "network.wireguard.peers[0].allowed_ips[1]",
                "listed twice",
            ),
            (
                |d| {
                    d.network.wireguard.peers[0].allowed_ips =
                        (0..65).map(|i| format!("10.1.{i}.0/24")).collect()
                },
                "network.wireguard.peers[0].allowed_ips",
                "at most 64 entries",
            ),
            (
                |d| d.network.wireguard.peers[0].persistent_keepalive = 65536,
                "network.wireguard.peers[0].persistent_keepalive",
                "at most 65535",
            ),
        ],
    );
    check_valid(
        base,
        &[
            |d| d.network.wireguard.interface = "wg0".into(),
            |d| d.network.wireguard.listen_port = 1,
            |d| d.network.wireguard.mtu = 9000,
            |d| d.network.wireguard.addresses.push("fd00:100::1/64".into()),
            |d| d.network.wireguard.addresses = vec!["10.100.0.1/32".into()],
            |d| d.network.wireguard.peers.clear(),
            |d| d.network.wireguard.peers[0].endpoint = "[2001:db8::1]:51820".into(),
            |d| d.network.wireguard.peers[0].endpoint = "node-2.example.com:51820".into(),
            |d| d.network.wireguard.peers[0].persistent_keepalive = 65535,
            // Overlapping but distinct prefixes are WireGuard's longest match, not a conflict.
            |d| {
                d.network.wireguard.peers[1]
                    .allowed_ips
                    .push("10.200.0.0/16".into())
            },
            |d| {
                d.network.wireguard.peers[0]
                    .allowed_ips
                    .push("10.200.5.0/24".into())
            },
        ],
    );
}

#[test]
fn peer_using_the_nodes_own_key_is_refused() {
    let ctx = ValidationContext {
        own_public_key: Some(key(3).parse().unwrap()),
        kernel_filesystems: None,
        ..ValidationContext::default()
    };
    let errors = errors_with(&base(), &ctx);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].to_string(),
        "network.wireguard.peers[1].public_key: is this node's own public key"
    );
    let ctx = ValidationContext {
        own_public_key: Some(key(9).parse().unwrap()),
        kernel_filesystems: None,
        ..ValidationContext::default()
    };
    assert!(errors_with(&base(), &ctx).is_empty());
}
