//! What the agent asks of the host it runs on, read-only: its name and
//! capabilities (for `GetInfo` and validation).

use std::collections::BTreeSet;

use super::{addon_facts::AddonHostFacts, probe::HostCapabilities};

/// Read-only facts about the host, for `GetInfo` and validation.
pub trait HostInfo: Send + Sync + std::fmt::Debug + 'static {
    fn hostname(&self) -> String;
    fn capabilities(&self) -> HostCapabilities;
    /// What the add-ons need of the node; `filesystems` as `capabilities`
    /// found them.
    fn addon_facts(&self, filesystems: &BTreeSet<String>) -> AddonHostFacts;
}
