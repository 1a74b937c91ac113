//! Read models: what `info`, `status`, `kubeconfig` and `wg access-config`
//! show, built from the stored spec, the step status board and the
//! collaborators.

use std::{net::SocketAddr, time::SystemTime};

use tfagent_spec::{Role, WgKey, wgquick::HubInfo};
use tfagent_supervisor::ServiceStatus;

use super::{
    commit::Committer,
    error::ControlError,
    ports::Collaborators,
    trial::{TrialStatus, Trials},
};
use crate::{
    addons::prereq::{self, AddonPrerequisites},
    host::{AddonHostFacts, HostCapabilities},
    network::{Backend, InterfaceStatus},
    reconcile::{StatusBoard, StepStatus},
    state::RefusedSpec,
    vip::VipStatus,
};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The k3s apiserver's port, where the kubeconfig points.
const APISERVER_PORT: u16 = 6443;

#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub version: &'static str,
    pub hostname: String,
    pub generation: u64,
    pub capabilities: HostCapabilities,
    pub started_at: SystemTime,
    pub remote_api: Option<RemoteApiInfo>,
    /// What each add-on needs and whether the node has it.
    pub addons: Vec<AddonPrerequisites>,
    pub wireguard_public_key: WgKey,
    pub wireguard_backend: Backend,
}

/// The remote API's listener and certificates, as `info` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteApiInfo {
    pub address: SocketAddr,
    pub cert_not_after: SystemTime,
    pub client_ca_not_after: SystemTime,
}

#[derive(Debug, Clone, Default)]
pub struct NodeStatus {
    pub node_name: Option<String>,
    pub role: Option<Role>,
    /// Set while the spec found on disk at startup stays refused.
    pub refused_spec: Option<RefusedSpec>,
    pub desired_generation: u64,
    pub converged_generation: u64,
    pub steps: Vec<StepStatus>,
    /// Supervised services, in start order.
    pub services: Vec<ServiceStatus>,
    /// The live interface; only [`full_status`] reads it.
    pub wireguard: Option<InterfaceStatus>,
    pub trial: Option<TrialStatus>,
    /// What became of the last trial that ended, one line.
    pub last_trial: Option<String>,
    /// `None` when the spec has no VIP election.
    pub vip: Option<VipStatus>,
    /// What tfagent renders differently for this host (e.g. the kubelet
    /// allowed on cgroup v1), one line each.
    pub host_adjustments: Vec<String>,
}

/// One look at the host.
pub struct HostProbe {
    pub hostname: String,
    pub capabilities: HostCapabilities,
    pub addons: AddonHostFacts,
}

/// The host's name and capabilities. The probe reads /proc and /sys:
/// blocking I/O, kept off the async threads.
pub async fn probe_host(parts: &Collaborators) -> Result<HostProbe, ControlError> {
    let host = parts.host.clone();
    tokio::task::spawn_blocking(move || {
        let capabilities = host.capabilities();
        HostProbe {
            hostname: host.hostname(),
            addons: host.addon_facts(&capabilities.filesystems),
            capabilities,
        }
    })
    .await
    .map_err(ControlError::internal("probing the host"))
}

/// Status without the live interface (cheap; no host I/O).
pub fn status(
    committer: &Committer,
    trials: &Trials,
    board: &StatusBoard,
    parts: &Collaborators,
) -> NodeStatus {
    let current = committer.current();
    NodeStatus {
        node_name: current.as_ref().map(|d| d.spec.node_name.to_string()),
        role: current.as_ref().map(|d| d.spec.role),
        refused_spec: committer.refused(),
        desired_generation: current.as_ref().map_or(0, |d| d.generation),
        converged_generation: board.converged_generation(),
        steps: board.snapshot(),
        services: parts.services.status(),
        wireguard: None,
        trial: trials.status(),
        last_trial: trials.last(),
        vip: Some(parts.vip.status()).filter(|s| s.vip.is_some()),
        host_adjustments: parts.services.host_adjustments(),
    }
}

/// [`status`] with the live state of the WireGuard interface.
pub async fn full_status(
    committer: &Committer,
    trials: &Trials,
    board: &StatusBoard,
    parts: &Collaborators,
) -> NodeStatus {
    let mut status = status(committer, trials, board, parts);
    let current = committer.current();
    status.wireguard = parts
        .mesh
        .status(current.as_ref().map(|d| &d.spec.network.wireguard))
        .await;
    status
}

pub async fn info(
    committer: &Committer,
    parts: &Collaborators,
    started_at: SystemTime,
    remote_api: Option<RemoteApiInfo>,
) -> Result<NodeInfo, ControlError> {
    let probe = probe_host(parts).await?;
    Ok(NodeInfo {
        version: VERSION,
        hostname: probe.hostname,
        generation: committer.current().map_or(0, |d| d.generation),
        addons: prereq::assess(&probe.addons),
        capabilities: probe.capabilities,
        started_at,
        remote_api,
        wireguard_public_key: parts.mesh.public_key(),
        wireguard_backend: parts.mesh.backend(),
    })
}

/// A server's admin kubeconfig, pointing at the VIP (or, without one, at
/// this node's WireGuard address). It carries the cluster's admin
/// credentials: only admins may ask for it.
pub fn kubeconfig(committer: &Committer, parts: &Collaborators) -> Result<String, ControlError> {
    let current = committer
        .current()
        .ok_or_else(|| ControlError::Precondition("no spec has been applied yet".into()))?;
    let spec = &current.spec;
    if !spec.role.is_server() {
        return Err(ControlError::Precondition(format!(
            "{} is a k3s agent: only servers have an admin kubeconfig",
            spec.node_name
        )));
    }
    let address = spec
        .cluster
        .vip
        .or_else(|| spec.network.wireguard.addresses.first().map(|a| a.addr()))
        .ok_or_else(|| ControlError::Precondition("the spec has no address".into()))?;
    let server = format!("https://{}", SocketAddr::new(address, APISERVER_PORT));
    Ok(parts.services.admin_kubeconfig(&server)?)
}

/// What a user's wg-quick config needs from this node.
pub fn access_hub(
    committer: &Committer,
    parts: &Collaborators,
    name: &str,
) -> Result<HubInfo, ControlError> {
    let current = committer.current().ok_or_else(|| {
        ControlError::Precondition("no spec is stored: the mesh is not configured".into())
    })?;
    Ok(tfagent_spec::wgquick::hub_info(
        &current.spec.network.wireguard,
        current.spec.cluster.vip,
        parts.mesh.public_key(),
        name,
    ))
}
