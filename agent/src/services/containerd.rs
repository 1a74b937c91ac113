//! containerd for k3s: its config (own root, state and socket), and its
//! service definition, ready once its Version API answers (the check itself
//! is host I/O, in [`super::linux::VersionCheck`]).

use std::{path::Path, sync::Arc, time::Duration};

use nix::sys::resource::Resource;
use tfagent_spec::Service;
use tfagent_supervisor::{
    Rlimit, ServiceDef, ServiceName,
    def::Fnv64,
    probe::{CustomProbe, Probe, ProbePolicy},
};

use super::{linux::VersionCheck, paths::ServicePaths};

pub const NAME: &str = "containerd";

/// k3s and its pods want many open files.
pub const NOFILE: u64 = 1_048_576;

fn quote(text: &str) -> String {
    // TOML basic string.
    let mut out = String::from('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// config.toml (version 2). The CNI paths are where k3s installs its CNI
/// binaries and flannel writes its config, so pods get a network.
pub fn render_config(paths: &ServicePaths) -> String {
    let path = |p: &Path| quote(&p.display().to_string());
    let socket = paths.containerd_socket.display().to_string();
    format!(
        "# Rendered by tfagent; changes are overwritten.\n\
version = 2\n\
root = {root}\n\
state = {state}\n\
\n\
[grpc]\n\
  address = {socket}\n\
\n\
[ttrpc]\n\
  address = {ttrpc}\n\
\n\
[plugins.\"io.containerd.internal.v1.opt\"]\n\
  path = {opt}\n\
\n\
[plugins.\"io.containerd.grpc.v1.cri\".cni]\n\
  bin_dir = {cni_bin}\n\
  conf_dir = {cni_conf}\n",
        root = path(&paths.containerd_root),
        state = path(&paths.containerd_state),
        socket = quote(&socket),
        ttrpc = quote(&format!("{socket}.ttrpc")),
        opt = path(&paths.containerd_root.join("opt")),
        cni_bin = path(&paths.k3s_data_dir.join("data/current/bin")),
        cni_conf = path(&paths.k3s_data_dir.join("agent/etc/cni/net.d")),
    )
}

/// The containerd service, given its rendered config.
pub fn service(spec: &Service, paths: &ServicePaths, config: &str) -> ServiceDef {
    let mut argv = vec![
        spec.binary.to_string(),
        "--config".into(),
        paths.containerd_config().display().to_string(),
    ];
    argv.extend(spec.extra_args.iter().cloned());
    let mut def = ServiceDef::new(ServiceName::fixed(NAME), argv);
    let mut probe = ProbePolicy::new(Probe::Custom(CustomProbe(Arc::new(VersionCheck {
        socket: paths.containerd_socket.clone(),
    }))));
    probe.timeout = Duration::from_secs(2);
    def.readiness = Some(probe);
    def.rlimits = vec![Rlimit {
        resource: Resource::RLIMIT_NOFILE,
        soft: NOFILE,
        hard: NOFILE,
    }];
    def.stop_timeout = Duration::from_secs(30);
    let mut digest = Fnv64::default();
    digest.field(b"containerd.toml", config.as_bytes());
    def.config_digest = format!("{:016x}", digest.0);
    def
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_everything_under_our_paths() {
        let paths = ServicePaths::default();
        let config = render_config(&paths);
        assert!(
            config.contains("address = \"/run/tfagent/containerd/containerd.sock\""),
            "{config}"
        );
        assert!(config.contains("root = \"/var/lib/tfagent-containerd\""));
        assert!(!config.contains("/run/containerd"), "{config}");
        assert!(toml::from_str::<toml::Table>(&config).is_ok(), "{config}");
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
