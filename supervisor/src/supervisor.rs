//! The supervisor: the services it runs, one task each ([`super::runner`]),
//! added in dependency order, updated, restarted and removed on request.
//!
//! Policy on agent shutdown: children keep running. The agent's tasks end,
//! the adoption records stay, and the next agent adopts the same processes.
//! Services are stopped only on request: [`Supervisor::remove`] (a service
//! dropped from the spec), [`Supervisor::stop_all`], or a restart.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use nix::sys::signal::Signal;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{Instrument, info_span, warn};

use super::{
    cgroup::{self},
    config::SupervisorConfig,
    def::{ServiceDef, ServiceName},
    logs::LogSink,
    record::{self},
    runner::{Request, Runner},
    state::ServiceStatus,
    sys,
};

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("no service named {0}")]
    NotFound(String),
    #[error("service {service}: it depends on {dependency}, which is not supervised")]
    UnknownDependency {
        service: ServiceName,
        dependency: ServiceName,
    },
    #[error("service {service}: {message}")]
    Invalid {
        service: ServiceName,
        message: String,
    },
    #[error("the supervisor is shutting down")]
    ShuttingDown,
}

/// What [`Supervisor::ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    Started,
    /// It ran another definition: restarted with this one.
    Restarted,
    Unchanged,
}

#[derive(Debug)]
struct Entry {
    def: Arc<ServiceDef>,
    status: watch::Receiver<ServiceStatus>,
    requests: mpsc::UnboundedSender<Request>,
    logs: Arc<LogSink>,
    /// Ends the log follower when the service is removed.
    log_cancel: CancellationToken,
}

/// Supervises any number of services. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: SupervisorConfig,
    /// In the order they were added, which is a valid start order: a
    /// service's dependencies are added before it.
    services: Mutex<Vec<Entry>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Supervisor {
    /// A supervisor whose tasks end when `shutdown` is cancelled, leaving
    /// the children running.
    pub fn new(config: SupervisorConfig, shutdown: CancellationToken) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                services: Mutex::new(Vec::new()),
                shutdown,
                tracker: TaskTracker::new(),
            }),
        }
    }

    fn services(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.inner
            .services
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Supervises `def`: starts it (or adopts its running process) when it
    /// is new, restarts it when its fingerprint changed, and otherwise only
    /// takes its new policies.
    pub fn ensure(&self, def: ServiceDef) -> Result<Ensured, SuperviseError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(SuperviseError::ShuttingDown);
        }
        if def.argv.is_empty() {
            return Err(SuperviseError::Invalid {
                service: def.name.clone(),
                message: "argv is empty".into(),
            });
        }
        let mut services = self.services();
        if let Some(entry) = services.iter_mut().find(|e| e.def.name == def.name) {
            if *entry.def == def {
                return Ok(Ensured::Unchanged);
            }
            let restart = entry.def.fingerprint() != def.fingerprint();
            let def = Arc::new(def);
            entry.def = Arc::clone(&def);
            let _ = entry.requests.send(Request::Update(def));
            return Ok(if restart {
                Ensured::Restarted
            } else {
                Ensured::Unchanged
            });
        }
        let mut deps = Vec::new();
        for dependency in &def.depends_on {
            let Some(entry) = services.iter().find(|e| e.def.name == *dependency) else {
                return Err(SuperviseError::UnknownDependency {
                    service: def.name.clone(),
                    dependency: dependency.clone(),
                });
            };
            deps.push(entry.status.clone());
        }
        let name = def.name.clone();
        let logs = Arc::new(LogSink::new(
            self.inner.config.log_dir.join(format!("{name}.log")),
            def.log,
        ));
        let log_cancel = self.inner.shutdown.child_token();
        self.inner.tracker.spawn(
            Arc::clone(&logs)
                .follow(log_cancel.clone())
                .instrument(info_span!("logs", service = %name)),
        );
        let (status_tx, status_rx) =
            watch::channel(ServiceStatus::new(name.clone(), def.depends_on.clone()));
        let (requests_tx, requests_rx) = mpsc::unbounded_channel();
        let def = Arc::new(def);
        let runner = Runner::new(
            Arc::clone(&def),
            self.inner.config.clone(),
            status_tx,
            requests_rx,
            deps,
            Arc::clone(&logs),
            self.inner.shutdown.clone(),
        );
        self.inner.tracker.spawn(
            runner
                .run()
                .instrument(info_span!("service", service = %name)),
        );
        services.push(Entry {
            def,
            status: status_rx,
            requests: requests_tx,
            logs,
            log_cancel,
        });
        Ok(Ensured::Started)
    }

    /// Supervises `def` only if the process an earlier agent started for it
    /// still runs, adopting it; starts nothing. Used at agent start, before
    /// the reconcile loop reaches the services step (which waits for
    /// storage and network), so running services are watched at once.
    pub fn resume(&self, def: ServiceDef) -> Result<bool, SuperviseError> {
        let alive = record::load(&self.inner.config.record_dir, def.name.as_str())
            .is_some_and(|r| sys::start_ticks(r.pid) == Some(r.start_ticks));
        if !alive || self.definition(def.name.as_str()).is_some() {
            return Ok(false);
        }
        self.ensure(def).map(|_| true)
    }

    /// The names of the supervised services, in start order.
    pub fn names(&self) -> Vec<ServiceName> {
        self.services().iter().map(|e| e.def.name.clone()).collect()
    }

    /// Every service's status, in start order.
    pub fn status(&self) -> Vec<ServiceStatus> {
        self.services()
            .iter()
            .map(|e| e.status.borrow().clone())
            .collect()
    }

    /// A service's status as it changes.
    pub fn watch(&self, name: &str) -> Result<watch::Receiver<ServiceStatus>, SuperviseError> {
        self.entry(name, |e| e.status.clone())
    }

    /// The definition a service runs with.
    pub fn definition(&self, name: &str) -> Option<Arc<ServiceDef>> {
        self.entry(name, |e| Arc::clone(&e.def)).ok()
    }

    /// The last `lines` lines of a service's output and a receiver of new ones.
    pub fn logs(
        &self,
        name: &str,
        lines: usize,
    ) -> Result<(Vec<String>, broadcast::Receiver<String>), SuperviseError> {
        let sink = self.entry(name, |e| Arc::clone(&e.logs))?;
        Ok(sink.tail(lines))
    }

    /// Stops the service and starts it again at once (also a stopped or
    /// crash-looping one, whose back-off starts over).
    pub fn restart(&self, name: &str) -> Result<(), SuperviseError> {
        let requests = self.entry(name, |e| e.requests.clone())?;
        requests
            .send(Request::Restart)
            .map_err(|_| SuperviseError::ShuttingDown)
    }

    fn entry<T>(&self, name: &str, f: impl FnOnce(&Entry) -> T) -> Result<T, SuperviseError> {
        self.services()
            .iter()
            .find(|e| e.def.name.as_str() == name)
            .map(f)
            .ok_or_else(|| SuperviseError::NotFound(name.to_owned()))
    }

    /// Stops the named services and everything that depends on them,
    /// dependents first, each finished before the next begins. With
    /// `forget`, they are also no longer supervised and their records and
    /// cgroups are removed.
    async fn stop(&self, names: &[ServiceName], forget: bool) {
        let order = {
            let services = self.services();
            let graph: Vec<(ServiceName, Vec<ServiceName>)> = services
                .iter()
                .map(|e| (e.def.name.clone(), e.def.depends_on.clone()))
                .collect();
            stop_order(&graph, names)
        };
        for name in order {
            let Ok(requests) = self.entry(name.as_str(), |e| e.requests.clone()) else {
                continue;
            };
            let (done, stopped) = oneshot::channel();
            if requests.send(Request::Stop(done)).is_ok() {
                let _ = stopped.await;
            }
            if forget {
                let removed = {
                    let mut services = self.services();
                    services
                        .iter()
                        .position(|e| e.def.name == name)
                        .map(|at| services.remove(at))
                };
                if let Some(entry) = removed {
                    entry.log_cancel.cancel();
                }
                let dirs = self
                    .inner
                    .config
                    .cgroups
                    .service_dirs(&self.inner.config.cgroup_parent, name.as_str());
                let removed = tokio::task::spawn_blocking(move || {
                    kill_leftovers(&dirs);
                    cgroup::remove(&dirs)
                })
                .await;
                if let Ok(Err(error)) = removed {
                    warn!(service = %name, %error, "cannot remove the service's cgroup");
                }
            }
        }
    }

    /// Stops a service (and its dependents first) and stops supervising it.
    pub async fn remove(&self, name: &ServiceName) {
        self.stop(std::slice::from_ref(name), true).await;
    }

    /// Stops every service, in reverse dependency order. They stay known,
    /// stopped, until restarted.
    pub async fn stop_all(&self) {
        let names = self.names();
        self.stop(&names, false).await;
    }

    /// Waits until every task has ended after shutdown (the children run on).
    pub async fn detached(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}

/// Kills whatever is left in a removed service's cgroups.
fn kill_leftovers(dirs: &[PathBuf]) {
    for pid in cgroup::pids(dirs) {
        sys::kill(pid, Signal::SIGKILL);
    }
    // Give the kernel a moment to empty the cgroups.
    for _ in 0..50 {
        if cgroup::pids(dirs).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The stop order for `names`: they and every service depending on them
/// (transitively), dependents before their dependencies. `graph` lists
/// services with their dependencies, in start order.
pub fn stop_order(
    graph: &[(ServiceName, Vec<ServiceName>)],
    names: &[ServiceName],
) -> Vec<ServiceName> {
    let mut chosen: BTreeSet<&ServiceName> = names.iter().collect();
    // Start order lists dependencies first, so one pass finds every dependent.
    for (service, deps) in graph {
        if deps.iter().any(|d| chosen.contains(d)) {
            chosen.insert(service);
        }
    }
    graph
        .iter()
        .rev()
        .filter(|(service, _)| chosen.contains(service))
        .map(|(service, _)| service.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn name(s: &str) -> ServiceName {
        s.parse().unwrap()
    }

    #[test]
    fn dependents_stop_first_and_are_included() {
        let graph = vec![
            (name("storage"), vec![]),
            (name("containerd"), vec![name("storage")]),
            (name("k3s"), vec![name("containerd")]),
            (name("wg"), vec![]),
        ];
        assert_eq!(
            stop_order(&graph, &[name("containerd")]),
            [name("k3s"), name("containerd")]
        );
        assert_eq!(
            stop_order(&graph, &[name("storage"), name("wg")]),
            [name("wg"), name("k3s"), name("containerd"), name("storage")]
        );
        assert_eq!(stop_order(&graph, &[name("k3s")]), [name("k3s")]);
        assert!(stop_order(&graph, &[name("nope")]).is_empty());
    }
}
