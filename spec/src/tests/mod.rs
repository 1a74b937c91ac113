//! Tests of the spec: parsing, every validation rule, the newtypes, and
//! property tests, one module per section. Here: the documents and checks
//! the sections share, and the strategies (shared with the proto
//! conversion's tests too).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod addons;
mod cluster;
mod examples;
mod newtypes;
mod parsing;
mod properties;
mod reporting;
mod secrets;
mod services;
mod storage;
mod vip;
mod wireguard;

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
        mount_point: "/srv/data".into(),
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

// Proptest strategies, shared with proto.rs's tests: any document, and valid specs.

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
            ("/opt/[a-z]{1,8}/bin/[a-z]{1,8}", prop::collection::vec("--log-level=(debug|info|warn)", 0..3)),
            ("/opt/[a-z]{1,8}/bin/[a-z]{1,8}", prop::collection::vec("--(node-label=[a-z]{1,6}=[a-z0-9]{0,5}|disable=(traefik|servicelb)|debug|v=[0-9])", 0..3)),
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
