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
#[cfg(test)]
pub(crate) mod fake;
pub mod keepalived;
pub mod linux;
pub mod plan;
pub mod ports;

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;

pub use election::VrrpState;
pub use engine::{EngineConfig, VipEngine, VipStatus};
pub use plan::{Change, Observed, VipSettings, Wanted, wanted};
pub use ports::{Placement, ReadinessProbe, RouteError, RunDir, VipRouter};

use crate::{
    services::Supervision,
    step::{BoxError, Capability, StepError, StepName},
};
use tfagent_spec::NodeSpec;

/// The vip capability.
pub struct VipStep {
    settings: VipSettings,
    /// Runs keepalived.
    supervisor: Arc<dyn Supervision>,
    engine: VipEngine,
    files: Arc<dyn RunDir>,
}

impl fmt::Debug for VipStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VipStep")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl VipStep {
    /// `files` is the run directory the engine shares.
    pub fn new(
        settings: VipSettings,
        supervisor: Arc<dyn Supervision>,
        engine: VipEngine,
        files: Arc<dyn RunDir>,
    ) -> Self {
        Self {
            settings,
            supervisor,
            engine,
            files,
        }
    }

    pub fn engine(&self) -> &VipEngine {
        &self.engine
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
        let config_file = self.files.read_config().map_err(|e| StepError::Observe {
            what: "keepalived's configuration".into(),
            source: Box::new(e),
        })?;
        Ok(Observed {
            wanted: wanted(desired, &self.settings),
            config_file,
            track_file: self.files.track_exists(),
            keepalived: self
                .supervisor
                .definition(keepalived::SERVICE)
                .map(|d| (*d).clone()),
            engine: self.engine.config(),
        })
    }

    fn plan(_desired: &NodeSpec, observed: &Observed) -> Vec<Change> {
        plan::plan(observed)
    }

    async fn apply(&self, _desired: &NodeSpec, changes: &[Change]) -> Result<(), StepError> {
        for change in changes {
            let failed = |source: BoxError| StepError::Apply {
                change: change.to_string(),
                source,
            };
            match change {
                Change::WriteConfig(config) => {
                    self.files
                        .write_config(config)
                        .map_err(|e| failed(Box::new(e)))?;
                }
                Change::CreateTrackFile => {
                    self.files
                        .write_track(false)
                        .map_err(|e| failed(Box::new(e)))?;
                }
                Change::Keepalived(def) => {
                    // The FIFO first, so keepalived writes into ours.
                    self.files.make_fifo().map_err(|e| failed(Box::new(e)))?;
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
        let removed = self.files.remove_all().map_err(|e| StepError::Apply {
            change: "remove keepalived's files and the election memory".into(),
            source: Box::new(e),
        })?;
        done.extend(
            removed
                .iter()
                .map(|path| format!("remove {}", path.display())),
        );
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
    use crate::step::Step;
    use fake::{FakeMesh, FakeParts, RunFiles};
    use tfagent_spec::fixtures::example_spec;

    #[tokio::test]
    async fn a_reset_stops_keepalived_and_the_engine_and_removes_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let supervisor = tfagent_supervisor::Supervisor::new(
            tfagent_supervisor::SupervisorConfig {
                record_dir: dir.path().join("records"),
                log_dir: dir.path().join("logs"),
                cgroups: tfagent_supervisor::cgroup::CgroupLayout::None,
                cgroup_parent: "unused".into(),
            },
            tokio_util::sync::CancellationToken::new(),
        );
        let fakes = FakeParts::new(&FakeMesh::default());
        // Never run: configuring it only records the config.
        let (engine, _task) = VipEngine::new(
            fakes.engine_parts(),
            tokio_util::sync::CancellationToken::new(),
        );
        let paths = crate::services::ServicePaths::under(dir.path());
        let settings = VipSettings {
            keepalived: "/nonexistent/keepalived".into(),
            dir: dir.path().join("vip"),
            readiness: default_readiness(&paths),
        };
        let step = VipStep::new(
            settings,
            Arc::new(supervisor.clone()),
            engine,
            fakes.files.clone(),
        );
        let spec = example_spec("server-init");
        step.converge(&spec).await.unwrap();
        assert!(step.engine().config().is_some());
        assert!(supervisor.definition(keepalived::SERVICE).is_some());
        let files = fakes.files.files();
        assert!(files.config.unwrap().contains("vrrp_instance tfagent_vip"));
        // Out of the election until the apiserver answers; the FIFO is
        // there before keepalived starts.
        assert_eq!(files.track, Some(false));
        assert!(files.fifo);
        // Converged: a second pass changes nothing.
        assert!(matches!(
            step.converge(&spec).await.unwrap(),
            crate::step::StepOutcome::UpToDate
        ));

        let done = Step::teardown(&step, &spec).await.unwrap();
        assert_eq!(
            done,
            [
                "stop following the VIP",
                "stop keepalived",
                "remove keepalived.conf",
                "remove apiserver-not-ready",
                "remove notify.fifo",
            ]
        );
        assert!(step.engine().config().is_none());
        assert!(supervisor.definition(keepalived::SERVICE).is_none());
        assert_eq!(fakes.files.files(), RunFiles::default());
        // Nothing left to take back.
        assert!(Step::teardown(&step, &spec).await.unwrap().is_empty());
    }
}
