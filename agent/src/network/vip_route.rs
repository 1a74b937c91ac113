//! Moves the VIP at once when the vip engine says where it is: VIP/32 on
//! this node's interface or in one peer's allowed IPs. Every later pass
//! plans with it (see [`with_vip`]), so a resync never undoes a move.

use std::{collections::BTreeSet, net::IpAddr};

use async_trait::async_trait;
use ipnet::IpNet;

use super::{
    plan::{VipOverlay, wanted_routes, with_vip},
    ports::{DeviceUpdate, NetHostError, PeerUpdate},
    state::NetworkStep,
};
use crate::vip::{Placement, RouteError, VipRouter};
use tfagent_spec::Wireguard;

impl NetworkStep {
    /// The device and link changes that take `before` to `after` where
    /// only the VIP moved: peers whose allowed IPs differ (the one losing
    /// it first), addresses and routes.
    pub(super) async fn reroute_vip(
        &self,
        before: &Wireguard,
        after: &Wireguard,
    ) -> Result<(), NetHostError> {
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
            self.host.wg.configure(interface, update).await?;
        }
        let links = &self.host.links;
        let old_addresses: BTreeSet<IpNet> = before.addresses.iter().copied().collect();
        let new_addresses: BTreeSet<IpNet> = after.addresses.iter().copied().collect();
        for gone in old_addresses.difference(&new_addresses) {
            links.remove_address(interface, *gone).await?;
        }
        for added in new_addresses.difference(&old_addresses) {
            links.add_address(interface, *added).await?;
        }
        let old_routes = wanted_routes(before);
        let new_routes = wanted_routes(after);
        for gone in old_routes.difference(&new_routes) {
            links.remove_route(interface, *gone).await?;
        }
        for added in new_routes.difference(&old_routes) {
            links.add_route(interface, *added).await?;
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
        self.reroute_vip(&before, &after)
            .await
            .map_err(|error| RouteError {
                vip,
                placement,
                source: Box::new(error),
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
