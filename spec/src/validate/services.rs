//! `services`: containerd and k3s, and the few flags of theirs a spec may
//! pass through.

use super::checker::Checker;
use crate::defaults;
use crate::document::{ServiceDoc, ServicesDoc};
use crate::limits::MAX_EXTRA_ARGS;
use crate::model::{Service, Services};
use crate::types::AbsPath;

/// A flag that may be passed through to a service: only these, so an
/// `extra_args` entry can never grant access to the cluster or the node,
/// change what runs as root or where files go, or override what the agent
/// renders (`--config`, the token, the node's addresses…): an allow-list,
/// not a block-list, because k3s alone has hundreds of flags
/// (`--kube-apiserver-arg`, `--write-kubeconfig-mode`, `--log`…).
struct AllowedFlag {
    /// Long name, then any short aliases.
    names: &'static [&'static str],
    value: Value,
}

/// What an allowed flag takes. Every flag is one element of `extra_args`:
/// a value is written after `=`, never as the next element.
#[derive(Clone, Copy)]
enum Value {
    /// `--flag` alone, or `--flag=true|false`.
    Switch,
    /// Comma-separated names out of this list.
    OneOf(&'static [&'static str]),
    /// A Kubernetes label `key=value` or taint `key=value:Effect`: letters,
    /// digits and `._-/=:` only.
    LabelLike,
    /// A small decimal number.
    Number,
    /// A cron schedule: digits, letters, spaces and `*/,-`.
    Cron,
}

/// k3s components `--disable` may leave out.
const K3S_COMPONENTS: &[&str] = &[
    "coredns",
    "servicelb",
    "traefik",
    "local-storage",
    "metrics-server",
];

/// The k3s flags `services.k3s.extra_args` may hold (README "Services").
const K3S_ALLOWED: &[AllowedFlag] = &[
    AllowedFlag {
        names: &["disable"],
        value: Value::OneOf(K3S_COMPONENTS),
    },
    AllowedFlag {
        names: &["node-label"],
        value: Value::LabelLike,
    },
    AllowedFlag {
        names: &["node-taint"],
        value: Value::LabelLike,
    },
    AllowedFlag {
        names: &["disable-helm-controller"],
        value: Value::Switch,
    },
    AllowedFlag {
        names: &["etcd-disable-snapshots"],
        value: Value::Switch,
    },
    AllowedFlag {
        names: &["etcd-snapshot-schedule-cron"],
        value: Value::Cron,
    },
    AllowedFlag {
        names: &["etcd-snapshot-retention"],
        value: Value::Number,
    },
    AllowedFlag {
        names: &["debug"],
        value: Value::Switch,
    },
    AllowedFlag {
        names: &["v"],
        value: Value::Number,
    },
];

/// The containerd flags `services.containerd.extra_args` may hold.
const CONTAINERD_ALLOWED: &[AllowedFlag] = &[AllowedFlag {
    names: &["log-level", "l"],
    value: Value::OneOf(&["trace", "debug", "info", "warn", "error", "fatal", "panic"]),
}];

/// Flags the agent renders itself, each with what governs it instead: named
/// in the refusal so the user knows where to go.
const K3S_MANAGED: &[(&[&str], &str)] = &[
    (&["token", "t", "token-file"], "set cluster.token instead"),
    (&["server", "s"], "set cluster.join_url instead"),
    (&["cluster-init"], "it follows role"),
    (&["node-ip", "i"], "it follows network.wireguard.addresses"),
    (&["node-name"], "it follows node_name"),
    (&["flannel-iface"], "it follows network.wireguard.interface"),
    (
        &["data-dir", "d"],
        "put k3s's data on disk through storage.volumes",
    ),
    (&["tls-san"], "set cluster.tls_sans instead"),
    (&["cluster-cidr"], "set cluster.cluster_cidr instead"),
    (&["service-cidr"], "set cluster.service_cidr instead"),
    (
        &["container-runtime-endpoint"],
        "k3s uses the containerd of services.containerd",
    ),
    (
        &["config", "c"],
        "the agent renders k3s's config from this spec",
    ),
    (
        &["write-kubeconfig", "o", "write-kubeconfig-mode"],
        "k3s writes the admin kubeconfig where the agent says, 0600",
    ),
    (
        &["datastore-endpoint"],
        "the cluster uses embedded etcd, and the endpoint may hold a password",
    ),
];

const CONTAINERD_MANAGED: &[(&[&str], &str)] = &[
    (
        &["config", "c"],
        "the agent renders containerd's config from this spec",
    ),
    (
        &["address", "a"],
        "the agent chooses the socket (zOS's own containerd holds /run/containerd)",
    ),
    (
        &["root"],
        "put containerd's data on disk through storage.volumes",
    ),
    (&["state"], "the agent chooses it"),
];

/// Why `arg` may not be passed to a service whose allowed and managed
/// flags are given, or `None` when it may. Go's flag parsing (k3s,
/// containerd) takes `-flag` and `--flag`, each alone or as `=value`.
fn refusal(arg: &str, allowed: &[AllowedFlag], managed: &[(&[&str], &str)]) -> Option<String> {
    let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
        return Some(format!(
            "`{arg}` is not a flag: write each flag as one entry, a value after `=` (`--node-label=zone=a`)"
        ));
    };
    let (name, value) = match flag.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (flag, None),
    };
    if let Some((names, instead)) = managed.iter().find(|(names, _)| names.contains(&name)) {
        // Named by the long name of the flag itself (`-t` is `--token`).
        let long = if name.len() == 1 { names[0] } else { name };
        return Some(format!("`--{long}` is managed by the agent: {instead}"));
    }
    let Some(allowed) = allowed.iter().find(|f| f.names.contains(&name)) else {
        return Some(format!(
            "`--{name}` is not among the flags that may be passed through ({})",
            allowed
                .iter()
                .map(|f| format!("--{}", f.names[0]))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let long = allowed.names[0];
    let ok = match (allowed.value, value) {
        (Value::Switch, None | Some("true" | "false")) => true,
        (Value::Switch, Some(_)) => false,
        (_, None | Some("")) => {
            return Some(format!(
                "`--{long}` needs a value after `=` in the same entry"
            ));
        }
        (Value::OneOf(names), Some(value)) => value.split(',').all(|v| names.contains(&v)),
        (Value::LabelLike, Some(value)) => value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/=:".contains(c)),
        (Value::Number, Some(value)) => {
            value.len() <= 4 && value.chars().all(|c| c.is_ascii_digit())
        }
        (Value::Cron, Some(value)) => value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " */,-".contains(c)),
    };
    if ok {
        return None;
    }
    Some(match allowed.value {
        Value::Switch => format!("`--{long}` takes no value but true or false"),
        Value::OneOf(names) => format!("`--{long}` takes one or more of {}", names.join(", ")),
        Value::LabelLike => format!("`--{long}` takes letters, digits and `._-/=:` only"),
        Value::Number => format!("`--{long}` takes a number"),
        Value::Cron => format!("`--{long}` takes a cron schedule"),
    })
}

impl Checker<'_> {
    pub(super) fn services(&mut self, doc: &ServicesDoc) -> Option<Services> {
        let containerd = self.service(
            "services.containerd",
            &doc.containerd,
            defaults::CONTAINERD_BINARY,
            CONTAINERD_ALLOWED,
            CONTAINERD_MANAGED,
        );
        let k3s = self.service(
            "services.k3s",
            &doc.k3s,
            defaults::K3S_BINARY,
            K3S_ALLOWED,
            K3S_MANAGED,
        );
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
        allowed: &[AllowedFlag],
        managed: &[(&[&str], &str)],
    ) -> Option<Service> {
        let binary_path = format!("{base}.binary");
        let binary = self.parse_or::<AbsPath>(&binary_path, &doc.binary, binary);
        let binary = match binary {
            Some(binary) => match self.ctx.refused_binaries.get(binary.as_str()) {
                Some(reason) => {
                    self.fail(binary_path, reason.clone());
                    None
                }
                None => Some(binary),
            },
            None => None,
        };
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
            } else if let Some(why) = refusal(arg, allowed, managed) {
                self.fail(path, why);
                ok = false;
            }
        }
        Some(Service {
            binary: binary?,
            extra_args: ok.then(|| doc.extra_args.clone())?,
        })
    }
}
