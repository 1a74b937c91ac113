//! The VIP's place in the mesh, as the vip engine sets it: VIP/32 on this
//! node's interface (it holds the VIP) or in one peer's allowed IPs (that
//! server holds it). The engine moves it at once; every later pass plans
//! with it, so a resync never undoes a move.

use std::{collections::BTreeSet, net::IpAddr};

use async_trait::async_trait;
use ipnet::IpNet;

use super::{DeviceUpdate, NetworkStep, PeerUpdate, plan::wanted_routes};
use crate::vip::{Placement, RouteError, VipRouter};
use tfagent_spec::Wireguard;

/// Where the VIP is, as the network step plans it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipOverlay {
    pub vip: IpAddr,
    pub placement: Placement,
}

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

/// `wireguard` as it must be with the VIP placed as `overlay` says.
pub fn with_vip(wireguard: &Wireguard, overlay: Option<VipOverlay>) -> Wireguard {
    let mut effective = wireguard.clone();
    let Some(overlay) = overlay else {
        return effective;
    };
    let vip = host_net(overlay.vip);
    match overlay.placement {
        Placement::Local => {
            if !effective.addresses.contains(&vip) {
                effective.addresses.push(vip);
            }
        }
        Placement::Peer(key) => {
            if let Some(peer) = effective.peers.iter_mut().find(|p| p.public_key == key)
                && !peer.allowed_ips.contains(&vip)
            {
                peer.allowed_ips.push(vip);
            }
        }
        Placement::Nowhere => {}
    }
    effective
}

impl NetworkStep {
    /// The device and link changes that take `before` to `after` where
    /// only the VIP moved: peers whose allowed IPs differ (the one losing
    /// it first), addresses and routes.
    pub(super) async fn move_vip(
        &self,
        before: &Wireguard,
        after: &Wireguard,
    ) -> Result<(), String> {
        let interface = &after.interface;
        let mut losing = Vec::new();
        let mut gaining = Vec::new();
        for (old, new) in before.peers.iter().zip(&after.peers) {
            let old_ips: BTreeSet<IpNet> = old.allowed_ips.iter().copied().collect();
            let new_ips: BTreeSet<IpNet> = new.allowed_ips.iter().copied().collect();
            if old_ips == new_ips {
                continue;
            }
            let update = PeerUpdate::Set {
                key: new.public_key,
                update_only: true,
                endpoint: None,
                persistent_keepalive: None,
                allowed_ips: Some(new_ips.iter().copied().collect()),
            };
            if new_ips.len() < old_ips.len() {
                losing.push(update);
            } else {
                gaining.push(update);
            }
        }
        let peers: Vec<PeerUpdate> = losing.into_iter().chain(gaining).collect();
        if !peers.is_empty() {
            let update = DeviceUpdate {
                peers,
                ..DeviceUpdate::default()
            };
            self.host
                .wg
                .configure(interface, update)
                .await
                .map_err(|e| e.to_string())?;
        }
        let links = &self.host.links;
        let old_addresses: BTreeSet<IpNet> = before.addresses.iter().copied().collect();
        let new_addresses: BTreeSet<IpNet> = after.addresses.iter().copied().collect();
        for gone in old_addresses.difference(&new_addresses) {
            links
                .remove_address(interface, *gone)
                .await
                .map_err(|e| e.to_string())?;
        }
        for added in new_addresses.difference(&old_addresses) {
            links
                .add_address(interface, *added)
                .await
                .map_err(|e| e.to_string())?;
        }
        let old_routes = wanted_routes(before);
        let new_routes = wanted_routes(after);
        for gone in old_routes.difference(&new_routes) {
            links
                .remove_route(interface, *gone)
                .await
                .map_err(|e| e.to_string())?;
        }
        for added in new_routes.difference(&old_routes) {
            links
                .add_route(interface, *added)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[async_trait]
impl VipRouter for NetworkStep {
    async fn place_vip(
        &self,
        wireguard: &Wireguard,
        vip: IpAddr,
        placement: Placement,
    ) -> Result<(), RouteError> {
        let _pass = self.apply_lock.lock().await;
        let overlay = VipOverlay { vip, placement };
        let old = self.vip_overlay().replace(overlay);
        // Drop a stale overlay of another VIP before comparing.
        let old = old.filter(|o| o.vip == vip);
        let before = with_vip(wireguard, old);
        let after = with_vip(wireguard, Some(overlay));
        // What the device holds is no longer what the last pass wrote.
        *self.written() = None;
        self.move_vip(&before, &after)
            .await
            .map_err(|message| RouteError {
                vip,
                placement,
                source: message.into(),
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use super::*;
    use crate::{
        network::{Backend, fake::FakeNet},
        step::{Step, StepOutcome},
    };
    use tfagent_spec::{
        KeyPair,
        fixtures::{example_spec, wireguard},
    };

    #[tokio::test]
    async fn the_vip_moves_between_peers_and_passes_keep_it_there() {
        let fake = FakeNet::default();
        let step = NetworkStep::new(
            Backend::Userspace,
            Arc::new(KeyPair::generate()),
            fake.host(),
        );
        let mut spec = example_spec("agent");
        spec.network.wireguard = wireguard(3);
        step.converge(&spec).await.unwrap();
        fake.take_calls();
        let vip: IpAddr = "10.100.0.250".parse().unwrap();
        let wg = spec.network.wireguard.clone();
        let (first, second) = (wg.peers[0].public_key, wg.peers[1].public_key);
        step.place_vip(&wg, vip, Placement::Peer(first))
            .await
            .unwrap();
        assert_eq!(fake.take_calls(), ["configure 1 peer(s)"]);
        let device = fake.state().device.clone().unwrap();
        assert!(device.peers[&first].allowed_ips.contains(&IpNet::from(vip)));
        // A resync plans with the VIP where it is: nothing to undo.
        assert_eq!(step.converge(&spec).await.unwrap(), StepOutcome::UpToDate);
        fake.take_calls();
        step.place_vip(&wg, vip, Placement::Peer(second))
            .await
            .unwrap();
        assert_eq!(fake.take_calls(), ["configure 2 peer(s)"]);
        let device = fake.state().device.clone().unwrap();
        assert!(!device.peers[&first].allowed_ips.contains(&IpNet::from(vip)));
        assert!(
            device.peers[&second]
                .allowed_ips
                .contains(&IpNet::from(vip))
        );
        // Held here: the address goes on the interface, off the peer.
        step.place_vip(&wg, vip, Placement::Local).await.unwrap();
        assert_eq!(
            fake.take_calls(),
            ["configure 1 peer(s)", "add address 10.100.0.250/32"]
        );
        assert_eq!(step.converge(&spec).await.unwrap(), StepOutcome::UpToDate);
        fake.take_calls();
        step.place_vip(&wg, vip, Placement::Nowhere).await.unwrap();
        assert_eq!(fake.take_calls(), ["remove address 10.100.0.250/32"]);
    }
}
