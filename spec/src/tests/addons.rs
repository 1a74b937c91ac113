//! Rules of `addons`, from the spec and from the host.

use super::*;

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
