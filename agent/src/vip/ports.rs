//! What the VIP step and its engine need of the host, as narrow traits with
//! typed errors: the network step's routing of the VIP, the announcement
//! datagrams, keepalived's notify FIFO, the apiserver's readiness check and
//! the run directory's files. The real ones are in [`super::linux`]; tests
//! use the recording fakes of `fake.rs`.

use std::{
    error::Error,
    fmt, io,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use async_trait::async_trait;

use super::election::{Ledger, VrrpState};
use tfagent_spec::{IfName, WgKey, Wireguard};
use tfagent_supervisor::probe::{Probe, ProbeError};

/// Where the network step should send the VIP's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On this node's own interface.
    Local,
    /// Into this peer's allowed IPs.
    Peer(WgKey),
    Nowhere,
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::Local => f.write_str("onto this node's interface"),
            Placement::Peer(key) => write!(f, "into the allowed IPs of peer {key}"),
            Placement::Nowhere => f.write_str("out of the mesh"),
        }
    }
}

/// The VIP could not be moved.
#[derive(Debug, thiserror::Error)]
#[error("moving VIP {vip} {placement}: {source}")]
pub struct RouteError {
    pub vip: IpAddr,
    pub placement: Placement,
    pub source: Box<dyn Error + Send + Sync>,
}

/// The network step's side: moves VIP/32 between the interface and peer
/// entries at once, and keeps it there in later passes.
#[async_trait]
pub trait VipRouter: Send + Sync + fmt::Debug {
    async fn place_vip(
        &self,
        wireguard: &Wireguard,
        vip: IpAddr,
        placement: Placement,
    ) -> Result<(), RouteError>;
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("no interface {interface}")]
    NoInterface { interface: IfName },
    #[error("binding UDP port {port} on {interface}: {source}")]
    Bind {
        interface: IfName,
        port: u16,
        source: io::Error,
    },
    #[error("sending to {to}: {source}")]
    Send { to: SocketAddr, source: io::Error },
    #[error("receiving on {interface}: {source}")]
    Receive {
        interface: IfName,
        source: io::Error,
    },
}

/// The mesh as the announcements see it.
pub trait AnnounceNet: Send + Sync + fmt::Debug {
    /// The interface's index now; `None` while there is no such interface.
    fn interface_index(&self, interface: &IfName) -> Option<u32>;
    /// A socket on `port` (of `address`'s family) that hears only what
    /// came in through `interface`, where a peer's key proves the source.
    fn bind(
        &self,
        interface: &IfName,
        address: IpAddr,
        port: u16,
    ) -> Result<Box<dyn Datagrams>, TransportError>;
}

/// One bound announcement socket.
#[async_trait]
pub trait Datagrams: Send + Sync + fmt::Debug {
    /// The index of the interface it was bound to.
    fn interface_index(&self) -> u32;
    async fn send_to(&self, bytes: &[u8], to: SocketAddr) -> Result<(), TransportError>;
    /// The next datagram, into `buffer`: its length and its source.
    /// Cancel-safe: the engine waits for it beside other events.
    async fn recv_from(&self, buffer: &mut [u8]) -> Result<(usize, SocketAddr), TransportError>;
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("creating keepalived's notify FIFO {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("opening keepalived's notify FIFO {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("reading keepalived's notify FIFO {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
}

/// Where keepalived writes its state changes, one line each.
pub trait KeepalivedNotify: Send + Sync + fmt::Debug {
    /// Opens it, creating it first when needed. What keepalived wrote while
    /// nobody read is still there.
    fn open(&self) -> Result<Box<dyn NotifyLines>, NotifyError>;
}

#[async_trait]
pub trait NotifyLines: Send + fmt::Debug {
    /// The next line; `None` once no more can come. Cancel-safe.
    async fn next_line(&mut self) -> Result<Option<String>, NotifyError>;
}

/// How the local apiserver is probed.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadinessProbe {
    pub probe: Probe,
    pub period: Duration,
    pub timeout: Duration,
    /// Results in a row that flip the state (both ways).
    pub threshold: u32,
}

/// Why the apiserver is not ready; probe errors name what they checked.
#[derive(Debug, thiserror::Error)]
pub enum ReadinessError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
}

/// The local apiserver, which the VIP is gated on.
#[async_trait]
pub trait Apiserver: Send + Sync + fmt::Debug {
    /// One check: what the apiserver answered when it is ready.
    async fn check(&self) -> Result<String, ReadinessError>;
}

/// What survives an agent restart (in the run directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Memory {
    pub vip: IpAddr,
    pub ledger: Ledger,
    pub vrrp: VrrpState,
    pub keepalived_pid: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("writing keepalived's configuration: {source}")]
    Config {
        source: Box<dyn Error + Send + Sync>,
    },
    #[error("creating the FIFO {}: {source}", path.display())]
    Fifo { path: PathBuf, source: io::Error },
    #[error("{}: {source}", path.display())]
    Decode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("removing {}: {source}", path.display())]
    Remove { path: PathBuf, source: io::Error },
}

/// The run directory (tmpfs): keepalived's configuration, track file and
/// notify FIFO, and the agent's election memory.
pub trait RunDir: Send + Sync + fmt::Debug {
    /// keepalived's configuration as written; `None` when there is none.
    fn read_config(&self) -> Result<Option<String>, FileError>;
    fn write_config(&self, config: &str) -> Result<(), FileError>;
    fn track_exists(&self) -> bool;
    /// keepalived's track file: ready takes part in the election, not
    /// ready keeps this node out.
    fn write_track(&self, ready: bool) -> Result<(), FileError>;
    /// Creates keepalived's notify FIFO unless it exists.
    fn make_fifo(&self) -> Result<(), FileError>;
    /// `None` when nothing was remembered.
    fn load_memory(&self) -> Result<Option<Memory>, FileError>;
    /// Replaces the memory whole (never rewritten in place).
    fn save_memory(&self, memory: &Memory) -> Result<(), FileError>;
    /// Removes every file above; returns those that were there.
    fn remove_all(&self) -> Result<Vec<PathBuf>, FileError>;
}
