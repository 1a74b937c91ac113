//! The host the agent runs on, read-only: its name, what it can do
//! (kernel WireGuard, wireguard-go, cgroup mode, filesystems, btrfs pools)
//! and what the add-ons need of it. The parsers take the text of the files
//! they read, so they are tested on fixtures.

pub mod addon_facts;
#[cfg(test)]
mod fake;
mod linux;
pub mod ports;
pub mod probe;

pub use addon_facts::AddonHostFacts;
#[cfg(test)]
pub use fake::FakeHost;
pub use linux::LinuxHost;
pub use ports::HostInfo;
pub use probe::{BtrfsPool, CgroupMode, HostCapabilities};
