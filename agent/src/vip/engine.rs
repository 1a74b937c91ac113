//! The running side of the VIP: one task per agent that hears keepalived's
//! notify FIFO, probes the local apiserver and writes keepalived's track
//! file, sends and receives the agents' announcements over the mesh, and
//! moves the VIP's route through the network step. Every decision is the
//! [`Election`]'s; this module only carries them out, in the order they
//! were made, through the ports of [`super::ports`] (so its tests run it
//! over fakes).

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::{
    announce::{Announcement, ClusterKey, MESSAGE_LEN},
    election::{Action, Election, ElectionStatus, Route, VrrpState},
    keepalived,
    ports::{
        AnnounceNet, Apiserver, Datagrams, KeepalivedNotify, Memory, Placement, RunDir, VipRouter,
    },
};
use tfagent_spec::{NodeName, Secret, WgKey, Wireguard};

/// How often the holder claims the VIP again, healing lost messages.
pub const ANNOUNCE_PERIOD: Duration = Duration::from_secs(1);

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

/// How the apiserver gate follows its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    pub period: Duration,
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

/// The handle the vip step and status use.
#[derive(Debug, Clone)]
pub struct VipEngine {
    config: watch::Sender<Option<Arc<EngineConfig>>>,
    status: Arc<Mutex<VipStatus>>,
}

/// What the engine task needs besides its config: the ports it acts
/// through.
#[derive(Clone)]
pub struct EngineParts {
    pub router: Arc<dyn VipRouter>,
    pub net: Arc<dyn AnnounceNet>,
    pub notify: Arc<dyn KeepalivedNotify>,
    pub apiserver: Arc<dyn Apiserver>,
    pub files: Arc<dyn RunDir>,
    pub gate: Gate,
    /// keepalived's pid now, for telling an adopted keepalived from a new one.
    pub keepalived_pid: Arc<dyn Fn() -> Option<u32> + Send + Sync>,
}

impl std::fmt::Debug for EngineParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineParts")
            .field("router", &self.router)
            .field("net", &self.net)
            .field("notify", &self.notify)
            .field("apiserver", &self.apiserver)
            .field("files", &self.files)
            .field("gate", &self.gate)
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
    socket: Option<Box<dyn Datagrams>>,
    /// The last placement failed: try again at the next tick.
    placement_failed: Option<Placement>,
}

impl<'a> Running<'a> {
    fn new(
        parts: &'a EngineParts,
        config: Arc<EngineConfig>,
        status: Arc<Mutex<VipStatus>>,
    ) -> Self {
        let memory = match parts.files.load_memory() {
            Ok(memory) => memory.filter(|m| m.vip == config.vip),
            Err(error) => {
                warn!(%error, "cannot read the election memory; starting afresh");
                None
            }
        };
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
            tokio::spawn(
                read_notify(Arc::clone(&self.parts.notify), vrrp_tx, tasks.clone())
                    .in_current_span(),
            );
            tokio::spawn(
                probe_apiserver(
                    Arc::clone(&self.parts.apiserver),
                    Arc::clone(&self.parts.files),
                    self.parts.gate,
                    ready_tx,
                    tasks.clone(),
                )
                .in_current_span(),
            );
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
                    Some(socket) => socket.recv_from(&mut buffer).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => break,
                Some(state) = vrrp_rx.recv() => {
                    info!(%state, "keepalived");
                    let actions = self.election.on_vrrp(state, now());
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
                    let actions = self.election.on_tick(now());
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
        if let Err(error) = self.parts.files.write_track(false) {
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
                    let actions = self.election.on_vrrp(state, now());
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
                let actions = self.election.on_message(from, message, now());
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
                self.set_status(|s| s.error = Some(error.to_string()));
            }
        }
    }

    async fn send(&mut self, target: IpAddr, message: &Announcement) {
        if self.socket.is_none() {
            self.bind();
        }
        let Some(socket) = &self.socket else {
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
        match self.parts.net.bind(
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
    /// the socket bound to the old one hears nothing. It is closed first:
    /// while it holds the port, a new bind fails with "address in use".
    fn check_socket(&mut self) {
        let index = self
            .parts
            .net
            .interface_index(&self.config.wireguard.interface);
        if self.socket.as_ref().map(|s| Some(s.interface_index())) != Some(index) {
            self.socket = None;
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
        if let Err(error) = self.parts.files.save_memory(&memory) {
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

/// The clock the election reads; tokio's, so tests can pause it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Reads keepalived's state changes, in order.
async fn read_notify(
    notify: Arc<dyn KeepalivedNotify>,
    states: mpsc::UnboundedSender<VrrpState>,
    stop: CancellationToken,
) {
    let mut lines = match notify.open() {
        Ok(lines) => lines,
        Err(error) => {
            warn!(%error, "cannot hear keepalived");
            return;
        }
    };
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
                    warn!(%error, "cannot hear keepalived");
                    return;
                }
            }
        }
    }
}

/// Checks the apiserver every period; after `threshold` equal results in a
/// row that differ from the current state, writes the track file (at once)
/// and reports it.
async fn probe_apiserver(
    apiserver: Arc<dyn Apiserver>,
    files: Arc<dyn RunDir>,
    gate: Gate,
    results: mpsc::UnboundedSender<(bool, String)>,
    stop: CancellationToken,
) {
    let mut ready: Option<bool> = None;
    let mut streak = 0u32;
    let mut interval = tokio::time::interval(gate.period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        let (ok, message) = match apiserver.check().await {
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
        if ready.is_some() && streak < gate.threshold {
            continue;
        }
        streak = 0;
        if let Err(error) = files.write_track(ok) {
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

#[cfg(test)]
mod tests;
