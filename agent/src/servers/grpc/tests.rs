//! The gRPC service in-process over a temporary unix socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::PathBuf, time::Duration};

use tfagent_proto::v1::{self as pb, node_agent_client::NodeAgentClient};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Code, transport::Channel};

use super::*;
use crate::test_support::controller;
use tfagent_spec::{REDACTED, SpecDocument, fixtures::example_document};
use tfagentctl::client::*;

struct TestAgent {
    _dir: tempfile::TempDir,
    state_dir: PathBuf,
    socket: PathBuf,
    shutdown: CancellationToken,
    served: JoinHandle<Result<(), ServeError>>,
}

impl TestAgent {
    async fn start(allowed_uids: &[u32]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let socket = dir.path().join("run/tfagent.sock");
        let controller = controller(&state_dir);
        let bound = bind_unix(&socket, None).await.unwrap();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let local = LocalAccess {
            uids: allowed_uids.to_vec(),
            reader_gid: None,
        };
        let served =
            tokio::spawn(async move { serve(bound, None, controller, local, token).await });
        Self {
            _dir: dir,
            state_dir,
            socket,
            shutdown,
            served,
        }
    }

    async fn client(&self) -> NodeAgentClient<Channel> {
        connect_unix(&self.socket).await.unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        // Open streams and idle connections must not hold shutdown up.
        tokio::time::timeout(Duration::from_secs(10), self.served)
            .await
            .expect("the server stops within 10 s")
            .unwrap()
            .unwrap();
        assert!(
            !self.socket.exists(),
            "the socket file is removed at shutdown"
        );
    }
}

fn our_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// Applies an example spec, which must be accepted.
async fn apply_example(client: &mut NodeAgentClient<Channel>, name: &str) -> pb::ApplyResponse {
    client
        .apply(apply_request(example_document(name), pb::ApplyMode::Apply))
        .await
        .unwrap()
        .into_inner()
}

fn apply_request(document: SpecDocument, mode: pb::ApplyMode) -> pb::ApplyRequest {
    pb::ApplyRequest {
        spec: Some(document.into()),
        mode: mode.into(),
        try_timeout: None,
    }
}

#[tokio::test]
async fn dry_run_then_apply_then_unchanged() {
    let agent = TestAgent::start(&[our_uid()]).await;
    let mut client = agent.client().await;
    let document = example_document("server-init");

    let dry = client
        .apply(apply_request(document.clone(), pb::ApplyMode::DryRun))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dry.generation, 0);
    assert!(dry.changed);
    let steps: Vec<&str> = dry.plan.iter().map(|p| p.step.as_str()).collect();
    assert_eq!(steps, ["storage", "network", "services", "vip", "addons"]);
    // Every step has something to do for this spec, and this build
    // carries every one out.
    assert!(dry.plan.iter().all(|p| !p.actions.is_empty()), "{dry:?}");
    assert!(dry.plan.iter().all(|p| p.error.is_empty()), "{dry:?}");
    assert!(
        !agent.state_dir.join("spec.json").exists(),
        "a dry run stores nothing"
    );
    let spec = client
        .get_spec(pb::GetSpecRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(spec.spec.is_none());

    let applied = client
        .apply(apply_request(document.clone(), pb::ApplyMode::Apply))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((applied.generation, applied.changed), (1, true));

    let again = client
        .apply(apply_request(document.clone(), pb::ApplyMode::Apply))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.generation, again.changed), (1, false));

    let dry = client
        .apply(apply_request(
            example_document("agent"),
            pb::ApplyMode::DryRun,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((dry.generation, dry.changed), (1, true));

    let status = client
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.desired_generation, 1);
    assert_eq!(status.node_name, "server-1");
    assert_eq!(status.role, i32::from(pb::Role::ServerInit));
    assert_eq!(status.steps.len(), 5);
    agent.stop().await;
}

#[tokio::test]
async fn get_spec_redacts_the_token_and_the_redacted_spec_is_refused() {
    let agent = TestAgent::start(&[our_uid()]).await;
    let mut client = agent.client().await;
    let document = example_document("server-init");
    let token = document.cluster.token.clone();
    assert!(!token.is_empty());
    client
        .apply(apply_request(document, pb::ApplyMode::Apply))
        .await
        .unwrap();

    let stored = client
        .get_spec(pb::GetSpecRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.generation, 1);
    let stored = stored.spec.unwrap();
    let cluster = stored.cluster.clone().unwrap();
    assert_eq!(cluster.token, REDACTED);
    assert!(!format!("{stored:?}").contains(&token));

    let refused = client
        .apply(pb::ApplyRequest {
            spec: Some(stored),
            mode: pb::ApplyMode::Apply.into(),
            try_timeout: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let fields = bad_request_fields(&refused);
    assert!(
        fields.iter().any(|(f, _)| f == "cluster.token"),
        "{fields:?}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn an_invalid_spec_names_every_field_and_changes_nothing() {
    let agent = TestAgent::start(&[our_uid()]).await;
    let mut client = agent.client().await;
    apply_example(&mut client, "server-init").await;
    let before = std::fs::read(agent.state_dir.join("spec.json")).unwrap();

    let mut bad: pb::NodeSpec = example_document("server-init").into();
    bad.node_name = "Not_A_Name".into();
    let network = bad.network.as_mut().unwrap();
    let wireguard = network.wireguard.as_mut().unwrap();
    wireguard.mtu = 70000;
    wireguard.peers[0].public_key = "not-a-key".into();
    bad.cluster.as_mut().unwrap().cluster_cidr = "10.42.0.1/16".into();

    for mode in [pb::ApplyMode::Apply, pb::ApplyMode::DryRun] {
        let status = client
            .apply(pb::ApplyRequest {
                spec: Some(bad.clone()),
                mode: mode.into(),
                try_timeout: None,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let fields: Vec<String> = bad_request_fields(&status)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        for expected in [
            "node_name",
            "network.wireguard.mtu",
            "network.wireguard.peers[0].public_key",
            "cluster.cluster_cidr",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} missing from {fields:?}"
            );
        }
        assert!(!status.message().contains("token-"), "no secret in errors");
    }
    assert_eq!(
        std::fs::read(agent.state_dir.join("spec.json")).unwrap(),
        before
    );
    let info = client
        .get_info(pb::GetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.generation, 1);

    let missing = client
        .apply(pb::ApplyRequest {
            spec: None,
            mode: 0,
            try_timeout: None,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    let try_mode = client
        .apply(apply_request(
            example_document("server-init"),
            pb::ApplyMode::Try,
        ))
        .await
        .unwrap_err();
    assert_eq!(try_mode.code(), Code::InvalidArgument);
    assert!(
        try_mode.message().contains("try_timeout"),
        "{}",
        try_mode.message()
    );
    agent.stop().await;
}

#[tokio::test]
async fn info_reports_the_host() {
    let agent = TestAgent::start(&[our_uid()]).await;
    let info = agent
        .client()
        .await
        .get_info(pb::GetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.hostname, "node-under-test");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    let caps = info.capabilities.unwrap();
    assert!(caps.kernel_wireguard);
    assert_eq!(caps.cgroup_mode, i32::from(pb::CgroupMode::V1));
    assert_eq!(caps.filesystems, ["btrfs"]);
    assert!(info.started_at.is_some());
    agent.stop().await;
}

#[tokio::test]
async fn events_replay_history_and_follow() {
    let agent = TestAgent::start(&[our_uid()]).await;
    let mut client = agent.client().await;
    apply_example(&mut client, "server-init").await;

    let mut history = client
        .watch_events(pb::WatchEventsRequest { follow: false })
        .await
        .unwrap()
        .into_inner();
    let first = history.message().await.unwrap().unwrap();
    assert_eq!(first.generation, 1);
    assert!(matches!(first.kind, Some(pb::event::Kind::SpecAccepted(_))));
    assert!(
        history.message().await.unwrap().is_none(),
        "without follow the stream ends"
    );

    let mut live = client
        .watch_events(pb::WatchEventsRequest { follow: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(live.message().await.unwrap().unwrap().sequence, 1);
    apply_example(&mut client, "agent").await;
    let next = tokio::time::timeout(Duration::from_secs(10), live.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((next.sequence, next.generation), (2, 2));
    agent.stop().await;
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };

    let agent = TestAgent::start(&[our_uid()]).await;
    let channel = channel_unix(&agent.socket).await.unwrap();
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "tfagent.v1.NodeAgent".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, 1, "SERVING");

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a list of services");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"tfagent.v1.NodeAgent".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
    agent.stop().await;
}

/// An allowed uid on the socket (root, on a node) is an admin: it may
/// name another binary, as an operator may not; a binary the host refuses
/// (one anybody may write to) is refused for it too, naming the field.
#[tokio::test]
async fn an_allowed_socket_caller_may_change_binaries_but_not_to_an_unsafe_one() {
    let agent = TestAgent::start(&[our_uid()]).await;
    let mut client = agent.client().await;
    let mut document = example_document("agent");
    document.services.k3s.binary = "/opt/k3s/bin/k3s".into();
    client
        .apply(apply_request(document.clone(), pb::ApplyMode::Apply))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let planted = dir.path().join("k3s");
    std::fs::write(&planted, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        &planted,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    document.services.k3s.binary = planted.display().to_string();
    let refused = client
        .apply(apply_request(document, pb::ApplyMode::Apply))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("services.k3s.binary: not run as root: "),
        "{refused:?}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_uid_not_allowed_is_refused_on_every_service() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    // Allow only some other uid: our own connection must then be refused.
    let agent = TestAgent::start(&[our_uid().wrapping_add(4242)]).await;
    let mut client = agent.client().await;
    let denied = client
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied.message().contains(&format!("uid {}", our_uid())),
        "{}",
        denied.message()
    );
    let denied = client
        .apply(apply_request(
            example_document("server-init"),
            pb::ApplyMode::Apply,
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(!agent.state_dir.join("spec.json").exists());

    let channel = channel_unix(&agent.socket).await.unwrap();
    let denied = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    agent.stop().await;
}

#[tokio::test]
async fn a_live_socket_is_never_taken_over_and_a_file_never_replaced() {
    let agent = TestAgent::start(&[our_uid()]).await;
    let err = bind_unix(&agent.socket, None).await.unwrap_err();
    assert!(matches!(err, ServeError::InUse { .. }), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "precious").unwrap();
    let err = bind_unix(&file, None).await.unwrap_err();
    assert!(matches!(err, ServeError::NotASocket { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
    agent.stop().await;
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_the_new_one_is_0600() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    // A socket file whose listener is gone, as after a crash.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let bound = bind_unix(&path, None).await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(bound);
    assert!(!path.exists());
}

#[tokio::test]
async fn list_disks_answers_and_status_has_no_volumes_without_a_spec() {
    let agent = TestAgent::start(&[our_uid()]).await;
    let mut client = agent.client().await;
    let disks = client
        .list_disks(pb::ListDisksRequest {})
        .await
        .unwrap()
        .into_inner();
    // Whatever this host has, each disk says whether volumes may use it.
    for disk in &disks.disks {
        assert!(disk.path.starts_with("/dev/"), "{disk:?}");
        assert_eq!(disk.allowed, disk.refusal.is_empty(), "{disk:?}");
    }
    let status = client
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.volumes.is_empty());
}

#[tokio::test]
async fn service_status_logs_and_restart_over_the_socket() {
    use std::sync::Arc;

    use futures::StreamExt;

    use tfagent_supervisor::{ServiceDef, Supervisor, SupervisorConfig, cgroup::CgroupLayout};

    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let supervisor = Supervisor::new(
        SupervisorConfig {
            record_dir: dir.path().join("records"),
            log_dir: dir.path().join("logs"),
            cgroups: CgroupLayout::None,
            cgroup_parent: "unused".into(),
        },
        stop.clone(),
    );
    supervisor
        .ensure(ServiceDef::new(
            "echo".parse().unwrap(),
            vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo one; echo two; exec sleep 600".into(),
            ],
        ))
        .unwrap();
    let services = dir.path().join("services");
    let (steps, mut collaborators) = crate::test_support::wired(
        &services,
        crate::storage::Storage::linux(&dir.path().join("state"), None),
    );
    // The services the RPCs see are the ones this supervisor runs.
    collaborators.services = Arc::new(crate::services::Services::new(
        supervisor.clone(),
        crate::services::ServicePaths::under(&services),
    ));
    let controller = Arc::new(crate::test_support::controller_over(
        &dir.path().join("state"),
        steps,
        collaborators,
    ));
    let socket = dir.path().join("run/tfagent.sock");
    let bound = bind_unix(&socket, None).await.unwrap();
    let token = stop.clone();
    let local = LocalAccess {
        uids: vec![our_uid()],
        reader_gid: None,
    };
    let served = tokio::spawn(async move { serve(bound, None, controller, local, token).await });
    let mut client = connect_unix(&socket).await.unwrap();

    let logs = |tail, follow| pb::LogsRequest {
        service: "echo".into(),
        tail,
        follow,
    };
    // Both lines reach the file and the agent's memory.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<String> = client
            .logs(logs(10, false))
            .await
            .unwrap()
            .into_inner()
            .map(|l| l.unwrap().line)
            .collect()
            .await;
        if lines == ["one", "two"] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{lines:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = client
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.volumes.is_empty());
    let echo = &status.services[0];
    assert_eq!(echo.name, "echo");
    assert_eq!(echo.state, pb::ServiceState::Ready as i32);
    assert!(echo.pid != 0 && echo.ready && echo.started_at.is_some());
    let first_pid = echo.pid;

    // Following: the last line, then what the restarted service writes.
    let mut follow = client.logs(logs(1, true)).await.unwrap().into_inner();
    assert_eq!(follow.message().await.unwrap().unwrap().line, "two");
    client
        .restart_service(pb::RestartServiceRequest {
            service: "echo".into(),
        })
        .await
        .unwrap();
    for expected in ["one", "two"] {
        let line = tokio::time::timeout(Duration::from_secs(10), follow.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(line.line, expected);
    }
    let status = client
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.services[0].restarts, 1);
    assert_ne!(status.services[0].pid, first_pid);
    assert_eq!(status.services[0].last_exit_signal, Some(15));

    for missing in [
        client
            .restart_service(pb::RestartServiceRequest {
                service: "nope".into(),
            })
            .await
            .unwrap_err(),
        client
            .logs(pb::LogsRequest {
                service: "nope".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    }
    drop(follow);
    supervisor.stop_all().await;
    stop.cancel();
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn reset_needs_the_node_name_then_forgets_the_spec_and_generations_go_on() {
    let agent = TestAgent::start(&[our_uid()]).await;
    let mut client = agent.client().await;
    let confirm = |name: &str| pb::ResetRequest {
        confirm_node_name: name.to_owned(),
    };
    let nothing = client.reset(confirm("agent-1")).await.unwrap_err();
    assert_eq!(nothing.code(), Code::FailedPrecondition, "{nothing:?}");

    apply_example(&mut client, "agent").await;
    let name = example_document("agent").node_name;
    for wrong in [String::new(), "other-node".into(), name.to_uppercase()] {
        let refused = client.reset(confirm(&wrong)).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(
            refused.message().starts_with("confirm_node_name: "),
            "{refused:?}"
        );
        let stored = client
            .get_spec(pb::GetSpecRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stored.generation, 1, "a refused reset changes nothing");
    }

    let reset = client.reset(confirm(&name)).await.unwrap().into_inner();
    assert_eq!(reset.generation, 1);
    let stored = client
        .get_spec(pb::GetSpecRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(stored.spec.is_none());
    let status = client
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.desired_generation, 0);
    assert!(!agent.state_dir.join("spec.json").exists());
    let again = client.reset(confirm(&name)).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");

    let next = apply_example(&mut client, "agent").await;
    assert_eq!(next.generation, 2, "never reuses the forgotten generation");
    agent.stop().await;
}
