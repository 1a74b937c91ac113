//! tfagent: the node agent that turns a dedicated ThreeFold zOS node into a
//! k3s node. The daemon `tfagent` is a thin edge over this library.
//!
//! Layers, each using only those before it: `state` and `host`; `step` (the
//! contract every step implements) and `events`; the steps (`storage`,
//! `network`, `services`, `vip`, `addons`); `reconcile`; `control`; `servers`
//! (gRPC, metrics); `config` and `app` (wiring only).

pub mod addons;
pub mod app;
pub mod config;
pub mod control;
pub mod events;
pub mod host;
pub mod network;
pub mod reconcile;
pub mod servers;
pub mod services;
pub mod state;
pub mod step;
pub mod storage;
pub mod vip;

#[cfg(test)]
pub(crate) mod test_support;
