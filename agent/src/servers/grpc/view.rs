//! Domain → proto for what the agent reports: info, status, plans, events.
//! (The spec's own conversion is `tfagent_spec::proto`.)

use std::time::SystemTime;

use prost_types::Timestamp;
use tfagent_proto::v1 as pb;

use tfagent_spec::{Role, wgquick::HubInfo};
use tfagent_supervisor::{ExitInfo, ServiceState, ServiceStatus};

use crate::{
    control::{ApplyOutcome, NodeInfo, NodeStatus},
    events::{Event, EventKind},
    host::{CgroupMode, HostCapabilities},
    network::InterfaceStatus,
    reconcile::StepStatus,
    step::{Condition, StepPlan},
    storage::{DiskInfo, VolumeStatus},
};

pub fn timestamp(time: SystemTime) -> Timestamp {
    Timestamp::from(time)
}

pub fn role(role: Role) -> pb::Role {
    match role {
        Role::ServerInit => pb::Role::ServerInit,
        Role::ServerJoin => pb::Role::ServerJoin,
        Role::Agent => pb::Role::Agent,
    }
}

pub fn info(info: NodeInfo) -> pb::NodeInfo {
    pb::NodeInfo {
        version: info.version.to_owned(),
        hostname: info.hostname,
        generation: info.generation,
        capabilities: Some(capabilities(info.capabilities)),
        started_at: Some(timestamp(info.started_at)),
        remote_api: info.remote_api.map(|remote| pb::RemoteApiInfo {
            address: remote.address.to_string(),
            cert_not_after: Some(timestamp(remote.cert_not_after)),
            client_ca_not_after: Some(timestamp(remote.client_ca_not_after)),
        }),
        addons: info
            .addons
            .into_iter()
            .map(|p| pb::AddonPrerequisites {
                addon: p.addon.to_owned(),
                has: p.has,
                lacks: p.lacks,
            })
            .collect(),
        wireguard_public_key: info.wireguard_public_key.to_string(),
        wireguard_backend: info.wireguard_backend.to_string(),
    }
}

fn capabilities(caps: HostCapabilities) -> pb::HostCapabilities {
    let cgroup_mode = match caps.cgroup_mode {
        CgroupMode::V1 => pb::CgroupMode::V1,
        CgroupMode::V2 => pb::CgroupMode::V2,
        CgroupMode::Hybrid => pb::CgroupMode::Hybrid,
        CgroupMode::None => pb::CgroupMode::Unspecified,
    };
    pb::HostCapabilities {
        kernel_release: caps.kernel_release,
        kernel_wireguard: caps.kernel_wireguard,
        wireguard_go: caps
            .wireguard_go
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        cgroup_mode: cgroup_mode.into(),
        filesystems: caps.filesystems.into_iter().collect(),
        btrfs_pools: caps
            .btrfs_pools
            .into_iter()
            .map(|pool| pb::BtrfsPool {
                mount_point: pool.mount_point.display().to_string(),
                device: pool.device,
            })
            .collect(),
    }
}

pub fn apply_outcome(outcome: ApplyOutcome) -> pb::ApplyResponse {
    pb::ApplyResponse {
        generation: outcome.generation,
        changed: outcome.changed,
        plan: outcome.plan.into_iter().map(step_plan).collect(),
    }
}

fn step_plan(plan: StepPlan) -> pb::StepPlan {
    pb::StepPlan {
        step: plan.step.to_string(),
        actions: plan.actions,
        error: plan.error.unwrap_or_default(),
    }
}

pub fn status(status: NodeStatus) -> pb::NodeStatus {
    pb::NodeStatus {
        node_name: status.node_name.unwrap_or_default(),
        role: status.role.map_or(pb::Role::Unspecified, role).into(),
        desired_generation: status.desired_generation,
        converged_generation: status.converged_generation,
        steps: status.steps.into_iter().map(step_status).collect(),
        refused_spec: status
            .refused_spec
            .map(|r| format!("{} (moved to {})", r.reason, r.moved_to.display()))
            .unwrap_or_default(),
        volumes: Vec::new(),
        services: status.services.into_iter().map(service_status).collect(),
        wireguard: status.wireguard.map(wireguard_status),
        trial: status.trial.map(|t| pb::TrialStatus {
            generation: t.generation,
            deadline: Some(timestamp(t.deadline)),
        }),
        last_trial: status.last_trial.unwrap_or_default(),
        vip: status.vip.map(vip_status),
        host_adjustments: status.host_adjustments,
    }
}

fn vip_status(status: crate::vip::VipStatus) -> pb::VipStatus {
    let election = status
        .election
        .unwrap_or_else(|| crate::vip::election::ElectionStatus {
            vrrp: crate::vip::VrrpState::Unknown,
            ledger: Default::default(),
            holder_name: None,
            transitions: 0,
            last_transition: None,
            last_reason: String::new(),
            last_failover: None,
        });
    pb::VipStatus {
        vip: status.vip.map(|v| v.to_string()).unwrap_or_default(),
        server: status.server,
        election_state: if status.server {
            election.vrrp.to_string()
        } else {
            String::new()
        },
        holder: election
            .holder_name
            .map(|n| n.to_string())
            .unwrap_or_default(),
        holder_address: election
            .ledger
            .holder
            .map(|a| a.to_string())
            .unwrap_or_default(),
        epoch: election.ledger.epoch,
        last_transition: election.last_transition.map(timestamp),
        last_transition_reason: election.last_reason,
        transitions: election.transitions,
        last_failover: election
            .last_failover
            .and_then(|d| prost_types::Duration::try_from(d).ok()),
        apiserver_ready: status.apiserver_ready,
        apiserver_message: status.apiserver_message,
        error: status.error.unwrap_or_default(),
    }
}

fn service_state(state: ServiceState) -> pb::ServiceState {
    match state {
        ServiceState::Waiting => pb::ServiceState::Waiting,
        ServiceState::Starting => pb::ServiceState::Starting,
        ServiceState::Ready => pb::ServiceState::Ready,
        ServiceState::Unready => pb::ServiceState::Unready,
        ServiceState::BackingOff => pb::ServiceState::BackingOff,
        ServiceState::CrashLooping => pb::ServiceState::CrashLooping,
        ServiceState::Stopping => pb::ServiceState::Stopping,
        ServiceState::Stopped => pb::ServiceState::Stopped,
        ServiceState::Failed => pb::ServiceState::Failed,
    }
}

fn service_status(service: ServiceStatus) -> pb::ServiceStatus {
    let (last_exit_code, last_exit_signal) = match service.last_exit {
        Some(ExitInfo::Code(code)) => (Some(code), None),
        Some(ExitInfo::Signal(signal)) => (None, Some(signal)),
        Some(ExitInfo::Unknown) | None => (None, None),
    };
    pb::ServiceStatus {
        name: service.name.to_string(),
        state: service_state(service.state).into(),
        pid: service.pid.unwrap_or_default(),
        started_at: service.started_at.map(timestamp),
        restarts: service.restarts,
        last_exit_code,
        last_exit_signal,
        ready: service.ready,
        probe_message: service.message,
        adopted: service.adopted,
        depends_on: service.depends_on.iter().map(ToString::to_string).collect(),
    }
}

fn wireguard_status(status: InterfaceStatus) -> pb::WireguardStatus {
    pb::WireguardStatus {
        interface: status.interface,
        backend: status.backend.to_string(),
        up: status.up,
        listen_port: status.listen_port.into(),
        public_key: status.public_key.to_string(),
        peers: status
            .peers
            .into_iter()
            .map(|p| pb::WireguardPeerStatus {
                name: p.name,
                public_key: p.public_key.to_string(),
                endpoint: p.endpoint.map(|e| e.to_string()).unwrap_or_default(),
                latest_handshake: p.last_handshake.map(timestamp),
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
                allowed_ips: p.allowed_ips.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        error: status.error.unwrap_or_default(),
    }
}

pub fn access_hub(name: &str, hub: HubInfo) -> pb::WireguardAccessConfigResponse {
    pb::WireguardAccessConfigResponse {
        public_key: hub.public_key.to_string(),
        listen_port: hub.listen_port.into(),
        mtu: hub.mtu,
        allowed_ips: hub.allowed_ips.iter().map(ToString::to_string).collect(),
        existing_peer: hub.existing_peer.map(|(key, allowed)| pb::WireguardPeer {
            name: name.to_owned(),
            public_key: key.to_string(),
            allowed_ips: allowed.iter().map(ToString::to_string).collect(),
            ..Default::default()
        }),
    }
}

fn condition(condition: Condition) -> pb::Condition {
    match condition {
        Condition::Pending => pb::Condition::Pending,
        Condition::Progressing => pb::Condition::Progressing,
        Condition::Converged => pb::Condition::Converged,
        Condition::Failed => pb::Condition::Failed,
        Condition::Blocked => pb::Condition::Blocked,
    }
}

fn step_status(step: StepStatus) -> pb::StepStatus {
    pb::StepStatus {
        step: step.step.to_string(),
        condition: condition(step.condition).into(),
        message: step.message,
        converged_generation: step.converged_generation,
        last_error: step.last_error.unwrap_or_default(),
        last_transition: Some(timestamp(step.last_transition)),
        last_run: step.last_run.map(timestamp),
    }
}

pub fn event(event: Event) -> pb::Event {
    let kind = match event.kind {
        EventKind::SpecAccepted => pb::event::Kind::SpecAccepted(pb::SpecAccepted {}),
        EventKind::Step {
            step,
            condition,
            message,
        } => {
            let phase = match condition {
                // A step is pending only before its first run: never news.
                Condition::Pending => pb::StepPhase::Unspecified,
                Condition::Progressing => pb::StepPhase::Started,
                Condition::Converged => pb::StepPhase::Converged,
                Condition::Failed => pb::StepPhase::Failed,
                Condition::Blocked => pb::StepPhase::Blocked,
            };
            pb::event::Kind::Step(pb::StepEvent {
                step: step.to_string(),
                phase: phase.into(),
                message,
            })
        }
    };
    pb::Event {
        sequence: event.sequence,
        time: Some(timestamp(event.time)),
        generation: event.generation,
        kind: Some(kind),
    }
}

pub fn volume(volume: VolumeStatus) -> pb::VolumeStatus {
    pb::VolumeStatus {
        name: volume.name,
        source: volume.source,
        filesystem: volume.filesystem,
        uuid: volume.uuid.unwrap_or_default(),
        mount_point: volume.mount_point,
        size_bytes: volume.size_bytes,
        used_bytes: volume.used_bytes,
        free_bytes: volume.free_bytes,
        quota_bytes: volume.quota_bytes.unwrap_or_default(),
        state: volume.state.as_str().to_owned(),
        last_error: volume.last_error.unwrap_or_default(),
    }
}

pub fn disk(disk: DiskInfo) -> pb::Disk {
    pb::Disk {
        path: disk.path,
        size_bytes: disk.size_bytes,
        signatures: disk.signatures,
        mount_points: disk.mount_points,
        allowed: disk.refusal.is_none(),
        refusal: disk.refusal.unwrap_or_default(),
    }
}
