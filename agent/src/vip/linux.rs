//! The ports on a real host: a UDP socket bound to the WireGuard interface,
//! keepalived's notify FIFO, the apiserver probe, and the run directory.

use std::{
    ffi::OsString,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    net::{UdpSocket, unix::pipe},
};

use super::{
    engine::{EngineParts, Gate},
    keepalived::Files,
    plan::VipSettings,
    ports::{
        AnnounceNet, Apiserver, Datagrams, FileError, KeepalivedNotify, Memory, NotifyError,
        NotifyLines, ReadinessError, RunDir, TransportError, VipRouter,
    },
};
use crate::services::{RenderedFile, linux::write_file};
use tfagent_spec::IfName;
use tfagent_supervisor::probe::{self, Probe};

/// The engine's parts on this host; `files` is shared with the step.
pub fn engine_parts(
    settings: &VipSettings,
    router: Arc<dyn VipRouter>,
    files: Arc<dyn RunDir>,
    keepalived_pid: Arc<dyn Fn() -> Option<u32> + Send + Sync>,
) -> EngineParts {
    let readiness = &settings.readiness;
    EngineParts {
        router,
        net: Arc::new(LinuxNet),
        notify: Arc::new(Fifo::new(Files::new(&settings.dir).fifo())),
        apiserver: Arc::new(ProbeApiserver {
            probe: readiness.probe.clone(),
            timeout: readiness.timeout,
        }),
        files,
        gate: Gate {
            period: readiness.period,
            threshold: readiness.threshold,
        },
        keepalived_pid,
    }
}

/// UDP sockets bound to an interface with `SO_BINDTODEVICE`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxNet;

impl AnnounceNet for LinuxNet {
    fn interface_index(&self, interface: &IfName) -> Option<u32> {
        nix::net::if_::if_nametoindex(interface.as_str()).ok()
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
        let failed = |source: io::Error| TransportError::Bind {
            interface: interface.clone(),
            port,
            source,
        };
        let any = match address {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let socket = std::net::UdpSocket::bind(SocketAddr::new(any, port)).map_err(failed)?;
        nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::BindToDevice,
            &OsString::from(interface.as_str()),
        )
        .map_err(|errno| failed(io::Error::from(errno)))?;
        socket.set_nonblocking(true).map_err(failed)?;
        let socket = UdpSocket::from_std(socket).map_err(failed)?;
        Ok(Box::new(BoundSocket {
            socket,
            interface: interface.clone(),
            index,
        }))
    }
}

#[derive(Debug)]
struct BoundSocket {
    socket: UdpSocket,
    interface: IfName,
    index: u32,
}

#[async_trait]
impl Datagrams for BoundSocket {
    fn interface_index(&self) -> u32 {
        self.index
    }

    async fn send_to(&self, bytes: &[u8], to: SocketAddr) -> Result<(), TransportError> {
        self.socket
            .send_to(bytes, to)
            .await
            .map(drop)
            .map_err(|source| TransportError::Send { to, source })
    }

    async fn recv_from(&self, buffer: &mut [u8]) -> Result<(usize, SocketAddr), TransportError> {
        self.socket
            .recv_from(buffer)
            .await
            .map_err(|source| TransportError::Receive {
                interface: self.interface.clone(),
                source,
            })
    }
}

/// keepalived's notify FIFO, opened read-write: it never reads as ended
/// while keepalived restarts, and what keepalived wrote while no agent read
/// it is still there.
#[derive(Debug, Clone)]
pub struct Fifo {
    path: PathBuf,
}

impl Fifo {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }
}

impl KeepalivedNotify for Fifo {
    fn open(&self) -> Result<Box<dyn NotifyLines>, NotifyError> {
        make_fifo(&self.path).map_err(|source| NotifyError::Create {
            path: self.path.clone(),
            source,
        })?;
        let receiver = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(&self.path)
            .map_err(|source| NotifyError::Open {
                path: self.path.clone(),
                source,
            })?;
        Ok(Box::new(FifoLines {
            path: self.path.clone(),
            lines: BufReader::new(receiver).lines(),
        }))
    }
}

#[derive(Debug)]
struct FifoLines {
    path: PathBuf,
    lines: Lines<BufReader<pipe::Receiver>>,
}

#[async_trait]
impl NotifyLines for FifoLines {
    async fn next_line(&mut self) -> Result<Option<String>, NotifyError> {
        self.lines
            .next_line()
            .await
            .map_err(|source| NotifyError::Read {
                path: self.path.clone(),
                source,
            })
    }
}

/// The supervisor's probe of the local apiserver.
#[derive(Debug, Clone)]
pub struct ProbeApiserver {
    pub probe: Probe,
    pub timeout: Duration,
}

#[async_trait]
impl Apiserver for ProbeApiserver {
    async fn check(&self) -> Result<String, ReadinessError> {
        Ok(probe::check(&self.probe, self.timeout).await?)
    }
}

/// The run directory's files.
#[derive(Debug, Clone)]
pub struct LinuxRunDir {
    files: Files,
}

impl LinuxRunDir {
    pub fn new(dir: &Path) -> Self {
        Self {
            files: Files::new(dir),
        }
    }
}

impl RunDir for LinuxRunDir {
    fn read_config(&self) -> Result<Option<String>, FileError> {
        let path = self.files.config();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(FileError::Read { path, source }),
        }
    }

    fn write_config(&self, config: &str) -> Result<(), FileError> {
        let file = RenderedFile {
            path: self.files.config(),
            contents: config.as_bytes().to_vec(),
            mode: 0o600,
            secret: false,
        };
        write_file(&file).map_err(|e| FileError::Config {
            source: Box::new(e),
        })
    }

    fn track_exists(&self) -> bool {
        self.files.track().exists()
    }

    fn write_track(&self, ready: bool) -> Result<(), FileError> {
        let path = self.files.track();
        // Weight 0 turns a non-zero value into keepalived's fault state.
        std::fs::write(&path, if ready { "0\n" } else { "1\n" })
            .map_err(|source| FileError::Write { path, source })
    }

    fn make_fifo(&self) -> Result<(), FileError> {
        let path = self.files.fifo();
        make_fifo(&path).map_err(|source| FileError::Fifo { path, source })
    }

    fn load_memory(&self) -> Result<Option<Memory>, FileError> {
        let path = self.files.ledger();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(FileError::Read { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| FileError::Decode { path, source })
    }

    fn save_memory(&self, memory: &Memory) -> Result<(), FileError> {
        let path = self.files.ledger();
        let bytes = serde_json::to_vec(memory).map_err(|source| FileError::Decode {
            path: path.clone(),
            source,
        })?;
        let temp = path.with_extension("tmp");
        let write = || -> io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&temp, bytes)?;
            std::fs::rename(&temp, &path)
        };
        write().map_err(|source| FileError::Write {
            path: path.clone(),
            source,
        })
    }

    fn remove_all(&self) -> Result<Vec<PathBuf>, FileError> {
        let files = &self.files;
        let mut removed = Vec::new();
        for path in [files.config(), files.track(), files.fifo(), files.ledger()] {
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(FileError::Remove { path, source }),
            }
        }
        Ok(removed)
    }
}

/// Creates the FIFO (0600) unless it exists.
fn make_fifo(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(errno) => Err(io::Error::from(errno)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::vip::election::Ledger;

    #[test]
    fn the_run_dir_keeps_the_memory_and_removes_what_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let run = LinuxRunDir::new(&dir.path().join("vip"));
        assert_eq!(run.read_config().unwrap(), None);
        assert_eq!(run.load_memory().unwrap(), None);
        run.write_config("vrrp\n").unwrap();
        run.write_track(false).unwrap();
        run.make_fifo().unwrap();
        // An existing FIFO is kept.
        run.make_fifo().unwrap();
        let memory = Memory {
            vip: "10.100.0.250".parse().unwrap(),
            ledger: Ledger {
                epoch: 4,
                holder: Some("10.100.0.2".parse().unwrap()),
            },
            vrrp: crate::vip::VrrpState::Backup,
            keepalived_pid: Some(42),
        };
        run.save_memory(&memory).unwrap();
        assert_eq!(run.load_memory().unwrap(), Some(memory));
        assert_eq!(run.read_config().unwrap().as_deref(), Some("vrrp\n"));
        let files = Files::new(&dir.path().join("vip"));
        assert_eq!(std::fs::read_to_string(files.track()).unwrap(), "1\n");
        run.write_track(true).unwrap();
        assert_eq!(std::fs::read_to_string(files.track()).unwrap(), "0\n");
        assert!(run.track_exists());
        assert_eq!(run.remove_all().unwrap().len(), 4);
        assert!(run.remove_all().unwrap().is_empty());
        assert!(!run.track_exists());
    }

    #[test]
    fn a_corrupt_memory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let run = LinuxRunDir::new(dir.path());
        std::fs::write(Files::new(dir.path()).ledger(), b"{").unwrap();
        assert!(matches!(run.load_memory(), Err(FileError::Decode { .. })));
    }

    #[tokio::test]
    async fn the_fifo_hands_over_lines_in_order() {
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = Fifo::new(dir.path().join("notify.fifo"));
        let mut lines = fifo.open().unwrap();
        let mut writer = pipe::OpenOptions::new()
            .open_sender(dir.path().join("notify.fifo"))
            .unwrap();
        writer
            .write_all(
                b"INSTANCE \"tfagent_vip\" BACKUP 150\nINSTANCE \"tfagent_vip\" MASTER 150\n",
            )
            .await
            .unwrap();
        assert_eq!(
            lines.next_line().await.unwrap().unwrap(),
            "INSTANCE \"tfagent_vip\" BACKUP 150"
        );
        assert_eq!(
            lines.next_line().await.unwrap().unwrap(),
            "INSTANCE \"tfagent_vip\" MASTER 150"
        );
    }
}
