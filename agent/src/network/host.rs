//! The host operations the network step needs, as small traits: the Linux
//! implementations are in `linux.rs`, a recording fake in `fake.rs`.

use std::{fmt, net::SocketAddr, sync::Arc};

use async_trait::async_trait;
use ipnet::IpNet;

use tfagent_spec::KeyPair;

use super::{DeviceState, LinkState};
use tfagent_spec::{IfName, WgKey};

/// A host operation that failed; names the interface and what was done.
#[derive(Debug, thiserror::Error)]
#[error("{what} on {interface}: {message}")]
pub struct NetHostError {
    pub interface: String,
    pub what: &'static str,
    pub message: String,
}

impl NetHostError {
    pub fn new(interface: &IfName, what: &'static str, message: impl fmt::Display) -> Self {
        Self {
            interface: interface.to_string(),
            what,
            message: message.to_string(),
        }
    }
}

/// One peer's part of a device update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerUpdate {
    /// Adds or changes a peer; only `Some` fields are sent.
    Set {
        key: WgKey,
        /// Only change an existing peer (never re-create one that went away).
        update_only: bool,
        endpoint: Option<SocketAddr>,
        persistent_keepalive: Option<u16>,
        /// `Some`: replace the peer's allowed IPs with these.
        allowed_ips: Option<Vec<IpNet>>,
    },
    Remove {
        key: WgKey,
    },
}

/// What one configuration message to the device carries. Peers not named
/// are not touched.
#[derive(Default)]
pub struct DeviceUpdate {
    pub private_key: Option<Arc<KeyPair>>,
    pub listen_port: Option<u16>,
    pub peers: Vec<PeerUpdate>,
}

impl fmt::Debug for DeviceUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceUpdate")
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "<redacted>"),
            )
            .field("listen_port", &self.listen_port)
            .field("peers", &self.peers)
            .finish()
    }
}

impl DeviceUpdate {
    pub fn is_empty(&self) -> bool {
        self.private_key.is_none() && self.listen_port.is_none() && self.peers.is_empty()
    }
}

/// A WireGuard device's configuration (generic netlink or the UAPI socket).
#[async_trait]
pub trait WgOps: Send + Sync + fmt::Debug {
    /// The device; `None` when no WireGuard device has that name.
    async fn device(&self, interface: &IfName) -> Result<Option<DeviceState>, NetHostError>;
    /// Sends one update.
    async fn configure(&self, interface: &IfName, update: DeviceUpdate)
    -> Result<(), NetHostError>;
}

/// The link, its addresses and routes (rtnetlink).
#[async_trait]
pub trait LinkOps: Send + Sync + fmt::Debug {
    /// The link; `None` when there is none of that name.
    async fn link(&self, interface: &IfName) -> Result<Option<LinkState>, NetHostError>;
    /// The link's index alone (cheap); `None` when there is no such link.
    async fn index(&self, interface: &IfName) -> Result<Option<u32>, NetHostError>;
    /// Creates a kernel WireGuard link.
    async fn create_wireguard(&self, interface: &IfName) -> Result<(), NetHostError>;
    async fn set_mtu(&self, interface: &IfName, mtu: u32) -> Result<(), NetHostError>;
    async fn set_up(&self, interface: &IfName) -> Result<(), NetHostError>;
    async fn add_address(&self, interface: &IfName, address: IpNet) -> Result<(), NetHostError>;
    async fn remove_address(&self, interface: &IfName, address: IpNet) -> Result<(), NetHostError>;
    /// Adds a route through the link, marked as the agent's.
    async fn add_route(&self, interface: &IfName, destination: IpNet) -> Result<(), NetHostError>;
    async fn remove_route(
        &self,
        interface: &IfName,
        destination: IpNet,
    ) -> Result<(), NetHostError>;
}

/// Runs wireguard-go for an interface. The direct implementation starts it
/// itself; a supervisor can take its place.
#[async_trait]
pub trait UserspaceWg: Send + Sync + fmt::Debug {
    /// Starts wireguard-go for `interface` unless it already answers, and
    /// returns once its control socket does.
    async fn ensure_running(&self, interface: &IfName) -> Result<(), NetHostError>;
    /// Stops it (the interface goes with it).
    async fn stop(&self, interface: &IfName) -> Result<(), NetHostError>;
}
