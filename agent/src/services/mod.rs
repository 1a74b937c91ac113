//! Services: containerd and k3s, run by the generic supervisor
//! (`tfagent_supervisor`: start order, readiness, restarts with back-off,
//! logs, adoption after an agent restart). This step renders their files
//! from the spec and hands their definitions to the supervisor.
//!
//! On agent shutdown the children keep running and the next agent adopts
//! them; they are stopped only on request.

pub mod containerd;
pub mod k3s;
pub mod kubeconfig;
pub mod linux;
pub mod paths;
pub mod plan;
pub mod ports;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::{path::PathBuf, sync::Arc};

use async_trait::async_trait;
use tfagent_spec::NodeSpec;
use tfagent_supervisor::{ServiceName, Supervisor};

use crate::step::{BoxError, Capability, StepError, StepName, off_async_threads};
use linux::HostFiles;
pub use paths::ServicePaths;
pub use plan::{Change, DesiredServices, Observed, desired};
pub use ports::{FileError, FileState, RenderedFile, ServiceFiles, Supervision, SupervisionError};

/// At agent start: adopts the services of the stored spec that still run
/// (see [`Supervision::resume`]), in start order. Returns their names.
pub fn resume(
    supervisor: &impl Supervision,
    spec: &NodeSpec,
    paths: &ServicePaths,
) -> Vec<ServiceName> {
    let mut resumed = Vec::new();
    for def in desired(spec, paths).services {
        let name = def.name.clone();
        // A service whose dependency is not running waits for the step.
        if let Ok(true) = supervisor.resume(def) {
            resumed.push(name);
        }
    }
    resumed
}

/// The services capability, over a supervisor and the host's files.
#[derive(Debug, Clone)]
pub struct Services<S: Supervision = Supervisor, F: ServiceFiles = HostFiles> {
    supervisor: S,
    files: Arc<F>,
    paths: ServicePaths,
}

impl Services {
    pub fn new(supervisor: Supervisor, paths: ServicePaths) -> Self {
        Self::with_ports(supervisor, HostFiles, paths)
    }
}

impl<S: Supervision, F: ServiceFiles> Services<S, F> {
    pub fn with_ports(supervisor: S, files: F, paths: ServicePaths) -> Self {
        Self {
            supervisor,
            files: Arc::new(files),
            paths,
        }
    }

    pub fn supervisor(&self) -> &S {
        &self.supervisor
    }

    pub fn paths(&self) -> &ServicePaths {
        &self.paths
    }
}

#[async_trait]
impl<S: Supervision, F: ServiceFiles> Capability for Services<S, F> {
    type Observed = Observed;
    type Change = Change;

    fn step(&self) -> StepName {
        StepName::Services
    }

    async fn observe(&self, desired: &NodeSpec) -> Result<Observed, StepError> {
        let paths: Vec<PathBuf> = self::desired(desired, &self.paths)
            .files
            .into_iter()
            .map(|f| f.path)
            .collect();
        let host = Arc::clone(&self.files);
        let files = off_async_threads(move || {
            paths
                .into_iter()
                .map(|path| host.state(&path).map(|state| (path, state)))
                .collect()
        })
        .await
        .map_err(|source| StepError::Observe {
            what: "the services' files".into(),
            source,
        })?;
        let supervised = self
            .supervisor
            .definitions()
            .into_iter()
            .map(|def| (def.name.to_string(), (*def).clone()))
            .collect();
        Ok(Observed {
            paths: self.paths.clone(),
            files,
            supervised,
        })
    }

    fn plan(desired: &NodeSpec, observed: &Observed) -> Vec<Change> {
        plan::plan(self::desired(desired, &observed.paths), observed)
    }

    async fn apply(&self, _desired: &NodeSpec, changes: &[Change]) -> Result<(), StepError> {
        for change in changes {
            let failed = |source: BoxError| StepError::Apply {
                change: change.to_string(),
                source,
            };
            match change {
                Change::WriteFile(file) => {
                    let (host, file) = (Arc::clone(&self.files), file.clone());
                    off_async_threads(move || host.write(&file))
                        .await
                        .map_err(failed)?;
                }
                Change::Start(def) | Change::Update { def, .. } => {
                    self.supervisor
                        .ensure(def.clone())
                        .map_err(|e| failed(e.into()))?;
                }
            }
        }
        Ok(())
    }

    /// Stops the services of `last` (dependents first) and stops
    /// supervising them, then removes the files rendered for them (the
    /// token file among them). Their data dirs stay.
    async fn teardown(&self, last: &NodeSpec) -> Result<Vec<String>, StepError> {
        let teardown = plan::teardown(desired(last, &self.paths), |name| {
            self.supervisor.definition(name).is_some()
        });
        let mut done = Vec::new();
        for name in &teardown.stop {
            self.supervisor.remove(name).await;
            done.push(format!("stop {name}"));
        }
        for path in teardown.remove {
            let change = format!("remove {}", path.display());
            let host = Arc::clone(&self.files);
            let removed = off_async_threads(move || host.remove(&path))
                .await
                .map_err(|source| StepError::Apply {
                    change: change.clone(),
                    source,
                })?;
            if removed {
                done.push(change);
            }
        }
        Ok(done)
    }
}
