//! The entry point: the node's identity, then each section in turn, then
//! the typed spec if nothing was refused.

use super::checker::Checker;
use super::context::ValidationContext;
use super::errors::ValidationErrors;
use crate::document::SpecDocument;
use crate::model::{Network, NodeSpec, Storage};
use crate::types::{NodeName, Role};

impl SpecDocument {
    /// Checks every rule and returns the typed spec, defaults filled in, or
    /// every fault found.
    pub fn validate(&self, ctx: &ValidationContext) -> Result<NodeSpec, ValidationErrors> {
        let mut c = Checker::new(ctx);
        let node_name = c.parse::<NodeName>("node_name", &self.node_name);
        let role = c.parse::<Role>("role", &self.role);
        let cluster = c.cluster(&self.cluster, role);
        let wireguard = c.wireguard(&self.network.wireguard, node_name.as_ref());
        let vip = c.vip(
            &self.network.vip,
            &self.cluster,
            node_name.as_ref(),
            role,
            &wireguard,
        );
        c.cluster_vs_mesh(&cluster, &wireguard);
        let volumes = c.storage(&self.storage);
        let services = c.services(&self.services);
        let addons = c.addons(&self.addons, &cluster, wireguard.interface.as_ref());
        let persist = c.persist(&self.storage.persist, volumes.as_deref(), &self.addons);

        let spec = (|| {
            Some(NodeSpec {
                node_name: node_name?,
                role: role?,
                cluster: cluster.build()?,
                network: Network {
                    wireguard: wireguard.build()?,
                    vip: vip?,
                },
                storage: Storage {
                    volumes: volumes?,
                    persist: persist?,
                },
                services: services?,
                addons: addons?,
            })
        })();
        match spec {
            Some(spec) if c.errors.is_empty() => Ok(spec),
            _ => Err(c.finish()),
        }
    }
}
