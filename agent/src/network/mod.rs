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

mod host;
pub mod key;
pub mod linux;
pub mod plan;
mod supervised;
mod vip_route;

#[cfg(test)]
pub(crate) mod fake;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, SocketAddr},
    path::Path,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use async_trait::async_trait;
use ipnet::IpNet;
use serde::Deserialize;
use tokio::sync::Notify;
use tracing::{debug, warn};

pub use host::{DeviceUpdate, LinkOps, NetHostError, PeerUpdate, UserspaceWg, WgOps};
pub use key::KeyError;
pub use plan::{Change, PeerChange, plan};
pub use supervised::{SupervisedWireguardGo, service_name};
use tfagent_spec::KeyPair;
pub use vip_route::{VipOverlay, with_vip};

use crate::{
    host::HostCapabilities,
    step::{Capability, StepError, StepName},
};
use tfagent_spec::{Endpoint, Host, IfName, Network, NodeSpec, WgKey, Wireguard};
use tfagent_supervisor::Supervisor;

/// The WireGuard implementation that carries the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The kernel module (as on zOS).
    Kernel,
    /// `wireguard-go`, a userspace process per interface.
    Userspace,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Kernel => "kernel",
            Backend::Userspace => "userspace",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The boot config's `wireguard_backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// The kernel module when the host has it, else wireguard-go.
    #[default]
    Auto,
    Kernel,
    Userspace,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackendError {
    #[error(
        "the boot config forces the kernel WireGuard backend, but the host has no wireguard module"
    )]
    NoKernelModule,
    #[error(
        "the boot config forces the userspace WireGuard backend, but wireguard-go is not on PATH"
    )]
    NoWireguardGo,
    #[error("no WireGuard backend: the host has neither the wireguard module nor wireguard-go")]
    Neither,
}

/// Picks the backend for `choice` on a host with `caps`.
pub fn choose_backend(
    choice: BackendChoice,
    caps: &HostCapabilities,
) -> Result<Backend, BackendError> {
    let userspace = caps.wireguard_go.is_some();
    match choice {
        BackendChoice::Kernel if caps.kernel_wireguard => Ok(Backend::Kernel),
        BackendChoice::Kernel => Err(BackendError::NoKernelModule),
        BackendChoice::Userspace if userspace => Ok(Backend::Userspace),
        BackendChoice::Userspace => Err(BackendError::NoWireguardGo),
        BackendChoice::Auto if caps.kernel_wireguard => Ok(Backend::Kernel),
        BackendChoice::Auto if userspace => Ok(Backend::Userspace),
        BackendChoice::Auto => Err(BackendError::Neither),
    }
}

/// The link as rtnetlink shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkState {
    /// The kernel's index: a re-created link (a restarted wireguard-go) gets
    /// a new one.
    pub index: u32,
    pub up: bool,
    pub mtu: u32,
    /// Addresses with their prefix; IPv6 link-local ones are left out.
    pub addresses: BTreeSet<IpNet>,
    /// Routes through the link that the agent manages (its protocol).
    pub routes: BTreeSet<IpNet>,
}

/// The WireGuard device as its backend shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceState {
    /// Public key of the device's private key; `None` when it has none.
    pub public_key: Option<WgKey>,
    pub listen_port: u16,
    pub peers: BTreeMap<WgKey, PeerState>,
}

/// One peer of the device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerState {
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: BTreeSet<IpNet>,
    /// Seconds; 0 is off.
    pub persistent_keepalive: u16,
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// What the network step reads of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub backend: Backend,
    /// The public key of the node's own private key.
    pub own_key: WgKey,
    /// `None`: the interface does not exist.
    pub link: Option<LinkState>,
    /// `None`: no WireGuard device answers under the interface's name.
    pub device: Option<DeviceState>,
    /// The spec's peer endpoints that are DNS names, resolved; a name that
    /// does not resolve is missing, and that peer's endpoint is left alone.
    /// (IP endpoints need no lookup: see [`Observed::endpoint`].)
    pub endpoints: BTreeMap<Endpoint, SocketAddr>,
    /// Where the vip engine put the VIP when this was read.
    pub vip: Option<VipOverlay>,
}

impl Observed {
    /// Where `endpoint` points: itself for an IP, the lookup for a name.
    pub fn endpoint(&self, endpoint: &Endpoint) -> Option<SocketAddr> {
        match endpoint.host() {
            Host::Ip(ip) => Some(SocketAddr::new(*ip, endpoint.port())),
            Host::Name(_) => self.endpoints.get(endpoint).copied(),
        }
    }
}

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

/// The host parts the network step drives.
#[derive(Debug, Clone)]
pub struct NetHost {
    pub wg: Arc<dyn WgOps>,
    pub links: Arc<dyn LinkOps>,
    /// Starts wireguard-go; used by the userspace backend only.
    pub userspace: Arc<dyn UserspaceWg>,
}

/// What the last pass left on the link and device, so that a new spec is
/// planned against it without re-reading every peer (a 1-peer change
/// touches one peer). It holds while the link keeps its index; resync passes
/// of an unchanged spec always read the host again and heal drift.
#[derive(Debug, Clone)]
struct Written {
    wireguard: Wireguard,
    link: LinkState,
    device: DeviceState,
}

/// The network capability.
pub struct NetworkStep {
    backend: Backend,
    key: Arc<KeyPair>,
    host: NetHost,
    written: Mutex<Option<Arc<Written>>>,
    /// The last observation, which apply turns into what it wrote.
    observed: Mutex<Option<(Wireguard, Arc<Observed>)>>,
    /// Where the vip engine put the VIP; every pass plans with it.
    vip: Mutex<Option<VipOverlay>>,
    /// Held while a pass or a VIP move changes the device, so one never
    /// interleaves with the other.
    apply_lock: tokio::sync::Mutex<()>,
}

impl fmt::Debug for NetworkStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkStep")
            .field("backend", &self.backend)
            .field("public_key", &self.key.public())
            .finish_non_exhaustive()
    }
}

impl NetworkStep {
    pub fn new(backend: Backend, key: Arc<KeyPair>, host: NetHost) -> Self {
        Self {
            backend,
            key,
            host,
            written: Mutex::new(None),
            observed: Mutex::new(None),
            vip: Mutex::new(None),
            apply_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn vip_overlay(&self) -> std::sync::MutexGuard<'_, Option<VipOverlay>> {
        self.vip.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn public_key(&self) -> WgKey {
        self.key.public()
    }

    fn written(&self) -> std::sync::MutexGuard<'_, Option<Arc<Written>>> {
        self.written.lock().unwrap_or_else(|p| p.into_inner())
    }

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
        *self.observed.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((wireguard.clone(), Arc::clone(&observed)));
        Ok(observed)
    }

    fn plan(desired: &NodeSpec, observed: &Arc<Observed>) -> Vec<Change> {
        let wireguard = with_vip(&desired.network.wireguard, observed.vip);
        plan(&wireguard, observed)
    }

    async fn apply(&self, desired: &NodeSpec, changes: &[Change]) -> Result<(), StepError> {
        self.apply_and_remember(desired, changes).await
    }

    // ---- reset ----
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
        *self.observed.lock().unwrap_or_else(|p| p.into_inner()) = None;
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
        let taken = self
            .observed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
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
            if let Err(error) = self.move_vip(wireguard, &current).await {
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

    /// Makes `changes`; returns the device as it should be afterwards.
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

/// True for IPv6 link-local addresses, which the kernel manages.
pub(crate) fn is_link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// The network step over the real host.
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
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::{
        network::fake::FakeNet,
        step::{Step, StepOutcome},
    };
    use tfagent_spec::fixtures::{example_spec, wireguard};

    fn spec_with(wg: Wireguard) -> NodeSpec {
        let mut spec = example_spec("agent");
        spec.network.wireguard = wg;
        spec
    }

    fn step(fake: &FakeNet) -> NetworkStep {
        NetworkStep::new(
            Backend::Userspace,
            Arc::new(KeyPair::generate()),
            fake.host(),
        )
    }

    #[tokio::test]
    async fn converges_in_one_pass_then_changes_nothing() {
        let fake = FakeNet::default();
        let step = step(&fake);
        let spec = spec_with(wireguard(3));
        let outcome = step.converge(&spec).await.unwrap();
        assert!(
            matches!(outcome, StepOutcome::Applied { .. }),
            "{outcome:?}"
        );
        assert_eq!(
            fake.take_calls(),
            [
                "start wireguard-go",
                "configure 3 peer(s)",
                "mtu 1420",
                "add address 10.100.0.1/24",
                "up",
                "add route 10.200.0.0/16",
            ]
        );
        assert_eq!(step.converge(&spec).await.unwrap(), StepOutcome::UpToDate);
        assert_eq!(fake.take_calls(), ["read device"]);
        let device = fake.state().device.clone().unwrap();
        assert_eq!(device.public_key, Some(step.public_key()));
        assert_eq!(device.peers.len(), 3);
    }

    // ---- reset ----
    #[tokio::test]
    async fn a_teardown_strips_the_interface_and_stops_wireguard_go_and_the_key_stays() {
        let fake = FakeNet::default();
        let step = step(&fake);
        let spec = spec_with(wireguard(3));
        step.converge(&spec).await.unwrap();
        fake.take_calls();
        let done = Step::teardown(&step, &spec).await.unwrap();
        let calls = fake.take_calls();
        assert!(
            calls.contains(&"remove address 10.100.0.1/24".to_owned()),
            "{calls:?}"
        );
        assert!(
            calls.contains(&"remove route 10.200.0.0/16".to_owned()),
            "{calls:?}"
        );
        assert!(
            calls.contains(&"configure 3 peer(s)".to_owned()),
            "{calls:?}"
        );
        assert_eq!(calls.last().map(String::as_str), Some("stop wireguard-go"));
        assert!(
            !calls
                .iter()
                .any(|c| c.starts_with("add") || c.starts_with("start"))
        );
        assert_eq!(done.len(), 3 + 2 + 1, "{done:?}");
        assert!(fake.state().link.is_none());
        // Nothing left: a second teardown only makes sure wireguard-go is
        // stopped.
        let again = Step::teardown(&step, &spec).await.unwrap();
        assert_eq!(again, ["stop wireguard-go for wg-test"]);
        // A new spec after it converges from scratch with the same key.
        let public = step.public_key();
        step.converge(&spec).await.unwrap();
        assert_eq!(
            fake.state().device.clone().unwrap().public_key,
            Some(public)
        );
    }

    #[tokio::test]
    async fn a_kernel_teardown_leaves_the_link_empty() {
        let fake = FakeNet::default();
        let step = NetworkStep::new(Backend::Kernel, Arc::new(KeyPair::generate()), fake.host());
        let spec = spec_with(wireguard(2));
        step.converge(&spec).await.unwrap();
        fake.take_calls();
        Step::teardown(&step, &spec).await.unwrap();
        let state = fake.state();
        let link = state.link.clone().unwrap();
        assert!(
            link.addresses.is_empty() && link.routes.is_empty(),
            "{link:?}"
        );
        assert!(state.device.clone().unwrap().peers.is_empty());
        assert!(!state.calls.iter().any(|c| c.contains("wireguard-go")));
    }

    #[tokio::test]
    async fn the_kernel_backend_creates_the_link_and_configures_it_the_same_way() {
        let fake = FakeNet::default();
        let step = NetworkStep::new(Backend::Kernel, Arc::new(KeyPair::generate()), fake.host());
        let spec = spec_with(wireguard(2));
        step.converge(&spec).await.unwrap();
        assert_eq!(
            fake.take_calls(),
            [
                "create link",
                "configure 2 peer(s)",
                "mtu 1420",
                "add address 10.100.0.1/24",
                "up",
                "add route 10.200.0.0/16",
            ]
        );
        assert_eq!(step.converge(&spec).await.unwrap(), StepOutcome::UpToDate);
        assert_eq!(step.backend(), Backend::Kernel);
    }

    #[tokio::test]
    async fn a_new_spec_is_planned_against_what_was_written_and_touches_one_peer() {
        let fake = FakeNet::default();
        let step = step(&fake);
        step.converge(&spec_with(wireguard(5))).await.unwrap();
        // A resync reads the device; the next spec needs no read.
        step.converge(&spec_with(wireguard(5))).await.unwrap();
        fake.take_calls();
        let mut changed = wireguard(5);
        changed.peers[3]
            .allowed_ips
            .push("10.100.0.128/25".parse().unwrap());
        let outcome = step.converge(&spec_with(changed.clone())).await.unwrap();
        assert_eq!(outcome, StepOutcome::Applied { changes: 1 });
        assert_eq!(fake.take_calls(), ["configure 1 peer(s)"]);
        // Drift while the spec stays: the resync reads and heals it.
        fake.state().device.as_mut().unwrap().peers.clear();
        let outcome = step.converge(&spec_with(changed)).await.unwrap();
        assert_eq!(outcome, StepOutcome::Applied { changes: 5 });
    }

    #[tokio::test]
    async fn a_failed_apply_forgets_what_was_written() {
        let fake = FakeNet::default();
        let step = step(&fake);
        step.converge(&spec_with(wireguard(2))).await.unwrap();
        fake.state().fail = Some("configure".into());
        let error = step.converge(&spec_with(wireguard(3))).await.unwrap_err();
        assert!(error.to_string().contains("add peer node-3"), "{error}");
        assert!(error.to_string().contains("injected failure"), "{error}");
        fake.state().fail = None;
        fake.take_calls();
        step.converge(&spec_with(wireguard(3))).await.unwrap();
        assert_eq!(fake.take_calls()[0], "read device");
    }

    #[tokio::test]
    async fn status_names_the_peers_the_spec_knows() {
        let fake = FakeNet::default();
        let step = step(&fake);
        let spec = spec_with(wireguard(2));
        assert_eq!(step.status(None).await, None);
        step.converge(&spec).await.unwrap();
        let status = step.status(Some(&spec.network.wireguard)).await.unwrap();
        assert!(status.up);
        assert_eq!(status.listen_port, 51820);
        assert_eq!(status.backend, Backend::Userspace);
        let names: Vec<&str> = status.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["node-1", "node-2"]);
        assert_eq!(status.peers[0].allowed_ips.len(), 2);
    }

    #[test]
    fn the_backend_follows_the_host_and_the_boot_config() {
        let mut caps = crate::host::HostInfo::capabilities(&crate::test_support::FakeHost);
        caps.kernel_wireguard = false;
        caps.wireguard_go = None;
        assert_eq!(
            choose_backend(BackendChoice::Auto, &caps),
            Err(BackendError::Neither)
        );
        caps.wireguard_go = Some("/usr/bin/wireguard-go".into());
        assert_eq!(
            choose_backend(BackendChoice::Auto, &caps),
            Ok(Backend::Userspace)
        );
        assert_eq!(
            choose_backend(BackendChoice::Kernel, &caps),
            Err(BackendError::NoKernelModule)
        );
        caps.kernel_wireguard = true;
        assert_eq!(
            choose_backend(BackendChoice::Auto, &caps),
            Ok(Backend::Kernel)
        );
        assert_eq!(
            choose_backend(BackendChoice::Userspace, &caps),
            Ok(Backend::Userspace)
        );
        caps.wireguard_go = None;
        assert_eq!(
            choose_backend(BackendChoice::Userspace, &caps),
            Err(BackendError::NoWireguardGo)
        );
    }
}
