//! Tests of the spec: parsing, every validation rule, the newtypes, and
//! property tests. The strategies are shared with the proto conversion's tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::num::NonZeroU16;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ipnet::IpNet;
use proptest::prelude::*;

use super::*;

use crate::fixtures::EXAMPLES;

const TOKEN: &str = "hunter2-cluster-token";

fn key(n: u8) -> String {
    WgKey::from_bytes([n; 32]).to_string()
}

/// A small valid server-init document: two peers, nothing else.
fn base() -> SpecDocument {
    let text = format!(
        r#"
node_name: node-1
role: server-init
cluster:
  token: {TOKEN}
network:
  wireguard:
    addresses: [10.100.0.1/24]
    peers:
      - name: node-2
        public_key: {k2}
        endpoint: 203.0.113.2:51820
        allowed_ips: [10.100.0.2/32]
      - name: node-3
        public_key: {k3}
        allowed_ips: [10.100.0.3/32]
"#,
        k2 = key(2),
        k3 = key(3),
    );
    SpecDocument::parse(&text).unwrap()
}

/// [`base`] with the VIP and its election among node-1 and node-2.
fn with_vip() -> SpecDocument {
    let mut doc = base();
    doc.cluster.vip = "10.100.0.250".into();
    doc.network.vip.servers = vec![
        VipServerDoc {
            name: "node-1".into(),
            address: "10.100.0.1".into(),
        },
        VipServerDoc {
            name: "node-2".into(),
            address: "10.100.0.2".into(),
        },
    ];
    doc
}

fn device_volume() -> VolumeDoc {
    VolumeDoc {
        name: "data".into(),
        device: Some("/dev/disk/by-id/nvme-disk-1".into()),
        mount_point: "/var/lib/data".into(),
        ..Default::default()
    }
}

fn pool_volume() -> VolumeDoc {
    VolumeDoc {
        name: "k3s".into(),
        pool: Some("/mnt/ssd-1".into()),
        size: "50GiB".into(),
        mount_point: "/var/lib/rancher/k3s".into(),
        ..Default::default()
    }
}

fn with_volumes(volumes: Vec<VolumeDoc>) -> SpecDocument {
    let mut doc = base();
    doc.storage.volumes = volumes;
    doc
}

fn with_metallb() -> SpecDocument {
    let mut doc = base();
    doc.addons.metallb = MetallbDoc {
        enabled: true,
        addresses: vec!["198.51.100.0/28".into()],
        interface: "eth0".into(),
    };
    doc
}

fn errors(doc: &SpecDocument) -> Vec<FieldError> {
    errors_with(doc, &ValidationContext::default())
}

fn errors_with(doc: &SpecDocument, ctx: &ValidationContext) -> Vec<FieldError> {
    match doc.validate(ctx) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.into_vec(),
    }
}

fn valid(doc: &SpecDocument) -> NodeSpec {
    doc.validate(&ValidationContext::default())
        .unwrap_or_else(|e| panic!("expected valid, got:\n{e}"))
}

type Edit = fn(&mut SpecDocument);

/// Applies each edit to `start()` and expects exactly one fault, at `path`,
/// whose message contains `needle`.
fn check_faults(start: fn() -> SpecDocument, cases: &[(Edit, &str, &str)]) {
    for (i, (edit, path, needle)) in cases.iter().enumerate() {
        let mut doc = start();
        edit(&mut doc);
        let errors = errors(&doc);
        assert!(
            errors.len() == 1 && errors[0].path == *path && errors[0].message.contains(needle),
            "case {i}: expected one fault `{path}: …{needle}…`, got {errors:#?}"
        );
        for error in &errors {
            assert!(!error.message.contains(TOKEN), "case {i}: token in {error}");
        }
    }
}

/// Applies each edit to `start()` and expects a valid document.
fn check_valid(start: fn() -> SpecDocument, cases: &[Edit]) {
    for (i, edit) in cases.iter().enumerate() {
        let mut doc = start();
        edit(&mut doc);
        let errors = errors(&doc);
        assert!(
            errors.is_empty(),
            "case {i}: expected valid, got {errors:#?}"
        );
    }
}

// ---------------------------------------------------------------- examples and defaults

#[test]
fn examples_validate() {
    for (name, text) in EXAMPLES {
        let doc = SpecDocument::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let spec = doc
            .validate(&ValidationContext::default())
            .unwrap_or_else(|e| panic!("{name}:\n{e}"));
        assert_eq!(spec.role.to_string(), name);
        // zOS's kernel has btrfs but neither ext4 nor xfs.
        let zos = ValidationContext {
            own_public_key: None,
            kernel_filesystems: Some(BTreeSet::from(["btrfs".to_owned(), "overlay".to_owned()])),
            ..ValidationContext::default()
        };
        doc.validate(&zos)
            .unwrap_or_else(|e| panic!("{name} on zOS:\n{e}"));
        assert_eq!(
            spec.to_document().validate(&ValidationContext::default()),
            Ok(spec)
        );
    }
}

#[test]
fn examples_describe_one_cluster() {
    let specs: Vec<NodeSpec> = EXAMPLES
        .iter()
        .map(|(_, text)| valid(&SpecDocument::parse(text).unwrap()))
        .collect();
    for spec in &specs {
        assert_eq!(spec.cluster.vip, Some("10.100.0.250".parse().unwrap()));
        assert_eq!(spec.cluster.token, specs[0].cluster.token);
        assert!(
            spec.network
                .wireguard
                .peers
                .iter()
                .any(|p| p.name.as_str() == "user")
        );
    }
    // Every node's key as seen by the others is the same.
    let key_of = |name: &str| -> BTreeSet<WgKey> {
        specs
            .iter()
            .flat_map(|s| s.network.wireguard.peers.iter())
            .filter(|p| p.name.as_str() == name)
            .map(|p| p.public_key)
            .collect()
    };
    for name in [
        "server-1", "server-2", "server-3", "worker-1", "worker-2", "user",
    ] {
        assert_eq!(key_of(name).len(), 1, "{name}");
    }
}

#[test]
fn defaults_are_filled_in() {
    let spec = valid(&base());
    assert_eq!(spec.node_name.as_str(), "node-1");
    assert_eq!(spec.role, Role::ServerInit);
    assert_eq!(spec.cluster.token.expose(), TOKEN);
    assert_eq!(spec.cluster.join_url, None);
    assert_eq!(spec.cluster.cluster_cidr.to_string(), "10.42.0.0/16");
    assert_eq!(spec.cluster.service_cidr.to_string(), "10.43.0.0/16");
    let wg = &spec.network.wireguard;
    assert_eq!(wg.interface.as_str(), "tfk3s");
    assert_eq!(wg.listen_port, 51820);
    assert_eq!(wg.mtu, 1420);
    assert_eq!(wg.peers[1].endpoint, None);
    assert_eq!(wg.peers[1].persistent_keepalive, None);
    assert_eq!(spec.network.vip, None);
    assert_eq!(
        spec.services.containerd.binary.as_str(),
        "/usr/bin/containerd"
    );
    assert_eq!(spec.services.k3s.binary.as_str(), "/usr/local/bin/k3s");
    assert_eq!(spec.addons, Addons::default());

    let vip = valid(&with_vip()).network.vip.unwrap();
    assert_eq!(
        (vip.virtual_router_id, vip.priority, vip.advert_interval_ms),
        (51, 100, 200)
    );

    let volumes = valid(&with_volumes(vec![device_volume(), pool_volume()]))
        .storage
        .volumes;
    assert_eq!(volumes[0].filesystem, Filesystem::Btrfs);
    assert_eq!(volumes[0].format, FormatPolicy::IfBlank);
    assert_eq!(
        volumes[1].source,
        VolumeSource::Pool {
            pool: "/mnt/ssd-1".parse().unwrap(),
            size: ByteSize::from_bytes(50 << 30)
        }
    );

    let mut doc = base();
    doc.addons.cert_manager = CertManagerDoc {
        enabled: true,
        email: "ops@example.com".into(),
        server: String::new(),
    };
    doc.addons.ingress_nginx.enabled = true;
    doc.addons.local_path.enabled = true;
    doc.addons.longhorn.enabled = true;
    let addons = valid(&doc).addons;
    assert_eq!(addons.cert_manager.unwrap().server, AcmeServer::Staging);
    assert_eq!(
        addons.local_path.unwrap().path.as_str(),
        "/var/lib/rancher/k3s/storage"
    );
    assert_eq!(
        addons.longhorn.unwrap().data_path.as_str(),
        "/var/lib/longhorn"
    );
}

#[test]
fn normalized_document_spells_out_defaults() {
    let doc = valid(&with_volumes(vec![device_volume()])).to_document();
    assert_eq!(doc.network.wireguard.interface, "tfk3s");
    assert_eq!(doc.network.wireguard.listen_port, 51820);
    assert_eq!(doc.network.wireguard.mtu, 1420);
    assert_eq!(doc.cluster.cluster_cidr, "10.42.0.0/16");
    assert_eq!(doc.storage.volumes[0].format, "if-blank");
    assert_eq!(doc.storage.volumes[0].filesystem, "btrfs");
    assert_eq!(doc.services.k3s.binary, "/usr/local/bin/k3s");
    assert_eq!(doc.network.vip, VipDoc::default());
}

#[test]
fn empty_vip_section_is_no_vip() {
    let mut doc = base();
    doc.cluster.vip = "10.100.0.250".into();
    let spec = valid(&doc);
    assert_eq!(spec.cluster.vip, Some("10.100.0.250".parse().unwrap()));
    assert_eq!(spec.network.vip, None);
}

#[test]
fn disabled_addons_are_ignored() {
    let mut doc = base();
    doc.addons.metallb = MetallbDoc {
        enabled: false,
        addresses: vec!["junk".into()],
        interface: "a/b".into(),
    };
    doc.addons.cert_manager.email = "nope".into();
    doc.addons.local_path.path = "relative".into();
    doc.addons.longhorn.data_path = "/".into();
    assert_eq!(valid(&doc).addons, Addons::default());
}

// ---------------------------------------------------------------- secrets

#[test]
fn redacted_spec_cannot_be_reapplied() {
    let spec = valid(&base());
    let redacted = spec.redacted_document();
    assert_eq!(redacted.cluster.token, REDACTED);
    assert!(!redacted.to_yaml().unwrap().contains(TOKEN));
    let errors = errors(&redacted);
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].to_string(),
        "cluster.token: is the redaction placeholder from `get spec`; supply the real token"
    );
}

#[test]
fn token_never_printed() {
    let spec = valid(&base());
    assert!(!format!("{spec:?}").contains(TOKEN));
    assert!(!format!("{:?}", spec.to_document()).contains(TOKEN));
    assert_eq!(spec.cluster.token.to_string(), REDACTED);

    for token in [
        "hunter2 with spaces",
        "hunter2\u{7}bell",
        &"hunter2".repeat(100),
    ] {
        let mut doc = base();
        doc.cluster.token = token.into();
        doc.node_name = token.into();
        let errors = errors(&doc);
        assert!(
            errors.iter().any(|e| e.path == "cluster.token"),
            "{errors:?}"
        );
        let errs = doc.validate(&ValidationContext::default()).unwrap_err();
        assert!(
            !errs.to_string().contains("hunter2 with")
                && !errs.to_string().contains("hunter2hunter2")
        );
    }
}

#[test]
fn secret_redacts() {
    let secret = Secret::new("s3cr3t");
    assert_eq!(format!("{secret} {secret:?}"), "<redacted> <redacted>");
    assert_eq!(secret.expose(), "s3cr3t");
}

// ---------------------------------------------------------------- rules: identity and cluster

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

// ---------------------------------------------------------------- rules: wireguard

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

// ---------------------------------------------------------------- rules: vip

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

// ---------------------------------------------------------------- rules: storage

fn one_device() -> SpecDocument {
    with_volumes(vec![device_volume()])
}

fn one_pool() -> SpecDocument {
    with_volumes(vec![pool_volume()])
}

fn vol(d: &mut SpecDocument) -> &mut VolumeDoc {
    &mut d.storage.volumes[0]
}

#[test]
fn storage_rules() {
    check_faults(
        one_device,
        &[
            (
                |d| vol(d).name.clear(),
                "storage.volumes[0].name",
                "required",
            ),
            (
                |d| vol(d).name = "Data".into(),
                "storage.volumes[0].name",
                "lower case",
            ),
            (
                |d| vol(d).name = "a.b".into(),
                "storage.volumes[0].name",
                "may contain only a-z, 0-9 and '-'",
            ),
            (
                |d| {
                    let mut second = pool_volume();
                    second.name = "data".into();
                    d.storage.volumes.push(second);
                },
                "storage.volumes[1].name",
                "duplicate volume name, also volumes[0]",
            ),
            (
                |d| vol(d).pool = Some("/mnt/ssd-1".into()),
                "storage.volumes[0]",
                "has both device and pool",
            ),
            (
                |d| vol(d).device = None,
                "storage.volumes[0]",
                "needs a device or a pool",
            ),
            (
                |d| vol(d).device = Some("/mnt/disk".into()),
                "storage.volumes[0].device",
                "under /dev/",
            ),
            (
                |d| vol(d).device = Some("/dev".into()),
                "storage.volumes[0].device",
                "under /dev/",
            ),
            (
                |d| vol(d).device = Some("dev/sda".into()),
                "storage.volumes[0].device",
                "must be an absolute path",
            ),
            (
                |d| vol(d).device = Some("/dev/../etc/sda".into()),
                "storage.volumes[0].device",
                "`..`",
            ),
            (
                |d| vol(d).device = Some(String::new()),
                "storage.volumes[0].device",
                "required",
            ),
            (
                |d| vol(d).size = "10GiB".into(),
                "storage.volumes[0].size",
                "only a pool volume takes a size",
            ),
            (
                |d| vol(d).filesystem = "zfs".into(),
                "storage.volumes[0].filesystem",
                "`zfs` is not one of btrfs, ext4, xfs",
            ),
            (
                |d| vol(d).mount_point.clear(),
                "storage.volumes[0].mount_point",
                "required",
            ),
            (
                |d| vol(d).mount_point = "data".into(),
                "storage.volumes[0].mount_point",
                "must be an absolute path",
            ),
            (
                |d| vol(d).mount_point = "/".into(),
                "storage.volumes[0].mount_point",
                "must not be `/`",
            ),
            (
                |d| vol(d).mount_point = "/etc".into(),
                "storage.volumes[0].mount_point",
                "system directory",
            ),
            (
                |d| vol(d).mount_point = "/proc".into(),
                "storage.volumes[0].mount_point",
                "system directory",
            ),
            (
                |d| vol(d).mount_point = "/usr".into(),
                "storage.volumes[0].mount_point",
                "system directory",
            ),
            (
                |d| vol(d).mount_point = "/mnt/a/../b".into(),
                "storage.volumes[0].mount_point",
                "`.` or `..`",
            ),
            (
                |d| vol(d).mount_point = "/mnt/a/".into(),
                "storage.volumes[0].mount_point",
                "must not end with `/`",
            ),
            (
                |d| vol(d).mount_point = "/mnt//a".into(),
                "storage.volumes[0].mount_point",
                "`//`",
            ),
            (
                |d| vol(d).mount_point = "/mnt/a\0b".into(),
                "storage.volumes[0].mount_point",
                "control characters",
            ),
            (
                |d| vol(d).mount_point = format!("/{}", "a".repeat(5000)),
                "storage.volumes[0].mount_point",
                "longer than 4096",
            ),
            (
                |d| {
                    let mut second = pool_volume();
                    second.mount_point = "/var/lib/data".into();
                    d.storage.volumes.push(second);
                },
                "storage.volumes[1].mount_point",
                "also the mount point of volumes[0]",
            ),
            (
                |d| vol(d).mount_options = vec!["rw,noatime".into()],
                "storage.volumes[0].mount_options[0]",
                "one option per entry",
            ),
            (
                |d| vol(d).mount_options = vec!["no atime".into()],
                "storage.volumes[0].mount_options[0]",
                "one option per entry",
            ),
            (
                |d| vol(d).mount_options = vec![String::new()],
                "storage.volumes[0].mount_options[0]",
                "empty option",
            ),
            (
                |d| vol(d).mount_options = vec!["x".into(); 65],
                "storage.volumes[0].mount_options",
                "at most 64 entries",
            ),
            (
                |d| vol(d).format = "always".into(),
                "storage.volumes[0].format",
                "`always` is not one of never, if-blank, wipe",
            ),
            (
                |d| vol(d).format = "wipe".into(),
                "storage.volumes[0].wipe_signature",
                "required with format wipe",
            ),
            (
                |d| vol(d).wipe_signature = "blank".into(),
                "storage.volumes[0].wipe_signature",
                "only allowed with format: wipe",
            ),
            (
                |d| {
                    vol(d).format = "wipe".into();
                    vol(d).wipe_signature = "ext4".into();
                },
                "storage.volumes[0].wipe_signature",
                "must be `blank` or a filesystem UUID",
            ),
            (
                |d| d.storage.volumes = vec![device_volume(); 65],
                "storage.volumes",
                "at most 64 entries",
            ),
        ],
    );
    check_faults(
        one_pool,
        &[
            (
                |d| vol(d).size.clear(),
                "storage.volumes[0].size",
                "required for a pool volume",
            ),
            (
                |d| vol(d).size = "0".into(),
                "storage.volumes[0].size",
                "more than zero",
            ),
            (
                |d| vol(d).size = "50 GiB".into(),
                "storage.volumes[0].size",
                "not a size",
            ),
            (
                |d| vol(d).size = "lots".into(),
                "storage.volumes[0].size",
                "not a size",
            ),
            (
                |d| vol(d).size = "99999999999999999999".into(),
                "storage.volumes[0].size",
                "too large",
            ),
            (
                |d| vol(d).size = "20000000TiB".into(),
                "storage.volumes[0].size",
                "too large",
            ),
            (
                |d| vol(d).filesystem = "ext4".into(),
                "storage.volumes[0].filesystem",
                "btrfs subvolume",
            ),
            (
                |d| {
                    vol(d).format = "wipe".into();
                    vol(d).wipe_signature = "blank".into();
                },
                "storage.volumes[0].format",
                "never formatted",
            ),
            (
                |d| vol(d).pool = Some("mnt/ssd".into()),
                "storage.volumes[0].pool",
                "must be an absolute path",
            ),
        ],
    );
    check_valid(
        one_device,
        &[
            |d| vol(d).filesystem = "ext4".into(),
            |d| vol(d).filesystem = "xfs".into(),
            |d| vol(d).device = Some("/dev/sdb".into()),
            |d| vol(d).format = "never".into(),
            |d| {
                vol(d).format = "wipe".into();
                vol(d).wipe_signature = "blank".into();
            },
            |d| {
                vol(d).format = "wipe".into();
                vol(d).wipe_signature = "E46B2AFF-9551-4548-B363-96D2AC90BB41".into();
            },
            |d| vol(d).mount_options = vec!["noatime".into(), "compress=zstd:3".into()],
            |d| vol(d).mount_point = "/etc/rancher".into(),
            |d| d.storage.volumes.push(pool_volume()),
        ],
    );
    check_valid(
        one_pool,
        &[
            |d| vol(d).filesystem = "btrfs".into(),
            |d| vol(d).size = "10G".into(),
            |d| vol(d).size = "1073741824".into(),
            |d| vol(d).format = "never".into(),
        ],
    );
}

#[test]
fn kernel_filesystems_are_checked_for_devices() {
    let zos = ValidationContext {
        own_public_key: None,
        kernel_filesystems: Some(BTreeSet::from(["btrfs".to_owned(), "vfat".to_owned()])),
        ..ValidationContext::default()
    };
    let mut doc = with_volumes(vec![device_volume(), pool_volume()]);
    assert!(errors_with(&doc, &zos).is_empty());
    doc.storage.volumes[0].filesystem = "ext4".into();
    let errors = errors_with(&doc, &zos);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].to_string(),
        "storage.volumes[0].filesystem: the kernel does not support ext4 (it has: btrfs, vfat)"
    );
    assert!(doc.validate(&ValidationContext::default()).is_ok());
}

// ---------------------------------------------------------------- rules: services

#[test]
fn services_rules() {
    check_faults(
        base,
        &[
            (
                |d| d.services.k3s.binary = "k3s".into(),
                "services.k3s.binary",
                "must be an absolute path",
            ),
            (
                |d| d.services.containerd.binary = "/usr/bin/".into(),
                "services.containerd.binary",
                "must not end with `/`",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--token=abc".into()],
                "services.k3s.extra_args[0]",
                "`--token` is managed by the agent: set cluster.token instead",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--token".into(), "abc".into()],
                "services.k3s.extra_args[0]",
                "--token",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["-t".into(), "abc".into()],
                "services.k3s.extra_args[0]",
                "`--token`",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["-token=abc".into()],
                "services.k3s.extra_args[0]",
                "`--token`",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--token-file=/x".into()],
                "services.k3s.extra_args[0]",
                "`--token-file`",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--agent-token-file=/x".into()],
                "services.k3s.extra_args[0]",
                "`--agent-token-file`",
            ),
            (
                |d| {
                    d.services.k3s.extra_args =
                        vec!["--datastore-endpoint=postgres://u:pw@db/k3s".into()]
                },
                "services.k3s.extra_args[0]",
                "may hold a password",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--etcd-s3-secret-key".into(), "s".into()],
                "services.k3s.extra_args[0]",
                "its value is a secret",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--server".into(), "https://x:6443".into()],
                "services.k3s.extra_args[0]",
                "cluster.join_url",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--cluster-init".into()],
                "services.k3s.extra_args[0]",
                "it follows role",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--node-ip=10.0.0.1".into()],
                "services.k3s.extra_args[0]",
                "addresses",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--node-name=x".into()],
                "services.k3s.extra_args[0]",
                "node_name",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--flannel-iface=eth0".into()],
                "services.k3s.extra_args[0]",
                "interface",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--data-dir=/x".into()],
                "services.k3s.extra_args[0]",
                "storage.volumes",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--tls-san=x".into()],
                "services.k3s.extra_args[0]",
                "cluster.tls_sans",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--cluster-cidr=x".into()],
                "services.k3s.extra_args[0]",
                "cluster_cidr",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--service-cidr=x".into()],
                "services.k3s.extra_args[0]",
                "service_cidr",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--container-runtime-endpoint=x".into()],
                "services.k3s.extra_args[0]",
                "services.containerd",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--config=/x".into()],
                "services.k3s.extra_args[0]",
                "config",
            ),
            (
                |d| d.services.containerd.extra_args = vec!["--config".into()],
                "services.containerd.extra_args[0]",
                "`--config`",
            ),
            (
                |d| d.services.containerd.extra_args = vec!["-a=/run/x.sock".into()],
                "services.containerd.extra_args[0]",
                "`--address`",
            ),
            (
                |d| d.services.containerd.extra_args = vec!["--root=/x".into()],
                "services.containerd.extra_args[0]",
                "`--root`",
            ),
            (
                |d| d.services.containerd.extra_args = vec!["--state=/x".into()],
                "services.containerd.extra_args[0]",
                "`--state`",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["a\nb".into()],
                "services.k3s.extra_args[0]",
                "line breaks",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["a\0b".into()],
                "services.k3s.extra_args[0]",
                "NUL",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["x".repeat(4097)],
                "services.k3s.extra_args[0]",
                "longer than 4096",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--v=1".into(); 129],
                "services.k3s.extra_args",
                "at most 128 entries",
            ),
        ],
    );
    check_valid(
        base,
        &[
            |d| {
                d.services.k3s.extra_args = vec![
                    "--disable=traefik".into(),
                    "--kubelet-arg=max-pods=200".into(),
                ]
            },
            |d| {
                d.services.k3s.extra_args =
                    vec!["--node-label".into(), "zone=a".into(), "--tokenizer".into()]
            },
            // Managed in k3s, but not in containerd.
            |d| {
                d.services.containerd.extra_args =
                    vec!["--log-level=debug".into(), "--token=x".into()]
            },
            |d| d.services.k3s.binary = "/opt/k3s/bin/k3s".into(),
        ],
    );
}

// ---------------------------------------------------------------- rules: addons

#[test]
fn addon_rules() {
    check_faults(
        with_metallb,
        &[
            (
                |d| d.addons.metallb.addresses.clear(),
                "addons.metallb.addresses",
                "required when metallb is enabled",
            ),
            (
                |d| d.addons.metallb.interface.clear(),
                "addons.metallb.interface",
                "required when metallb is enabled",
            ),
            (
                |d| d.addons.metallb.interface = "tfk3s".into(),
                "addons.metallb.interface",
                "no ARP",
            ),
            (
                |d| d.addons.metallb.interface = "eth/0".into(),
                "addons.metallb.interface",
                "must not contain",
            ),
            (
                |d| d.addons.metallb.addresses = vec!["198.51.100.1/28".into()],
                "addons.metallb.addresses[0]",
                "did you mean 198.51.100.0/28",
            ),
            (
                |d| d.addons.metallb.addresses = vec!["198.51.100.10-198.51.100.1".into()],
                "addons.metallb.addresses[0]",
                "starts after it ends",
            ),
            (
                |d| d.addons.metallb.addresses = vec!["198.51.100.1-2001:db8::1".into()],
                "addons.metallb.addresses[0]",
                "different address families",
            ),
            (
                |d| d.addons.metallb.addresses = vec!["everything".into()],
                "addons.metallb.addresses[0]",
                "not a CIDR or",
            ),
            (
                |d| d.addons.metallb.addresses = vec!["10.42.1.0/24".into()],
                "addons.metallb.addresses[0]",
                "overlaps cluster.cluster_cidr (10.42.0.0/16)",
            ),
            (
                |d| d.addons.metallb.addresses = vec!["10.43.0.250-10.43.1.4".into()],
                "addons.metallb.addresses[0]",
                "overlaps cluster.service_cidr",
            ),
            (
                |d| {
                    d.addons
                        .metallb
                        .addresses
                        .push("198.51.100.15-198.51.100.20".into())
                },
                "addons.metallb.addresses[1]",
                "overlaps addresses[0]",
            ),
            (
                |d| d.addons.metallb.addresses = vec!["198.51.100.0/32".into(); 65],
                "addons.metallb.addresses",
                "at most 64 entries",
            ),
        ],
    );
    check_valid(
        with_metallb,
        &[
            |d| {
                d.addons
                    .metallb
                    .addresses
                    .push("198.51.100.16-198.51.100.20".into())
            },
            |d| {
                d.addons
                    .metallb
                    .addresses
                    .push("198.51.100.16 - 198.51.100.20".into())
            },
            |d| d.addons.metallb.addresses.push("2001:db8:1::/120".into()),
            |d| d.addons.metallb.interface = "br-pub".into(),
        ],
    );

    fn with_cert_manager() -> SpecDocument {
        let mut doc = base();
        doc.addons.cert_manager = CertManagerDoc {
            enabled: true,
            email: "ops@example.com".into(),
            server: String::new(),
        };
        doc.addons.ingress_nginx.enabled = true;
        doc.addons.local_path.enabled = true;
        doc.addons.longhorn.enabled = true;
        doc
    }
    check_faults(
        with_cert_manager,
        &[
            (
                |d| d.addons.cert_manager.email.clear(),
                "addons.cert_manager.email",
                "required",
            ),
            (
                |d| d.addons.cert_manager.email = "ops".into(),
                "addons.cert_manager.email",
                "not a plausible e-mail",
            ),
            (
                |d| d.addons.cert_manager.email = "ops@localhost".into(),
                "addons.cert_manager.email",
                "not a plausible",
            ),
            (
                |d| d.addons.cert_manager.email = "o ps@example.com".into(),
                "addons.cert_manager.email",
                "not a plausible",
            ),
            (
                |d| d.addons.cert_manager.email = "@example.com".into(),
                "addons.cert_manager.email",
                "not a plausible",
            ),
            (
                |d| d.addons.cert_manager.server = "prod".into(),
                "addons.cert_manager.server",
                "`prod` is not one of staging, production",
            ),
            (
                |d| d.addons.local_path.path = "storage".into(),
                "addons.local_path.path",
                "must be an absolute path",
            ),
            (
                |d| d.addons.local_path.path = "/".into(),
                "addons.local_path.path",
                "must not be `/`",
            ),
            (
                |d| d.addons.longhorn.data_path = "/sys".into(),
                "addons.longhorn.data_path",
                "system directory",
            ),
        ],
    );
    check_valid(
        with_cert_manager,
        &[
            |d| d.addons.cert_manager.server = "production".into(),
            |d| d.addons.cert_manager.email = "first.last+k3s@mail.example.co.uk".into(),
            |d| d.addons.local_path.path = "/mnt/hdd/local-path".into(),
        ],
    );
}

// ---------------------------------------------------------------- all at once

#[test]
fn every_fault_is_reported_at_once() {
    let mut doc = with_vip();
    doc.node_name = "Bad_Name".into();
    doc.cluster.token.clear();
    doc.cluster.cluster_cidr = "10.42.0.1/16".into();
    doc.network.wireguard.mtu = 100;
    doc.network.wireguard.peers[0].public_key = "short".into();
    doc.network.wireguard.peers[1].allowed_ips = vec!["10.100.0.2/32".into()];
    doc.network.vip.priority = 300;
    doc.storage.volumes = vec![
        VolumeDoc {
            mount_point: "relative".into(),
            ..device_volume()
        },
        pool_volume(),
    ];
    doc.storage.volumes[1].size.clear();
    doc.services.k3s.extra_args = vec!["--node-name=x".into()];
    doc.addons.metallb.enabled = true;

    let errors = doc.validate(&ValidationContext::default()).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "node_name",
            "cluster.token",
            "cluster.cluster_cidr",
            "network.wireguard.mtu",
            "network.wireguard.peers[0].public_key",
            "network.wireguard.peers[1].allowed_ips[0]",
            "network.vip.priority",
            "storage.volumes[0].mount_point",
            "storage.volumes[1].size",
            "services.k3s.extra_args[0]",
            "addons.metallb.addresses",
            "addons.metallb.interface",
        ]
    );
    // Display: one fault per line, `path: message`.
    let text = errors.to_string();
    assert_eq!(text.lines().count(), errors.len());
    assert!(
        text.lines()
            .any(|l| l == "network.wireguard.mtu: must be 1280..=9000"),
        "{text}"
    );
    assert_eq!(errors.len(), 12);
}

#[test]
fn error_list_is_capped() {
    let mut doc = base();
    doc.network.wireguard.peers = vec![PeerDoc::default(); 2000];
    let errors = doc.validate(&ValidationContext::default()).unwrap_err();
    assert_eq!(errors.len(), limits::MAX_ERRORS + 1);
    let last = errors.iter().last().unwrap();
    assert!(last.message.contains("more errors"), "{last}");

    doc.network.wireguard.peers = vec![PeerDoc::default(); limits::MAX_PEERS + 1];
    let errors = error_lines(&doc);
    assert_eq!(
        errors,
        ["network.wireguard.peers: at most 4096 entries, not 4097"]
    );
}

fn error_lines(doc: &SpecDocument) -> Vec<String> {
    errors(doc).iter().map(ToString::to_string).collect()
}

// ---------------------------------------------------------------- parsing

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let yaml = "network:\n  wireguard:\n    peers:\n      - name: a\n        publickey: x\n";
    let err = SpecDocument::parse(yaml).unwrap_err();
    let ParseError::Invalid {
        format,
        path,
        message,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (*format, path.as_str()),
        ("YAML", "network.wireguard.peers[0].publickey")
    );
    assert!(
        message.contains("unknown field `publickey`, expected one of"),
        "{message}"
    );
    assert!(
        err.to_string()
            .starts_with("network.wireguard.peers[0].publickey: unknown field `publickey`"),
        "{err}"
    );

    let json = r#"{"network": {"wireguard": {"peers": [{"name": "a", "publickey": "x"}]}}}"#;
    let err = SpecDocument::parse(json).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("network.wireguard.peers[0].publickey: unknown field `publickey`"),
        "{err}"
    );
    assert!(matches!(err, ParseError::Invalid { format: "JSON", .. }));

    let err = SpecDocument::parse("nodename: x\n").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("nodename: unknown field `nodename`"),
        "{err}"
    );
}

#[test]
fn wrong_types_are_refused_with_their_path() {
    let err = SpecDocument::parse("network:\n  wireguard:\n    listen_port: many\n").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("network.wireguard.listen_port: invalid type"),
        "{err}"
    );
    let err =
        SpecDocument::parse(r#"{"storage": {"volumes": [{"mount_options": "a,b"}]}}"#).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("storage.volumes[0].mount_options: invalid type"),
        "{err}"
    );
    let err = SpecDocument::parse("- a\n- b\n").unwrap_err();
    assert!(err.to_string().starts_with("invalid YAML: "), "{err}");
    let err = SpecDocument::parse("{\"role\": \"agent\"} trailing").unwrap_err();
    assert!(err.to_string().starts_with("invalid JSON: "), "{err}");
    let err = SpecDocument::parse("role: [unclosed\n").unwrap_err();
    assert!(
        matches!(err, ParseError::Invalid { format: "YAML", .. }),
        "{err:?}"
    );
}

#[test]
fn empty_and_oversized_input_is_refused() {
    assert_eq!(SpecDocument::parse(""), Err(ParseError::Empty));
    assert_eq!(SpecDocument::parse(" \n\t\n"), Err(ParseError::Empty));
    let big = format!(
        "node_name: x\n#{}\n",
        "x".repeat(limits::MAX_DOCUMENT_BYTES)
    );
    assert!(matches!(
        SpecDocument::parse(&big),
        Err(ParseError::TooLarge { .. })
    ));
}

#[test]
fn lenient_structure_strict_meaning() {
    // Empty sections, a BOM, and scalars YAML reads as numbers all parse.
    let doc = SpecDocument::parse(
        "\u{feff}node_name: 1234\ncluster:\nnetwork:\n  wireguard:\n    peers:\n",
    )
    .unwrap();
    assert_eq!(doc.node_name, "1234");
    assert_eq!(doc.cluster, ClusterDoc::default());
    let doc = SpecDocument::parse("{}").unwrap();
    assert_eq!(doc, SpecDocument::default());
}

#[test]
fn serialization_omits_empty_fields_and_round_trips() {
    assert_eq!(SpecDocument::default().to_json_pretty().unwrap(), "{}");
    assert_eq!(SpecDocument::default().to_yaml().unwrap().trim(), "{}");
    for (name, text) in EXAMPLES {
        let doc = SpecDocument::parse(text).unwrap();
        assert_eq!(
            SpecDocument::parse(&doc.to_yaml().unwrap()).unwrap(),
            doc,
            "{name}"
        );
        assert_eq!(
            SpecDocument::parse(&doc.to_json_pretty().unwrap()).unwrap(),
            doc,
            "{name}"
        );
        assert!(
            !doc.to_json_pretty().unwrap().contains("\"\""),
            "{name}: empty strings serialized"
        );
    }
}

// ---------------------------------------------------------------- newtypes

#[test]
fn newtype_tables() {
    for ok in ["a", "node-1", "a.b-c.d", "0abc", &"a".repeat(63)] {
        assert!(ok.parse::<NodeName>().is_ok(), "{ok}");
    }
    for bad in ["", "A", "a_b", "a.", ".a", "a-", &"a".repeat(64)] {
        assert!(bad.parse::<NodeName>().is_err(), "{bad}");
    }
    for ok in ["eth0", "tfk3s", "wg.mesh-1", "a", "123456789012345"] {
        assert!(IfName::try_from(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "1234567890123456",
        "a b",
        "a:b",
        "a/b",
        ".",
        "..",
        "a\0",
    ] {
        assert!(IfName::try_from(bad).is_err(), "{bad:?}");
    }
    for (text, shown) in [
        ("50GiB", "50GiB"),
        ("10G", "10GB"),
        ("10gb", "10GB"),
        ("512MiB", "512MiB"),
        ("1073741824", "1GiB"),
        ("1000", "1KB"),
        ("1001", "1001"),
        ("0", "0"),
        ("2Ti", "2TiB"),
        ("3k", "3KB"),
        ("1b", "1"),
    ] {
        assert_eq!(
            text.parse::<ByteSize>().unwrap().to_string(),
            shown,
            "{text}"
        );
    }
    assert_eq!("50GiB".parse::<ByteSize>().unwrap().bytes(), 50 * (1 << 30));
    assert_eq!("10G".parse::<ByteSize>().unwrap().bytes(), 10_000_000_000);
    for bad in [
        "",
        "G",
        "1.5G",
        "-1",
        "1 G",
        "1PB",
        "1iB",
        "18446744073709551616",
        "17179869184GiB",
    ] {
        assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
    }
    for (text, shown) in [
        ("10.0.0.1:51820", "10.0.0.1:51820"),
        ("[2001:db8::1]:51820", "[2001:db8::1]:51820"),
        ("Node.Example.COM:1", "node.example.com:1"),
        ("h:0080", "h:80"),
    ] {
        assert_eq!(
            text.parse::<Endpoint>().unwrap().to_string(),
            shown,
            "{text}"
        );
    }
    for bad in [
        "",
        "host",
        ":80",
        "host:",
        "host:65536",
        "2001:db8::1:80",
        "[2001:db8::1]",
        "[10.0.0.1]:80",
        "a b:1",
        "1.2.3:80",
    ] {
        assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
    }
    for ok in [
        "/",
        "/a",
        "/a/b.c",
        "/dev/disk/by-id/nvme-x_y",
        "/a/..b",
        "/a/.b",
    ] {
        assert!(AbsPath::try_from(ok).is_ok(), "{ok}");
    }
    for bad in [
        "", "a", "./a", "/a/", "//", "/a//b", "/a/./b", "/..", "/a\nb",
    ] {
        assert!(AbsPath::try_from(bad).is_err(), "{bad:?}");
    }
    let dir: AbsPath = "/var/lib".parse().unwrap();
    assert!(AbsPath::try_from("/var/lib/k3s").unwrap().is_within(&dir));
    assert!(!AbsPath::try_from("/var/libx").unwrap().is_within(&dir));
    assert_eq!("blank".parse::<WipeSignature>(), Ok(WipeSignature::Blank));
    for bad in [
        "",
        "Blank",
        "e46b2aff95514548b36396d2ac90bb41",
        "e46b2aff-9551-4548-b363-96d2ac90bb4g",
    ] {
        assert!(bad.parse::<WipeSignature>().is_err(), "{bad}");
    }
    assert!(
        Role::ServerInit.is_server() && Role::ServerJoin.is_server() && !Role::Agent.is_server()
    );
    assert_eq!(
        Role::ALL
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["server-init", "server-join", "agent"]
    );
    assert_eq!(FormatPolicy::default(), FormatPolicy::IfBlank);
    assert_eq!(AcmeServer::default(), AcmeServer::Staging);
    assert!(
        AcmeServer::Production
            .directory_url()
            .starts_with("https://acme-v02.")
    );
}

#[test]
fn newtypes_serialize_as_strings() {
    let key = WgKey::from_bytes([1; 32]);
    let json = serde_json::to_string(&key).unwrap();
    assert_eq!(json, format!("\"{key}\""));
    assert_eq!(serde_json::from_str::<WgKey>(&json).unwrap(), key);
    assert!(serde_json::from_str::<IfName>("\"a/b\"").is_err());
    assert_eq!(
        serde_json::from_str::<Role>("\"agent\"").unwrap(),
        Role::Agent
    );
}

// ---------------------------------------------------------------- strategies

/// Strings validation must cope with: interesting values and garbage.
pub(crate) fn arb_text() -> impl Strategy<Value = String> {
    let samples = vec![
        "",
        "server-init",
        "server-join",
        "agent",
        "7",
        "if-blank",
        "wipe",
        "never",
        "staging",
        "production",
        "blank",
        "btrfs",
        "ext4",
        "10.42.0.0/16",
        "10.42.0.1/16",
        "10.100.0.1/24",
        "10.100.0.250",
        "100.64.0.0/10",
        "node-1",
        "user",
        "eth0",
        "tfk3s",
        "w-x",
        "/dev/sda",
        "/mnt/ssd",
        "/",
        "/etc",
        "50GiB",
        "0",
        "203.0.113.1:51820",
        "[::1]:1",
        "https://10.0.0.1:6443",
        "198.51.100.0/28",
        "1.1.1.9-1.1.1.1",
        "--token=x",
        "-t",
        "ops@example.com",
        REDACTED,
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ];
    prop_oneof![
        3 => prop::sample::select(samples).prop_map(str::to_owned),
        1 => any::<String>(),
        1 => "[a-z0-9./:\\-\\[\\]]{0,24}",
    ]
}

fn arb_texts() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(arb_text(), 0..3)
}

fn arb_number() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), 0u32..70_000, any::<u32>()]
}

prop_compose! {
    fn arb_peer_doc()(
        name in arb_text(), public_key in arb_text(), endpoint in arb_text(),
        allowed_ips in arb_texts(), persistent_keepalive in arb_number(),
    ) -> PeerDoc {
        PeerDoc { name, public_key, endpoint, allowed_ips, persistent_keepalive }
    }
}

prop_compose! {
    fn arb_volume_doc()(
        name in arb_text(), device in prop::option::of(arb_text()), pool in prop::option::of(arb_text()),
        filesystem in arb_text(), mount_point in arb_text(), mount_options in arb_texts(),
        format in arb_text(), wipe_signature in arb_text(), size in arb_text(),
    ) -> VolumeDoc {
        VolumeDoc { name, device, pool, filesystem, mount_point, mount_options, format, wipe_signature, size }
    }
}

prop_compose! {
    /// Any document, mostly invalid.
    pub(crate) fn arb_doc()(
        (node_name, role) in (arb_text(), arb_text()),
        cluster in (arb_text(), arb_text(), arb_text(), arb_texts(), arb_text(), arb_text()),
        wg in (arb_text(), arb_number(), arb_texts(), arb_number(), prop::collection::vec(arb_peer_doc(), 0..3)),
        vip in (arb_number(), arb_number(), arb_number(), prop::collection::vec((arb_text(), arb_text()), 0..3)),
        volumes in prop::collection::vec(arb_volume_doc(), 0..3),
        services in ((arb_text(), arb_texts()), (arb_text(), arb_texts())),
        metallb in (any::<bool>(), arb_texts(), arb_text()),
        cert_manager in (any::<bool>(), arb_text(), arb_text()),
        others in (any::<bool>(), any::<bool>(), arb_text(), any::<bool>(), arb_text()),
    ) -> SpecDocument {
        SpecDocument {
            node_name,
            role,
            cluster: ClusterDoc {
                token: cluster.0, join_url: cluster.1, vip: cluster.2, tls_sans: cluster.3,
                cluster_cidr: cluster.4, service_cidr: cluster.5,
            },
            network: NetworkDoc {
                wireguard: WireguardDoc { interface: wg.0, listen_port: wg.1, addresses: wg.2, mtu: wg.3, peers: wg.4 },
                vip: VipDoc {
                    virtual_router_id: vip.0, priority: vip.1, advert_interval_ms: vip.2,
                    servers: vip.3.into_iter().map(|(name, address)| VipServerDoc { name, address }).collect(),
                    announce_port: 0,
                },
            },
            storage: StorageDoc { volumes, ..StorageDoc::default() },
            services: ServicesDoc {
                containerd: ServiceDoc { binary: services.0.0, extra_args: services.0.1 },
                k3s: ServiceDoc { binary: services.1.0, extra_args: services.1.1 },
            },
            addons: AddonsDoc {
                metallb: MetallbDoc { enabled: metallb.0, addresses: metallb.1, interface: metallb.2 },
                ingress_nginx: IngressNginxDoc { enabled: others.0 },
                cert_manager: CertManagerDoc { enabled: cert_manager.0, email: cert_manager.1, server: cert_manager.2 },
                local_path: LocalPathDoc { enabled: others.1, path: others.2 },
                longhorn: LonghornDoc { enabled: others.3, data_path: others.4 },
            },
        }
    }
}

fn arb_host() -> impl Strategy<Value = Host> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| Host::Ip(IpAddr::from(o))),
        any::<[u16; 8]>().prop_map(|s| Host::Ip(IpAddr::from(s))),
        "[a-z][a-z0-9-]{0,8}[a-z0-9]\\.example\\.(com|net)".prop_map(|n| n.parse().unwrap()),
    ]
}

fn arb_endpoint() -> impl Strategy<Value = Endpoint> {
    (arb_host(), 1u16..).prop_map(|(host, port)| Endpoint::new(host, port).unwrap())
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn abs(text: &str) -> AbsPath {
    text.parse().unwrap()
}

prop_compose! {
    fn arb_volume(i: usize)(
        device in any::<bool>(),
        filesystem in prop::sample::select(Filesystem::ALL),
        format in prop::sample::select(FormatPolicy::ALL),
        size in 1u64..u64::MAX,
        uuid in prop::option::of("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
        mount_options in prop::collection::vec("[a-z]{1,6}(=[a-z0-9]{1,4})?", 0..3),
        flags in prop::collection::vec(prop::sample::select(&["noatime", "nodev", "nosuid", "ro"][..]), 0..3),
    ) -> Volume {
        // A pool volume shares its pool's filesystem: per-mount flags only.
        let mount_options = if device { mount_options } else { flags.into_iter().map(str::to_owned).collect() };
        let (source, filesystem, format) = if device {
            (VolumeSource::Device(abs(&format!("/dev/disk/by-id/disk-{i}"))), filesystem, format)
        } else {
            let format = if format == FormatPolicy::Wipe { FormatPolicy::Never } else { format };
            (VolumeSource::Pool { pool: abs("/mnt/pool"), size: ByteSize::from_bytes(size) }, Filesystem::Btrfs, format)
        };
        let wipe_signature = (format == FormatPolicy::Wipe)
            .then(|| uuid.map_or(WipeSignature::Blank, WipeSignature::Uuid));
        Volume {
            name: format!("vol-{i}").parse().unwrap(),
            source,
            filesystem,
            mount_point: abs(&format!("/mnt/data-{i}")),
            mount_options,
            format,
            wipe_signature,
        }
    }
}

fn arb_volumes() -> impl Strategy<Value = Vec<Volume>> {
    (0usize..4).prop_flat_map(|n| (0..n).map(arb_volume).collect::<Vec<_>>())
}

fn arb_peers() -> impl Strategy<Value = Vec<Peer>> {
    prop::collection::vec(
        (
            any::<[u8; 32]>(),
            prop::option::of(arb_endpoint()),
            prop::option::of(1u16..),
            any::<bool>(),
        ),
        0..6,
    )
    .prop_map(|peers| {
        peers
            .into_iter()
            .enumerate()
            .map(|(i, (mut key, endpoint, keepalive, subnet))| {
                // Index bytes keep keys unique.
                key[0] = i as u8;
                key[1] = 0xa5;
                let mut allowed_ips = vec![net(&format!("10.100.0.{}/32", 10 + i))];
                if subnet {
                    allowed_ips.push(net(&format!("10.101.{i}.0/24")));
                }
                Peer {
                    name: format!("peer-{i}").parse().unwrap(),
                    public_key: WgKey::from_bytes(key),
                    endpoint,
                    allowed_ips,
                    persistent_keepalive: keepalive.and_then(NonZeroU16::new),
                }
            })
            .collect()
    })
}

fn arb_addons() -> impl Strategy<Value = Addons> {
    let pool = |i: usize, cidr: bool, last: u8| {
        if cidr {
            AddressPool::Cidr(net(&format!("198.51.{}.0/28", 100 + i)))
        } else {
            AddressPool::Range {
                first: format!("203.0.{}.1", 100 + i).parse().unwrap(),
                last: format!("203.0.{}.{}", 100 + i, last.max(1))
                    .parse()
                    .unwrap(),
            }
        }
    };
    (
        prop::option::of((
            prop::collection::vec((any::<bool>(), any::<u8>()), 1..4),
            0u8..10,
        )),
        any::<bool>(),
        prop::option::of((
            "[a-z]{1,8}@example\\.com",
            prop::sample::select(AcmeServer::ALL),
        )),
        prop::option::of("/srv/[a-z]{1,8}"),
        prop::option::of("/srv/[a-z]{1,8}"),
    )
        .prop_map(
            move |(metallb, ingress_nginx, cert_manager, local_path, longhorn)| Addons {
                metallb: metallb.map(|(pools, eth)| Metallb {
                    addresses: pools
                        .into_iter()
                        .enumerate()
                        .map(|(i, (cidr, last))| pool(i, cidr, last))
                        .collect(),
                    interface: format!("eth{eth}").parse().unwrap(),
                }),
                // cert-manager answers challenges through the ingress.
                ingress_nginx: ingress_nginx || cert_manager.is_some(),
                cert_manager: cert_manager.map(|(email, server)| CertManager { email, server }),
                local_path: local_path.map(|p| LocalPath { path: abs(&p) }),
                longhorn: longhorn.map(|p| Longhorn { data_path: abs(&p) }),
            },
        )
}

prop_compose! {
    /// Valid specs.
    pub(crate) fn arb_spec()(
        role in prop::sample::select(Role::ALL),
        name in "[a-z][a-z0-9-]{0,12}[a-z0-9]",
        token in "[A-Za-z0-9:_.-]{1,64}",
        join in arb_endpoint(),
        vip in prop::option::of(1u8..255),
        sans in prop::collection::btree_set(arb_host(), 0..4),
        cidrs in prop::sample::select(vec![
            ("10.42.0.0/16", "10.43.0.0/16"),
            ("172.16.0.0/16", "172.17.0.0/16"),
            ("10.200.0.0/16", "fd00:43::/112"),
        ]),
        wg in ("tf[a-z0-9]{0,8}", 1u16.., any::<bool>(), 1280u32..=9000, arb_peers()),
        election in (any::<bool>(), 1u8..=255, 1u8..=254, 1u32..=4095, 0usize..6),
        volumes in arb_volumes(),
        services in (
            ("/opt/[a-z]{1,8}/bin/[a-z]{1,8}", prop::collection::vec("--extra-[a-z]{1,6}(=[a-z0-9]{0,5})?", 0..3)),
            ("/opt/[a-z]{1,8}/bin/[a-z]{1,8}", prop::collection::vec("--extra-[a-z]{1,6}(=[a-z0-9]{0,5})?", 0..3)),
        ),
        addons in arb_addons(),
    ) -> NodeSpec {
        let node_name: NodeName = format!("n-{name}").parse().unwrap();
        let (interface, listen_port, v6, mtu, peers) = wg;
        let mut addresses = vec![net("10.100.0.1/24")];
        if v6 {
            addresses.push(net("fd00:100::1/64"));
        }
        let vip: Option<IpAddr> = vip.map(|v| format!("10.250.0.{v}").parse().unwrap());
        let (with_election, virtual_router_id, priority, advert, servers) = election;
        let mut members: Vec<VipServer> = Vec::new();
        if role.is_server() {
            members.push(VipServer { name: node_name.clone(), address: "10.100.0.1".parse().unwrap() });
        }
        for (i, peer) in peers.iter().enumerate().take(servers) {
            members.push(VipServer { name: peer.name.clone(), address: format!("10.100.0.{}", 10 + i).parse().unwrap() });
        }
        let election = (vip.is_some() && with_election && !members.is_empty()).then_some(Vip {
            virtual_router_id,
            priority,
            advert_interval_ms: advert * 10,
            servers: members,
            announce_port: 51822,
        });
        NodeSpec {
            node_name,
            role,
            cluster: Cluster {
                token: Secret::new(token),
                join_url: (role != Role::ServerInit).then(|| JoinUrl::new(join)),
                vip,
                tls_sans: sans.into_iter().collect(),
                cluster_cidr: net(cidrs.0),
                service_cidr: net(cidrs.1),
            },
            network: Network {
                wireguard: Wireguard { interface: interface.parse().unwrap(), listen_port, addresses, mtu, peers },
                vip: election,
            },
            storage: Storage {
                persist: volumes.first().map(|holder| Persist {
                    volume: holder.name.clone(),
                    paths: vec![
                        PersistPath { path: abs("/var/lib/kubelet"), propagation: Propagation::Rshared },
                        PersistPath { path: abs("/etc/rancher"), propagation: Propagation::Private },
                    ],
                }),
                volumes,
            },
            services: Services {
                containerd: Service { binary: abs(&services.0.0), extra_args: services.0.1 },
                k3s: Service { binary: abs(&services.1.0), extra_args: services.1.1 },
            },
            addons,
        }
    }
}

/// `parse(display(x)) == x` whenever `text` parses.
fn display_round_trips<T>(text: &str) -> Result<(), TestCaseError>
where
    T: std::str::FromStr + std::fmt::Display + std::fmt::Debug + PartialEq,
{
    if let Ok(value) = text.parse::<T>() {
        let shown = value.to_string();
        prop_assert_eq!(
            shown.parse::<T>().ok(),
            Some(value),
            "{:?} shown as {:?}",
            text,
            shown
        );
    }
    Ok(())
}

fn all_display_round_trips(text: &str) -> Result<(), TestCaseError> {
    display_round_trips::<NodeName>(text)?;
    display_round_trips::<Label>(text)?;
    display_round_trips::<IfName>(text)?;
    display_round_trips::<WgKey>(text)?;
    display_round_trips::<AbsPath>(text)?;
    display_round_trips::<Host>(text)?;
    display_round_trips::<Endpoint>(text)?;
    display_round_trips::<JoinUrl>(text)?;
    display_round_trips::<ByteSize>(text)?;
    display_round_trips::<Role>(text)?;
    display_round_trips::<FormatPolicy>(text)?;
    display_round_trips::<AcmeServer>(text)?;
    display_round_trips::<Filesystem>(text)?;
    display_round_trips::<WipeSignature>(text)?;
    display_round_trips::<AddressPool>(text)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_never_panics(text in any::<String>()) {
        if let Ok(doc) = SpecDocument::parse(&text) {
            let _ = doc.validate(&ValidationContext::default());
        }
    }

    #[test]
    fn parse_never_panics_on_yaml_like_text(text in "[a-z_:\\-\\[\\]{}, \n\"0-9./]{0,200}") {
        if let Ok(doc) = SpecDocument::parse(&text) {
            let _ = doc.validate(&ValidationContext::default());
        }
    }

    #[test]
    fn validate_never_panics_and_never_leaks_the_token(mut doc in arb_doc(), own in any::<[u8; 32]>()) {
        doc.cluster.token = format!("{}zz-secret-zz", doc.cluster.token);
        let ctx = ValidationContext {
            own_public_key: Some(WgKey::from_bytes(own)),
            kernel_filesystems: Some(BTreeSet::from(["btrfs".to_owned()])),
            ..ValidationContext::default()
        };
        if let Err(errors) = doc.validate(&ctx) {
            prop_assert!(!errors.is_empty());
            prop_assert!(!errors.to_string().contains("zz-secret-zz"));
        }
    }

    #[test]
    fn newtypes_round_trip_through_display_from_any_text(text in any::<String>()) {
        all_display_round_trips(&text)?;
    }

    #[test]
    fn newtypes_round_trip_through_display_from_likely_text(
        text in "[a-zA-Z0-9.:/\\-\\[\\]=+@]{0,48}",
    ) {
        all_display_round_trips(&text)?;
    }

    #[test]
    fn generated_values_round_trip(endpoint in arb_endpoint(), size in any::<u64>(), host in arb_host()) {
        prop_assert_eq!(endpoint.to_string().parse::<Endpoint>(), Ok(endpoint.clone()));
        let url = JoinUrl::new(endpoint);
        prop_assert_eq!(url.to_string().parse::<JoinUrl>(), Ok(url));
        let size = ByteSize::from_bytes(size);
        prop_assert_eq!(size.to_string().parse::<ByteSize>(), Ok(size));
        prop_assert_eq!(host.to_string().parse::<Host>(), Ok(host));
    }

    #[test]
    fn valid_specs_validate_and_round_trip(spec in arb_spec()) {
        let doc = spec.to_document();
        prop_assert_eq!(doc.validate(&ValidationContext::default()), Ok(spec.clone()));
        let yaml = doc.to_yaml().unwrap();
        prop_assert_eq!(SpecDocument::parse(&yaml).map_err(|e| e.to_string()), Ok(doc.clone()));
        let json = doc.to_json_pretty().unwrap();
        prop_assert_eq!(SpecDocument::parse(&json).map_err(|e| e.to_string()), Ok(doc));
    }

    #[test]
    fn keys_of_32_random_bytes_are_accepted(bytes in any::<[u8; 32]>()) {
        let text = BASE64.encode(bytes);
        let key: WgKey = text.parse().unwrap();
        prop_assert_eq!(key.as_bytes(), &bytes);
        prop_assert_eq!(key.to_string(), text);
    }

    #[test]
    fn keys_of_other_lengths_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        prop_assume!(bytes.len() != 32);
        let text = BASE64.encode(&bytes);
        prop_assert_eq!(text.parse::<WgKey>().err(), Some(if bytes.is_empty() {
            KeyError::Empty
        } else {
            KeyError::Length { len: bytes.len() }
        }));
    }

    #[test]
    fn cidrs_with_host_bits_are_refused(v4 in any::<[u8; 4]>(), p4 in 0u8..=32, v6 in any::<[u16; 8]>(), p6 in 0u8..=128) {
        for (addr, prefix) in [(IpAddr::from(v4), p4), (IpAddr::from(v6), p6)] {
            let given = IpNet::new(addr, prefix).unwrap();
            let result = parse_network(&given.to_string());
            if given.trunc() == given {
                prop_assert_eq!(result, Ok(given));
            } else {
                prop_assert_eq!(result, Err(CidrError::HostBits { suggestion: given.trunc() }));
                let message = parse_network(&given.to_string()).unwrap_err().to_string();
                prop_assert!(message.contains("not a network address, did you mean"));
            }
        }
    }
}

#[test]
fn a_token_of_the_wrong_type_is_not_echoed() {
    let err = SpecDocument::parse(r#"{"cluster": {"token": 99887766554433}}"#)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("cluster.token: must be a string"), "{err}");
    assert!(!err.contains("99887766554433"), "{err}");
    let err = SpecDocument::parse("cluster:\n  token: [99887766554433]\n")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("99887766554433"), "{err}");
}

/// A zOS-like node: no open-iscsi, no ext4/xfs, one public NIC.
fn zos_addon_host() -> ValidationContext {
    ValidationContext {
        addon_host: Some(AddonHost {
            unavailable: [(
                "longhorn".to_owned(),
                vec![
                    "iscsiadm (the open-iscsi tools) on PATH".to_owned(),
                    "ext4 or xfs in the kernel, for its volumes".to_owned(),
                ],
            )]
            .into(),
            broadcast_interfaces: ["eth0".to_owned()].into(),
        }),
        ..Default::default()
    }
}

#[test]
fn an_addon_the_node_cannot_run_is_refused_with_the_reasons() {
    let mut doc = with_metallb();
    doc.addons.longhorn.enabled = true;
    let refused = errors_with(&doc, &zos_addon_host());
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].path, "addons.longhorn.enabled");
    assert_eq!(
        refused[0].message,
        "not possible on this node: it lacks iscsiadm (the open-iscsi tools) on PATH; ext4 or xfs in the kernel, for its volumes"
    );
    // Without knowledge of the host, nothing is refused for it.
    assert!(errors(&doc).is_empty());
}

#[test]
fn metallb_announces_only_on_a_broadcast_capable_interface_of_the_node() {
    let mut doc = with_metallb();
    doc.addons.metallb.interface = "eth9".into();
    let errors = errors_with(&doc, &zos_addon_host());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "addons.metallb.interface");
    assert_eq!(
        errors[0].message,
        "eth9 is not a broadcast-capable interface of this node (those are: eth0)"
    );
    assert!(errors_with(&with_metallb(), &zos_addon_host()).is_empty());
}

#[test]
fn cert_manager_needs_the_ingress_it_answers_challenges_through() {
    let mut doc = base();
    doc.addons.cert_manager = CertManagerDoc {
        enabled: true,
        email: "ops@example.com".into(),
        server: String::new(),
    };
    let refused = errors(&doc);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].path, "addons.cert_manager.enabled");
    assert!(refused[0].message.starts_with("needs ingress_nginx"));
    doc.addons.ingress_nginx.enabled = true;
    assert!(errors_with(&doc, &zos_addon_host()).is_empty());
}

// ---- storage ----

fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.path.as_str()).collect()
}

#[test]
fn persist_defaults_cover_what_no_volume_does() {
    let spec = valid(&with_volumes(vec![pool_volume(), device_volume()]));
    let persist = spec.storage.persist.unwrap();
    assert_eq!(
        persist.volume.to_string(),
        "k3s",
        "the first volume holds them"
    );
    let paths: Vec<(String, Propagation)> = persist
        .paths
        .iter()
        .map(|p| (p.path.to_string(), p.propagation))
        .collect();
    // /var/lib/rancher/k3s (and the local-path dir inside it) is a volume.
    assert_eq!(
        paths,
        [
            ("/etc/rancher".to_owned(), Propagation::Private),
            ("/var/lib/kubelet".to_owned(), Propagation::Rshared),
            ("/var/lib/longhorn".to_owned(), Propagation::Rshared),
            (
                "/var/lib/tfagent-containerd".to_owned(),
                Propagation::Private
            ),
        ]
    );
    // The agent's own state dir is never bind-mounted, by default or when
    // asked.
    let ctx = ValidationContext {
        state_dir: Some("/srv/tfagent".parse().unwrap()),
        ..ValidationContext::default()
    };
    let spec = with_volumes(vec![pool_volume()]).validate(&ctx).unwrap();
    let persist = spec.storage.persist.clone().unwrap();
    assert!(
        persist
            .paths
            .iter()
            .all(|p| p.path.as_str() != "/srv/tfagent")
    );
    let mut asked = spec.to_document();
    asked
        .storage
        .persist
        .paths
        .push(asked.storage.persist.paths[0].clone());
    asked.storage.persist.paths.last_mut().unwrap().path = "/srv".into();
    let refused = errors_with(&asked, &ctx);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0]
            .message
            .contains("agent's own state dir /srv/tfagent"),
        "{refused:?}"
    );
    // Round trip: the explicit defaults validate to the same spec.
    assert_eq!(
        spec.to_document().validate(&ctx).unwrap().storage,
        spec.storage
    );
    // No volumes: nothing to persist on.
    assert!(valid(&base()).storage.persist.is_none());
}

#[test]
fn invalid_volume_and_persist_specs_name_their_fields() {
    let mut relative = device_volume();
    relative.mount_point = "var/lib/data".into();
    let mut dotdot = pool_volume();
    dotdot.mount_point = "/var/lib/../etc".into();
    let mut unknown_fs = device_volume();
    unknown_fs.name = "other".into();
    unknown_fs.device = Some("/dev/sdc".into());
    unknown_fs.filesystem = "zfs".into();
    unknown_fs.mount_point = "/srv/other".into();
    let found = errors_of(&with_volumes(vec![relative, dotdot, unknown_fs]));
    assert_eq!(
        fields(&found),
        [
            "storage.volumes[0].mount_point",
            "storage.volumes[1].mount_point",
            "storage.volumes[2].filesystem"
        ],
        "{found:#?}"
    );

    // Duplicates and nesting over a pool.
    let mut twin = device_volume();
    twin.name = "twin".into();
    twin.device = Some("/dev/sdd".into());
    let mut in_pool = device_volume();
    in_pool.name = "inpool".into();
    in_pool.device = Some("/dev/sde".into());
    in_pool.mount_point = "/mnt/ssd-1/x".into();
    let mut same_device = device_volume();
    same_device.name = "again".into();
    same_device.mount_point = "/srv/again".into();
    let found = errors_of(&with_volumes(vec![
        pool_volume(),
        device_volume(),
        twin,
        in_pool,
        same_device,
    ]));
    let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert!(
        shown.contains(
            &"storage.volumes[2].mount_point: also the mount point of volumes[1]".to_owned()
        ),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|e| e.starts_with("storage.volumes[3].mount_point: lies in pool /mnt/ssd-1")),
        "{shown:#?}"
    );
    assert!(
        shown.contains(&"storage.volumes[4].device: also the device of volumes[1]".to_owned()),
        "{shown:#?}"
    );

    // Persisted paths: nested, inside a volume, hiding the holder, unknown volume.
    let mut doc = with_volumes(vec![pool_volume()]);
    doc.storage.persist.volume = "nope".into();
    assert_eq!(fields(&errors_of(&doc)), ["storage.persist.volume"]);
    let mut doc = with_volumes(vec![pool_volume()]);
    doc.storage.persist.paths = [
        "/etc/rancher",
        "/etc/rancher/node",
        "/var/lib/rancher/k3s/x",
        "/var/lib/rancher",
        "relative",
    ]
    .iter()
    .map(|p| PersistPathDoc {
        path: (*p).into(),
        propagation: String::new(),
    })
    .collect();
    doc.storage.persist.paths.push(PersistPathDoc {
        path: "/srv/p".into(),
        propagation: "slave".into(),
    });
    let shown: Vec<String> = errors_of(&doc).iter().map(ToString::to_string).collect();
    assert!(
        shown
            .iter()
            .any(|e| e.starts_with("storage.persist.paths[2].path: already on volume k3s")),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|e| e.starts_with("storage.persist.paths[3].path: would hide volume k3s")),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|e| e.starts_with("storage.persist.paths[4].path: must be an absolute path")),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|e| e.starts_with("storage.persist.paths[5].propagation")),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|e| e.starts_with("storage.persist.paths[1].path: lies inside paths[0]")),
        "{shown:#?}"
    );
    // Paths without any volume to keep them on.
    let mut doc = base();
    doc.storage.persist.paths = vec![PersistPathDoc {
        path: "/etc/rancher".into(),
        propagation: String::new(),
    }];
    assert_eq!(fields(&errors_of(&doc)), ["storage.persist"]);

    // A pool volume takes per-mount flags only.
    let mut flagged = pool_volume();
    flagged.mount_options = vec!["noatime".into(), "compress=zstd".into()];
    assert_eq!(
        fields(&errors_of(&with_volumes(vec![flagged]))),
        ["storage.volumes[0].mount_options[1]"]
    );
}

fn errors_of(doc: &SpecDocument) -> Vec<FieldError> {
    errors(doc)
}

#[test]
fn devices_the_host_refuses_are_invalid_arguments_naming_the_field() {
    let ctx = ValidationContext {
        refused_devices: [(
            "/dev/disk/by-id/nvme-disk-1".to_owned(),
            "/dev/disk/by-id/nvme-disk-1 is not in the boot config's allowed_devices (/dev/loop*)"
                .to_owned(),
        )]
        .into_iter()
        .collect(),
        ..ValidationContext::default()
    };
    let errors = errors_with(&with_volumes(vec![device_volume()]), &ctx);
    assert_eq!(fields(&errors), ["storage.volumes[0].device"]);
    assert!(errors[0].message.contains("allowed_devices"));
}
