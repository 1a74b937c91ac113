//! The malformed-spec corpus: hundreds of bad specs, generated here, sent
//! the two ways a spec reaches the agent (a proto `NodeSpec` over gRPC, and
//! the YAML/JSON text `tfagentctl apply -f` reads), each of which must be
//! refused naming the field, without a panic and without the host being
//! touched: the fake hosts behind every step record no change at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::PathBuf, sync::Arc};

use tfagent_proto::v1::{self as pb, node_agent_client::NodeAgentClient};
use tokio_util::sync::CancellationToken;
use tonic::{Code, transport::Channel};

use super::*;
use crate::{
    app,
    control::Controller,
    network::{Backend, NetworkStep, fake::FakeNet},
    storage::{DevicePolicy, Storage, StorageOps, fake::FakeOps},
    test_support::FakeHost,
};
use tfagent_spec::{
    KeyPair, PeerDoc, SpecDocument, ValidationContext, VipServerDoc, VolumeDoc,
    fixtures::example_document, limits,
};
use tfagentctl::client::*;

/// What one case sends.
enum Input {
    /// Over gRPC as it is.
    Proto(Box<pb::NodeSpec>),
    /// As a file given to `tfagentctl apply -f`.
    Text(Vec<u8>),
}

struct Case {
    name: String,
    /// The field path the refusal must name; empty for faults of the whole
    /// document (empty, not UTF-8, not YAML at all).
    field: String,
    /// Whether it names a block device, which the agent looks up (reads
    /// only) to judge whether volumes may use it.
    names_device: bool,
    input: Input,
}

/// A valid spec every case breaks in one place: the server-init example
/// without its whole-disk volume (whose device the fake host lacks).
fn base() -> SpecDocument {
    let mut document = example_document("server-init");
    document.storage.volumes.retain(|v| v.device.is_none());
    document.addons.local_path.path = "/var/lib/rancher/k3s/storage".into();
    document
}

type Mutation = (&'static str, Box<dyn Fn(&mut SpecDocument)>);

fn set<F: Fn(&mut SpecDocument) + 'static>(field: &'static str, f: F) -> Mutation {
    (field, Box::new(f))
}

fn peer(n: u16, allowed: &str) -> PeerDoc {
    // 32 distinct bytes per n, base64.
    let mut bytes = [7u8; 32];
    bytes[..2].copy_from_slice(&n.to_be_bytes());
    PeerDoc {
        name: format!("peer-{n}"),
        public_key: base64_32(&bytes),
        endpoint: String::new(),
        allowed_ips: vec![allowed.into()],
        persistent_keepalive: 0,
    }
}

fn base64_32(bytes: &[u8; 32]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out.push('=');
    out
}

fn pool_volume(name: &str, mount_point: &str) -> VolumeDoc {
    VolumeDoc {
        name: name.into(),
        pool: Some("/mnt/ssd-1".into()),
        size: "1GiB".into(),
        mount_point: mount_point.into(),
        ..VolumeDoc::default()
    }
}

/// One fault each, anywhere in the spec.
#[allow(clippy::too_many_lines)]
fn mutations() -> Vec<Mutation> {
    let mut all: Vec<Mutation> = Vec::new();
    // Names.
    for bad in [
        "",
        "Server-1",
        "server_1",
        "-server",
        "server-",
        "server..1",
        "../etc",
        "a/b",
        "a b",
        "sérvér",
        "x\u{0}y",
    ] {
        all.push(set("node_name", move |d| d.node_name = bad.into()));
    }
    let long = "a".repeat(254);
    all.push(set("node_name", move |d| d.node_name = long.clone()));
    for bad in ["", "master", "SERVER-INIT"] {
        all.push(set("role", move |d| d.role = bad.into()));
    }
    // Cluster.
    all.push(set("cluster.token", |d| d.cluster.token = String::new()));
    all.push(set("cluster.token", |d| {
        d.cluster.token = "t".repeat(limits::MAX_TOKEN_BYTES + 1);
    }));
    all.push(set("cluster.token", |d| d.cluster.token = "a\nb".into()));
    for bad in [
        "not a url",
        "http://10.0.0.1:6443",
        "https://:6443",
        "https://h:70000",
    ] {
        all.push(set("cluster.join_url", move |d| {
            d.role = "server-join".into();
            d.cluster.join_url = bad.into();
        }));
    }
    for bad in ["300.1.1.1", "10.100.0.250/24", "::g", "vip"] {
        all.push(set("cluster.vip", move |d| d.cluster.vip = bad.into()));
    }
    for bad in ["bad name!", "", "..", "a..b"] {
        all.push(set("cluster.tls_sans", move |d| {
            d.cluster.tls_sans = vec![bad.into()];
        }));
    }
    all.push(set("cluster.tls_sans", |d| {
        d.cluster.tls_sans = vec!["k3s.example.com".into(); 2];
    }));
    all.push(set("cluster.tls_sans", |d| {
        d.cluster.tls_sans = (0..=limits::MAX_TLS_SANS)
            .map(|i| format!("n{i}.example.com"))
            .collect();
    }));
    for bad in ["10.42.0.0/33", "10.42.0.1/16", "nonsense", "10.42.0.0"] {
        all.push(set("cluster.cluster_cidr", move |d| {
            d.cluster.cluster_cidr = bad.into();
        }));
        all.push(set("cluster.service_cidr", move |d| {
            d.cluster.service_cidr = bad.into();
        }));
    }
    all.push(set("cluster.service_cidr", |d| {
        d.cluster.service_cidr = "10.42.128.0/17".into();
    }));
    // WireGuard.
    for bad in ["way-too-long-name", "a/b", "a b", "..", ".", "tf:k3s"] {
        all.push(set("network.wireguard.interface", move |d| {
            d.network.wireguard.interface = bad.into();
        }));
    }
    for bad in [65_536, 70_000, u32::MAX] {
        all.push(set("network.wireguard.listen_port", move |d| {
            d.network.wireguard.listen_port = bad;
        }));
    }
    for bad in [100, 1279, 9001, u32::MAX] {
        all.push(set("network.wireguard.mtu", move |d| {
            d.network.wireguard.mtu = bad;
        }));
    }
    for bad in [
        "10.100.0.1",
        "10.100.0.1/40",
        "x",
        "10.100.0.0/24 ",
        "fe80::/400",
    ] {
        all.push(set("network.wireguard.addresses", move |d| {
            d.network.wireguard.addresses = vec![bad.into()];
        }));
    }
    all.push(set("network.wireguard.addresses", |d| {
        d.network.wireguard.addresses.clear();
    }));
    all.push(set("network.wireguard.addresses", |d| {
        d.network.wireguard.addresses = (0..=limits::MAX_ADDRESSES)
            .map(|i| format!("10.100.{i}.1/24"))
            .collect();
    }));
    // Peers.
    for bad in [
        "",
        "abc",
        "zz0Gb1q1briV2JILKwhxvCgG0vuXsmMhjzACYmVOln4",
        "zz0Gb1q1briV2JILKwhxvCgG0vuXsmMhjzACYmVOl=",
        "!!0Gb1q1briV2JILKwhxvCgG0vuXsmMhjzACYmVOln4=",
    ] {
        all.push(set("network.wireguard.peers[1].public_key", move |d| {
            d.network.wireguard.peers[1].public_key = bad.into();
        }));
    }
    all.push(set("network.wireguard.peers", |d| {
        let key = d.network.wireguard.peers[0].public_key.clone();
        d.network.wireguard.peers[1].public_key = key;
    }));
    all.push(set("network.wireguard.peers", |d| {
        let name = d.network.wireguard.peers[0].name.clone();
        d.network.wireguard.peers[1].name = name;
    }));
    for bad in ["Bad_Name", "", "../peer"] {
        all.push(set("network.wireguard.peers[2].name", move |d| {
            d.network.wireguard.peers[2].name = bad.into();
        }));
    }
    for bad in [
        "host",
        "host:0",
        "[::1]",
        "203.0.113.12:99999",
        "h o s t:51820",
        ":51820",
    ] {
        all.push(set("network.wireguard.peers[0].endpoint", move |d| {
            d.network.wireguard.peers[0].endpoint = bad.into();
        }));
    }
    for bad in ["10.200.0.1/16", "10.100.0.3/33", "nonsense", "10.100.0.3"] {
        all.push(set("network.wireguard.peers[1].allowed_ips", move |d| {
            d.network.wireguard.peers[1].allowed_ips = vec![bad.into()];
        }));
    }
    // Allowed IPs another peer has (a /32 inside a wider route is fine:
    // WireGuard takes the longest prefix), or that take the VIP.
    for (peer, overlap) in [
        (1, "10.100.0.2/32"),
        (4, "10.100.0.11/32"),
        (0, "10.100.0.100/32"),
    ] {
        all.push(set("network.wireguard.peers", move |d| {
            d.network.wireguard.peers[peer].allowed_ips = vec![overlap.into()];
        }));
    }
    for takes_vip in ["10.0.0.0/8", "10.100.0.250/32"] {
        all.push(set("cluster.vip", move |d| {
            d.network.wireguard.peers[1].allowed_ips = vec![takes_vip.into()];
        }));
    }
    all.push(set("network.wireguard.peers[0].allowed_ips", |d| {
        d.network.wireguard.peers[0].allowed_ips = (0..=limits::MAX_ALLOWED_IPS)
            .map(|i| format!("10.{}.{}.0/24", 150 + i / 200, i % 200))
            .collect();
    }));
    all.push(set(
        "network.wireguard.peers[0].persistent_keepalive",
        |d| {
            d.network.wireguard.peers[0].persistent_keepalive = 70_000;
        },
    ));
    // A huge list.
    all.push(set("network.wireguard.peers", |d| {
        d.network.wireguard.peers = (0..=u16::try_from(limits::MAX_PEERS).unwrap())
            .map(|n| peer(n, &format!("10.{}.{}.0/24", 128 + n / 256, n % 256)))
            .collect();
    }));
    // VIP election.
    // (0 means the default.)
    for bad in [256, u32::MAX] {
        all.push(set("network.vip.virtual_router_id", move |d| {
            d.network.vip.virtual_router_id = bad;
        }));
    }
    for bad in [255, 1000] {
        all.push(set("network.vip.priority", move |d| {
            d.network.vip.priority = bad;
        }));
    }
    for bad in [5, 15, 40_951] {
        all.push(set("network.vip.advert_interval_ms", move |d| {
            d.network.vip.advert_interval_ms = bad;
        }));
    }
    all.push(set("network.vip.servers", |d| {
        d.network.vip.servers.push(VipServerDoc {
            name: "server-2".into(),
            address: "10.100.0.9".into(),
        });
    }));
    all.push(set("network.vip.servers", |d| {
        d.network.vip.servers[1].name = "stranger".into();
    }));
    all.push(set("network.vip.servers", |d| {
        d.network.vip.servers[1].address = "10.100.0.300".into();
    }));
    // Storage: names, paths (`..` among them), sizes, duplicates, lists.
    for bad in ["", "BAD", "a/b", "..", "under_score"] {
        all.push(set("storage.volumes[0]", move |d| {
            d.storage.volumes[0].name = bad.into();
        }));
    }
    for bad in [
        "relative",
        "/",
        "/var/lib/../../etc",
        "/a/./b",
        "/var/lib/rancher/k3s/",
        "//x",
    ] {
        all.push(set("storage.volumes[1].mount_point", move |d| {
            d.storage.volumes[1].mount_point = bad.into();
        }));
    }
    for bad in ["disk", "/dev/../etc/passwd", "/dev/sda/../sdb", ""] {
        all.push(set("storage.volumes[2]", move |d| {
            d.storage.volumes.push(VolumeDoc {
                device: Some(bad.into()),
                ..pool_volume("disk", "/srv/disk")
            });
            d.storage.volumes[2].pool = None;
        }));
    }
    for bad in ["relative/pool", "/mnt/../etc", ""] {
        all.push(set("storage.volumes[0]", move |d| {
            d.storage.volumes[0].pool = Some(bad.into());
        }));
    }
    for bad in ["lots", "-1GiB", "0", "1XB", "99999999999999999999GiB"] {
        all.push(set("storage.volumes[0]", move |d| {
            d.storage.volumes[0].size = bad.into();
        }));
    }
    for bad in ["ntfs", "BTRFS", "ext4;rm"] {
        all.push(set("storage.volumes[0]", move |d| {
            d.storage.volumes[0].filesystem = bad.into();
        }));
    }
    all.push(set("storage.volumes[0]", |d| {
        d.storage.volumes[0].format = "always".into();
    }));
    all.push(set("storage.volumes", |d| {
        let copy = d.storage.volumes[0].clone();
        d.storage.volumes.push(copy);
    }));
    all.push(set("storage.volumes", |d| {
        d.storage
            .volumes
            .push(pool_volume("other", "/var/lib/rancher/k3s"));
    }));
    all.push(set("storage.volumes", |d| {
        d.storage.volumes = (0..=limits::MAX_VOLUMES)
            .map(|i| pool_volume(&format!("v{i}"), &format!("/srv/v{i}")))
            .collect();
    }));
    all.push(set("storage.volumes[0]", |d| {
        d.storage.volumes[0].mount_options = vec!["noatime".into(); limits::MAX_MOUNT_OPTIONS + 1];
    }));
    for bad in ["rw,exec", "", "bind", "a\nb"] {
        all.push(set("storage.volumes[0]", move |d| {
            d.storage.volumes[0].mount_options = vec![bad.into()];
        }));
    }
    for bad in ["relative", "/etc/../root", "/"] {
        all.push(set("storage.persist", move |d| {
            d.storage.persist.paths = vec![tfagent_spec::PersistPathDoc {
                path: bad.into(),
                ..Default::default()
            }];
        }));
    }
    all.push(set("storage.persist", |d| {
        d.storage.persist.volume = "no-such-volume".into();
    }));
    // Mount targets in a system tree, on the agent's own dirs (the
    // defaults, and their parents) or through a symlink (the harness's
    // host has /srv/link → /etc): issue 18.
    for bad in [
        "/sys/fs/cgroup",
        "/etc/ssh",
        "/usr/lib",
        "/run",
        "/run/tfagent",
        "/var",
        "/var/lib/rancher2",
        "/root",
        "/dev/shm/x",
        "/var/cache/modules/tfagent",
        "/var/cache/modules",
        "/tmp",
        "/srv/link",
        "/srv/link/data",
    ] {
        all.push(set("storage.volumes[1].mount_point", move |d| {
            d.storage.volumes[1].mount_point = bad.into();
        }));
        all.push(set("storage.persist.paths[0].path", move |d| {
            d.storage.persist.paths = vec![tfagent_spec::PersistPathDoc {
                path: bad.into(),
                ..Default::default()
            }];
        }));
    }
    // Services.
    for bad in ["relative/k3s", "/usr/../bin/k3s", "/usr/bin/"] {
        all.push(set("services.k3s", move |d| {
            d.services.k3s.binary = bad.into();
        }));
        all.push(set("services.containerd", move |d| {
            d.services.containerd.binary = bad.into();
        }));
    }
    all.push(set("services.k3s", |d| {
        d.services.k3s.extra_args = vec!["--x".into(); limits::MAX_EXTRA_ARGS + 1];
    }));
    all.push(set("services.k3s", |d| {
        d.services.k3s.extra_args = vec!["a".repeat(limits::MAX_STRING_BYTES + 1)];
    }));
    // Flags that would grant access, run something else as root, write
    // files elsewhere or override what the agent renders: not on the
    // allow-list.
    for bad in [
        "--kube-apiserver-arg=anonymous-auth=true",
        "--kube-apiserver-arg=authorization-mode=AlwaysAllow",
        "--kubelet-arg=anonymous-auth=true",
        "--write-kubeconfig-mode=0644",
        "--write-kubeconfig=/tmp/admin.yaml",
        "--config=/tmp/evil.yaml",
        "--data-dir=/tmp/k3s",
        "--log=/etc/cron.d/x",
        "--private-registry=/tmp/registries.yaml",
        "--disable=traefik,kube-proxy",
        "server",
    ] {
        all.push(set("services.k3s.extra_args[0]", move |d| {
            d.services.k3s.extra_args = vec![bad.into()];
        }));
    }
    all.push(set("services.containerd.extra_args[0]", |d| {
        d.services.containerd.extra_args = vec!["--address=/run/containerd/containerd.sock".into()];
    }));
    // Add-ons.
    for bad in ["198.51.100.0/33", "pool", "198.51.100.1-", ""] {
        all.push(set("addons.metallb.addresses", move |d| {
            d.addons.metallb.addresses = vec![bad.into()];
        }));
    }
    all.push(set("addons.metallb.interface", |d| {
        d.addons.metallb.interface = "eth0/../x".into();
    }));
    for bad in ["not-an-email", "", "a@", "@b"] {
        all.push(set("addons.cert_manager.email", move |d| {
            d.addons.cert_manager.email = bad.into();
        }));
    }
    all.push(set("addons.cert_manager.server", |d| {
        d.addons.cert_manager.server = "prod".into();
    }));
    for bad in ["relative", "/var/../etc"] {
        all.push(set("addons.local_path.path", move |d| {
            d.addons.local_path.path = bad.into();
        }));
        all.push(set("addons.longhorn.data_path", move |d| {
            d.addons.longhorn.enabled = true;
            d.addons.longhorn.data_path = bad.into();
        }));
    }
    all
}

/// Proto-only faults: values the text form cannot express.
fn proto_only() -> Vec<(&'static str, pb::NodeSpec)> {
    let good = || pb::NodeSpec::from(base());
    let mut cases = Vec::new();
    for role in [-1, 4, 99, i32::MAX] {
        let mut spec = good();
        spec.role = role;
        cases.push(("role", spec));
    }
    for format in [-1, 9] {
        let mut spec = good();
        spec.storage.as_mut().unwrap().volumes[0].format = format;
        cases.push(("storage.volumes[0]", spec));
    }
    let mut spec = good();
    spec.addons
        .as_mut()
        .unwrap()
        .cert_manager
        .as_mut()
        .unwrap()
        .server = 7;
    cases.push(("addons.cert_manager.server", spec));
    let mut spec = good();
    spec.network = None;
    cases.push(("network.wireguard", spec));
    cases.push(("node_name", pb::NodeSpec::default()));
    cases
}

/// Text-only faults: syntax, unknown fields, wrong types, nesting, bytes.
fn text_only() -> Vec<(String, Vec<u8>)> {
    let yaml = base().to_yaml().unwrap();
    let json = base().to_json_pretty().unwrap();
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    let mut text = |field: &str, text: String| cases.push((field.to_owned(), text.into_bytes()));
    // Unknown fields, at every depth.
    text("nodename", yaml.replace("node_name:", "nodename:"));
    text("colour", format!("{yaml}colour: blue\n"));
    text(
        "cluster",
        yaml.replace("cluster:\n", "cluster:\n  secret: x\n"),
    );
    text(
        "network.wireguard.peers[0]",
        yaml.replacen("public_key:", "publickey:", 1),
    );
    text(
        "storage.volumes[0]",
        yaml.replacen("mount_point:", "mountpoint:", 1),
    );
    text(
        "traefik",
        yaml.replace("addons:\n", "addons:\n  traefik: {}\n"),
    );
    text(
        "nodename",
        json.replacen("\"node_name\"", "\"nodename\"", 1),
    );
    text(
        "mtus",
        json.replacen("\"listen_port\"", "\"mtus\": 1, \"listen_port\"", 1),
    );
    // Wrong types.
    text(
        "network.wireguard.listen_port",
        yaml.replace("listen_port: 51820", "listen_port: abc"),
    );
    text(
        "network.wireguard.listen_port",
        yaml.replace("listen_port: 51820", "listen_port: -1"),
    );
    text(
        "network.wireguard.peers",
        yaml.replacen("peers:", "peers: 5\n    old_peers:", 1),
    );
    text(
        "node_name",
        yaml.replace("node_name: server-1", "node_name: [a, b]"),
    );
    text(
        "cluster.token",
        yaml.replacen("token: ", "token: {a: 1} #", 1),
    );
    text(
        "network.wireguard.mtu",
        json.replacen(
            "\"listen_port\": 51820",
            "\"listen_port\": 51820, \"mtu\": 1.5",
            1,
        ),
    );
    // Duplicate keys.
    text("node_name", format!("{yaml}node_name: again\n"));
    text("node_name", json.replacen('{', "{\"node_name\": \"a\",", 1));
    // Deep nesting, in both syntaxes.
    for depth in [200, 10_000] {
        text(
            "node_name",
            format!(
                "{{\"node_name\": {}{}}}",
                "[".repeat(depth),
                "]".repeat(depth)
            ),
        );
        text(
            "",
            format!("node_name: {}{}\n", "[".repeat(depth), "]".repeat(depth)),
        );
    }
    text("", format!("{}x", "- ".repeat(5000)));
    // Not a spec at all.
    for junk in [
        "",
        "   \n\t",
        "\u{feff}",
        "{",
        "}",
        "[1, 2]",
        "42",
        "null",
        "~",
        "{\"a\"",
        "node_name: x\n  bad indent: y",
        ": :",
        "\"just a string\"",
    ] {
        text("", junk.to_owned());
    }
    // Over the size limit.
    text(
        "",
        format!("{yaml}#{}\n", "x".repeat(limits::MAX_DOCUMENT_BYTES)),
    );
    // Invalid UTF-8, inside a value and alone.
    let mut bad = yaml.clone().into_bytes();
    let at = yaml.find("server-1").unwrap();
    bad[at] = 0xff;
    cases.push((String::new(), bad));
    cases.push((String::new(), vec![0xc3, 0x28]));
    cases.push((String::new(), b"node_name: \xe2\x82\n".to_vec()));
    // Random bytes from a fixed seed, so a failure is reproducible.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for n in 0..40 {
        let len = 1 + n * 37 % 600;
        let bytes = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        cases.push((String::new(), bytes));
    }
    cases
}

fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    for (i, (field, mutate)) in mutations().into_iter().enumerate() {
        let mut document = base();
        mutate(&mut document);
        let names_device = document.storage.volumes.iter().any(|v| v.device.is_some());
        cases.push(Case {
            name: format!("mutation {i} ({field}) as proto"),
            field: field.to_owned(),
            names_device,
            input: Input::Proto(Box::new(document.clone().into())),
        });
        cases.push(Case {
            name: format!("mutation {i} ({field}) as YAML"),
            field: field.to_owned(),
            names_device,
            input: Input::Text(document.to_yaml().unwrap().into_bytes()),
        });
        cases.push(Case {
            name: format!("mutation {i} ({field}) as JSON"),
            field: field.to_owned(),
            names_device,
            input: Input::Text(document.to_json_pretty().unwrap().into_bytes()),
        });
    }
    for (i, (field, spec)) in proto_only().into_iter().enumerate() {
        cases.push(Case {
            name: format!("proto-only {i} ({field})"),
            field: field.to_owned(),
            names_device: false,
            input: Input::Proto(Box::new(spec)),
        });
    }
    for (i, (field, bytes)) in text_only().into_iter().enumerate() {
        cases.push(Case {
            name: format!("text {i} ({field})"),
            field,
            names_device: false,
            input: Input::Text(bytes),
        });
    }
    cases
}

/// An agent over fake hosts, served on a temp socket.
struct Harness {
    dir: tempfile::TempDir,
    socket: PathBuf,
    net: FakeNet,
    storage: Arc<FakeOps>,
    supervisor: tfagent_supervisor::Supervisor,
    controller: Arc<Controller>,
    shutdown: CancellationToken,
}

impl Harness {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let storage_ops = Arc::new(FakeOps::default());
        storage_ops
            .state()
            .symlinks
            .insert("/srv/link".into(), "/etc".into());
        let storage = Storage::new(
            Arc::clone(&storage_ops) as Arc<dyn StorageOps>,
            &state,
            DevicePolicy::new(None, &state),
        );
        let net = FakeNet::default();
        let network = Arc::new(NetworkStep::new(
            Backend::Userspace,
            Arc::new(KeyPair::generate()),
            net.host(),
        ));
        let services = dir.path().join("services");
        let supervisor = tfagent_supervisor::Supervisor::new(
            tfagent_supervisor::SupervisorConfig {
                record_dir: services.join("records"),
                log_dir: services.join("logs"),
                cgroups: tfagent_supervisor::cgroup::CgroupLayout::None,
                cgroup_parent: "unused".into(),
            },
            CancellationToken::new(),
        );
        let (vip, vip_engine) =
            crate::test_support::vip_step(&services, &supervisor, network.clone());
        let (steps, collaborators) = app::Wiring {
            storage,
            network,
            services: crate::services::Services::new(
                supervisor.clone(),
                crate::services::ServicePaths::under(&services),
            ),
            vip,
            vip_engine,
            host: Arc::new(FakeHost),
        }
        .assemble();
        let controller = Arc::new(crate::test_support::controller_over(
            &state,
            steps,
            collaborators,
        ));
        let socket = dir.path().join("tfagent.sock");
        let bound = bind_unix(&socket, None).await.unwrap();
        let shutdown = CancellationToken::new();
        let local = LocalAccess {
            uids: vec![nix::unistd::getuid().as_raw()],
            reader_gid: None,
        };
        tokio::spawn(serve(
            bound,
            None,
            Arc::clone(&controller),
            local,
            shutdown.clone(),
        ));
        Self {
            dir,
            socket,
            net,
            storage: storage_ops,
            supervisor,
            controller,
            shutdown,
        }
    }

    /// Nothing was stored, started, written or changed. Clears what the
    /// fakes recorded.
    fn untouched(&self, names_device: bool) -> Result<(), String> {
        let net_calls = self.net.take_calls();
        let mutations = self.storage.mutations();
        let storage_calls = std::mem::take(&mut self.storage.state().calls);
        if !net_calls.is_empty() {
            return Err(format!("the network host was called: {net_calls:?}"));
        }
        if !mutations.is_empty() {
            return Err(format!("storage changed: {mutations:?}"));
        }
        // Only a device the spec names is looked up, and only read.
        if !names_device && !storage_calls.is_empty() {
            return Err(format!("the storage host was called: {storage_calls:?}"));
        }
        if !self.supervisor.names().is_empty() {
            return Err("a service started".into());
        }
        if self.controller.redacted_spec().is_some() {
            return Err("a spec was stored".into());
        }
        if !self.controller.subscribe().0.is_empty() {
            return Err("an event was published".into());
        }
        let written: Vec<_> = std::fs::read_dir(self.dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name != "lock")
            .collect();
        if !written.is_empty() {
            return Err(format!("wrote {written:?}"));
        }
        if self.dir.path().join("services").exists() {
            return Err("the services' files were written".into());
        }
        Ok(())
    }
}

/// How a case was refused.
enum Refusal {
    /// By the agent, over gRPC.
    Status(tonic::Status),
    /// By tfagentctl before sending (the text was no spec document); the
    /// agent never saw it.
    Local(String),
}

/// What `tfagentctl apply -f FILE` does with the file: read it as UTF-8,
/// parse it, check locally what the wire form cannot carry, and send it.
async fn send_text(client: &mut NodeAgentClient<Channel>, bytes: &[u8]) -> Result<(), Refusal> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Refusal::Local(format!("the spec is not UTF-8: {e}")))?;
    let document = SpecDocument::parse(text).map_err(|e| Refusal::Local(e.to_string()))?;
    let proto = pb::NodeSpec::from(document.clone());
    if SpecDocument::from(proto.clone()) != document
        && let Err(errors) = document.validate(&ValidationContext::default())
    {
        return Err(Refusal::Local(errors.to_string()));
    }
    send_proto(client, proto).await
}

/// A dry run, then, when that is refused as it must be, an apply (which
/// must be refused the same way).
async fn send_proto(
    client: &mut NodeAgentClient<Channel>,
    spec: pb::NodeSpec,
) -> Result<(), Refusal> {
    for mode in [pb::ApplyMode::DryRun, pb::ApplyMode::Apply] {
        client
            .apply(pb::ApplyRequest {
                spec: Some(spec.clone()),
                mode: mode.into(),
                try_timeout: None,
            })
            .await
            .map_err(Refusal::Status)?;
        if mode == pb::ApplyMode::DryRun {
            // Accepted: a failure of the case; not stored, so the next
            // cases still start from nothing.
            return Ok(());
        }
    }
    Ok(())
}

/// Whether `case` was refused as it must be.
fn check(case: &Case, refusal: Result<(), Refusal>) -> Result<(), String> {
    match refusal {
        Ok(()) => Err("accepted".into()),
        Err(Refusal::Status(status)) => {
            if status.code() != Code::InvalidArgument {
                return Err(format!("{status:?}"));
            }
            let fields = bad_request_fields(&status);
            if fields.is_empty() || fields.iter().any(|(field, _)| field.is_empty()) {
                return Err(format!("a violation without a field: {status:?}"));
            }
            if !fields
                .iter()
                .any(|(field, _)| field.starts_with(&case.field))
            {
                return Err(format!("{} not among {fields:?}", case.field));
            }
            if !status.message().contains(&case.field) {
                return Err(format!("{} not in {}", case.field, status.message()));
            }
            Ok(())
        }
        Err(Refusal::Local(message)) => {
            if !matches!(case.input, Input::Text(_)) {
                return Err("a proto case never reaches the local checks".into());
            }
            if message.is_empty() || !message.contains(&case.field) {
                return Err(format!("`{}` not in {message}", case.field));
            }
            Ok(())
        }
    }
}

#[tokio::test]
async fn every_malformed_spec_is_refused_naming_its_field_and_touches_nothing() {
    let harness = Harness::start().await;
    let mut client = connect_unix(&harness.socket).await.unwrap();

    // The base is valid: each case is refused for its own fault.
    let base = client
        .apply(pb::ApplyRequest {
            spec: Some(base().into()),
            mode: pb::ApplyMode::DryRun.into(),
            try_timeout: None,
        })
        .await;
    assert!(base.is_ok(), "the base spec is valid: {base:?}");
    harness.net.take_calls();
    harness.storage.state().calls.clear();
    harness.untouched(false).unwrap();

    let cases = corpus();
    assert!(cases.len() >= 200, "only {} cases", cases.len());
    let (mut remote, mut local) = (0, 0);
    let mut failures = Vec::new();
    for case in &cases {
        let refusal = match &case.input {
            Input::Proto(spec) => send_proto(&mut client, (**spec).clone()).await,
            Input::Text(bytes) => send_text(&mut client, bytes).await,
        };
        match &refusal {
            Err(Refusal::Status(_)) => remote += 1,
            Err(Refusal::Local(_)) => local += 1,
            Ok(()) => {}
        }
        if let Err(failure) = check(case, refusal) {
            failures.push(format!("{}: {failure}", case.name));
        }
        if let Err(failure) = harness.untouched(case.names_device) {
            failures.push(format!("{}: {failure}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Both ways are exercised, the agent's above all.
    assert!(remote >= 150, "{remote} refused by the agent");
    assert!(local >= 50, "{local} refused before sending");
    // The agent is still well after all of it.
    client.get_status(pb::GetStatusRequest {}).await.unwrap();
    harness.shutdown.cancel();
}
