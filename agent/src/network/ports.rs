//! The host operations the network step needs, as small traits, the state
//! they read and their errors: the Linux implementations are in `linux.rs`
//! (wireguard-go's supervision in `linux/wireguard_go.rs`), a recording fake
//! in `fake.rs`.

use std::{
    collections::{BTreeMap, BTreeSet},
    error::Error,
    fmt,
    net::SocketAddr,
    sync::Arc,
    time::SystemTime,
};

use async_trait::async_trait;
use ipnet::IpNet;

use tfagent_spec::{IfName, KeyPair, WgKey};

/// A host operation that failed: the interface, what was being done, and why.
#[derive(Debug, thiserror::Error)]
#[error("{what} on {interface}: {cause}")]
pub struct NetHostError {
    pub interface: String,
    pub what: &'static str,
    #[source]
    pub cause: NetHostCause,
}

/// Why a host operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetHostCause {
    /// The host refused: netlink, the UAPI socket, the supervisor. Boxed so
    /// that the ports name no Linux crate.
    #[error(transparent)]
    Host(Box<dyn Error + Send + Sync>),
    #[error("no such interface")]
    NoSuchInterface,
    /// A route the agent wants is another link's.
    #[error(
        "a route to {destination} already goes through {device}; \
         remove it, or take {destination} out of the peer's allowed IPs"
    )]
    RouteTaken { destination: IpNet, device: String },
    #[error("wireguard-go closed the connection without an answer")]
    NoAnswer,
    /// wireguard-go answered a `set` with this (`errno=N`).
    #[error("wireguard-go refused the update ({answer})")]
    Refused { answer: String },
    #[error("the supervisor stopped")]
    SupervisorStopped,
    /// A fresh wireguard-go's control socket did not answer in time; `status`
    /// is what the supervisor last said of it.
    #[error("its control socket did not answer within {seconds} s ({status})")]
    NotReady { seconds: u64, status: String },
}

impl NetHostError {
    pub fn new(interface: &IfName, what: &'static str, cause: NetHostCause) -> Self {
        Self {
            interface: interface.to_string(),
            what,
            cause,
        }
    }

    /// An error the host returned.
    pub fn host(
        interface: &IfName,
        what: &'static str,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        Self::new(interface, what, NetHostCause::Host(Box::new(source)))
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

/// The host parts the network step drives.
#[derive(Debug, Clone)]
pub struct NetHost {
    pub wg: Arc<dyn WgOps>,
    pub links: Arc<dyn LinkOps>,
    /// Starts wireguard-go; used by the userspace backend only.
    pub userspace: Arc<dyn UserspaceWg>,
}
