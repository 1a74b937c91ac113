//! k3s: config.yaml rendered from the spec for the three roles, the token
//! file beside it (0600; the token is never in config.yaml), and the
//! service definition with its per-role readiness.

use std::time::Duration;

use nix::sys::resource::Resource;
use serde::Serialize;

use tfagent_supervisor::{
    Rlimit, ServiceDef, ServiceName,
    def::Fnv64,
    probe::{HttpProbe, Probe, ProbePolicy},
};

use super::{containerd::NOFILE, paths::ServicePaths};
use tfagent_spec::{NodeSpec, Role};

// The control core names the kubeconfig's error as k3s's.

pub const NAME: &str = "k3s";

/// The apiserver's port on a server; the kubelet's health port on any node.
const APISERVER_PORT: u16 = 6443;
const KUBELET_HEALTHZ_PORT: u16 = 10248;

/// config.yaml, field for field (k3s reads the long flag names).
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
struct Config {
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_init: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<String>,
    token_file: String,
    data_dir: String,
    node_name: String,
    node_ip: String,
    flannel_iface: String,
    container_runtime_endpoint: String,
    kubelet_arg: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tls_san: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_cidr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_cidr: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    disable: Vec<String>,
    /// Where a server writes its admin kubeconfig, and its mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    write_kubeconfig: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    write_kubeconfig_mode: Option<String>,
    /// Where k3s's own local-path provisioner makes volumes (the local-path
    /// add-on).
    #[serde(skip_serializing_if = "Option::is_none")]
    default_local_storage_path: Option<String>,
}

/// From Kubernetes 1.35 the kubelet refuses a cgroup v1 host unless its
/// `failCgroupV1` setting is false (KEP-5573; the flag exists since 1.31).
/// zOS mounts cgroup v1 only.
pub const KUBELET_ALLOW_CGROUP_V1: &str = "fail-cgroupv1=false";

/// What tfagent renders differently for this host than for a plain cgroup
/// v2 one, one line each (status shows them).
pub fn host_adjustments(paths: &ServicePaths) -> Vec<String> {
    let mut notes = Vec::new();
    if paths.host_cgroup_v1 {
        notes.push(format!(
            "cgroup v1 host: the kubelet runs with {KUBELET_ALLOW_CGROUP_V1} (Kubernetes 1.35+ refuses cgroup v1 by default)"
        ));
    }
    notes
}

/// config.yaml for the spec. Pure: the same spec and paths give the same
/// bytes (golden-file tested).
pub fn render_config(spec: &NodeSpec, paths: &ServicePaths) -> String {
    let wireguard = &spec.network.wireguard;
    let addresses: Vec<String> = wireguard
        .addresses
        .iter()
        .map(|a| a.addr().to_string())
        .collect();
    let server = spec.role.is_server();
    let mut tls_san = Vec::new();
    if server {
        let mut add = |san: String| {
            if !tls_san.contains(&san) {
                tls_san.push(san);
            }
        };
        if let Some(vip) = spec.cluster.vip {
            add(vip.to_string());
        }
        for address in &addresses {
            add(address.clone());
        }
        for san in &spec.cluster.tls_sans {
            add(san.to_string());
        }
    }
    let mut disable = Vec::new();
    if server && spec.addons.metallb.is_some() {
        disable.push("servicelb".to_owned());
    }
    if server && spec.addons.ingress_nginx {
        disable.push("traefik".to_owned());
    }
    // local-path is k3s's bundled provisioner: pointed at the persistent
    // path when the add-on is on, turned off when it is not.
    let local_path = spec.addons.local_path.as_ref().filter(|_| server);
    if server && local_path.is_none() {
        disable.push("local-storage".to_owned());
    }
    let mut kubelet_arg = vec![format!("root-dir={}", paths.kubelet_root_dir.display())];
    if paths.host_cgroup_v1 {
        kubelet_arg.push(KUBELET_ALLOW_CGROUP_V1.to_owned());
    }
    let config = Config {
        cluster_init: (spec.role == Role::ServerInit).then_some(true),
        server: spec.cluster.join_url.as_ref().map(ToString::to_string),
        token_file: paths.k3s_token().display().to_string(),
        data_dir: paths.k3s_data_dir.display().to_string(),
        node_name: spec.node_name.to_string(),
        node_ip: addresses.join(","),
        flannel_iface: wireguard.interface.to_string(),
        container_runtime_endpoint: format!("unix://{}", paths.containerd_socket.display()),
        kubelet_arg,
        tls_san,
        cluster_cidr: server.then(|| spec.cluster.cluster_cidr.to_string()),
        service_cidr: server.then(|| spec.cluster.service_cidr.to_string()),
        disable,
        write_kubeconfig: server.then(|| paths.k3s_kubeconfig().display().to_string()),
        write_kubeconfig_mode: server.then(|| "0600".to_owned()),
        default_local_storage_path: local_path.map(|l| l.path.to_string()),
    };
    let yaml = serde_yaml_ng::to_string(&config).unwrap_or_default();
    format!("# Rendered by tfagent from the node spec; changes are overwritten.\n{yaml}")
}

/// The token file's contents.
pub fn token_file(spec: &NodeSpec) -> Vec<u8> {
    format!("{}\n", spec.cluster.token.expose()).into_bytes()
}

/// How k3s counts as ready: a server when its apiserver answers /readyz
/// over HTTPS, checked against the cluster CA, with the admin client
/// certificate k3s writes; an agent when the kubelet's /healthz answers.
pub fn readiness(role: Role, paths: &ServicePaths) -> ProbePolicy {
    let tls = paths.k3s_data_dir.join("server/tls");
    let probe = if role.is_server() {
        HttpProbe {
            https: true,
            host: "127.0.0.1".into(),
            port: APISERVER_PORT,
            path: "/readyz".into(),
            ca: Some(tls.join("server-ca.crt")),
            client_cert: Some((tls.join("client-admin.crt"), tls.join("client-admin.key"))),
            basic_auth: None,
        }
    } else {
        HttpProbe {
            https: false,
            host: "127.0.0.1".into(),
            port: KUBELET_HEALTHZ_PORT,
            path: "/healthz".into(),
            ca: None,
            client_cert: None,
            basic_auth: None,
        }
    };
    let mut policy = ProbePolicy::new(Probe::Http(probe));
    policy.starting_period = Duration::from_secs(1);
    policy.timeout = Duration::from_secs(5);
    policy
}

/// The k3s service. `config` is the rendered config.yaml; the token is not
/// part of the fingerprint (it would be stored in adoption records).
pub fn service(spec: &NodeSpec, paths: &ServicePaths, config: &str) -> ServiceDef {
    let k3s = &spec.services.k3s;
    let mode = if spec.role.is_server() {
        "server"
    } else {
        "agent"
    };
    let mut argv = vec![
        k3s.binary.to_string(),
        mode.to_owned(),
        "--config".into(),
        paths.k3s_config().display().to_string(),
    ];
    argv.extend(k3s.extra_args.iter().cloned());
    let mut def = ServiceDef::new(ServiceName::fixed(NAME), argv);
    def.depends_on = vec![ServiceName::fixed(super::containerd::NAME)];
    def.readiness = Some(readiness(spec.role, paths));
    def.rlimits = vec![
        Rlimit {
            resource: Resource::RLIMIT_NOFILE,
            soft: NOFILE,
            hard: NOFILE,
        },
        Rlimit {
            resource: Resource::RLIMIT_NPROC,
            soft: libc::RLIM_INFINITY,
            hard: libc::RLIM_INFINITY,
        },
    ];
    def.stop_timeout = Duration::from_secs(30);
    let mut digest = Fnv64::default();
    digest.field(b"config.yaml", config.as_bytes());
    def.config_digest = format!("{:016x}", digest.0);
    def
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::PathBuf;

    use super::*;
    use tfagent_spec::fixtures::example_spec;

    fn golden_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/services/golden")
    }

    /// Compares with the golden file; `UPDATE_GOLDEN=1` rewrites it.
    fn golden(name: &str, rendered: &str) {
        let path = golden_dir().join(format!("{name}.yaml"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&path, rendered).unwrap();
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
        assert_eq!(
            rendered,
            expected,
            "{name}: rendered config.yaml differs from {}",
            path.display()
        );
    }

    fn with_addons(role: &str, metallb: bool, ingress: bool) -> NodeSpec {
        let mut spec = example_spec(role);
        let example_metallb = example_spec("server-init").addons.metallb.unwrap();
        spec.addons.metallb = metallb.then_some(example_metallb);
        spec.addons.ingress_nginx = ingress;
        spec
    }

    #[test]
    fn the_local_path_addon_drives_k3s_s_own_provisioner() {
        let paths = ServicePaths::default();
        let mut spec = example_spec("server-init");
        let on = render_config(&spec, &paths);
        assert!(
            on.contains("default-local-storage-path: /var/lib/rancher/k3s/storage"),
            "{on}"
        );
        assert!(!on.contains("local-storage\n"), "{on}");
        spec.addons.local_path = None;
        let off: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&render_config(&spec, &paths)).unwrap();
        let disabled: Vec<&str> = off["disable"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(disabled.contains(&"local-storage"), "{disabled:?}");
        assert!(off.get("default-local-storage-path").is_none());
    }

    #[test]
    fn config_yaml_for_every_role_and_add_on_combination() {
        let paths = ServicePaths::default();
        for role in ["server-init", "server-join", "agent"] {
            for (metallb, ingress) in [(false, false), (true, false), (false, true), (true, true)] {
                let spec = with_addons(role, metallb, ingress);
                let name = format!(
                    "{role}{}{}",
                    if metallb { "-metallb" } else { "" },
                    if ingress { "-ingress-nginx" } else { "" }
                );
                let config = render_config(&spec, &paths);
                golden(&name, &config);
                // Parses as YAML, and never holds the token.
                let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&config).unwrap();
                assert!(parsed.get("token").is_none());
                assert!(!config.contains(spec.cluster.token.expose()), "{name}");
                assert_eq!(
                    parsed["token-file"].as_str(),
                    Some("/run/tfagent/services/k3s-token")
                );
                assert_eq!(
                    parsed["container-runtime-endpoint"].as_str(),
                    Some("unix:///run/tfagent/containerd/containerd.sock")
                );
            }
        }
    }

    #[test]
    fn a_cgroup_v1_host_allows_the_kubelet_on_cgroup_v1() {
        let kubelet_args = |config: &str| -> Vec<String> {
            let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(config).unwrap();
            parsed["kubelet-arg"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        let v2 = ServicePaths::default();
        let v1 = ServicePaths {
            host_cgroup_v1: true,
            ..ServicePaths::default()
        };
        for role in ["server-init", "server-join", "agent"] {
            let spec = example_spec(role);
            let on_v1 = render_config(&spec, &v1);
            golden(&format!("{role}-cgroup-v1"), &on_v1);
            assert!(kubelet_args(&on_v1).contains(&"fail-cgroupv1=false".to_owned()));
            let on_v2 = render_config(&spec, &v2);
            assert!(!on_v2.contains("fail-cgroupv1"), "{role}: {on_v2}");
        }
        assert!(host_adjustments(&v2).is_empty());
        let notes = host_adjustments(&v1);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("fail-cgroupv1=false"), "{notes:?}");
    }

    #[test]
    fn role_specific_fields() {
        let paths = ServicePaths::default();
        let init: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&render_config(&example_spec("server-init"), &paths)).unwrap();
        assert_eq!(init["cluster-init"].as_bool(), Some(true));
        assert!(init.get("server").is_none());
        let sans: Vec<&str> = init["tls-san"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(sans[0], "10.100.0.250", "the VIP first");
        assert!(sans.contains(&"10.100.0.1"), "the node address: {sans:?}");
        let join: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&render_config(&example_spec("server-join"), &paths)).unwrap();
        assert!(join.get("cluster-init").is_none());
        assert_eq!(join["server"].as_str(), Some("https://10.100.0.250:6443"));
        let agent: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&render_config(&example_spec("agent"), &paths)).unwrap();
        for server_only in ["tls-san", "cluster-init", "disable", "cluster-cidr"] {
            assert!(agent.get(server_only).is_none(), "{server_only}");
        }
        assert_eq!(agent["flannel-iface"].as_str(), Some("tfk3s"));
    }

    #[test]
    fn service_argv_readiness_and_token_file() {
        let paths = ServicePaths::default();
        let spec = example_spec("server-join");
        let config = render_config(&spec, &paths);
        let def = service(&spec, &paths, &config);
        assert_eq!(
            def.argv[1..4],
            [
                "server",
                "--config",
                "/run/tfagent/services/k3s-config.yaml"
            ]
        );
        assert!(def.argv.iter().any(|a| a == "--disable=traefik"));
        assert_eq!(def.depends_on[0].as_str(), "containerd");
        let Probe::Http(probe) = &def.readiness.as_ref().unwrap().probe else {
            panic!("server readiness is HTTPS")
        };
        assert!(probe.https && probe.path == "/readyz" && probe.ca.is_some());
        let agent = example_spec("agent");
        let def = service(&agent, &paths, &render_config(&agent, &paths));
        assert_eq!(def.argv[1], "agent");
        let Probe::Http(probe) = &def.readiness.as_ref().unwrap().probe else {
            panic!("agent readiness is HTTP")
        };
        assert_eq!(
            (probe.https, probe.port, probe.path.as_str()),
            (false, 10248, "/healthz")
        );
        let token = String::from_utf8(token_file(&spec)).unwrap();
        assert_eq!(token.trim(), spec.cluster.token.expose());
        assert!(!format!("{def:?}").contains(spec.cluster.token.expose()));
    }
}
