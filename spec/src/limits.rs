//! Upper bounds that keep a spec (and the work it causes) small.

/// Largest document [`SpecDocument::parse`](crate::SpecDocument::parse) accepts.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Longest string anywhere in a spec.
pub const MAX_STRING_BYTES: usize = 4096;
/// Longest cluster token.
pub const MAX_TOKEN_BYTES: usize = 512;
/// WireGuard peers.
pub const MAX_PEERS: usize = 4096;
/// Allowed IPs of one peer.
pub const MAX_ALLOWED_IPS: usize = 64;
/// Addresses of the node's WireGuard interface.
pub const MAX_ADDRESSES: usize = 16;
/// Extra names and addresses of the server certificates.
pub const MAX_TLS_SANS: usize = 64;
/// Servers taking part in the VIP election.
pub const MAX_VIP_SERVERS: usize = 64;
/// Storage volumes.
pub const MAX_VOLUMES: usize = 64;
/// Mount options of one volume.
pub const MAX_MOUNT_OPTIONS: usize = 64;
/// Persisted paths.
pub const MAX_PERSIST_PATHS: usize = 64;
/// Extra arguments of one service.
pub const MAX_EXTRA_ARGS: usize = 128;
/// MetalLB address pools.
pub const MAX_METALLB_ADDRESSES: usize = 64;
/// Errors one validation reports; the rest are counted, not listed.
pub const MAX_ERRORS: usize = 1000;
