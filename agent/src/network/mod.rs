//! Network: the cluster's WireGuard interface, its addresses, routes and
//! peers.
//!
//! Observe reads the device (peers, key, port) through [`WgOps`] and the link
//! (up, MTU, addresses, routes) through [`LinkOps`]; [`plan::plan`] is a pure
//! diff; apply sends every peer change of a pass in one device update, so an
//! unchanged peer is never touched and its session survives.
//!
//! Two backends: the kernel module (link created over rtnetlink, configured
//! over generic netlink) and userspace `wireguard-go` (started through
//! [`UserspaceWg`], configured over its UAPI socket).
//!
//! The ports and the state they read are in `ports.rs`, the plan's input
//! and the VIP overlay in `plan.rs`, the step's value in `state.rs`.

mod backend;
pub mod key;
pub mod linux;
pub mod plan;
pub mod ports;
mod state;
mod vip_route;

#[cfg(test)]
pub(crate) mod fake;

use std::{collections::BTreeMap, net::SocketAddr, path::Path, sync::Arc, time::SystemTime};

use async_trait::async_trait;
use ipnet::IpNet;
use tokio::sync::Notify;
use tracing::{debug, warn};

pub use backend::{Backend, BackendChoice, BackendError, choose_backend};
pub use key::KeyError;
pub use linux::{SupervisedWireguardGo, service_name};
pub use plan::{Change, Observed, PeerChange, VipOverlay, plan, with_vip};
pub use ports::{
    DeviceState, DeviceUpdate, LinkOps, LinkState, NetHost, NetHostCause, NetHostError, PeerState,
    PeerUpdate, UserspaceWg, WgOps,
};
pub use state::NetworkStep;
use state::Written;

use crate::step::{Capability, StepError, StepName};
use tfagent_spec::{Endpoint, Host, IfName, KeyPair, Network, NodeSpec, WgKey, Wireguard};
use tfagent_supervisor::Supervisor;

/// The status of the interface for `GetStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceStatus {
    pub interface: String,
    pub backend: Backend,
    pub public_key: WgKey,
    /// Whether the link exists and is up.
    pub up: bool,
    pub listen_port: u16,
    pub peers: Vec<PeerStatus>,
    /// Why the device could not be read, when it could not.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The spec's name for the peer; empty for a peer the spec does not know.
    pub name: String,
    pub public_key: WgKey,
    pub endpoint: Option<SocketAddr>,
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub allowed_ips: Vec<IpNet>,
}

impl NetworkStep {
    /// The live state of the interface and its peers.
    pub async fn status(&self, desired: Option<&Wireguard>) -> Option<InterfaceStatus> {
        let wireguard = desired?;
        let interface = &wireguard.interface;
        let names: BTreeMap<WgKey, String> = wireguard
            .peers
            .iter()
            .map(|p| (p.public_key, p.name.to_string()))
            .collect();
        let link = self.host.links.link(interface).await;
        let device = self.host.wg.device(interface).await;
        let mut status = InterfaceStatus {
            interface: interface.to_string(),
            backend: self.backend,
            public_key: self.key.public(),
            up: matches!(&link, Ok(Some(link)) if link.up),
            listen_port: 0,
            peers: Vec::new(),
            error: None,
        };
        match device {
            Ok(Some(device)) => {
                status.listen_port = device.listen_port;
                status.peers = device
                    .peers
                    .into_iter()
                    .map(|(key, peer)| PeerStatus {
                        name: names.get(&key).cloned().unwrap_or_default(),
                        public_key: key,
                        endpoint: peer.endpoint,
                        last_handshake: peer.last_handshake,
                        rx_bytes: peer.rx_bytes,
                        tx_bytes: peer.tx_bytes,
                        allowed_ips: peer.allowed_ips.into_iter().collect(),
                    })
                    .collect();
            }
            Ok(None) => status.error = Some("no WireGuard device".into()),
            Err(error) => status.error = Some(error.to_string()),
        }
        if let Err(error) = link {
            status.error.get_or_insert(error.to_string());
        }
        Some(status)
    }

    async fn resolve(wireguard: &Wireguard) -> BTreeMap<Endpoint, SocketAddr> {
        let mut resolved = BTreeMap::new();
        for endpoint in wireguard.peers.iter().filter_map(|p| p.endpoint.as_ref()) {
            match endpoint.host() {
                Host::Ip(_) => {}
                Host::Name(name) => {
                    match tokio::net::lookup_host((name.as_str(), endpoint.port())).await {
                        Ok(mut addrs) => {
                            if let Some(addr) = addrs.next() {
                                resolved.insert(endpoint.clone(), addr);
                            }
                        }
                        Err(error) => {
                            warn!(%endpoint, %error, "cannot resolve a peer endpoint; leaving it as it is");
                        }
                    }
                }
            }
        }
        resolved
    }
}

fn observe_error(what: &str, interface: &IfName, error: NetHostError) -> StepError {
    StepError::Observe {
        what: format!("{what} of {interface}"),
        source: Box::new(error),
    }
}

#[async_trait]
impl Capability for NetworkStep {
    /// Shared with apply, which turns it into what the pass wrote.
    type Observed = Arc<Observed>;
    type Change = Change;

    fn step(&self) -> StepName {
        StepName::Network
    }

    async fn observe(&self, desired: &NodeSpec) -> Result<Arc<Observed>, StepError> {
        let vip = *self.vip_overlay();
        let wireguard = &with_vip(&desired.network.wireguard, vip);
        let interface = &wireguard.interface;
        let (link, device) = match self.written_for(wireguard).await? {
            Some(written) => {
                debug!("a new spec: planned against the interface as last written");
                (Some(written.link.clone()), Some(written.device.clone()))
            }
            None => self.read(interface).await?,
        };
        let observed = Arc::new(Observed {
            backend: self.backend,
            own_key: self.key.public(),
            link,
            device,
            endpoints: Self::resolve(wireguard).await,
            vip,
        });
        *self.last_observed() = Some((wireguard.clone(), Arc::clone(&observed)));
        Ok(observed)
    }

    fn plan(desired: &NodeSpec, observed: &Arc<Observed>) -> Vec<Change> {
        let wireguard = with_vip(&desired.network.wireguard, observed.vip);
        plan(&wireguard, observed)
    }

    async fn apply(&self, desired: &NodeSpec, changes: &[Change]) -> Result<(), StepError> {
        self.apply_and_remember(desired, changes).await
    }

    /// Removes the interface's addresses, routes and peers (the plan of an
    /// interface that wants none, of which only removals are kept); with
    /// the userspace backend, stops wireguard-go, which takes the interface
    /// with it. The node's key stays.
    async fn teardown(&self, last: &NodeSpec) -> Result<Vec<String>, StepError> {
        let mut bare = last.clone();
        bare.network.wireguard.addresses.clear();
        bare.network.wireguard.peers.clear();
        let interface = bare.network.wireguard.interface.clone();
        *self.written() = None;
        let (link, device) = self.read(&interface).await?;
        let mut done = Vec::new();
        if link.is_some() {
            let observed = Observed {
                backend: self.backend,
                own_key: self.key.public(),
                link,
                device,
                endpoints: BTreeMap::new(),
                vip: None,
            };
            let changes: Vec<Change> = plan(&bare.network.wireguard, &observed)
                .into_iter()
                .filter(|c| {
                    matches!(
                        c,
                        Change::RemoveAddress(_)
                            | Change::RemoveRoute(_)
                            | Change::Peer(PeerChange::Remove { .. })
                    )
                })
                .collect();
            self.apply_changes(&bare.network, &changes).await?;
            done.extend(changes.iter().map(ToString::to_string));
        }
        if self.backend == Backend::Userspace {
            self.host
                .userspace
                .stop(&interface)
                .await
                .map_err(|e| StepError::Apply {
                    change: format!("stop wireguard-go for {interface}"),
                    source: Box::new(e),
                })?;
            done.push(format!("stop wireguard-go for {interface}"));
        }
        *self.written() = None;
        *self.last_observed() = None;
        Ok(done)
    }
}

impl NetworkStep {
    /// What the last pass wrote, when `wireguard` is a new spec for the same
    /// interface and that link is still the one written to.
    async fn written_for(&self, wireguard: &Wireguard) -> Result<Option<Arc<Written>>, StepError> {
        let Some(written) = self
            .written()
            .clone()
            .filter(|w| w.wireguard.interface == wireguard.interface && w.wireguard != *wireguard)
        else {
            return Ok(None);
        };
        let interface = &wireguard.interface;
        let index = self
            .host
            .links
            .index(interface)
            .await
            .map_err(|e| observe_error("the link", interface, e))?;
        Ok((index == Some(written.link.index)).then_some(written))
    }

    /// Reads the link and the device.
    async fn read(
        &self,
        interface: &IfName,
    ) -> Result<(Option<LinkState>, Option<DeviceState>), StepError> {
        let link = self
            .host
            .links
            .link(interface)
            .await
            .map_err(|e| observe_error("the link", interface, e))?;
        let device = match link {
            None => None,
            Some(_) => self
                .host
                .wg
                .device(interface)
                .await
                .map_err(|e| observe_error("the WireGuard device", interface, e))?,
        };
        Ok((link, device))
    }

    async fn apply_and_remember(
        &self,
        desired: &NodeSpec,
        changes: &[Change],
    ) -> Result<(), StepError> {
        let _pass = self.apply_lock.lock().await;
        let taken = self.last_observed().take();
        let planned_vip = taken.as_ref().and_then(|(_, o)| o.vip);
        let wireguard = &with_vip(&desired.network.wireguard, planned_vip);
        let observed = taken
            .filter(|(w, _)| w == wireguard)
            .map(|(_, observed)| observed);
        let result = self.apply_changes(&desired.network, changes).await;
        let current_vip = *self.vip_overlay();
        if current_vip != planned_vip {
            // The VIP moved during the pass, which may have put it back:
            // move it again, and read the device next time.
            let current = with_vip(&desired.network.wireguard, current_vip);
            if let Err(error) = self.reroute_vip(wireguard, &current).await {
                warn!(%error, "cannot move the VIP again after a pass");
            }
            *self.written() = None;
            return result;
        }

        // What the device holds after a failure is unknown: read it next time.
        let written = match (&result, observed) {
            (Ok(()), Some(observed)) => {
                // A link that existed before the pass keeps its index.
                let index = match &observed.link {
                    Some(link) => Some(link.index),
                    None => self
                        .host
                        .links
                        .link(&wireguard.interface)
                        .await
                        .ok()
                        .flatten()
                        .map(|l| l.index),
                };
                index.map(|index| {
                    Arc::new(Written {
                        wireguard: wireguard.clone(),
                        link: LinkState {
                            index,
                            ..plan::link_after(&observed, changes)
                        },
                        device: plan::device_after(&observed, changes),
                    })
                })
            }
            _ => None,
        };
        *self.written() = written;
        result
    }

    /// Makes `changes`, every device change of them in one update.
    async fn apply_changes(&self, network: &Network, changes: &[Change]) -> Result<(), StepError> {
        let wireguard = &network.wireguard;
        let interface = &wireguard.interface;
        let failed = |change: &Change, error: NetHostError| StepError::Apply {
            change: change.to_string(),
            source: Box::new(error),
        };
        let mut update = DeviceUpdate::default();
        let mut device_change: Option<&Change> = None;
        for change in changes {
            match change {
                Change::StartUserspace => self
                    .host
                    .userspace
                    .ensure_running(interface)
                    .await
                    .map_err(|e| failed(change, e))?,
                Change::CreateLink => self
                    .host
                    .links
                    .create_wireguard(interface)
                    .await
                    .map_err(|e| failed(change, e))?,
                Change::SetPrivateKey { .. } => {
                    update.private_key = Some(Arc::clone(&self.key));
                    device_change.get_or_insert(change);
                }
                Change::SetListenPort(port) => {
                    update.listen_port = Some(*port);
                    device_change.get_or_insert(change);
                }
                Change::Peer(peer) => {
                    update.peers.push(peer.to_update());
                    device_change.get_or_insert(change);
                }
                Change::SetMtu(_)
                | Change::SetUp
                | Change::AddAddress(_)
                | Change::RemoveAddress(_)
                | Change::AddRoute(_)
                | Change::RemoveRoute(_) => {
                    // Device first: routes need the peers they point at.
                    if let Some(first) = device_change.take() {
                        self.send_update(interface, std::mem::take(&mut update))
                            .await
                            .map_err(|e| failed(first, e))?;
                    }
                    self.apply_link_change(interface, change)
                        .await
                        .map_err(|e| failed(change, e))?;
                }
            }
        }
        if let Some(first) = device_change {
            self.send_update(interface, update)
                .await
                .map_err(|e| failed(first, e))?;
        }
        Ok(())
    }

    async fn send_update(
        &self,
        interface: &IfName,
        update: DeviceUpdate,
    ) -> Result<(), NetHostError> {
        if update.is_empty() {
            return Ok(());
        }
        self.host.wg.configure(interface, update).await
    }

    async fn apply_link_change(
        &self,
        interface: &IfName,
        change: &Change,
    ) -> Result<(), NetHostError> {
        let links = &self.host.links;
        match change {
            Change::SetMtu(mtu) => links.set_mtu(interface, *mtu).await,
            Change::SetUp => links.set_up(interface).await,
            Change::AddAddress(net) => links.add_address(interface, *net).await,
            Change::RemoveAddress(net) => links.remove_address(interface, *net).await,
            Change::AddRoute(net) => links.add_route(interface, *net).await,
            Change::RemoveRoute(net) => links.remove_route(interface, *net).await,
            _ => Ok(()),
        }
    }
}

/// How this host runs wireguard-go: under `supervisor`, poking
/// `reconfigure` when a restarted one needs its configuration again.
pub fn userspace(
    wireguard_go: Option<&Path>,
    supervisor: Supervisor,
    reconfigure: Arc<Notify>,
) -> Arc<SupervisedWireguardGo> {
    Arc::new(SupervisedWireguardGo::new(
        supervisor,
        wireguard_go.unwrap_or(Path::new("wireguard-go")),
        Path::new(linux::WIREGUARD_SOCKET_DIR),
        reconfigure,
    ))
}

/// The network step on this host.
pub fn step(
    backend: Backend,
    key: Arc<KeyPair>,
    userspace: Arc<SupervisedWireguardGo>,
) -> NetworkStep {
    NetworkStep::new(backend, key, linux::host(backend, userspace))
}

#[cfg(test)]
mod tests;
