//! The running side of the VIP: one task per agent that hears keepalived's
//! notify FIFO, probes the local apiserver and writes keepalived's track
//! file, sends and receives the agents' announcements over the mesh, and
//! moves the VIP's route through the network step. Every decision is the
//! [`Election`]'s; this module only carries them out, in the order they
//! were made.

use std::{
    collections::BTreeMap,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::UdpSocket,
    sync::{mpsc, watch},
};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::{
    announce::{Announcement, ClusterKey, MESSAGE_LEN},
    election::{Action, Election, ElectionStatus, Ledger, Route, VrrpState},
    keepalived::{self, Files},
};
use tfagent_spec::{IfName, NodeName, Secret, WgKey, Wireguard};
use tfagent_supervisor::probe::{self, Probe};

/// How often the holder claims the VIP again, healing lost messages.
pub const ANNOUNCE_PERIOD: Duration = Duration::from_secs(1);

/// Where the network step should send the VIP's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On this node's own interface.
    Local,
    /// Into this peer's allowed IPs.
    Peer(WgKey),
    Nowhere,
}

/// The network step's side: moves VIP/32 between the interface and peer
/// entries at once, and keeps it there in later passes.
#[async_trait]
pub trait VipRouter: Send + Sync + std::fmt::Debug {
    async fn place_vip(
        &self,
        wireguard: &Wireguard,
        vip: IpAddr,
        placement: Placement,
    ) -> Result<(), String>;
}

/// What the engine runs from; built from the spec by the vip step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    pub node_name: NodeName,
    /// This node's WireGuard address (its servers entry for a server).
    pub address: IpAddr,
    pub vip: IpAddr,
    /// Whether this node takes part in the election (runs keepalived).
    pub server: bool,
    pub servers: BTreeMap<IpAddr, NodeName>,
    pub wireguard: Wireguard,
    pub announce_port: u16,
    pub token: Secret,
    pub master_down: Duration,
}

impl EngineConfig {
    /// The agents to announce to: every peer's own address (its host
    /// routes), plus the servers.
    fn targets(&self) -> Vec<IpAddr> {
        let mut targets: Vec<IpAddr> = self
            .wireguard
            .peers
            .iter()
            .flat_map(|p| p.allowed_ips.iter())
            .filter(|net| net.prefix_len() == net.max_prefix_len())
            .map(|net| net.addr())
            .chain(self.servers.keys().copied())
            .filter(|a| *a != self.address && a.is_ipv4() == self.address.is_ipv4())
            .collect();
        targets.sort();
        targets.dedup();
        targets
    }

    /// The peer whose allowed IPs carry `address`.
    fn peer_of(&self, address: IpAddr) -> Option<WgKey> {
        self.wireguard
            .peers
            .iter()
            .find(|p| p.allowed_ips.iter().any(|net| net.contains(&address)))
            .map(|p| p.public_key)
    }
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

/// The VIP as status shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VipStatus {
    pub vip: Option<IpAddr>,
    /// Whether this node takes part in the election.
    pub server: bool,
    pub election: Option<ElectionStatus>,
    /// The health gate: whether the local apiserver answered ready.
    pub apiserver_ready: Option<bool>,
    pub apiserver_message: String,
    /// A routing or socket problem, when there is one.
    pub error: Option<String>,
}

/// What survives an agent restart (in the run directory).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Memory {
    vip: IpAddr,
    ledger: Ledger,
    vrrp: VrrpState,
    keepalived_pid: Option<u32>,
}

/// The handle the vip step and status use.
#[derive(Debug, Clone)]
pub struct VipEngine {
    config: watch::Sender<Option<Arc<EngineConfig>>>,
    status: Arc<Mutex<VipStatus>>,
}

/// What the engine task needs besides its config.
#[derive(Clone)]
pub struct EngineParts {
    pub files: Files,
    pub router: Arc<dyn VipRouter>,
    pub readiness: ReadinessProbe,
    /// keepalived's pid now, for telling an adopted keepalived from a new one.
    pub keepalived_pid: Arc<dyn Fn() -> Option<u32> + Send + Sync>,
}

impl std::fmt::Debug for EngineParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineParts")
            .field("files", &self.files)
            .field("readiness", &self.readiness)
            .finish_non_exhaustive()
    }
}

impl VipEngine {
    /// The engine and its task, which the caller spawns; it idles until
    /// [`VipEngine::configure`] and ends at `shutdown` (a holder first
    /// hands the VIP over).
    pub fn new(
        parts: EngineParts,
        shutdown: CancellationToken,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (config, receiver) = watch::channel(None);
        let status = Arc::new(Mutex::new(VipStatus::default()));
        let task = run(parts, receiver, Arc::clone(&status), shutdown)
            .instrument(info_span!(parent: None, "vip"));
        (Self { config, status }, task)
    }

    /// Runs the engine with `config`, or stops it with `None`.
    pub fn configure(&self, config: Option<Arc<EngineConfig>>) {
        self.config.send_if_modified(|current| {
            let changed = *current != config;
            *current = config;
            changed
        });
    }

    pub fn config(&self) -> Option<Arc<EngineConfig>> {
        self.config.borrow().clone()
    }

    pub fn status(&self) -> VipStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

async fn run(
    parts: EngineParts,
    mut configs: watch::Receiver<Option<Arc<EngineConfig>>>,
    status: Arc<Mutex<VipStatus>>,
    shutdown: CancellationToken,
) {
    let mut previous: Option<Arc<EngineConfig>> = None;
    loop {
        let config = configs.borrow_and_update().clone();
        let stop = shutdown.child_token();
        if let (None, Some(old)) = (&config, previous.take()) {
            // The spec dropped the VIP: take it out of the mesh.
            if let Err(error) = parts
                .router
                .place_vip(&old.wireguard, old.vip, Placement::Nowhere)
                .await
            {
                warn!(%error, "cannot remove the VIP");
            }
        }
        previous.clone_from(&config);
        let running = async {
            match &config {
                Some(config) => {
                    let mut engine = Running::new(&parts, Arc::clone(config), Arc::clone(&status));
                    engine.run(stop.clone(), shutdown.clone()).await;
                }
                None => {
                    *status.lock().unwrap_or_else(|p| p.into_inner()) = VipStatus::default();
                    stop.cancelled().await;
                }
            }
        };
        tokio::pin!(running);
        tokio::select! {
            () = &mut running => {}
            changed = configs.changed() => {
                if changed.is_err() {
                    // No more configs: the agent is stopping. The engine
                    // ends at shutdown, a holder once it handed over.
                    running.await;
                    return;
                }
                stop.cancel();
                continue;
            }
        }
        if shutdown.is_cancelled() {
            return;
        }
    }
}

/// The engine for one config.
struct Running<'a> {
    parts: &'a EngineParts,
    config: Arc<EngineConfig>,
    key: ClusterKey,
    election: Election,
    status: Arc<Mutex<VipStatus>>,
    socket: Option<(UdpSocket, u32)>,
    /// The last placement failed: try again at the next tick.
    placement_failed: Option<Placement>,
}

impl<'a> Running<'a> {
    fn new(
        parts: &'a EngineParts,
        config: Arc<EngineConfig>,
        status: Arc<Mutex<VipStatus>>,
    ) -> Self {
        let memory = load_memory(&parts.files.ledger()).filter(|m| m.vip == config.vip);
        let ledger = memory.map(|m| m.ledger).unwrap_or_default();
        // keepalived's state is remembered only for the same process: a
        // new keepalived starts as a backup and says so.
        let vrrp = match memory {
            Some(m)
                if config.server
                    && m.keepalived_pid.is_some()
                    && m.keepalived_pid == (parts.keepalived_pid)() =>
            {
                m.vrrp
            }
            _ => VrrpState::Unknown,
        };
        let election = Election::new(
            config.address,
            config.vip,
            config.servers.clone(),
            config.master_down,
            vrrp,
            ledger,
        );
        {
            let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
            s.vip = Some(config.vip);
            s.server = config.server;
            s.election = Some(election.status());
            if !config.server {
                s.apiserver_ready = None;
                s.apiserver_message.clear();
            }
        }
        Self {
            key: ClusterKey::new(&config.token),
            parts,
            config,
            election,
            status,
            socket: None,
            placement_failed: None,
        }
    }

    fn set_status(&self, update: impl FnOnce(&mut VipStatus)) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        update(&mut s);
        s.election = Some(self.election.status());
    }

    async fn run(&mut self, stop: CancellationToken, shutdown: CancellationToken) {
        info!(vip = %self.config.vip, server = self.config.server, "VIP engine running");
        let (vrrp_tx, mut vrrp_rx) = mpsc::unbounded_channel();
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        // Not a child of `stop`: on shutdown the FIFO must still be read
        // while the holder hands over.
        let tasks = CancellationToken::new();
        if self.config.server {
            tokio::spawn(read_fifo(self.parts.files.fifo(), vrrp_tx, tasks.clone()));
            tokio::spawn(probe_apiserver(
                self.parts.readiness.clone(),
                self.parts.files.track(),
                ready_tx,
                tasks.clone(),
            ));
        }
        let _stop_tasks = tasks.drop_guard();
        self.bind();
        let actions = self.election.start();
        self.perform(actions).await;
        let mut tick = tokio::time::interval(ANNOUNCE_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut buffer = [0u8; MESSAGE_LEN + 1];
        loop {
            let received = async {
                match &self.socket {
                    Some((socket, _)) => socket.recv_from(&mut buffer).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => break,
                Some(state) = vrrp_rx.recv() => {
                    info!(%state, "keepalived");
                    let actions = self.election.on_vrrp(state, Instant::now());
                    self.perform(actions).await;
                    // Even without a move: status and the memory of an
                    // adopted keepalived follow its state.
                    self.remember();
                    self.set_status(|_| {});
                }
                Some((ready, message)) = ready_rx.recv() => {
                    self.set_status(|s| {
                        s.apiserver_ready = Some(ready);
                        s.apiserver_message = message;
                    });
                }
                result = received => match result {
                    Ok((len, from)) => self.receive(&buffer[..len], from.ip()).await,
                    Err(error) => {
                        warn!(%error, "announcement socket; binding again");
                        self.socket = None;
                    }
                },
                _ = tick.tick() => {
                    self.check_socket();
                    if let Some(placement) = self.placement_failed {
                        self.place(placement).await;
                    }
                    let actions = self.election.on_tick(Instant::now());
                    self.perform(actions).await;
                }
            }
        }
        if shutdown.is_cancelled() && self.config.server {
            self.hand_over(&mut vrrp_rx).await;
        }
    }

    /// On agent shutdown: an agent that is not running cannot announce, so
    /// a holder leaves the election first and waits (briefly) for keepalived
    /// to hand the VIP over, releasing it to the others.
    async fn hand_over(&mut self, vrrp: &mut mpsc::UnboundedReceiver<VrrpState>) {
        if let Some(release) = self.election.release() {
            self.perform(vec![Action::Broadcast(release)]).await;
        }
        if let Err(error) = write_track(&self.parts.files.track(), false) {
            warn!(%error, "cannot leave the election");
            return;
        }
        if self.election.vrrp() != VrrpState::Master {
            return;
        }
        info!("stopping: handing the VIP over");
        let deadline = tokio::time::sleep(Duration::from_secs(2));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => {
                    warn!("keepalived did not leave the master state within 2 s");
                    return;
                }
                state = vrrp.recv() => {
                    let Some(state) = state else { return };
                    let actions = self.election.on_vrrp(state, Instant::now());
                    self.perform(actions).await;
                    if state != VrrpState::Master {
                        return;
                    }
                }
            }
        }
    }

    async fn receive(&mut self, bytes: &[u8], from: IpAddr) {
        let from = canonical(from);
        match Announcement::decode(bytes, &self.key) {
            Ok(message) => {
                debug!(%from, ?message, "announcement");
                let actions = self.election.on_message(from, message, Instant::now());
                self.perform(actions).await;
            }
            Err(error) => warn!(%from, %error, "refused an announcement"),
        }
    }

    async fn perform(&mut self, actions: Vec<Action>) {
        if actions.is_empty() {
            return;
        }
        for action in actions {
            match action {
                Action::Route(route) => {
                    let placement = match route {
                        Route::Local => Placement::Local,
                        Route::Nowhere => Placement::Nowhere,
                        Route::Server(address) => match self.config.peer_of(address) {
                            Some(key) => Placement::Peer(key),
                            None => {
                                warn!(%address, "no peer carries the holder's address");
                                Placement::Nowhere
                            }
                        },
                    };
                    let status = self.election.status();
                    info!(
                        holder = status.holder_name.as_ref().map(|n| n.as_str()).unwrap_or("none"),
                        epoch = status.ledger.epoch,
                        reason = %status.last_reason,
                        "VIP route: {placement:?}"
                    );
                    self.place(placement).await;
                }
                Action::Broadcast(message) => {
                    for target in self.config.targets() {
                        self.send(target, &message).await;
                    }
                }
                Action::Send(target, message) => self.send(target, &message).await,
            }
        }
        self.remember();
        self.set_status(|_| {});
    }

    async fn place(&mut self, placement: Placement) {
        let result = self
            .parts
            .router
            .place_vip(&self.config.wireguard, self.config.vip, placement)
            .await;
        match result {
            Ok(()) => {
                self.placement_failed = None;
                self.set_status(|s| s.error = None);
            }
            Err(error) => {
                warn!(%error, "cannot move the VIP; trying again");
                self.placement_failed = Some(placement);
                self.set_status(|s| s.error = Some(format!("moving the VIP: {error}")));
            }
        }
    }

    async fn send(&mut self, target: IpAddr, message: &Announcement) {
        if self.socket.is_none() {
            self.bind();
        }
        let Some((socket, _)) = &self.socket else {
            return;
        };
        let bytes = message.encode(&self.key);
        let to = SocketAddr::new(target, self.config.announce_port);
        if let Err(error) = socket.send_to(&bytes, to).await {
            debug!(%to, %error, "announcement not sent");
        }
    }

    /// Binds the announcement socket to the WireGuard interface, so only
    /// what came through a peer's key is heard.
    fn bind(&mut self) {
        match bind(
            &self.config.wireguard.interface,
            self.config.address,
            self.config.announce_port,
        ) {
            Ok(bound) => {
                self.socket = Some(bound);
                self.set_status(|s| s.error = None);
            }
            Err(error) => {
                warn!(%error, "cannot bind the announcement socket");
                self.set_status(|s| s.error = Some(format!("announcement socket: {error}")));
            }
        }
    }

    /// A re-created interface (a restarted wireguard-go) has a new index:
    /// the socket bound to the old one hears nothing.
    fn check_socket(&mut self) {
        let index = interface_index(&self.config.wireguard.interface);
        if self.socket.as_ref().map(|(_, i)| Some(*i)) != Some(index) {
            self.bind();
        }
    }

    fn remember(&self) {
        let memory = Memory {
            vip: self.config.vip,
            ledger: self.election.ledger(),
            vrrp: self.election.vrrp(),
            keepalived_pid: (self.parts.keepalived_pid)(),
        };
        if let Err(error) = save_memory(&self.parts.files.ledger(), &memory) {
            warn!(%error, "cannot record the election state");
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn interface_index(interface: &IfName) -> Option<u32> {
    nix::net::if_::if_nametoindex(interface.as_str()).ok()
}

fn bind(interface: &IfName, address: IpAddr, port: u16) -> io::Result<(UdpSocket, u32)> {
    let index = interface_index(interface)
        .ok_or_else(|| io::Error::other(format!("no interface {interface}")))?;
    let any = match address {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = std::net::UdpSocket::bind(SocketAddr::new(any, port))?;
    nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::BindToDevice,
        &std::ffi::OsString::from(interface.as_str()),
    )
    .map_err(io::Error::from)?;
    socket.set_nonblocking(true)?;
    Ok((UdpSocket::from_std(socket)?, index))
}

/// Reads keepalived's state changes, in order. Opened read-write, so the
/// FIFO never reads as ended while keepalived restarts, and what keepalived
/// wrote while no agent read it is still there.
async fn read_fifo(
    path: PathBuf,
    states: mpsc::UnboundedSender<VrrpState>,
    stop: CancellationToken,
) {
    if let Err(error) = make_fifo(&path) {
        warn!(%error, path = %path.display(), "cannot create keepalived's notify FIFO");
        return;
    }
    let receiver = match tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(&path)
    {
        Ok(receiver) => receiver,
        Err(error) => {
            warn!(%error, path = %path.display(), "cannot open keepalived's notify FIFO");
            return;
        }
    };
    let mut lines = BufReader::new(receiver).lines();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    if let Some(state) = VrrpState::from_fifo_line(&line, keepalived::INSTANCE)
                        && states.send(state).is_err()
                    {
                        return;
                    }
                }
                Ok(None) => return,
                Err(error) => {
                    warn!(%error, "reading keepalived's notify FIFO");
                    return;
                }
            }
        }
    }
}

/// Creates the FIFO (0600) unless it exists.
pub fn make_fifo(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(errno) => Err(io::Error::from(errno)),
    }
}

/// keepalived's track file: "0" takes part, "1" keeps out (weight 0 turns a
/// non-zero value into the fault state).
pub fn write_track(path: &Path, ready: bool) -> io::Result<()> {
    std::fs::write(path, if ready { "0\n" } else { "1\n" })
}

/// Probes the apiserver every period; after `threshold` equal results in a
/// row that differ from the current state, writes the track file (at once)
/// and reports it.
async fn probe_apiserver(
    readiness: ReadinessProbe,
    track: PathBuf,
    results: mpsc::UnboundedSender<(bool, String)>,
    stop: CancellationToken,
) {
    let mut ready: Option<bool> = None;
    let mut streak = 0u32;
    let mut interval = tokio::time::interval(readiness.period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        let (ok, message) = match probe::check(&readiness.probe, readiness.timeout).await {
            Ok(message) => (true, message),
            Err(error) => (false, error.to_string()),
        };
        if ready == Some(ok) {
            streak = 0;
            continue;
        }
        streak += 1;
        // The first result after a start counts at once: keepalived starts
        // out of the election until the apiserver answers.
        if ready.is_some() && streak < readiness.threshold {
            continue;
        }
        streak = 0;
        if let Err(error) = write_track(&track, ok) {
            warn!(%error, "cannot write keepalived's track file");
            continue;
        }
        if ready.is_some() || !ok {
            info!(ready = ok, %message, "apiserver");
        }
        ready = Some(ok);
        if results.send((ok, message)).is_err() {
            return;
        }
    }
}

fn load_memory(path: &Path) -> Option<Memory> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn save_memory(path: &Path, memory: &Memory) -> io::Result<()> {
    let bytes = serde_json::to_vec(memory).map_err(io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, bytes)?;
    std::fs::rename(temp, path)
}
