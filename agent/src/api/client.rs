//! A NodeAgent client over the local unix socket, for tfagentctl and tests.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tfagent_proto::v1::node_agent_client::NodeAgentClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};
use tower::service_fn;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach tfagent at {path}: {reason}")]
    Connect { path: PathBuf, reason: String },
}

/// Connects to the agent's unix socket.
pub async fn connect_unix(path: &Path) -> Result<NodeAgentClient<Channel>, ClientError> {
    Ok(NodeAgentClient::new(channel_unix(path).await?).max_decoding_message_size(16 << 20))
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
