//! A recording fake of the network host, and spec builders, for unit tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use ipnet::IpNet;

use super::ports::{
    DeviceState, DeviceUpdate, LinkOps, LinkState, NetHost, NetHostCause, NetHostError, PeerState,
    PeerUpdate, UserspaceWg, WgOps,
};
use tfagent_spec::IfName;

/// What the fake host holds, and every call made to it.
#[derive(Debug, Default)]
pub struct FakeState {
    pub link: Option<LinkState>,
    pub device: Option<DeviceState>,
    pub calls: Vec<String>,
    /// Calls whose name starts with this fail.
    pub fail: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct FakeNet(pub Arc<Mutex<FakeState>>);

impl FakeNet {
    pub fn host(&self) -> NetHost {
        NetHost {
            wg: Arc::new(self.clone()),
            links: Arc::new(self.clone()),
            userspace: Arc::new(self.clone()),
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.0.lock().unwrap()
    }

    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.state().calls)
    }

    fn call(
        &self,
        interface: &IfName,
        call: String,
    ) -> Result<std::sync::MutexGuard<'_, FakeState>, NetHostError> {
        let mut state = self.state();
        state.calls.push(call.clone());
        if state
            .fail
            .as_ref()
            .is_some_and(|f| call.starts_with(f.as_str()))
        {
            return Err(NetHostError::host(
                interface,
                "fake",
                io::Error::other("injected failure"),
            ));
        }
        Ok(state)
    }

    fn link_mut<'a>(
        state: &'a mut FakeState,
        interface: &IfName,
    ) -> Result<&'a mut LinkState, NetHostError> {
        state
            .link
            .as_mut()
            .ok_or_else(|| NetHostError::new(interface, "fake", NetHostCause::NoSuchInterface))
    }
}

#[async_trait]
impl WgOps for FakeNet {
    async fn device(&self, _interface: &IfName) -> Result<Option<DeviceState>, NetHostError> {
        let mut state = self.state();
        state.calls.push("read device".into());
        Ok(state.device.clone())
    }

    async fn configure(
        &self,
        interface: &IfName,
        update: DeviceUpdate,
    ) -> Result<(), NetHostError> {
        let mut state = self.call(
            interface,
            format!("configure {} peer(s)", update.peers.len()),
        )?;
        let device = state.device.as_mut().ok_or_else(|| {
            NetHostError::host(interface, "configure", io::Error::other("no device"))
        })?;
        if let Some(key) = &update.private_key {
            device.public_key = Some(key.public());
        }
        if let Some(port) = update.listen_port {
            device.listen_port = port;
        }
        for peer in update.peers {
            match peer {
                PeerUpdate::Remove { key } => {
                    device.peers.remove(&key);
                }
                PeerUpdate::Set {
                    key,
                    update_only,
                    endpoint,
                    persistent_keepalive,
                    allowed_ips,
                } => {
                    if update_only && !device.peers.contains_key(&key) {
                        continue;
                    }
                    let entry = device.peers.entry(key).or_insert_with(PeerState::default);
                    if endpoint.is_some() {
                        entry.endpoint = endpoint;
                    }
                    if let Some(k) = persistent_keepalive {
                        entry.persistent_keepalive = k;
                    }
                    if let Some(ips) = allowed_ips {
                        entry.allowed_ips = ips.into_iter().collect();
                    }
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl LinkOps for FakeNet {
    async fn link(&self, _interface: &IfName) -> Result<Option<LinkState>, NetHostError> {
        Ok(self.state().link.clone())
    }

    async fn index(&self, _interface: &IfName) -> Result<Option<u32>, NetHostError> {
        Ok(self.state().link.as_ref().map(|l| l.index))
    }

    async fn create_wireguard(&self, interface: &IfName) -> Result<(), NetHostError> {
        let mut state = self.call(interface, "create link".into())?;
        state.link = Some(LinkState::default());
        state.device = Some(DeviceState::default());
        Ok(())
    }

    async fn set_mtu(&self, interface: &IfName, mtu: u32) -> Result<(), NetHostError> {
        let mut state = self.call(interface, format!("mtu {mtu}"))?;
        Self::link_mut(&mut state, interface)?.mtu = mtu;
        Ok(())
    }

    async fn set_up(&self, interface: &IfName) -> Result<(), NetHostError> {
        let mut state = self.call(interface, "up".into())?;
        Self::link_mut(&mut state, interface)?.up = true;
        Ok(())
    }

    async fn add_address(&self, interface: &IfName, address: IpNet) -> Result<(), NetHostError> {
        let mut state = self.call(interface, format!("add address {address}"))?;
        Self::link_mut(&mut state, interface)?
            .addresses
            .insert(address);
        Ok(())
    }

    async fn remove_address(&self, interface: &IfName, address: IpNet) -> Result<(), NetHostError> {
        let mut state = self.call(interface, format!("remove address {address}"))?;
        Self::link_mut(&mut state, interface)?
            .addresses
            .remove(&address);
        Ok(())
    }

    async fn add_route(&self, interface: &IfName, destination: IpNet) -> Result<(), NetHostError> {
        let mut state = self.call(interface, format!("add route {destination}"))?;
        Self::link_mut(&mut state, interface)?
            .routes
            .insert(destination);
        Ok(())
    }

    async fn remove_route(
        &self,
        interface: &IfName,
        destination: IpNet,
    ) -> Result<(), NetHostError> {
        let mut state = self.call(interface, format!("remove route {destination}"))?;
        Self::link_mut(&mut state, interface)?
            .routes
            .remove(&destination);
        Ok(())
    }
}

#[async_trait]
impl UserspaceWg for FakeNet {
    async fn ensure_running(&self, interface: &IfName) -> Result<(), NetHostError> {
        let mut state = self.call(interface, "start wireguard-go".into())?;
        if state.device.is_none() {
            state.link = Some(LinkState::default());
            state.device = Some(DeviceState::default());
        }
        Ok(())
    }

    async fn stop(&self, interface: &IfName) -> Result<(), NetHostError> {
        let mut state = self.call(interface, "stop wireguard-go".into())?;
        state.link = None;
        state.device = None;
        Ok(())
    }
}
