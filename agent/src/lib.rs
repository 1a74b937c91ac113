//! tfagent: the node agent that turns a dedicated ThreeFold zOS node into a
//! k3s node. The daemon `tfagent` is a thin edge over this library.

pub mod addons;
pub mod api;
pub mod app;
pub mod config;
pub mod control;
pub mod events;
pub mod host;
pub mod metrics;
pub mod net;
pub mod reconcile;
pub mod services;
pub mod state;
pub mod storage;
pub mod trial;
pub mod vip;

#[cfg(test)]
pub(crate) mod test_support;
