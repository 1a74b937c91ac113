//! Recording fakes of the VIP's ports: a mesh that carries datagrams
//! between engines (and records them), a scripted keepalived, a scripted
//! apiserver, an in-memory run directory and a recording router.
#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, VecDeque},
    io,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{
    engine::{EngineParts, Gate},
    keepalived,
    ports::{
        AnnounceNet, Apiserver, Datagrams, FileError, KeepalivedNotify, Memory, NotifyError,
        NotifyLines, Placement, ReadinessError, RouteError, RunDir, TransportError, VipRouter,
    },
};
use tfagent_spec::{IfName, Wireguard};
use tfagent_supervisor::probe::ProbeError;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// One datagram an engine sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
    /// When it was sent, on tokio's (pausable) clock.
    pub at: tokio::time::Instant,
}

type Inbox = mpsc::UnboundedSender<(Vec<u8>, SocketAddr)>;

#[derive(Debug)]
struct Bound {
    id: u64,
    port: u16,
    /// The interface index it was bound to, and the node's now.
    index: u32,
    interface: Arc<Mutex<Option<u32>>>,
    inbox: Inbox,
}

#[derive(Debug, Default)]
struct MeshState {
    /// The bound socket of each node, by the address it bound for.
    sockets: BTreeMap<IpAddr, Bound>,
    sent: Vec<Datagram>,
    next_id: u64,
}

/// A WireGuard mesh as the announcements see it: what a node sends reaches
/// the node of the destination address when it has a socket on that port,
/// bound to the interface it has now.
#[derive(Debug, Clone, Default)]
pub struct FakeMesh(Arc<Mutex<MeshState>>);

impl FakeMesh {
    /// Hands `bytes` to the node at `to` as if `from` had sent them;
    /// whether a socket took them.
    pub fn deliver(&self, from: SocketAddr, to: SocketAddr, bytes: &[u8]) -> bool {
        let state = lock(&self.0);
        let Some(bound) = state.sockets.get(&to.ip()) else {
            return false;
        };
        // A socket bound to a removed interface hears nothing more.
        if bound.port != to.port() || *lock(&bound.interface) != Some(bound.index) {
            return false;
        }
        bound.inbox.send((bytes.to_vec(), from)).is_ok()
    }

    /// Every datagram sent so far, in order.
    pub fn sent(&self) -> Vec<Datagram> {
        lock(&self.0).sent.clone()
    }

    pub fn take_sent(&self) -> Vec<Datagram> {
        std::mem::take(&mut lock(&self.0).sent)
    }

    /// Whether the node at `address` has a socket now.
    pub fn is_bound(&self, address: IpAddr) -> bool {
        lock(&self.0).sockets.contains_key(&address)
    }
}

/// One node's side of the mesh: its interface (index 1 at first) and the
/// socket it binds.
#[derive(Debug, Clone)]
pub struct FakeNet {
    mesh: FakeMesh,
    interface: Arc<Mutex<Option<u32>>>,
}

impl FakeNet {
    pub fn new(mesh: &FakeMesh) -> Self {
        Self {
            mesh: mesh.clone(),
            interface: Arc::new(Mutex::new(Some(1))),
        }
    }

    /// The interface went away and came back with a new index, as when
    /// wireguard-go restarts.
    pub fn recreate_interface(&self) {
        let mut index = lock(&self.interface);
        *index = Some(index.unwrap_or(0) + 1);
    }
}

impl AnnounceNet for FakeNet {
    fn interface_index(&self, _interface: &IfName) -> Option<u32> {
        *lock(&self.interface)
    }

    fn bind(
        &self,
        interface: &IfName,
        address: IpAddr,
        port: u16,
    ) -> Result<Box<dyn Datagrams>, TransportError> {
        let index = self
            .interface_index(interface)
            .ok_or_else(|| TransportError::NoInterface {
                interface: interface.clone(),
            })?;
        let mut state = lock(&self.mesh.0);
        // As the kernel: no second socket on a port while one is open.
        if state.sockets.get(&address).is_some_and(|b| b.port == port) {
            return Err(TransportError::Bind {
                interface: interface.clone(),
                port,
                source: io::ErrorKind::AddrInUse.into(),
            });
        }
        state.next_id += 1;
        let id = state.next_id;
        let (inbox, receiver) = mpsc::unbounded_channel();
        state.sockets.insert(
            address,
            Bound {
                id,
                port,
                index,
                interface: Arc::clone(&self.interface),
                inbox,
            },
        );
        Ok(Box::new(FakeSocket {
            mesh: self.mesh.clone(),
            id,
            local: SocketAddr::new(address, port),
            interface_name: interface.clone(),
            index,
            interface: Arc::clone(&self.interface),
            receiver: tokio::sync::Mutex::new(receiver),
        }))
    }
}

#[derive(Debug)]
struct FakeSocket {
    mesh: FakeMesh,
    id: u64,
    local: SocketAddr,
    interface_name: IfName,
    index: u32,
    interface: Arc<Mutex<Option<u32>>>,
    receiver: tokio::sync::Mutex<mpsc::UnboundedReceiver<(Vec<u8>, SocketAddr)>>,
}

impl Drop for FakeSocket {
    fn drop(&mut self) {
        let mut state = lock(&self.mesh.0);
        if state
            .sockets
            .get(&self.local.ip())
            .is_some_and(|b| b.id == self.id)
        {
            state.sockets.remove(&self.local.ip());
        }
    }
}

#[async_trait]
impl Datagrams for FakeSocket {
    fn interface_index(&self) -> u32 {
        self.index
    }

    async fn send_to(&self, bytes: &[u8], to: SocketAddr) -> Result<(), TransportError> {
        if *lock(&self.interface) != Some(self.index) {
            return Err(TransportError::Send {
                to,
                source: io::Error::from_raw_os_error(libc::ENODEV),
            });
        }
        lock(&self.mesh.0).sent.push(Datagram {
            from: self.local,
            to,
            bytes: bytes.to_vec(),
            at: tokio::time::Instant::now(),
        });
        self.mesh.deliver(self.local, to, bytes);
        Ok(())
    }

    async fn recv_from(&self, buffer: &mut [u8]) -> Result<(usize, SocketAddr), TransportError> {
        let mut receiver = self.receiver.lock().await;
        match receiver.recv().await {
            Some((bytes, from)) => {
                let len = bytes.len().min(buffer.len());
                buffer[..len].copy_from_slice(&bytes[..len]);
                Ok((len, from))
            }
            None => Err(TransportError::Receive {
                interface: self.interface_name.clone(),
                source: io::ErrorKind::BrokenPipe.into(),
            }),
        }
    }
}

/// keepalived as a script: each line the test writes is what keepalived
/// would write into the FIFO. Like the FIFO, lines wait for a reader.
#[derive(Debug)]
pub struct FakeNotify {
    writer: mpsc::UnboundedSender<String>,
    reader: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>>,
    pub opens: AtomicUsize,
}

impl Default for FakeNotify {
    fn default() -> Self {
        let (writer, reader) = mpsc::unbounded_channel();
        Self {
            writer,
            reader: Arc::new(tokio::sync::Mutex::new(reader)),
            opens: AtomicUsize::new(0),
        }
    }
}

impl FakeNotify {
    /// keepalived reports `state` (MASTER, BACKUP, FAULT, STOP).
    pub fn say(&self, state: &str) {
        self.line(&format!(
            "INSTANCE \"{}\" {state} 150",
            keepalived::INSTANCE
        ));
    }

    pub fn line(&self, line: &str) {
        self.writer.send(line.to_owned()).unwrap();
    }
}

impl KeepalivedNotify for FakeNotify {
    fn open(&self) -> Result<Box<dyn NotifyLines>, NotifyError> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FakeLines(Arc::clone(&self.reader))))
    }
}

#[derive(Debug)]
struct FakeLines(Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>>);

#[async_trait]
impl NotifyLines for FakeLines {
    async fn next_line(&mut self) -> Result<Option<String>, NotifyError> {
        Ok(self.0.lock().await.recv().await)
    }
}

/// An apiserver whose readiness the test sets; counts the checks.
#[derive(Debug, Default)]
pub struct FakeApiserver {
    ready: AtomicBool,
    checks: AtomicUsize,
}

impl FakeApiserver {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn checks(&self) -> usize {
        self.checks.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Apiserver for FakeApiserver {
    async fn check(&self) -> Result<String, ReadinessError> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        if self.ready.load(Ordering::SeqCst) {
            Ok("ok".into())
        } else {
            Err(ProbeError::Check("not ready".into()).into())
        }
    }
}

/// The run directory in memory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunFiles {
    pub config: Option<String>,
    /// The track file: `Some(true)` takes part, `Some(false)` keeps out.
    pub track: Option<bool>,
    /// Every write of the track file, in order.
    pub track_writes: Vec<bool>,
    pub fifo: bool,
    pub memory: Option<Memory>,
}

#[derive(Debug, Default)]
pub struct FakeRunDir(Mutex<RunFiles>);

impl FakeRunDir {
    pub fn files(&self) -> RunFiles {
        lock(&self.0).clone()
    }

    pub fn set_memory(&self, memory: Memory) {
        lock(&self.0).memory = Some(memory);
    }
}

impl RunDir for FakeRunDir {
    fn read_config(&self) -> Result<Option<String>, FileError> {
        Ok(lock(&self.0).config.clone())
    }

    fn write_config(&self, config: &str) -> Result<(), FileError> {
        lock(&self.0).config = Some(config.to_owned());
        Ok(())
    }

    fn track_exists(&self) -> bool {
        lock(&self.0).track.is_some()
    }

    fn write_track(&self, ready: bool) -> Result<(), FileError> {
        let mut files = lock(&self.0);
        files.track = Some(ready);
        files.track_writes.push(ready);
        Ok(())
    }

    fn make_fifo(&self) -> Result<(), FileError> {
        lock(&self.0).fifo = true;
        Ok(())
    }

    fn load_memory(&self) -> Result<Option<Memory>, FileError> {
        Ok(lock(&self.0).memory)
    }

    fn save_memory(&self, memory: &Memory) -> Result<(), FileError> {
        lock(&self.0).memory = Some(*memory);
        Ok(())
    }

    fn remove_all(&self) -> Result<Vec<PathBuf>, FileError> {
        let mut files = lock(&self.0);
        let mut removed = Vec::new();
        for (present, name) in [
            (files.config.is_some(), "keepalived.conf"),
            (files.track.is_some(), "apiserver-not-ready"),
            (files.fifo, "notify.fifo"),
            (files.memory.is_some(), "election.json"),
        ] {
            if present {
                removed.push(PathBuf::from(name));
            }
        }
        *files = RunFiles::default();
        Ok(removed)
    }
}

/// A router that records each placement; the next `fail` ones fail.
#[derive(Debug, Default)]
pub struct FakeRouter {
    pub calls: Mutex<Vec<(IpAddr, Placement)>>,
    pub fail: Mutex<VecDeque<String>>,
}

impl FakeRouter {
    pub fn placements(&self) -> Vec<Placement> {
        lock(&self.calls).iter().map(|(_, p)| *p).collect()
    }

    pub fn last(&self) -> Option<Placement> {
        lock(&self.calls).last().map(|(_, p)| *p)
    }

    /// The next placement fails with `message`.
    pub fn fail_next(&self, message: &str) {
        lock(&self.fail).push_back(message.to_owned());
    }
}

#[async_trait]
impl VipRouter for FakeRouter {
    async fn place_vip(
        &self,
        _wireguard: &Wireguard,
        vip: IpAddr,
        placement: Placement,
    ) -> Result<(), RouteError> {
        lock(&self.calls).push((vip, placement));
        match lock(&self.fail).pop_front() {
            Some(message) => Err(RouteError {
                vip,
                placement,
                source: message.into(),
            }),
            None => Ok(()),
        }
    }
}

/// One node's fakes.
#[derive(Debug, Clone)]
pub struct FakeParts {
    pub router: Arc<FakeRouter>,
    pub net: FakeNet,
    pub notify: Arc<FakeNotify>,
    pub apiserver: Arc<FakeApiserver>,
    pub files: Arc<FakeRunDir>,
    pub keepalived_pid: Arc<Mutex<Option<u32>>>,
}

/// The gate the fakes run with: checks every 250 ms, two in a row flip it.
pub const GATE: Gate = Gate {
    period: Duration::from_millis(250),
    threshold: 2,
};

impl FakeParts {
    /// A node on `mesh` whose apiserver is ready and whose keepalived runs
    /// as pid 100.
    pub fn new(mesh: &FakeMesh) -> Self {
        let apiserver = FakeApiserver::default();
        apiserver.set_ready(true);
        Self {
            router: Arc::default(),
            net: FakeNet::new(mesh),
            notify: Arc::default(),
            apiserver: Arc::new(apiserver),
            files: Arc::default(),
            keepalived_pid: Arc::new(Mutex::new(Some(100))),
        }
    }

    pub fn engine_parts(&self) -> EngineParts {
        let pid = Arc::clone(&self.keepalived_pid);
        EngineParts {
            router: self.router.clone(),
            net: Arc::new(self.net.clone()),
            notify: self.notify.clone(),
            apiserver: self.apiserver.clone(),
            files: self.files.clone(),
            gate: GATE,
            keepalived_pid: Arc::new(move || *lock(&pid)),
        }
    }
}
