//! The local listener: a unix socket, mode 0600, serving NodeAgent, the
//! standard health service and server reflection.

use std::{
    fs, io,
    os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
};

use tfagent_proto::v1::node_agent_server::NodeAgentServer;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{service::InterceptorLayer, transport::Server};
use tracing::info;

use super::{PeerUidAuth, service::NodeAgentService};
use crate::control::Controller;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("socket {path}: {source}")]
    Socket { path: PathBuf, source: io::Error },
    #[error("socket {path}: another tfagent is already serving there")]
    InUse { path: PathBuf },
    #[error("socket {path}: exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
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
/// restricts the socket to its owner.
pub async fn bind_unix(path: &Path) -> Result<BoundSocket, ServeError> {
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
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(BoundSocket {
        listener: Some(listener),
        path: path.to_owned(),
    })
}

/// Serves the API on `socket` until `shutdown` is cancelled, then ends open
/// event streams and drains the RPCs in flight.
pub async fn serve(
    mut socket: BoundSocket,
    controller: Arc<Controller>,
    allowed_uids: &[u32],
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

    info!(socket = %socket.path.display(), "serving the tfagent API");
    // `socket` stays alive to the end of this call so its file is removed
    // when serving ends, however it ends.
    let listener = socket.listener.take().ok_or_else(|| ServeError::Socket {
        path: socket.path.clone(),
        source: io::Error::other("already served"),
    })?;
    Server::builder()
        .layer(InterceptorLayer::new(PeerUidAuth::new(allowed_uids)))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(NodeAgentServer::new(NodeAgentService::new(
            controller,
            shutdown.clone(),
        )))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown.cancelled())
        .await?;
    Ok(())
}
