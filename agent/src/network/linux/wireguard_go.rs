//! The Linux implementation of [`UserspaceWg`]: wireguard-go under the
//! agent's supervisor, like containerd and k3s: its
//! own session, cgroup and log file (so it never writes into the agent's
//! pipes, and outlives an agent restart, which adopts it), restarts with
//! back-off, and status, logs and `tfagentctl restart` by name.
//!
//! A restarted wireguard-go comes back without peers; each restart asks the
//! reconciler for a pass at once, which configures it again.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use tokio::sync::Notify;
use tracing::{Instrument, info, info_span, warn};

use crate::network::ports::{NetHostCause, NetHostError, UserspaceWg};
use tfagent_spec::IfName;
use tfagent_supervisor::{
    ServiceDef, ServiceName, Supervisor,
    probe::{Probe, ProbePolicy},
};

/// How long a fresh wireguard-go has to open its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs wireguard-go as a supervised service per interface.
#[derive(Debug, Clone)]
pub struct SupervisedWireguardGo {
    supervisor: Supervisor,
    binary: PathBuf,
    socket_dir: PathBuf,
    /// Poked when a wireguard-go came back and needs its configuration.
    reconfigure: Arc<Notify>,
    /// Services whose restarts are watched (one watcher each).
    watched: Arc<Mutex<HashSet<ServiceName>>>,
}

impl SupervisedWireguardGo {
    pub fn new(
        supervisor: Supervisor,
        binary: &Path,
        socket_dir: &Path,
        reconfigure: Arc<Notify>,
    ) -> Self {
        Self {
            supervisor,
            binary: binary.to_owned(),
            socket_dir: socket_dir.to_owned(),
            reconfigure,
            watched: Arc::default(),
        }
    }

    fn socket(&self, interface: &IfName) -> PathBuf {
        self.socket_dir.join(format!("{interface}.sock"))
    }

    fn definition(&self, interface: &IfName) -> Result<ServiceDef, NetHostError> {
        let mut def = ServiceDef::new(
            service_name(interface)?,
            vec![
                self.binary.display().to_string(),
                // Foreground: its exit is the supervisor's to see.
                "-f".into(),
                interface.to_string(),
            ],
        );
        def.readiness = Some(ProbePolicy::new(Probe::UnixConnect {
            path: self.socket(interface),
        }));
        Ok(def)
    }

    /// At agent start: supervises again the wireguard-go an earlier agent
    /// started for `interface`, if it still runs (a healthy interface gives
    /// the network step no reason to touch it). Returns whether it did.
    pub fn adopt(&self, interface: &IfName) -> bool {
        let Ok(def) = self.definition(interface) else {
            return false;
        };
        let name = def.name.clone();
        match self.supervisor.resume(def) {
            Ok(true) => {
                info!(%interface, service = %name, "adopted the running wireguard-go");
                self.watch_restarts(&name, interface);
                true
            }
            Ok(false) => false,
            Err(error) => {
                warn!(%interface, %error, "cannot adopt wireguard-go");
                false
            }
        }
    }

    /// Each restart of the service comes back without peers: asks for a
    /// pass at once, which configures it again. Installed once a service.
    fn watch_restarts(&self, name: &ServiceName, interface: &IfName) {
        let first = self
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone());
        let Ok(mut status) = self.supervisor.watch(name.as_str()) else {
            return;
        };
        if !first {
            return;
        }
        let reconfigure = Arc::clone(&self.reconfigure);
        let mut restarts = status.borrow().restarts;
        tokio::spawn(
            async move {
                while status.changed().await.is_ok() {
                    let now = status.borrow_and_update().clone();
                    if now.ready && now.restarts != restarts {
                        restarts = now.restarts;
                        info!("wireguard-go is back; configuring it again");
                        reconfigure.notify_one();
                    }
                }
            }
            .instrument(info_span!(parent: None, "wireguard-go", %interface)),
        );
    }
}

fn answers(socket: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

/// The service's name: `wireguard-go-<interface>`, lower-cased, with any
/// character a service name cannot have as `-`.
pub fn service_name(interface: &IfName) -> Result<ServiceName, NetHostError> {
    let suffix: String = interface
        .as_str()
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '-',
        })
        .collect();
    format!("wireguard-go-{suffix}")
        .parse()
        .map_err(|e| NetHostError::host(interface, "naming the wireguard-go service", e))
}

#[async_trait]
impl UserspaceWg for SupervisedWireguardGo {
    async fn ensure_running(&self, interface: &IfName) -> Result<(), NetHostError> {
        let def = self.definition(interface)?;
        let name = def.name.clone();
        let what = "starting wireguard-go";
        let failed = |e| NetHostError::host(interface, what, e);
        let known = self.supervisor.definition(name.as_str()).is_some();
        if !known && !self.adopt(interface) && answers(&self.socket(interface)) {
            // Started by someone else (by hand, or an older agent without a
            // record): a second one would fight it for the interface.
            warn!(%interface, "a wireguard-go this agent did not start serves the interface; using it unsupervised");
            return Ok(());
        }
        self.supervisor.ensure(def).map_err(failed)?;
        // Before waiting: a start that is slow to get ready still has its
        // later restarts reconfigured.
        self.watch_restarts(&name, interface);
        let mut status = self.supervisor.watch(name.as_str()).map_err(failed)?;
        let ready = tokio::time::timeout(START_TIMEOUT, async {
            status.wait_for(|s| s.ready).await.map(drop)
        })
        .await;
        match ready {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(NetHostError::new(
                interface,
                what,
                NetHostCause::SupervisorStopped,
            )),
            Err(_) => Err(NetHostError::new(
                interface,
                what,
                NetHostCause::NotReady {
                    seconds: START_TIMEOUT.as_secs(),
                    status: status.borrow().message.clone(),
                },
            )),
        }
    }

    async fn stop(&self, interface: &IfName) -> Result<(), NetHostError> {
        let name = service_name(interface)?;
        self.supervisor.remove(&name).await;
        // wireguard-go removes its socket on exit; a stale one would read as
        // a device that does not answer.
        let _ = std::fs::remove_file(self.socket(interface));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_interface_name_gives_a_service_name() {
        for (interface, expected) in [
            ("tfk3s", "wireguard-go-tfk3s"),
            ("Wg_0.1", "wireguard-go-wg-0-1"),
        ] {
            let name = service_name(&interface.parse().unwrap()).unwrap();
            assert_eq!(name.as_str(), expected);
        }
    }
}
