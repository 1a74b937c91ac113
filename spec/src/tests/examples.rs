//! The shipped examples, and the defaults validation fills in.

use super::*;

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
