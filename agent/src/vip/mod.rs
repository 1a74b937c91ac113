//! VIP: the floating control-plane address over WireGuard.
//!
//! WireGuard is layer 3, so moving an address means two things at once: the
//! holder has VIP/32 on its interface, and every other node has it in the
//! allowed IPs of the holder's peer entry. keepalived (VRRPv3, unicast over
//! the mesh) elects the holder among the servers ([`keepalived`]); the agent
//! gates it on the local apiserver, hears its state changes, and turns them
//! into the mesh-wide move with authenticated, epoch-ordered announcements
//! ([`announce`], [`election`], [`engine`]).
//!
//! The step itself renders keepalived's configuration, supervises it on
//! servers, and (re)configures the engine; the engine does the rest as
//! things happen, between passes.

pub mod announce;
pub mod election;
pub mod engine;
pub mod keepalived;

use std::{collections::BTreeMap, fmt, net::IpAddr, path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;

pub use election::VrrpState;
pub use engine::{EngineConfig, Placement, ReadinessProbe, VipEngine, VipRouter, VipStatus};
use keepalived::Files;

use crate::{
    services::RenderedFile,
    step::{Capability, StepError, StepName},
};
use tfagent_spec::NodeSpec;
use tfagent_supervisor::{ServiceDef, Supervisor};

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

/// The vip capability.
pub struct VipStep {
    settings: VipSettings,
    supervisor: Supervisor,
    engine: VipEngine,
}

impl fmt::Debug for VipStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VipStep")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl VipStep {
    pub fn new(settings: VipSettings, supervisor: Supervisor, engine: VipEngine) -> Self {
        Self {
            settings,
            supervisor,
            engine,
        }
    }

    pub fn engine(&self) -> &VipEngine {
        &self.engine
    }

    fn files(&self) -> Files {
        Files::new(&self.settings.dir)
    }
}

fn io_error(what: &str, error: std::io::Error) -> StepError {
    StepError::Observe {
        what: what.into(),
        source: Box::new(error),
    }
}

#[async_trait]
impl Capability for VipStep {
    type Observed = Observed;
    type Change = Change;

    fn step(&self) -> StepName {
        StepName::Vip
    }

    async fn observe(&self, desired: &NodeSpec) -> Result<Observed, StepError> {
        let files = self.files();
        let config_file = match std::fs::read_to_string(files.config()) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error("keepalived's configuration", e)),
        };
        Ok(Observed {
            wanted: wanted(desired, &self.settings),
            config_file,
            track_file: files.track().exists(),
            keepalived: self
                .supervisor
                .definition(keepalived::SERVICE)
                .map(|d| (*d).clone()),
            engine: self.engine.config(),
        })
    }

    fn plan(_desired: &NodeSpec, observed: &Observed) -> Vec<Change> {
        plan(observed)
    }

    async fn apply(&self, _desired: &NodeSpec, changes: &[Change]) -> Result<(), StepError> {
        let files = self.files();
        for change in changes {
            let failed = |source: Box<dyn std::error::Error + Send + Sync>| StepError::Apply {
                change: change.to_string(),
                source,
            };
            match change {
                Change::WriteConfig(config) => {
                    let file = RenderedFile {
                        path: files.config(),
                        contents: config.clone().into_bytes(),
                        mode: 0o600,
                        secret: false,
                    };
                    crate::services::write_file(&file).map_err(|e| failed(Box::new(e)))?;
                }
                Change::CreateTrackFile => {
                    engine::write_track(&files.track(), false).map_err(|e| failed(Box::new(e)))?;
                }
                Change::Keepalived(def) => {
                    // The FIFO first, so keepalived writes into ours.
                    engine::make_fifo(&files.fifo()).map_err(|e| failed(Box::new(e)))?;
                    self.supervisor
                        .ensure((**def).clone())
                        .map_err(|e| failed(Box::new(e)))?;
                }
                Change::StopKeepalived => {
                    self.supervisor.remove(&keepalived::service_name()).await;
                }
                Change::Engine(config) => self.engine.configure(config.clone()),
            }
        }
        Ok(())
    }

    // ---- reset ----
    /// Stops following the VIP and stops keepalived (a holder's keepalived
    /// hands the VIP over as it stops), then removes keepalived's files and
    /// the election memory.
    async fn teardown(&self, _last: &NodeSpec) -> Result<Vec<String>, StepError> {
        let mut done = Vec::new();
        if self.engine.config().is_some() {
            self.engine.configure(None);
            done.push(Change::Engine(None).to_string());
        }
        if self.supervisor.definition(keepalived::SERVICE).is_some() {
            self.supervisor.remove(&keepalived::service_name()).await;
            done.push(Change::StopKeepalived.to_string());
        }
        let files = self.files();
        for path in [files.config(), files.track(), files.fifo(), files.ledger()] {
            match std::fs::remove_file(&path) {
                Ok(()) => done.push(format!("remove {}", path.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StepError::Apply {
                        change: format!("remove {}", path.display()),
                        source: Box::new(e),
                    });
                }
            }
        }
        Ok(done)
    }
}

/// The apiserver probe the VIP is gated on, by default k3s's own readiness
/// check of a server.
pub fn default_readiness(paths: &crate::services::ServicePaths) -> ReadinessProbe {
    let policy = crate::services::k3s::readiness(tfagent_spec::Role::ServerJoin, paths);
    ReadinessProbe {
        probe: policy.probe,
        period: Duration::from_millis(250),
        timeout: Duration::from_secs(1),
        threshold: 2,
    }
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
            readiness: default_readiness(&paths),
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

    #[tokio::test]
    async fn a_reset_stops_keepalived_and_the_engine_and_removes_the_files() {
        use crate::step::Step;
        let dir = tempfile::tempdir().unwrap();
        let supervisor = Supervisor::new(
            tfagent_supervisor::SupervisorConfig {
                record_dir: dir.path().join("records"),
                log_dir: dir.path().join("logs"),
                cgroups: tfagent_supervisor::cgroup::CgroupLayout::None,
                cgroup_parent: "unused".into(),
            },
            tokio_util::sync::CancellationToken::new(),
        );
        let network = Arc::new(crate::test_support::network_step());
        let (step, _engine) = crate::test_support::vip_step(dir.path(), &supervisor, network);
        let spec = example_spec("server-init");
        step.converge(&spec).await.unwrap();
        assert!(step.engine().config().is_some());
        assert!(supervisor.definition(keepalived::SERVICE).is_some());
        let files = Files::new(&dir.path().join("vip"));
        assert!(files.config().exists() && files.track().exists());

        let done = Step::teardown(&step, &spec).await.unwrap();
        assert_eq!(done[..2], ["stop following the VIP", "stop keepalived"]);
        assert!(step.engine().config().is_none());
        assert!(supervisor.definition(keepalived::SERVICE).is_none());
        assert!(!files.config().exists() && !files.track().exists());
        // Nothing left to take back.
        assert!(Step::teardown(&step, &spec).await.unwrap().is_empty());
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
