//! Who may use the local socket: the peer's uid, taken from the kernel's
//! SO_PEERCRED at accept, must be in the allow-list (root by default). The
//! check runs for every RPC of every service on the socket.

use std::sync::Arc;

use tonic::{Request, Status, service::Interceptor, transport::server::UdsConnectInfo};

#[derive(Debug, Clone)]
pub struct PeerUidAuth {
    allowed: Arc<[u32]>,
}

impl PeerUidAuth {
    pub fn new(allowed: &[u32]) -> Self {
        Self {
            allowed: allowed.into(),
        }
    }
}

impl Interceptor for PeerUidAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let uid = request
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|info| info.peer_cred)
            .map(|cred| cred.uid());
        match uid {
            Some(uid) if self.allowed.contains(&uid) => Ok(request),
            Some(uid) => Err(Status::permission_denied(format!(
                "uid {uid} may not use the tfagent socket"
            ))),
            None => Err(Status::permission_denied(
                "the caller's credentials are unknown",
            )),
        }
    }
}
