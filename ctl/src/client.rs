//! A NodeAgent client over the local unix socket, or over TCP with mutual
//! TLS to a remote agent, for tfagentctl and tests.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tfagent_proto::v1::node_agent_client::NodeAgentClient;
use tokio::net::UnixStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tower::service_fn;

/// Here for the agent's API tests; defined beside `CtlError`, which shows
/// each field of a refused spec on a line of its own.
pub use crate::error::bad_request_fields;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach tfagent at {path}: {reason}")]
    Connect { path: PathBuf, reason: String },
    #[error("cannot reach tfagent at {endpoint}: {reason}")]
    ConnectTcp { endpoint: String, reason: String },
    #[error("{path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("endpoint {endpoint:?}: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
}

/// The client's side of mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// The client certificate (it carries the caller's role).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signed the agent's certificate.
    pub ca: PathBuf,
}

/// The largest reply the clients accept.
const MAX_REPLY_BYTES: usize = 16 << 20;

/// Connects to a remote agent (`HOST:PORT`) with mutual TLS. The agent's
/// certificate must name HOST.
pub async fn connect_tls(
    endpoint: &str,
    files: &ClientTlsFiles,
) -> Result<NodeAgentClient<Channel>, ClientError> {
    let channel = channel_tls(endpoint, files).await?;
    Ok(NodeAgentClient::new(channel).max_decoding_message_size(MAX_REPLY_BYTES))
}

/// A mutual-TLS channel to a remote agent, for any of the services it
/// serves.
pub async fn channel_tls(endpoint: &str, files: &ClientTlsFiles) -> Result<Channel, ClientError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| ClientError::ReadFile {
            path: path.to_owned(),
            source,
        })
    };
    let bad = |reason: &str| ClientError::BadEndpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let (host, port) = endpoint
        .rsplit_once(':')
        .ok_or_else(|| bad("expected HOST:PORT"))?;
    port.parse::<u16>()
        .map_err(|_| bad("the port is not a number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&files.ca)?))
        .identity(Identity::from_pem(read(&files.cert)?, read(&files.key)?))
        .domain_name(host);
    Endpoint::from_shared(format!("https://{endpoint}"))
        .map_err(|e| bad(&e.to_string()))?
        .tls_config(tls)
        .map_err(|e| bad(&innermost_cause(&e)))?
        .connect()
        .await
        .map_err(|error| ClientError::ConnectTcp {
            endpoint: endpoint.to_owned(),
            reason: innermost_cause(&error),
        })
}

/// Connects to the agent's unix socket.
pub async fn connect_unix(path: &Path) -> Result<NodeAgentClient<Channel>, ClientError> {
    Ok(NodeAgentClient::new(channel_unix(path).await?).max_decoding_message_size(MAX_REPLY_BYTES))
}

/// A channel to the agent's unix socket, for any of the services it serves.
pub async fn channel_unix(path: &Path) -> Result<Channel, ClientError> {
    let socket = path.to_owned();
    // The URI is required by the API but unused: the connector dials the socket.
    Endpoint::from_static("http://tfagent.local")
        .connect_with_connector(service_fn(move |_| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|error| ClientError::Connect {
            path: path.to_owned(),
            reason: innermost_cause(&error),
        })
}

/// tonic's transport error says only "transport error"; the useful part
/// (e.g. "Permission denied") is at the bottom of the chain.
fn innermost_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
