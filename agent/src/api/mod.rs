//! The gRPC API (`tfagent.v1.NodeAgent`, health, reflection) over the local
//! unix socket. The only module that knows tonic and the generated proto
//! types; everything here is a thin shell over [`crate::control`].

mod auth;
pub mod client;
pub mod convert;
mod error;
mod server;
mod service;
mod view;

pub use auth::PeerUidAuth;
pub use client::{ClientError, channel_unix, connect_unix};
pub use error::bad_request_fields;
pub use server::{BoundSocket, ServeError, bind_unix, serve};
pub use tfagent_proto::v1 as proto;

#[cfg(test)]
mod tests;
