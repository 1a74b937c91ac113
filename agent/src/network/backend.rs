//! Which WireGuard implementation carries the interface: the kernel module
//! or wireguard-go, as the boot config and the host allow.

use std::fmt;

use serde::Deserialize;

use crate::host::HostCapabilities;

/// The WireGuard implementation that carries the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The kernel module (as on zOS).
    Kernel,
    /// `wireguard-go`, a userspace process per interface.
    Userspace,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Kernel => "kernel",
            Backend::Userspace => "userspace",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The boot config's `wireguard_backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// The kernel module when the host has it, else wireguard-go.
    #[default]
    Auto,
    Kernel,
    Userspace,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackendError {
    #[error(
        "the boot config forces the kernel WireGuard backend, but the host has no wireguard module"
    )]
    NoKernelModule,
    #[error(
        "the boot config forces the userspace WireGuard backend, but wireguard-go is not on PATH"
    )]
    NoWireguardGo,
    #[error("no WireGuard backend: the host has neither the wireguard module nor wireguard-go")]
    Neither,
}

/// Picks the backend for `choice` on a host with `caps`.
pub fn choose_backend(
    choice: BackendChoice,
    caps: &HostCapabilities,
) -> Result<Backend, BackendError> {
    let userspace = caps.wireguard_go.is_some();
    match choice {
        BackendChoice::Kernel if caps.kernel_wireguard => Ok(Backend::Kernel),
        BackendChoice::Kernel => Err(BackendError::NoKernelModule),
        BackendChoice::Userspace if userspace => Ok(Backend::Userspace),
        BackendChoice::Userspace => Err(BackendError::NoWireguardGo),
        BackendChoice::Auto if caps.kernel_wireguard => Ok(Backend::Kernel),
        BackendChoice::Auto if userspace => Ok(Backend::Userspace),
        BackendChoice::Auto => Err(BackendError::Neither),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_follows_the_host_and_the_boot_config() {
        let mut caps = crate::host::HostInfo::capabilities(&crate::test_support::FakeHost);
        caps.kernel_wireguard = false;
        caps.wireguard_go = None;
        assert_eq!(
            choose_backend(BackendChoice::Auto, &caps),
            Err(BackendError::Neither)
        );
        caps.wireguard_go = Some("/usr/bin/wireguard-go".into());
        assert_eq!(
            choose_backend(BackendChoice::Auto, &caps),
            Ok(Backend::Userspace)
        );
        assert_eq!(
            choose_backend(BackendChoice::Kernel, &caps),
            Err(BackendError::NoKernelModule)
        );
        caps.kernel_wireguard = true;
        assert_eq!(
            choose_backend(BackendChoice::Auto, &caps),
            Ok(Backend::Kernel)
        );
        assert_eq!(
            choose_backend(BackendChoice::Userspace, &caps),
            Ok(Backend::Userspace)
        );
        caps.wireguard_go = None;
        assert_eq!(
            choose_backend(BackendChoice::Userspace, &caps),
            Err(BackendError::NoWireguardGo)
        );
    }
}
