//! Proto `NodeSpec` ⇄ [`SpecDocument`].
//!
//! The document is the wire message's twin, so the mapping is lossless for
//! every proto message; validation is left to [`SpecDocument::validate`].
//! Enums: UNSPECIFIED becomes an empty string (so validation says
//! `role: required`, or fills in the default where empty means one), a number
//! the proto does not know becomes its decimal text, which validation refuses.
//! Empty sub-messages and absent sections map to each other.
//!
//! The other way is lossy only for documents validation refuses anyway: an
//! enum word that is not one of the document's words becomes
//! [`UNREPRESENTABLE`], and a volume with both `device` and `pool` keeps only
//! `device`. Validate a document (context-free checks suffice) before sending
//! it, to get the precise message.

use tfagent_proto::v1 as pb;

use crate::{
    AcmeServer, AddonsDoc, CertManagerDoc, ClusterDoc, FormatPolicy, IngressNginxDoc, LocalPathDoc,
    LonghornDoc, MetallbDoc, NetworkDoc, PeerDoc, PersistDoc, PersistPathDoc, Role, ServiceDoc,
    ServicesDoc, SpecDocument, StorageDoc, VipDoc, VipServerDoc, VolumeDoc, WireguardDoc,
};

/// The enum number sent for a document word no proto value stands for.
pub const UNREPRESENTABLE: i32 = -1;

/// Proto number → document word: 0 → empty, unknown → decimal text.
fn enum_text(number: i32, words: &[(i32, &str)]) -> String {
    match words.iter().find(|(n, _)| *n == number) {
        Some((_, word)) => (*word).to_owned(),
        None if number == 0 => String::new(),
        None => number.to_string(),
    }
}

/// Document word → proto number, the inverse of [`enum_text`].
fn enum_number(text: &str, words: &[(i32, &str)]) -> i32 {
    if text.is_empty() {
        return 0;
    }
    if let Some((number, _)) = words.iter().find(|(_, word)| *word == text) {
        return *number;
    }
    // Only the decimal text of a number with no word round-trips; "1" is not
    // a way to spell server-init.
    match text.parse::<i32>() {
        Ok(number) if number != 0 && !words.iter().any(|(n, _)| *n == number) => number,
        _ => UNREPRESENTABLE,
    }
}

fn role_words() -> [(i32, &'static str); 3] {
    [
        (pb::Role::ServerInit as i32, Role::ServerInit.as_str()),
        (pb::Role::ServerJoin as i32, Role::ServerJoin.as_str()),
        (pb::Role::Agent as i32, Role::Agent.as_str()),
    ]
}

fn format_words() -> [(i32, &'static str); 3] {
    [
        (pb::FormatPolicy::Never as i32, FormatPolicy::Never.as_str()),
        (
            pb::FormatPolicy::IfBlank as i32,
            FormatPolicy::IfBlank.as_str(),
        ),
        (pb::FormatPolicy::Wipe as i32, FormatPolicy::Wipe.as_str()),
    ]
}

fn acme_words() -> [(i32, &'static str); 2] {
    [
        (pb::AcmeServer::Staging as i32, AcmeServer::Staging.as_str()),
        (
            pb::AcmeServer::Production as i32,
            AcmeServer::Production.as_str(),
        ),
    ]
}

/// An absent sub-message reads as the empty section.
fn section<M, D: From<M> + Default>(message: Option<M>) -> D {
    message.map(D::from).unwrap_or_default()
}

/// The empty section is sent as an absent sub-message.
fn message<D: Default + PartialEq, M: From<D>>(section: D) -> Option<M> {
    (section != D::default()).then(|| M::from(section))
}

// Proto → document.

impl From<pb::NodeSpec> for SpecDocument {
    fn from(spec: pb::NodeSpec) -> Self {
        Self {
            node_name: spec.node_name,
            role: enum_text(spec.role, &role_words()),
            cluster: section(spec.cluster),
            network: section(spec.network),
            storage: section(spec.storage),
            services: section(spec.services),
            addons: section(spec.addons),
        }
    }
}

impl From<pb::ClusterSpec> for ClusterDoc {
    fn from(c: pb::ClusterSpec) -> Self {
        Self {
            token: c.token,
            join_url: c.join_url,
            vip: c.vip,
            tls_sans: c.tls_sans,
            cluster_cidr: c.cluster_cidr,
            service_cidr: c.service_cidr,
        }
    }
}

impl From<pb::NetworkSpec> for NetworkDoc {
    fn from(n: pb::NetworkSpec) -> Self {
        Self {
            wireguard: section(n.wireguard),
            vip: section(n.vip),
        }
    }
}

impl From<pb::WireguardSpec> for WireguardDoc {
    fn from(w: pb::WireguardSpec) -> Self {
        Self {
            interface: w.interface,
            listen_port: w.listen_port,
            addresses: w.addresses,
            mtu: w.mtu,
            peers: w.peers.into_iter().map(PeerDoc::from).collect(),
        }
    }
}

impl From<pb::WireguardPeer> for PeerDoc {
    fn from(p: pb::WireguardPeer) -> Self {
        Self {
            name: p.name,
            public_key: p.public_key,
            endpoint: p.endpoint,
            allowed_ips: p.allowed_ips,
            persistent_keepalive: p.persistent_keepalive,
        }
    }
}

impl From<pb::VipSpec> for VipDoc {
    fn from(v: pb::VipSpec) -> Self {
        Self {
            virtual_router_id: v.virtual_router_id,
            priority: v.priority,
            advert_interval_ms: v.advert_interval_ms,
            announce_port: v.announce_port,
            servers: v
                .servers
                .into_iter()
                .map(|s| VipServerDoc {
                    name: s.name,
                    address: s.address,
                })
                .collect(),
        }
    }
}

impl From<pb::StorageSpec> for StorageDoc {
    fn from(s: pb::StorageSpec) -> Self {
        Self {
            volumes: s.volumes.into_iter().map(VolumeDoc::from).collect(),
            persist: section(s.persist),
        }
    }
}

impl From<pb::PersistSpec> for PersistDoc {
    fn from(p: pb::PersistSpec) -> Self {
        Self {
            volume: p.volume,
            paths: p
                .paths
                .into_iter()
                .map(|p| PersistPathDoc {
                    path: p.path,
                    propagation: p.propagation,
                })
                .collect(),
        }
    }
}

impl From<PersistDoc> for pb::PersistSpec {
    fn from(p: PersistDoc) -> Self {
        Self {
            volume: p.volume,
            paths: p
                .paths
                .into_iter()
                .map(|p| pb::PersistPath {
                    path: p.path,
                    propagation: p.propagation,
                })
                .collect(),
        }
    }
}

impl From<pb::Volume> for VolumeDoc {
    fn from(v: pb::Volume) -> Self {
        let (device, pool) = match v.source {
            Some(pb::volume::Source::Device(device)) => (Some(device), None),
            Some(pb::volume::Source::Pool(pool)) => (None, Some(pool)),
            None => (None, None),
        };
        Self {
            name: v.name,
            device,
            pool,
            filesystem: v.filesystem,
            mount_point: v.mount_point,
            mount_options: v.mount_options,
            format: enum_text(v.format, &format_words()),
            wipe_signature: v.wipe_signature,
            size: v.size,
        }
    }
}

impl From<pb::ServicesSpec> for ServicesDoc {
    fn from(s: pb::ServicesSpec) -> Self {
        Self {
            containerd: section(s.containerd),
            k3s: section(s.k3s),
        }
    }
}

impl From<pb::ServiceSpec> for ServiceDoc {
    fn from(s: pb::ServiceSpec) -> Self {
        Self {
            binary: s.binary,
            extra_args: s.extra_args,
        }
    }
}

impl From<pb::AddonsSpec> for AddonsDoc {
    fn from(a: pb::AddonsSpec) -> Self {
        Self {
            metallb: section(a.metallb),
            ingress_nginx: section(a.ingress_nginx),
            cert_manager: section(a.cert_manager),
            local_path: section(a.local_path),
            longhorn: section(a.longhorn),
        }
    }
}

impl From<pb::MetallbAddon> for MetallbDoc {
    fn from(m: pb::MetallbAddon) -> Self {
        Self {
            enabled: m.enabled,
            addresses: m.addresses,
            interface: m.interface,
        }
    }
}

impl From<pb::IngressNginxAddon> for IngressNginxDoc {
    fn from(i: pb::IngressNginxAddon) -> Self {
        Self { enabled: i.enabled }
    }
}

impl From<pb::CertManagerAddon> for CertManagerDoc {
    fn from(c: pb::CertManagerAddon) -> Self {
        Self {
            enabled: c.enabled,
            email: c.email,
            server: enum_text(c.server, &acme_words()),
        }
    }
}

impl From<pb::LocalPathAddon> for LocalPathDoc {
    fn from(l: pb::LocalPathAddon) -> Self {
        Self {
            enabled: l.enabled,
            path: l.path,
        }
    }
}

impl From<pb::LonghornAddon> for LonghornDoc {
    fn from(l: pb::LonghornAddon) -> Self {
        Self {
            enabled: l.enabled,
            data_path: l.data_path,
        }
    }
}

// Document → proto.

impl From<SpecDocument> for pb::NodeSpec {
    fn from(doc: SpecDocument) -> Self {
        Self {
            node_name: doc.node_name,
            role: enum_number(&doc.role, &role_words()),
            cluster: message(doc.cluster),
            network: message(doc.network),
            storage: message(doc.storage),
            services: message(doc.services),
            addons: message(doc.addons),
        }
    }
}

impl From<ClusterDoc> for pb::ClusterSpec {
    fn from(c: ClusterDoc) -> Self {
        Self {
            token: c.token,
            join_url: c.join_url,
            vip: c.vip,
            tls_sans: c.tls_sans,
            cluster_cidr: c.cluster_cidr,
            service_cidr: c.service_cidr,
        }
    }
}

impl From<NetworkDoc> for pb::NetworkSpec {
    fn from(n: NetworkDoc) -> Self {
        Self {
            wireguard: message(n.wireguard),
            vip: message(n.vip),
        }
    }
}

impl From<WireguardDoc> for pb::WireguardSpec {
    fn from(w: WireguardDoc) -> Self {
        Self {
            interface: w.interface,
            listen_port: w.listen_port,
            addresses: w.addresses,
            mtu: w.mtu,
            peers: w.peers.into_iter().map(pb::WireguardPeer::from).collect(),
        }
    }
}

impl From<PeerDoc> for pb::WireguardPeer {
    fn from(p: PeerDoc) -> Self {
        Self {
            name: p.name,
            public_key: p.public_key,
            endpoint: p.endpoint,
            allowed_ips: p.allowed_ips,
            persistent_keepalive: p.persistent_keepalive,
        }
    }
}

impl From<VipDoc> for pb::VipSpec {
    fn from(v: VipDoc) -> Self {
        Self {
            virtual_router_id: v.virtual_router_id,
            priority: v.priority,
            advert_interval_ms: v.advert_interval_ms,
            announce_port: v.announce_port,
            servers: v
                .servers
                .into_iter()
                .map(|s| pb::VipServer {
                    name: s.name,
                    address: s.address,
                })
                .collect(),
        }
    }
}

impl From<StorageDoc> for pb::StorageSpec {
    fn from(s: StorageDoc) -> Self {
        Self {
            volumes: s.volumes.into_iter().map(pb::Volume::from).collect(),
            persist: message(s.persist),
        }
    }
}

impl From<VolumeDoc> for pb::Volume {
    fn from(v: VolumeDoc) -> Self {
        let source = match (v.device, v.pool) {
            (Some(device), _) => Some(pb::volume::Source::Device(device)),
            (None, Some(pool)) => Some(pb::volume::Source::Pool(pool)),
            (None, None) => None,
        };
        Self {
            name: v.name,
            filesystem: v.filesystem,
            mount_point: v.mount_point,
            mount_options: v.mount_options,
            format: enum_number(&v.format, &format_words()),
            wipe_signature: v.wipe_signature,
            size: v.size,
            source,
        }
    }
}

impl From<ServicesDoc> for pb::ServicesSpec {
    fn from(s: ServicesDoc) -> Self {
        Self {
            containerd: message(s.containerd),
            k3s: message(s.k3s),
        }
    }
}

impl From<ServiceDoc> for pb::ServiceSpec {
    fn from(s: ServiceDoc) -> Self {
        Self {
            binary: s.binary,
            extra_args: s.extra_args,
        }
    }
}

impl From<AddonsDoc> for pb::AddonsSpec {
    fn from(a: AddonsDoc) -> Self {
        Self {
            metallb: message(a.metallb),
            ingress_nginx: message(a.ingress_nginx),
            cert_manager: message(a.cert_manager),
            local_path: message(a.local_path),
            longhorn: message(a.longhorn),
        }
    }
}

impl From<MetallbDoc> for pb::MetallbAddon {
    fn from(m: MetallbDoc) -> Self {
        Self {
            enabled: m.enabled,
            addresses: m.addresses,
            interface: m.interface,
        }
    }
}

impl From<IngressNginxDoc> for pb::IngressNginxAddon {
    fn from(i: IngressNginxDoc) -> Self {
        Self { enabled: i.enabled }
    }
}

impl From<CertManagerDoc> for pb::CertManagerAddon {
    fn from(c: CertManagerDoc) -> Self {
        Self {
            enabled: c.enabled,
            email: c.email,
            server: enum_number(&c.server, &acme_words()),
        }
    }
}

impl From<LocalPathDoc> for pb::LocalPathAddon {
    fn from(l: LocalPathDoc) -> Self {
        Self {
            enabled: l.enabled,
            path: l.path,
        }
    }
}

impl From<LonghornDoc> for pb::LonghornAddon {
    fn from(l: LonghornDoc) -> Self {
        Self {
            enabled: l.enabled,
            data_path: l.data_path,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use proptest::prelude::*;

    use super::*;
    use crate::{NodeSpec, ValidationContext};

    fn example_docs() -> Vec<SpecDocument> {
        crate::fixtures::EXAMPLES
            .iter()
            .map(|(_, text)| SpecDocument::parse(text).unwrap())
            .collect()
    }

    fn validate(doc: &SpecDocument) -> Result<NodeSpec, Vec<String>> {
        doc.validate(&ValidationContext::default())
            .map_err(|errors| errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn examples_round_trip_both_ways() {
        for doc in example_docs() {
            let proto = pb::NodeSpec::from(doc.clone());
            let role = match doc.role.as_str() {
                "server-init" => pb::Role::ServerInit,
                "server-join" => pb::Role::ServerJoin,
                _ => pb::Role::Agent,
            };
            assert_eq!(proto.role, role as i32);
            assert_eq!(SpecDocument::from(proto.clone()), doc);
            assert_eq!(pb::NodeSpec::from(SpecDocument::from(proto.clone())), proto);
            // The normalized document, too, and through the wire encoding.
            let normalized = validate(&doc).unwrap().to_document();
            let proto = pb::NodeSpec::from(normalized.clone());
            let bytes = prost::Message::encode_to_vec(&proto);
            let decoded = <pb::NodeSpec as prost::Message>::decode(bytes.as_slice()).unwrap();
            assert_eq!(SpecDocument::from(decoded), normalized);
        }
    }

    #[test]
    fn fields_land_where_they_belong() {
        let doc = &example_docs()[0];
        let proto = pb::NodeSpec::from(doc.clone());
        let cluster = proto.cluster.as_ref().unwrap();
        assert_eq!(cluster.vip, "10.100.0.250");
        let network = proto.network.as_ref().unwrap();
        let wireguard = network.wireguard.as_ref().unwrap();
        assert_eq!(wireguard.addresses, ["10.100.0.1/24"]);
        assert_eq!(wireguard.peers[0].persistent_keepalive, 25);
        assert_eq!(network.vip.as_ref().unwrap().priority, 150);
        let volumes = &proto.storage.as_ref().unwrap().volumes;
        assert_eq!(
            volumes[0].source,
            Some(pb::volume::Source::Pool("/mnt/ssd-1".into()))
        );
        assert_eq!(volumes[0].size, "50GiB");
        assert!(
            matches!(&volumes[2].source, Some(pb::volume::Source::Device(d)) if d.starts_with("/dev/disk/by-id/"))
        );
        assert_eq!(volumes[2].format, pb::FormatPolicy::IfBlank as i32);
        let addons = proto.addons.as_ref().unwrap();
        assert_eq!(
            addons.cert_manager.as_ref().unwrap().server,
            pb::AcmeServer::Staging as i32
        );
        assert_eq!(addons.metallb.as_ref().unwrap().interface, "eth0");
        // `longhorn: {enabled: false}` is an empty section: absent on the wire.
        assert_eq!(addons.longhorn, None);
    }

    #[test]
    fn unspecified_enums_are_empty_text() {
        let proto = pb::NodeSpec {
            node_name: "node-1".into(),
            storage: Some(pb::StorageSpec {
                volumes: vec![pb::Volume {
                    name: "v".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            addons: Some(pb::AddonsSpec {
                cert_manager: Some(pb::CertManagerAddon {
                    enabled: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let doc = SpecDocument::from(proto);
        assert_eq!(doc.role, "");
        assert_eq!(doc.storage.volumes[0].format, "");
        assert_eq!(doc.addons.cert_manager.server, "");
        let errors = validate(&doc).unwrap_err();
        assert!(errors.contains(&"role: required".to_owned()), "{errors:?}");
        // Empty format and ACME server mean their defaults, not a fault.
        assert!(
            !errors
                .iter()
                .any(|e| e.contains(".format") || e.contains(".server")),
            "{errors:?}"
        );
    }

    #[test]
    fn unknown_enum_numbers_are_refused_by_validation() {
        let mut proto = pb::NodeSpec::from(example_docs()[0].clone());
        proto.role = 7;
        proto.storage.as_mut().unwrap().volumes[2].format = 9;
        proto
            .addons
            .as_mut()
            .unwrap()
            .cert_manager
            .as_mut()
            .unwrap()
            .server = -4;
        let doc = SpecDocument::from(proto.clone());
        assert_eq!(doc.role, "7");
        assert_eq!(doc.storage.volumes[2].format, "9");
        assert_eq!(doc.addons.cert_manager.server, "-4");
        assert_eq!(pb::NodeSpec::from(doc.clone()), proto);
        assert_eq!(
            validate(&doc).unwrap_err(),
            [
                "role: `7` is not one of server-init, server-join, agent",
                "storage.volumes[2].format: `9` is not one of never, if-blank, wipe",
                "addons.cert_manager.server: `-4` is not one of staging, production",
            ]
        );
    }

    #[test]
    fn words_without_a_number_are_unrepresentable() {
        for word in ["master", "ROLE_AGENT", "1", "0", "Agent"] {
            let doc = SpecDocument {
                role: word.into(),
                ..Default::default()
            };
            assert_eq!(pb::NodeSpec::from(doc).role, UNREPRESENTABLE, "{word}");
        }
        assert_eq!(
            enum_number("wipe", &format_words()),
            pb::FormatPolicy::Wipe as i32
        );
        assert_eq!(
            enum_number("production", &acme_words()),
            pb::AcmeServer::Production as i32
        );
    }

    #[test]
    fn empty_sub_messages_are_absent_sections() {
        let proto = pb::NodeSpec {
            cluster: Some(pb::ClusterSpec::default()),
            network: Some(pb::NetworkSpec {
                wireguard: Some(pb::WireguardSpec::default()),
                vip: Some(pb::VipSpec::default()),
            }),
            storage: Some(pb::StorageSpec::default()),
            services: Some(pb::ServicesSpec {
                containerd: Some(pb::ServiceSpec::default()),
                k3s: None,
            }),
            addons: Some(pb::AddonsSpec {
                ingress_nginx: Some(pb::IngressNginxAddon::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let doc = SpecDocument::from(proto);
        assert_eq!(doc, SpecDocument::default());
        assert_eq!(pb::NodeSpec::from(doc), pb::NodeSpec::default());

        let doc = SpecDocument {
            network: NetworkDoc {
                vip: VipDoc {
                    priority: 100,
                    ..Default::default()
                },
                ..Default::default()
            },
            ..Default::default()
        };
        let network = pb::NodeSpec::from(doc).network.unwrap();
        assert_eq!(network.wireguard, None);
        assert_eq!(
            network.vip,
            Some(pb::VipSpec {
                priority: 100,
                ..Default::default()
            })
        );
    }

    #[test]
    fn volume_source_maps_to_the_oneof() {
        let device = VolumeDoc {
            device: Some("/dev/sdb".into()),
            ..Default::default()
        };
        let pool = VolumeDoc {
            pool: Some("/mnt/p".into()),
            ..Default::default()
        };
        let neither = VolumeDoc {
            name: "x".into(),
            ..Default::default()
        };
        for doc in [device, pool, neither] {
            assert_eq!(VolumeDoc::from(pb::Volume::from(doc.clone())), doc);
        }
        // Both is refused by validation; on the wire only the device survives.
        let both = VolumeDoc {
            device: Some("/dev/sdb".into()),
            pool: Some("/mnt/p".into()),
            ..Default::default()
        };
        assert_eq!(
            pb::Volume::from(both).source,
            Some(pb::volume::Source::Device("/dev/sdb".into()))
        );
    }

    /// A document every field of which the proto can carry.
    fn arb_representable_doc() -> impl Strategy<Value = SpecDocument> {
        let role = prop::sample::select(vec!["", "server-init", "server-join", "agent", "7", "-2"]);
        let format = prop::sample::select(vec!["", "never", "if-blank", "wipe", "12"]);
        let server = prop::sample::select(vec!["", "staging", "production", "3"]);
        let sources = prop::collection::vec(0u8..3, 3);
        (
            crate::tests::arb_doc(),
            role,
            prop::collection::vec(format, 3),
            server,
            sources,
        )
            .prop_map(|(mut doc, role, formats, server, sources)| {
                doc.role = role.into();
                for (i, volume) in doc.storage.volumes.iter_mut().enumerate() {
                    volume.format = formats[i].into();
                    match sources[i] {
                        0 => volume.pool = None,
                        1 => volume.device = None,
                        _ => {
                            volume.device = None;
                            volume.pool = None;
                        }
                    }
                }
                doc.addons.cert_manager.server = server.into();
                doc
            })
    }

    proptest! {
        #[test]
        fn documents_round_trip_through_proto(doc in arb_representable_doc()) {
            let proto = pb::NodeSpec::from(doc.clone());
            prop_assert_eq!(SpecDocument::from(proto.clone()), doc);
            prop_assert_eq!(pb::NodeSpec::from(SpecDocument::from(proto.clone())), proto);
        }

        #[test]
        fn valid_specs_survive_the_wire(spec in crate::tests::arb_spec()) {
            let proto = pb::NodeSpec::from(spec.to_document());
            let bytes = prost::Message::encode_to_vec(&proto);
            let decoded = <pb::NodeSpec as prost::Message>::decode(bytes.as_slice()).unwrap();
            prop_assert_eq!(SpecDocument::from(decoded).validate(&ValidationContext::default()), Ok(spec));
        }
    }
}
