//! Who may call what. Every RPC of every service on every listener passes
//! here first:
//! - on the unix socket, the peer's uid and groups come from the kernel
//!   (SO_PEERCRED at accept): an allowed uid is an admin, a member of the
//!   optional reader group a reader, anyone else is refused;
//! - on the TCP listener, the TLS handshake has already verified the
//!   client's certificate against the client CA; its role is read from it.
//!
//! The role's rights come from one static table, [`required_role`].

use std::{
    fs,
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use tonic::{
    Status,
    body::Body,
    codegen::http,
    transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo},
};
use tower::{Layer, Service};
use tracing::debug;

use tfagent_pki::{AccessRole, client_identity};

/// The least role that may call each method; a method not listed is for
/// admins only.
const RIGHTS: &[(&str, AccessRole)] = &[
    ("/tfagent.v1.NodeAgent/GetInfo", AccessRole::Reader),
    ("/tfagent.v1.NodeAgent/GetSpec", AccessRole::Reader),
    ("/tfagent.v1.NodeAgent/GetStatus", AccessRole::Reader),
    ("/tfagent.v1.NodeAgent/WatchEvents", AccessRole::Reader),
    ("/tfagent.v1.NodeAgent/Logs", AccessRole::Reader),
    ("/tfagent.v1.NodeAgent/ListDisks", AccessRole::Reader),
    (
        "/tfagent.v1.NodeAgent/WireguardAccessConfig",
        AccessRole::Reader,
    ),
    ("/tfagent.v1.NodeAgent/Apply", AccessRole::Operator),
    ("/tfagent.v1.NodeAgent/Confirm", AccessRole::Operator),
    ("/tfagent.v1.NodeAgent/RestartService", AccessRole::Operator),
    // The cluster's admin credentials.
    ("/tfagent.v1.NodeAgent/Kubeconfig", AccessRole::Admin),
    // Takes the node's cluster setup down.
    ("/tfagent.v1.NodeAgent/Reset", AccessRole::Admin),
    ("/grpc.health.v1.Health/Check", AccessRole::Reader),
    ("/grpc.health.v1.Health/Watch", AccessRole::Reader),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        AccessRole::Reader,
    ),
];

/// The least role that may call `path` (`/package.Service/Method`).
pub fn required_role(path: &str) -> AccessRole {
    RIGHTS
        .iter()
        .find(|(method, _)| *method == path)
        .map_or(AccessRole::Admin, |&(_, role)| role)
}

/// Who is calling, as the handlers may log it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `uid 0`, or the client certificate's common name.
    pub name: String,
    pub role: AccessRole,
}

/// Who may use the local socket.
#[derive(Debug, Clone)]
pub struct LocalAccess {
    /// Admins.
    pub uids: Vec<u32>,
    /// Members (primary or supplementary) are readers.
    pub reader_gid: Option<u32>,
}

#[derive(Debug)]
struct Policy {
    local: LocalAccess,
}

impl Policy {
    fn caller(&self, extensions: &http::Extensions) -> Result<Caller, Status> {
        if let Some(info) = extensions.get::<UdsConnectInfo>() {
            let Some(cred) = info.peer_cred else {
                return Err(Status::permission_denied(
                    "the caller's credentials are unknown",
                ));
            };
            let uid = cred.uid();
            if self.local.uids.contains(&uid) {
                return Ok(Caller {
                    name: format!("uid {uid}"),
                    role: AccessRole::Admin,
                });
            }
            if let Some(gid) = self.local.reader_gid
                && (cred.gid() == gid || cred.pid().is_some_and(|pid| in_group(pid, gid)))
            {
                return Ok(Caller {
                    name: format!("uid {uid}"),
                    role: AccessRole::Reader,
                });
            }
            return Err(Status::permission_denied(format!(
                "uid {uid} may not use the tfagent socket"
            )));
        }
        if let Some(info) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
            let certs = info.peer_certs().unwrap_or_default();
            let Some(leaf) = certs.first() else {
                return Err(Status::unauthenticated("no client certificate"));
            };
            return match client_identity(leaf) {
                Ok(identity) => Ok(Caller {
                    name: identity.name,
                    role: identity.role,
                }),
                Err(error) => Err(Status::permission_denied(format!(
                    "client certificate: {error}"
                ))),
            };
        }
        Err(Status::permission_denied("unknown listener"))
    }

    fn authorize(&self, path: &str, extensions: &http::Extensions) -> Result<Caller, Status> {
        let caller = self.caller(extensions)?;
        let required = required_role(path);
        if caller.role < required {
            debug!(caller = %caller.name, role = %caller.role, path, "refused");
            return Err(Status::permission_denied(format!(
                "{} ({}) may not call {path}: it needs the {required} role",
                caller.name, caller.role
            )));
        }
        Ok(caller)
    }
}

/// Whether process `pid` has `gid` among its supplementary groups.
fn in_group(pid: i32, gid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|status| supplementary_groups(&status).contains(&gid))
}

/// The `Groups:` line of a /proc/PID/status text.
fn supplementary_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .map(|groups| {
            groups
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The tower layer that authorizes each request before it reaches a
/// service.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    policy: Arc<Policy>,
}

impl AuthLayer {
    pub fn new(local: LocalAccess) -> Self {
        Self {
            policy: Arc::new(Policy { local }),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authorized<S>;

    fn layer(&self, inner: S) -> Authorized<S> {
        Authorized {
            inner,
            policy: Arc::clone(&self.policy),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Authorized<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S, B> Service<http::Request<B>> for Authorized<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self
            .policy
            .authorize(request.uri().path(), request.extensions())
        {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Box::pin(self.inner.call(request))
            }
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_has_its_rights_and_unknown_methods_are_for_admins() {
        assert_eq!(
            required_role("/tfagent.v1.NodeAgent/GetStatus"),
            AccessRole::Reader
        );
        assert_eq!(
            required_role("/tfagent.v1.NodeAgent/Apply"),
            AccessRole::Operator
        );
        assert_eq!(
            required_role("/tfagent.v1.NodeAgent/Reset"),
            AccessRole::Admin
        );
        assert_eq!(
            required_role("/tfagent.v1.NodeAgent/NoSuchMethod"),
            AccessRole::Admin
        );
        assert_eq!(
            required_role("/grpc.health.v1.Health/Check"),
            AccessRole::Reader
        );
    }

    #[test]
    fn the_rights_table_names_each_method_once() {
        let mut methods: Vec<&str> = RIGHTS.iter().map(|(m, _)| *m).collect();
        methods.sort_unstable();
        let count = methods.len();
        methods.dedup();
        assert_eq!(methods.len(), count);
    }

    /// The NodeAgent methods the proto defines.
    fn node_agent_methods() -> Vec<String> {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(tfagent_proto::FILE_DESCRIPTOR_SET)
            .unwrap_or_default();
        set.file
            .iter()
            .filter(|f| f.package() == "tfagent.v1")
            .flat_map(|f| f.service.iter())
            .filter(|s| s.name() == "NodeAgent")
            .flat_map(|s| s.method.iter())
            .map(|m| format!("/tfagent.v1.NodeAgent/{}", m.name()))
            .collect()
    }

    #[test]
    fn the_rights_table_matches_the_api() {
        let methods = node_agent_methods();
        assert!(methods.len() >= 10, "{methods:?}");
        // Every method has a row (a new one must be placed deliberately;
        // one without a row is for admins only)...
        for method in &methods {
            assert!(
                RIGHTS.iter().any(|(m, _)| m == method),
                "{method} has no row in RIGHTS"
            );
        }
        // ...and every NodeAgent row names a method that exists.
        for (method, _) in RIGHTS {
            if method.starts_with("/tfagent.v1.NodeAgent/") {
                assert!(methods.iter().any(|m| m == method), "{method}");
            }
        }
    }

    #[test]
    fn supplementary_groups_are_read_from_proc_status() {
        let status =
            "Name:\tbash\nUid:\t1000\t1000\t1000\t1000\nGroups:\t4 24 27 1000 \nNgid:\t0\n";
        assert_eq!(supplementary_groups(status), vec![4, 24, 27, 1000]);
        assert!(supplementary_groups("Name:\tx\n").is_empty());
        assert!(supplementary_groups("Groups:\n").is_empty());
    }
}
