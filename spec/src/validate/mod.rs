//! [`SpecDocument::validate`](crate::SpecDocument::validate): every rule,
//! every error at once, each with its field path in the document's terms.
//!
//! Each section's module adds its checks to the [`checker`]; [`node`] runs
//! them in order and assembles the typed spec.

mod addons;
mod checker;
mod cluster;
mod context;
mod errors;
pub mod host_paths;
mod node;
mod services;
mod storage;
mod vip;
mod wireguard;

pub use context::{AddonHost, ServiceDirs, ValidationContext};
pub use errors::{FieldError, ValidationErrors};
