//! The gRPC API (`tfagent.v1.NodeAgent`, health, reflection) over the local
//! unix socket and, when configured, TCP with mutual TLS. The only module
//! that knows tonic and the generated proto types; everything here is a thin
//! shell over [`crate::control`].

mod auth;
mod error;
mod server;
mod service;
mod view;

pub use auth::{AuthLayer, Caller, LocalAccess, required_role};
pub use server::{
    BoundSocket, MAX_REQUEST_BYTES, RemoteApi, ServeError, TlsListener, bind_tls, bind_unix, serve,
    warn_if_expiring,
};

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
