//! The network step's value: its backend, key and host, and what it keeps
//! between passes. Defined apart from mod.rs, which implements the step on
//! it, so that vip_route.rs can move the VIP on it without importing from
//! the folder's root.

use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard},
};

use super::{
    backend::Backend,
    plan::{Observed, VipOverlay},
    ports::{DeviceState, LinkState, NetHost},
};
use tfagent_spec::{KeyPair, WgKey, Wireguard};

/// What the last pass left on the link and device, so that a new spec is
/// planned against it without re-reading every peer (a 1-peer change
/// touches one peer). It holds while the link keeps its index; resync passes
/// of an unchanged spec always read the host again and heal drift.
#[derive(Debug, Clone)]
pub(super) struct Written {
    pub(super) wireguard: Wireguard,
    pub(super) link: LinkState,
    pub(super) device: DeviceState,
}

/// The network capability.
pub struct NetworkStep {
    pub(super) backend: Backend,
    pub(super) key: Arc<KeyPair>,
    pub(super) host: NetHost,
    pub(super) written: Mutex<Option<Arc<Written>>>,
    /// The last observation, which apply turns into what it wrote.
    pub(super) observed: Mutex<Option<(Wireguard, Arc<Observed>)>>,
    /// Where the vip engine put the VIP; every pass plans with it.
    pub(super) vip: Mutex<Option<VipOverlay>>,
    /// Held while a pass or a VIP move changes the device, so one never
    /// interleaves with the other.
    pub(super) apply_lock: tokio::sync::Mutex<()>,
}

impl fmt::Debug for NetworkStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkStep")
            .field("backend", &self.backend)
            .field("public_key", &self.key.public())
            .finish_non_exhaustive()
    }
}

impl NetworkStep {
    pub fn new(backend: Backend, key: Arc<KeyPair>, host: NetHost) -> Self {
        Self {
            backend,
            key,
            host,
            written: Mutex::new(None),
            observed: Mutex::new(None),
            vip: Mutex::new(None),
            apply_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn public_key(&self) -> WgKey {
        self.key.public()
    }

    pub(super) fn vip_overlay(&self) -> MutexGuard<'_, Option<VipOverlay>> {
        self.vip.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn written(&self) -> MutexGuard<'_, Option<Arc<Written>>> {
        self.written.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn last_observed(&self) -> MutexGuard<'_, Option<(Wireguard, Arc<Observed>)>> {
        self.observed.lock().unwrap_or_else(|p| p.into_inner())
    }
}
