//! The zOS twin: VMs that look to tfagent like zOS nodes (Debian's kernel
//! with zOS's module set, a tmpfs root, cgroup v1, zinit, a storaged
//! stand-in's btrfs pool, kernel WireGuard), with tfagent installed only
//! from its flist. `scripts/twin-image.sh` builds the boot files; this
//! crate boots the VMs on an underlay inside a network namespace it owns
//! and drives them. Everything it starts dies with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod channel;
pub mod cluster;
mod images;
mod vm;

pub use channel::Reply;
pub use cluster::{MESH_PREFIX, Twin, VIP, failover_after_power_loss, mesh_ip};
pub use images::{Images, cannot_run};
pub use vm::{Accel, Vm, VmConfig};
