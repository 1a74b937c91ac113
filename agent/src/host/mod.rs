//! Everything that touches the host goes through the traits here, so domain
//! logic is unit-tested with fakes and the Linux implementations are tested
//! as root.

pub mod probe;

pub use probe::{BtrfsPool, CgroupMode, HostCapabilities};

/// Read-only facts about the host, for `GetInfo` and validation.
pub trait HostInfo: Send + Sync + std::fmt::Debug + 'static {
    fn hostname(&self) -> String;
    fn capabilities(&self) -> HostCapabilities;
}

/// The running Linux host.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxHost;

impl HostInfo for LinuxHost {
    fn hostname(&self) -> String {
        nix::unistd::gethostname()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn capabilities(&self) -> HostCapabilities {
        probe::probe(&probe::ProbeRoot::host())
    }
}
