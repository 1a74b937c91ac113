//! Where a supervisor keeps its files, and the cgroups it uses.

use std::path::PathBuf;

use super::cgroup::CgroupLayout;

/// Where the supervisor keeps its files, and the cgroups it uses.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Adoption records; must outlive the agent but need not outlive a boot.
    pub record_dir: PathBuf,
    /// `NAME.log` per service.
    pub log_dir: PathBuf,
    pub cgroups: CgroupLayout,
    /// The cgroup directory the services' cgroups are made in.
    pub cgroup_parent: String,
}
