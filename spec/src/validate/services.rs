//! `services`: containerd and k3s, and the flags of theirs the agent sets
//! itself.

use super::checker::Checker;
use crate::defaults;
use crate::document::{ServiceDoc, ServicesDoc};
use crate::limits::MAX_EXTRA_ARGS;
use crate::model::{Service, Services};
use crate::types::AbsPath;

/// A flag the agent sets itself, and what governs it instead.
struct ManagedFlag {
    /// Long name, then any short aliases.
    names: &'static [&'static str],
    instead: &'static str,
}

const K3S_MANAGED: &[ManagedFlag] = &[
    ManagedFlag {
        names: &["token", "t"],
        instead: "set cluster.token instead",
    },
    ManagedFlag {
        names: &["token-file"],
        instead: "set cluster.token instead",
    },
    ManagedFlag {
        names: &["server", "s"],
        instead: "set cluster.join_url instead",
    },
    ManagedFlag {
        names: &["cluster-init"],
        instead: "it follows role",
    },
    ManagedFlag {
        names: &["node-ip", "i"],
        instead: "it follows network.wireguard.addresses",
    },
    ManagedFlag {
        names: &["node-name"],
        instead: "it follows node_name",
    },
    ManagedFlag {
        names: &["flannel-iface"],
        instead: "it follows network.wireguard.interface",
    },
    ManagedFlag {
        names: &["data-dir", "d"],
        instead: "put k3s's data on disk through storage.volumes",
    },
    ManagedFlag {
        names: &["tls-san"],
        instead: "set cluster.tls_sans instead",
    },
    ManagedFlag {
        names: &["cluster-cidr"],
        instead: "set cluster.cluster_cidr instead",
    },
    ManagedFlag {
        names: &["service-cidr"],
        instead: "set cluster.service_cidr instead",
    },
    ManagedFlag {
        names: &["container-runtime-endpoint"],
        instead: "k3s uses the containerd of services.containerd",
    },
    ManagedFlag {
        names: &["config", "c"],
        instead: "the agent renders k3s's config from this spec",
    },
    // Flags whose values are secrets: extra_args are stored and shown in
    // clear, so a secret must never travel in them.
    ManagedFlag {
        names: &["agent-token"],
        instead: SECRET_FLAG,
    },
    ManagedFlag {
        names: &["agent-token-file"],
        instead: SECRET_FLAG,
    },
    ManagedFlag {
        names: &["datastore-endpoint"],
        instead: "the cluster uses embedded etcd, and the endpoint may hold a password",
    },
    ManagedFlag {
        names: &["etcd-s3-access-key"],
        instead: SECRET_FLAG,
    },
    ManagedFlag {
        names: &["etcd-s3-secret-key"],
        instead: SECRET_FLAG,
    },
    ManagedFlag {
        names: &["etcd-s3-session-token"],
        instead: SECRET_FLAG,
    },
    ManagedFlag {
        names: &["vpn-auth"],
        instead: SECRET_FLAG,
    },
    ManagedFlag {
        names: &["vpn-auth-file"],
        instead: SECRET_FLAG,
    },
];

const SECRET_FLAG: &str =
    "its value is a secret, and extra_args are stored and shown in clear; not supported";

const CONTAINERD_MANAGED: &[ManagedFlag] = &[
    ManagedFlag {
        names: &["config", "c"],
        instead: "the agent renders containerd's config from this spec",
    },
    ManagedFlag {
        names: &["address", "a"],
        instead: "the agent chooses the socket (zOS's own containerd holds /run/containerd)",
    },
    ManagedFlag {
        names: &["root"],
        instead: "put containerd's data on disk through storage.volumes",
    },
    ManagedFlag {
        names: &["state"],
        instead: "the agent chooses it",
    },
];

/// The managed flag `arg` sets, if any. Go's flag parsing (k3s, containerd)
/// takes `-flag` and `--flag`, each alone or as `=value`.
fn managed_flag<'a>(arg: &str, managed: &'a [ManagedFlag]) -> Option<&'a ManagedFlag> {
    let name = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    let name = name.split_once('=').map_or(name, |(name, _)| name);
    managed.iter().find(|flag| flag.names.contains(&name))
}

impl Checker<'_> {
    pub(super) fn services(&mut self, doc: &ServicesDoc) -> Option<Services> {
        let containerd = self.service(
            "services.containerd",
            &doc.containerd,
            defaults::CONTAINERD_BINARY,
            CONTAINERD_MANAGED,
        );
        let k3s = self.service("services.k3s", &doc.k3s, defaults::K3S_BINARY, K3S_MANAGED);
        Some(Services {
            containerd: containerd?,
            k3s: k3s?,
        })
    }

    fn service(
        &mut self,
        base: &str,
        doc: &ServiceDoc,
        binary: &str,
        managed: &[ManagedFlag],
    ) -> Option<Service> {
        let binary = self.parse_or::<AbsPath>(&format!("{base}.binary"), &doc.binary, binary);
        let list = format!("{base}.extra_args");
        if !self.list_fits(&list, doc.extra_args.len(), MAX_EXTRA_ARGS) {
            return None;
        }
        let mut ok = true;
        for (k, arg) in doc.extra_args.iter().enumerate() {
            let path = format!("{list}[{k}]");
            if !self.fits(&path, arg) {
                ok = false;
            } else if arg.contains(['\0', '\n', '\r']) {
                self.fail(path, "must not contain NUL or line breaks");
                ok = false;
            } else if let Some(flag) = managed_flag(arg, managed) {
                self.fail(
                    path,
                    format!(
                        "`--{}` is managed by the agent: {}",
                        flag.names[0], flag.instead
                    ),
                );
                ok = false;
            }
        }
        Some(Service {
            binary: binary?,
            extra_args: ok.then(|| doc.extra_args.clone())?,
        })
    }
}
