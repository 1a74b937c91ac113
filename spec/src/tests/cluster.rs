//! Rules of `node_name`, `role` and `cluster`.

use super::*;

#[test]
fn identity_and_cluster_rules() {
    check_faults(
        base,
        &[
            (|d| d.node_name.clear(), "node_name", "required"),
            (|d| d.node_name = "Node-1".into(), "node_name", "lower case"),
            (
                |d| d.node_name = "-node".into(),
                "node_name",
                "start and end",
            ),
            (|d| d.node_name = "a..b".into(), "node_name", "empty label"),
            (
                |d| d.node_name = "a_b".into(),
                "node_name",
                "may contain only",
            ),
            (
                |d| d.node_name = "a".repeat(254),
                "node_name",
                "longer than 253",
            ),
            (
                |d| d.node_name = format!("{}.b", "a".repeat(64)),
                "node_name",
                "label longer than 63",
            ),
            (|d| d.role.clear(), "role", "required"),
            (
                |d| d.role = "master".into(),
                "role",
                "`master` is not one of server-init, server-join, agent",
            ),
            (|d| d.cluster.token.clear(), "cluster.token", "required"),
            (
                |d| d.cluster.token = REDACTED.into(),
                "cluster.token",
                "redaction placeholder",
            ),
            (
                |d| d.cluster.token = "two words".into(),
                "cluster.token",
                "whitespace",
            ),
            (
                |d| d.cluster.token = "x".repeat(513),
                "cluster.token",
                "longer than 512",
            ),
            (
                |d| d.cluster.join_url = "https://10.0.0.1:6443".into(),
                "cluster.join_url",
                "must be empty for role server-init",
            ),
            (
                |d| d.role = "agent".into(),
                "cluster.join_url",
                "required for role agent",
            ),
            (
                |d| d.role = "server-join".into(),
                "cluster.join_url",
                "required for role server-join",
            ),
            (
                |d| {
                    d.role = "agent".into();
                    d.cluster.join_url = "http://10.0.0.1:6443".into();
                },
                "cluster.join_url",
                "must be https://host:port",
            ),
            (
                |d| {
                    d.role = "agent".into();
                    d.cluster.join_url = "https://10.0.0.1".into();
                },
                "cluster.join_url",
                "needs a port",
            ),
            (
                |d| {
                    d.role = "agent".into();
                    d.cluster.join_url = "https://10.0.0.1:6443/path".into();
                },
                "cluster.join_url",
                "no path",
            ),
            (
                |d| {
                    d.role = "agent".into();
                    d.cluster.join_url = "https://10.0.0.1:0".into();
                },
                "cluster.join_url",
                "port must be 1..=65535",
            ),
            (
                |d| d.cluster.vip = "10.100.0.250/32".into(),
                "cluster.vip",
                "not an IP address (without a prefix length)",
            ),
            (
                |d| d.cluster.vip = "vip.example.com".into(),
                "cluster.vip",
                "not an IP address",
            ),
            (
                |d| d.cluster.vip = "10.100.0.1".into(),
                "cluster.vip",
                "this node's own address (network.wireguard.addresses[0])",
            ),
            (
                |d| d.cluster.vip = "10.100.0.3".into(),
                "cluster.vip",
                "inside network.wireguard.peers[1].allowed_ips[0]",
            ),
            (
                |d| d.cluster.vip = "10.42.0.9".into(),
                "cluster.vip",
                "inside cluster.cluster_cidr (10.42.0.0/16)",
            ),
            (
                |d| d.cluster.tls_sans = vec!["not a name".into()],
                "cluster.tls_sans[0]",
                "not an IP address or DNS name",
            ),
            (
                |d| d.cluster.tls_sans = vec!["1.2.3".into()],
                "cluster.tls_sans[0]",
                "not an IP address or DNS name",
            ),
            (
                |d| d.cluster.tls_sans = vec!["k3s.example.com".into(), "K3S.example.com".into()],
                "cluster.tls_sans[1]",
                "duplicate of tls_sans[0]",
            ),
            (
                |d| d.cluster.tls_sans = vec!["::1".into(), "0::1".into()],
                "cluster.tls_sans[1]",
                "duplicate",
            ),
            (
                |d| d.cluster.tls_sans = vec!["a.example.com".into(); 65],
                "cluster.tls_sans",
                "at most 64 entries",
            ),
            (
                |d| d.cluster.cluster_cidr = "10.42.0.1/16".into(),
                "cluster.cluster_cidr",
                "not a network address, did you mean 10.42.0.0/16",
            ),
            (
                |d| d.cluster.cluster_cidr = "10.42.0.0".into(),
                "cluster.cluster_cidr",
                "not a CIDR, did you mean 10.42.0.0/32",
            ),
            (
                |d| d.cluster.cluster_cidr = "pods".into(),
                "cluster.cluster_cidr",
                "not a CIDR",
            ),
            (
                |d| d.cluster.service_cidr = "10.42.128.0/17".into(),
                "cluster.service_cidr",
                "overlaps cluster.cluster_cidr (10.42.0.0/16)",
            ),
            (
                |d| d.cluster.cluster_cidr = "100.64.0.0/12".into(),
                "cluster.cluster_cidr",
                "overlaps 100.64.0.0/16",
            ),
            (
                |d| d.cluster.service_cidr = "100.127.3.0/24".into(),
                "cluster.service_cidr",
                "overlaps 100.127.0.0/16",
            ),
            (
                |d| d.cluster.cluster_cidr = "10.100.0.0/16".into(),
                "cluster.cluster_cidr",
                "overlaps the mesh network 10.100.0.0/24 (network.wireguard.addresses[0])",
            ),
        ],
    );
    check_valid(
        base,
        &[
            |d| {
                d.role = "agent".into();
                d.cluster.join_url = "https://10.100.0.250:6443/".into();
            },
            |d| {
                d.role = "server-join".into();
                d.cluster.join_url = "https://[fd00::1]:6443".into();
            },
            |d| {
                d.role = "agent".into();
                d.cluster.join_url = "https://k3s.example.com:6443".into();
            },
            |d| {
                d.cluster.tls_sans = vec![
                    "k3s.example.com".into(),
                    "203.0.113.7".into(),
                    "2001:db8::1".into(),
                ]
            },
            |d| {
                d.cluster.cluster_cidr = "172.16.0.0/16".into();
                d.cluster.service_cidr = "172.17.0.0/16".into();
            },
            |d| d.cluster.vip = "10.100.0.250".into(),
            |d| d.cluster.token = "K10abc::server:def".into(),
        ],
    );
}

#[test]
fn join_url_is_canonical() {
    let mut doc = base();
    doc.role = "agent".into();
    doc.cluster.join_url = "https://10.100.0.250:6443/".into();
    let spec = valid(&doc);
    let url = spec.cluster.join_url.as_ref().unwrap();
    assert_eq!(url.to_string(), "https://10.100.0.250:6443");
    assert_eq!(url.endpoint().port(), 6443);
}
