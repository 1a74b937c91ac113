//! The step's pure side: what the spec asks of this node (the engine's
//! config and, on a server, keepalived's) and the changes that take the
//! observed state there.

use std::{collections::BTreeMap, fmt, net::IpAddr, path::PathBuf, sync::Arc};

use super::{
    engine::EngineConfig,
    keepalived::{self, Files},
    ports::ReadinessProbe,
};
use tfagent_spec::NodeSpec;
use tfagent_supervisor::ServiceDef;

/// The boot config's side of the VIP.
#[derive(Debug, Clone, PartialEq)]
pub struct VipSettings {
    /// The keepalived binary.
    pub keepalived: PathBuf,
    /// keepalived's configuration, FIFO and track file, and the agent's
    /// election memory: runtime files (tmpfs).
    pub dir: PathBuf,
    /// How the local apiserver's readiness is checked.
    pub readiness: ReadinessProbe,
}

/// What the spec asks of this node.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub engine: Option<Arc<EngineConfig>>,
    /// keepalived's configuration and service, on a server.
    pub keepalived: Option<(String, ServiceDef)>,
}

/// What the step reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub wanted: Wanted,
    pub config_file: Option<String>,
    pub track_file: bool,
    pub keepalived: Option<ServiceDef>,
    pub engine: Option<Arc<EngineConfig>>,
}

/// One change the step makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    WriteConfig(String),
    /// Created "not ready": keepalived starts out of the election until the
    /// apiserver answers.
    CreateTrackFile,
    Keepalived(Box<ServiceDef>),
    StopKeepalived,
    Engine(Option<Arc<EngineConfig>>),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::WriteConfig(_) => f.write_str("write keepalived's configuration"),
            Change::CreateTrackFile => f.write_str(
                "create keepalived's track file (out of the election until the apiserver is ready)",
            ),
            Change::Keepalived(_) => f.write_str("run keepalived with the configuration"),
            Change::StopKeepalived => f.write_str("stop keepalived"),
            Change::Engine(Some(config)) if config.server => write!(
                f,
                "take part in the election of VIP {} and announce it when held",
                config.vip
            ),
            Change::Engine(Some(config)) => {
                write!(f, "route VIP {} to whichever server holds it", config.vip)
            }
            Change::Engine(None) => f.write_str("stop following the VIP"),
        }
    }
}

/// What the spec asks of this node: the engine's config and, on a server,
/// keepalived's.
pub fn wanted(spec: &NodeSpec, settings: &VipSettings) -> Wanted {
    let none = Wanted {
        engine: None,
        keepalived: None,
    };
    let (Some(vip), Some(election)) = (spec.cluster.vip, &spec.network.vip) else {
        return none;
    };
    let wireguard = &spec.network.wireguard;
    let server = spec.role.is_server();
    let own = election.servers.iter().find(|s| s.name == spec.node_name);
    let address = match (server, own) {
        (true, Some(own)) => own.address,
        // A worker announces from (and answers on) its own mesh address.
        _ => match wireguard
            .addresses
            .iter()
            .map(|a| a.addr())
            .find(|a| a.is_ipv4() == vip.is_ipv4())
        {
            Some(address) => address,
            None => return none,
        },
    };
    let servers: BTreeMap<IpAddr, _> = election
        .servers
        .iter()
        .map(|s| (s.address, s.name.clone()))
        .collect();
    let engine = EngineConfig {
        node_name: spec.node_name.clone(),
        address,
        vip,
        server,
        servers,
        wireguard: wireguard.clone(),
        announce_port: election.announce_port,
        token: spec.cluster.token.clone(),
        master_down: keepalived::master_down(election.advert_interval_ms, election.priority),
    };
    let files = Files::new(&settings.dir);
    let keepalived = server.then(|| {
        let instance = keepalived::Instance {
            node_name: &spec.node_name,
            interface: &wireguard.interface,
            address,
            vip,
            election,
        };
        let config = keepalived::render(&instance, &files);
        let def = keepalived::service(&settings.keepalived, &files, &config);
        (config, def)
    });
    Wanted {
        engine: Some(Arc::new(engine)),
        keepalived,
    }
}

/// The pure plan.
pub fn plan(observed: &Observed) -> Vec<Change> {
    let mut changes = Vec::new();
    match &observed.wanted.keepalived {
        Some((config, def)) => {
            if observed.config_file.as_ref() != Some(config) {
                changes.push(Change::WriteConfig(config.clone()));
            }
            if !observed.track_file {
                changes.push(Change::CreateTrackFile);
            }
            if observed.keepalived.as_ref() != Some(def) {
                changes.push(Change::Keepalived(Box::new(def.clone())));
            }
        }
        None if observed.keepalived.is_some() => changes.push(Change::StopKeepalived),
        None => {}
    }
    if observed.engine != observed.wanted.engine {
        changes.push(Change::Engine(observed.wanted.engine.clone()));
    }
    changes
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tfagent_spec::fixtures::example_spec;

    fn settings() -> VipSettings {
        let paths = crate::services::ServicePaths::under(std::path::Path::new("/run/t"));
        VipSettings {
            keepalived: "/usr/sbin/keepalived".into(),
            dir: "/run/t/vip".into(),
            readiness: crate::vip::default_readiness(&paths),
        }
    }

    fn observed(wanted: Wanted) -> Observed {
        Observed {
            wanted,
            config_file: None,
            track_file: false,
            keepalived: None,
            engine: None,
        }
    }

    #[test]
    fn a_server_runs_keepalived_gated_out_until_ready_and_the_engine() {
        let spec = example_spec("server-init");
        let wanted = wanted(&spec, &settings());
        let engine = wanted.engine.clone().unwrap();
        assert!(engine.server);
        assert_eq!(engine.address.to_string(), "10.100.0.1");
        assert_eq!(engine.vip.to_string(), "10.100.0.250");
        assert_eq!(engine.servers.len(), 3);
        let (config, def) = wanted.keepalived.clone().unwrap();
        assert!(config.contains("unicast_src_ip 10.100.0.1"), "{config}");
        assert!(config.contains("priority 150"), "{config}");
        assert_eq!(def.name.as_str(), "keepalived");
        let changes = plan(&observed(wanted.clone()));
        let shown: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "write keepalived's configuration",
                "create keepalived's track file (out of the election until the apiserver is ready)",
                "run keepalived with the configuration",
                "take part in the election of VIP 10.100.0.250 and announce it when held",
            ]
        );
        // Converged: nothing to do.
        let done = Observed {
            config_file: Some(config),
            track_file: true,
            keepalived: Some(def),
            engine: wanted.engine.clone(),
            wanted,
        };
        assert!(plan(&done).is_empty());
    }

    #[test]
    fn a_worker_only_follows_the_holder() {
        let spec = example_spec("agent");
        let wanted = wanted(&spec, &settings());
        assert!(wanted.keepalived.is_none());
        let engine = wanted.engine.clone().unwrap();
        assert!(!engine.server);
        assert_eq!(
            plan(&observed(wanted))
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["route VIP 10.100.0.250 to whichever server holds it"]
        );
    }

    #[test]
    fn a_spec_without_a_vip_stops_keepalived_and_the_engine() {
        let mut spec = example_spec("server-init");
        let running = wanted(&spec, &settings());
        spec.network.vip = None;
        let now = wanted(&spec, &settings());
        assert_eq!(now.engine, None);
        let changes = plan(&Observed {
            wanted: now,
            config_file: Some("old".into()),
            track_file: true,
            keepalived: running.keepalived.map(|(_, def)| def),
            engine: running.engine,
        });
        assert_eq!(changes, [Change::StopKeepalived, Change::Engine(None)]);
    }

    #[test]
    fn a_changed_priority_rewrites_the_config_and_restarts_keepalived() {
        let mut spec = example_spec("server-init");
        let before = wanted(&spec, &settings());
        spec.network.vip.as_mut().unwrap().priority = 120;
        let after = wanted(&spec, &settings());
        let (old_config, old_def) = before.keepalived.unwrap();
        let changes = plan(&Observed {
            wanted: after.clone(),
            config_file: Some(old_config),
            track_file: true,
            keepalived: Some(old_def.clone()),
            engine: after.engine.clone(),
        });
        assert!(matches!(changes[0], Change::WriteConfig(ref c) if c.contains("priority 120")));
        let Change::Keepalived(def) = &changes[1] else {
            panic!("{changes:?}")
        };
        assert_ne!(def.fingerprint(), old_def.fingerprint());
        assert_eq!(changes.len(), 2);
    }
}
