//! Every fault at once, and the cap on how many are listed.

use super::*;

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
