//! The local listener: a unix socket, mode 0600, serving NodeAgent, the
//! standard health service and server reflection.

use std::{
    fs, io,
    net::SocketAddr,
    os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use tfagent_proto::v1::node_agent_server::NodeAgentServer;
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig, server::TcpIncoming};
use tracing::{info, warn};

use super::{
    auth::{AuthLayer, LocalAccess},
    service::NodeAgentService,
};
use crate::control::Controller;
use tfagent_spec::limits;

/// The remote API: TCP with mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteApi {
    pub address: SocketAddr,
    /// The node's certificate (PEM), naming the addresses clients dial.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA that signs client certificates; its clients' roles are in
    /// their certificates.
    pub client_ca: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("socket {path}: {source}")]
    Socket { path: PathBuf, source: io::Error },
    #[error("socket {path}: another tfagent is already serving there")]
    InUse { path: PathBuf },
    #[error("socket {path}: exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("TLS listener on {address}: {source}")]
    Tcp {
        address: SocketAddr,
        source: io::Error,
    },
    #[error("TLS: {path}: {message}")]
    Tls { path: PathBuf, message: String },
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A bound socket that removes its file when dropped.
#[derive(Debug)]
pub struct BoundSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Binds the local socket: creates its directory, replaces a stale socket
/// left by a dead agent (but never a live one, nor a non-socket file), and
/// restricts the socket to its owner (0600), or to its owner and the
/// reader group (0660) when there is one.
pub async fn bind_unix(path: &Path, reader_gid: Option<u32>) -> Result<BoundSocket, ServeError> {
    let err = |source| ServeError::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(err)?;
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(ServeError::NotASocket {
                path: path.to_owned(),
            });
        }
        Ok(_) => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(ServeError::InUse {
                    path: path.to_owned(),
                });
            }
            fs::remove_file(path).map_err(err)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    // Until this chmod others could connect, but the uid check still stops them.
    let mode = match reader_gid {
        Some(gid) => {
            nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
                .map_err(|e| err(io::Error::from(e)))?;
            0o660
        }
        None => 0o600,
    };
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(err)?;
    Ok(BoundSocket {
        listener: Some(listener),
        path: path.to_owned(),
    })
}

/// The API's TLS listener: bound, with the node's identity and the CA that
/// signs clients loaded (so bad files fail the start, naming the file).
#[derive(Debug)]
pub struct TlsListener {
    listener: TcpListener,
    config: ServerTlsConfig,
    /// When the node's certificate expires.
    pub not_after: SystemTime,
    /// When the client CA's certificate expires.
    pub client_ca_not_after: SystemTime,
}

/// Warn this long before a certificate expires.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

fn read_file(path: &Path) -> Result<Vec<u8>, ServeError> {
    fs::read(path).map_err(|source| ServeError::Tls {
        path: path.to_owned(),
        message: source.to_string(),
    })
}

/// The earliest expiry of the certificates in a PEM file.
fn expiry(path: &Path) -> Result<SystemTime, ServeError> {
    let tls_error = |message: String| ServeError::Tls {
        path: path.to_owned(),
        message,
    };
    let certs = tfagent_pki::read_pem_certificates(path).map_err(|e| tls_error(e.to_string()))?;
    let mut earliest: Option<SystemTime> = None;
    for der in &certs {
        let expiry = tfagent_pki::not_after(der).map_err(|e| tls_error(e.to_string()))?;
        earliest = Some(earliest.map_or(expiry, |e| e.min(expiry)));
    }
    earliest.ok_or_else(|| tls_error("holds no certificate".into()))
}

/// Warns when a certificate has expired or will soon.
pub fn warn_if_expiring(what: &str, path: &Path, not_after: SystemTime) {
    match not_after.duration_since(SystemTime::now()) {
        Err(_) => warn!(certificate = %path.display(), "the {what} certificate has expired"),
        Ok(left) if left < EXPIRY_WARNING => warn!(
            certificate = %path.display(),
            days_left = left.as_secs() / 86_400,
            "the {what} certificate expires soon"
        ),
        Ok(_) => {}
    }
}

/// Binds the TCP listener of the remote API, with mutual TLS.
pub async fn bind_tls(files: &RemoteApi) -> Result<TlsListener, ServeError> {
    let address = files.address;
    let cert = read_file(&files.cert)?;
    let key = read_file(&files.key)?;
    let client_ca = read_file(&files.client_ca)?;
    let not_after = expiry(&files.cert)?;
    let client_ca_not_after = expiry(&files.client_ca)?;
    warn_if_expiring("node", &files.cert, not_after);
    warn_if_expiring("client CA", &files.client_ca, client_ca_not_after);
    let config = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .client_ca_root(Certificate::from_pem(client_ca))
        .timeout(HANDSHAKE_TIMEOUT);
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Tcp { address, source })?;
    Ok(TlsListener {
        listener,
        config,
        not_after,
        client_ca_not_after,
    })
}

impl TlsListener {
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// How long a client may take over the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent RPCs one connection may have in flight; more wait.
const CONCURRENCY_PER_CONNECTION: usize = 32;
/// Concurrent HTTP/2 streams per connection (open event and log streams
/// included); more are refused by the transport.
const MAX_STREAMS_PER_CONNECTION: u32 = 64;
/// A unary RPC (or the start of a stream) that takes longer ends with
/// CANCELLED; streams then run on their own.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest request accepted: a spec at its limit, with room for the
/// wire encoding.
pub const MAX_REQUEST_BYTES: usize = 2 * limits::MAX_DOCUMENT_BYTES;

/// The server settings both listeners share: resource bounds and the
/// authorization layer in front of every service.
fn server() -> Server {
    Server::builder()
        .concurrency_limit_per_connection(CONCURRENCY_PER_CONNECTION)
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .timeout(REQUEST_TIMEOUT)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
}

/// Serves the API on the unix socket and, when given, the TLS listener,
/// until `shutdown` is cancelled; then ends open event streams and drains
/// the RPCs in flight.
pub async fn serve(
    mut socket: BoundSocket,
    tls: Option<TlsListener>,
    controller: Arc<Controller>,
    local: LocalAccess,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<NodeAgentServer<NodeAgentService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tfagent_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let node_agent = NodeAgentServer::new(NodeAgentService::new(controller, shutdown.clone()))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let auth = AuthLayer::new(local);

    info!(socket = %socket.path.display(), "serving the tfagent API");
    // `socket` stays alive to the end of this call so its file is removed
    // when serving ends, however it ends.
    let listener = socket.listener.take().ok_or_else(|| ServeError::Socket {
        path: socket.path.clone(),
        source: io::Error::other("already served"),
    })?;
    let local_server = server()
        .layer(auth.clone())
        .add_service(health_service.clone())
        .add_service(reflection.clone())
        .add_service(node_agent.clone())
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown.cancelled());
    let Some(tls) = tls else {
        local_server.await?;
        return Ok(());
    };
    if let Ok(address) = tls.local_addr() {
        info!(%address, "serving the tfagent API with mutual TLS");
    }
    let remote_server = server()
        .tls_config(tls.config)?
        .layer(auth)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(node_agent)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(tls.listener).with_nodelay(Some(true)),
            shutdown.cancelled(),
        );
    tokio::try_join!(local_server, remote_server)?;
    Ok(())
}
