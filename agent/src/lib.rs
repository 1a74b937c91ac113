//! tfagent: the node agent that turns a dedicated ThreeFold zOS node into a
//! k3s node. The binaries `tfagent` (daemon) and `tfagentctl` (CLI) are thin
//! edges over this library.

pub mod addons;
pub mod api;
pub mod app;
pub mod config;
pub mod control;
pub mod ctl;
pub mod events;
pub mod host;
pub mod metrics;
pub mod net;
pub mod pki;
pub mod reconcile;
pub mod spec;
pub mod state;
pub mod storage;
pub mod supervise;
// ---- network ----
pub mod trial;
pub mod vip;

#[cfg(test)]
pub(crate) mod test_support;
