//! `addons`: what each enabled add-on needs, from the spec and from the
//! host.

use super::checker::{Checker, Items};
use super::cluster::ClusterParts;
use crate::defaults;
use crate::document::AddonsDoc;
use crate::limits::MAX_METALLB_ADDRESSES;
use crate::model::{Addons, CertManager, LocalPath, Longhorn, Metallb};
use crate::types::{AcmeServer, AddressPool, Host, IfName};

/// Good enough to catch a typo or a missing field, not RFC 5322.
fn plausible_email(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    text.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| c.is_ascii_graphic() && !"@<>()[]\\,;:\"".contains(c))
        && domain.contains('.')
        && matches!(domain.parse::<Host>(), Ok(Host::Name(_)))
}

impl Checker<'_> {
    pub(super) fn addons(
        &mut self,
        doc: &AddonsDoc,
        cluster: &ClusterParts,
        wg_interface: Option<&IfName>,
    ) -> Option<Addons> {
        let metallb = if doc.metallb.enabled {
            self.metallb(
                &doc.metallb.addresses,
                &doc.metallb.interface,
                cluster,
                wg_interface,
            )
            .map(Some)
        } else {
            Some(None)
        };
        let cert_manager = if doc.cert_manager.enabled {
            let path = "addons.cert_manager.email";
            let email = &doc.cert_manager.email;
            let email = if email.is_empty() {
                self.fail(
                    path,
                    "required when cert_manager is enabled: the ACME account e-mail",
                );
                None
            } else if !plausible_email(email) {
                self.fail(path, "not a plausible e-mail address");
                None
            } else {
                Some(email.clone())
            };
            let server = self.parse_or::<AcmeServer>(
                "addons.cert_manager.server",
                &doc.cert_manager.server,
                "staging",
            );
            email
                .zip(server)
                .map(|(email, server)| Some(CertManager { email, server }))
        } else {
            Some(None)
        };
        let local_path = if doc.local_path.enabled {
            self.data_dir(
                "addons.local_path.path",
                &doc.local_path.path,
                defaults::LOCAL_PATH_PATH,
            )
            .map(|path| Some(LocalPath { path }))
        } else {
            Some(None)
        };
        let longhorn = if doc.longhorn.enabled {
            self.data_dir(
                "addons.longhorn.data_path",
                &doc.longhorn.data_path,
                defaults::LONGHORN_DATA_PATH,
            )
            .map(|data_path| Some(Longhorn { data_path }))
        } else {
            Some(None)
        };
        if doc.cert_manager.enabled && !doc.ingress_nginx.enabled {
            self.fail(
                "addons.cert_manager.enabled",
                "needs ingress_nginx: Let's Encrypt's HTTP-01 challenges are answered through its ingress class",
            );
        }
        if let Some(host) = &self.ctx.addon_host {
            let enabled = [
                ("metallb", doc.metallb.enabled),
                ("ingress_nginx", doc.ingress_nginx.enabled),
                ("cert_manager", doc.cert_manager.enabled),
                ("local_path", doc.local_path.enabled),
                ("longhorn", doc.longhorn.enabled),
            ];
            for (addon, on) in enabled {
                if let (true, Some(lacks)) = (on, host.unavailable.get(addon)) {
                    self.fail(
                        format!("addons.{addon}.enabled"),
                        format!("not possible on this node: it lacks {}", lacks.join("; ")),
                    );
                }
            }
        }
        Some(Addons {
            metallb: metallb?,
            ingress_nginx: doc.ingress_nginx.enabled,
            cert_manager: cert_manager?,
            local_path: local_path?,
            longhorn: longhorn?,
        })
    }

    fn metallb(
        &mut self,
        addresses: &[String],
        interface: &str,
        cluster: &ClusterParts,
        wg_interface: Option<&IfName>,
    ) -> Option<Metallb> {
        const LIST: &str = "addons.metallb.addresses";
        let mut pools = Items {
            items: Vec::new(),
            complete: true,
        };
        if addresses.is_empty() {
            self.fail(
                LIST,
                "required when metallb is enabled: CIDRs or first-last ranges",
            );
            pools.complete = false;
        } else if !self.list_fits(LIST, addresses.len(), MAX_METALLB_ADDRESSES) {
            pools.complete = false;
        } else {
            for (k, text) in addresses.iter().enumerate() {
                let path = format!("{LIST}[{k}]");
                let mut pool = self.parse::<AddressPool>(&path, text);
                let clashes: Vec<_> = match &pool {
                    Some(p) => cluster
                        .cidrs()
                        .filter(|(_, net)| p.overlaps_net(net))
                        .collect(),
                    None => Vec::new(),
                };
                for (cidr_path, net) in clashes {
                    self.fail(&path, format!("overlaps {cidr_path} ({net})"));
                    pool = None;
                }
                if let Some(p) = &pool
                    && let Some((j, _)) = pools.valid().find(|(_, other)| p.overlaps(other))
                {
                    self.fail(&path, format!("overlaps addresses[{j}]"));
                    pool = None;
                }
                pools.items.push(pool);
            }
        }

        let path = "addons.metallb.interface";
        let interface = if interface.is_empty() {
            self.fail(
                path,
                "required when metallb is enabled: the broadcast-capable interface, e.g. eth0",
            );
            None
        } else {
            self.parse::<IfName>(path, interface)
        };
        let interface = match interface {
            Some(name) if Some(&name) == wg_interface => {
                self.fail(
                    path,
                    "is the WireGuard interface, which has no ARP: MetalLB's L2 announcements cannot work there",
                );
                None
            }
            Some(name)
                if self.ctx.addon_host.as_ref().is_some_and(|host| {
                    !host.broadcast_interfaces.is_empty()
                        && !host.broadcast_interfaces.contains(name.as_str())
                }) =>
            {
                let known: Vec<&str> = self
                    .ctx
                    .addon_host
                    .iter()
                    .flat_map(|host| host.broadcast_interfaces.iter().map(String::as_str))
                    .collect();
                self.fail(
                    path,
                    format!(
                        "{name} is not a broadcast-capable interface of this node (those are: {})",
                        known.join(", ")
                    ),
                );
                None
            }
            other => other,
        };
        Some(Metallb {
            addresses: pools.build()?,
            interface: interface?,
        })
    }
}
