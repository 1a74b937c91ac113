//! The remote API in-process: TCP on loopback with mutual TLS, certificates
//! made by `pki` as `tfagentctl certs init` makes them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use tfagent_proto::v1::{self as pb, node_agent_client::NodeAgentClient};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{
    Code,
    codegen::http::uri::PathAndQuery,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use super::*;
use crate::test_support::controller;
use tfagent_pki::{AccessRole, Authority, Issued};
use tfagent_spec::fixtures::example_document;
use tfagentctl::client::*;

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, the node's certificate for 127.0.0.1 and a client per role;
    /// plus a client of another CA, as `stranger`.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::generate("test CA").unwrap();
        let write = |name: &str, issued: &Issued| {
            std::fs::write(dir.path().join(format!("{name}.pem")), &issued.cert_pem).unwrap();
            std::fs::write(dir.path().join(format!("{name}-key.pem")), &issued.key_pem).unwrap();
        };
        write("ca", ca.certificate());
        let node = ca
            .node(&["node-1".into()], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .unwrap();
        write("node", &node);
        for role in AccessRole::ALL {
            write(role.as_str(), &ca.client(role.as_str(), role).unwrap());
        }
        let other = Authority::generate("another CA").unwrap();
        write(
            "stranger",
            &other.client("stranger", AccessRole::Admin).unwrap(),
        );
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn client_files(&self, who: &str) -> ClientTlsFiles {
        ClientTlsFiles {
            cert: self.path(&format!("{who}.pem")),
            key: self.path(&format!("{who}-key.pem")),
            ca: self.path("ca.pem"),
        }
    }
}

struct RemoteAgent {
    _state: tempfile::TempDir,
    address: SocketAddr,
    shutdown: CancellationToken,
    served: JoinHandle<Result<(), ServeError>>,
}

impl RemoteAgent {
    async fn start(pki: &Pki) -> Self {
        let state = tempfile::tempdir().unwrap();
        let controller = controller(&state.path().join("state"));
        let socket = bind_unix(&state.path().join("tfagent.sock"), None)
            .await
            .unwrap();
        let remote = RemoteApi {
            address: "127.0.0.1:0".parse().unwrap(),
            cert: pki.path("node.pem"),
            key: pki.path("node-key.pem"),
            client_ca: pki.path("ca.pem"),
        };
        let tls = bind_tls(&remote).await.unwrap();
        let address = tls.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let local = LocalAccess {
            uids: vec![0],
            reader_gid: None,
        };
        let served =
            tokio::spawn(async move { serve(socket, Some(tls), controller, local, token).await });
        Self {
            _state: state,
            address,
            shutdown,
            served,
        }
    }

    async fn channel(&self, pki: &Pki, who: &str) -> Channel {
        channel_tls(&self.address.to_string(), &pki.client_files(who))
            .await
            .unwrap()
    }

    async fn client(&self, pki: &Pki, who: &str) -> NodeAgentClient<Channel> {
        connect_tls(&self.address.to_string(), &pki.client_files(who))
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.served)
            .await
            .expect("the server stops within 10 s")
            .unwrap()
            .unwrap();
    }
}

fn dry_run() -> pb::ApplyRequest {
    pb::ApplyRequest {
        spec: Some(example_document("agent").into()),
        mode: pb::ApplyMode::DryRun.into(),
        try_timeout: None,
    }
}

/// Calls a method by path with an empty request, as a client generated
/// from a newer proto would.
async fn call_raw(channel: Channel, path: &'static str) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    grpc.unary(
        tonic::Request::new(()),
        PathAndQuery::from_static(path),
        codec,
    )
    .await
    .expect_err("no such method is served")
}

#[tokio::test]
async fn each_role_may_call_what_its_certificate_allows() {
    let pki = Pki::new();
    let agent = RemoteAgent::start(&pki).await;

    let mut reader = agent.client(&pki, "reader").await;
    reader.get_status(pb::GetStatusRequest {}).await.unwrap();
    reader.get_info(pb::GetInfoRequest {}).await.unwrap();
    let refused = reader.apply(dry_run()).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("needs the operator role"),
        "{refused:?}"
    );

    let mut operator = agent.client(&pki, "operator").await;
    operator.apply(dry_run()).await.unwrap();
    let refused = call_raw(
        agent.channel(&pki, "operator").await,
        "/tfagent.v1.NodeAgent/Reset",
    )
    .await;
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // An admin may reset, once it names the node.
    operator
        .apply(pb::ApplyRequest {
            mode: pb::ApplyMode::Apply.into(),
            ..dry_run()
        })
        .await
        .unwrap();
    let mut admin = agent.client(&pki, "admin").await;
    let unconfirmed = admin.reset(pb::ResetRequest::default()).await.unwrap_err();
    assert_eq!(unconfirmed.code(), Code::InvalidArgument, "{unconfirmed:?}");
    assert!(
        unconfirmed.message().contains("confirm_node_name"),
        "{unconfirmed:?}"
    );
    let name = example_document("agent").node_name;
    let reset = admin
        .reset(pb::ResetRequest {
            confirm_node_name: name,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reset.generation, 1);
    let spec = admin
        .get_spec(pb::GetSpecRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(spec.spec.is_none(), "the spec is forgotten");

    agent.stop().await;
}

/// An apply of the agent example with its k3s binary at `k3s`.
fn apply_with_k3s(mode: pb::ApplyMode, k3s: &str) -> pb::ApplyRequest {
    let mut document = example_document("agent");
    document.services.k3s.binary = k3s.into();
    pb::ApplyRequest {
        spec: Some(document.into()),
        mode: mode.into(),
        try_timeout: None,
    }
}

#[tokio::test]
async fn only_an_admin_may_change_what_runs_as_root() {
    let pki = Pki::new();
    let agent = RemoteAgent::start(&pki).await;
    let mut operator = agent.client(&pki, "operator").await;
    let mut admin = agent.client(&pki, "admin").await;

    // Before any spec is stored, the defaults are what an operator may not
    // change: dry run or not.
    for mode in [pb::ApplyMode::DryRun, pb::ApplyMode::Apply] {
        let refused = operator
            .apply(apply_with_k3s(mode, "/opt/evil/k3s"))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        assert!(
            refused
                .message()
                .contains("services.k3s.binary: changing what runs as root needs the admin role"),
            "{refused:?}"
        );
    }
    // Anything else, the operator may apply.
    let mut document = example_document("agent");
    document.services.k3s.extra_args = vec!["--node-label=zone=a".into()];
    operator
        .apply(pb::ApplyRequest {
            spec: Some(document.into()),
            mode: pb::ApplyMode::Apply.into(),
            try_timeout: None,
        })
        .await
        .unwrap();

    // An admin may name another binary; the operator may then apply specs
    // with it, but not put it back.
    admin
        .apply(apply_with_k3s(pb::ApplyMode::Apply, "/opt/k3s/bin/k3s"))
        .await
        .unwrap();
    operator
        .apply(apply_with_k3s(pb::ApplyMode::DryRun, "/opt/k3s/bin/k3s"))
        .await
        .unwrap();
    let refused = operator
        .apply(apply_with_k3s(pb::ApplyMode::Apply, "/usr/local/bin/k3s"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let mut both = example_document("agent");
    both.services.containerd.binary = "/opt/containerd".into();
    let refused = operator
        .apply(pb::ApplyRequest {
            spec: Some(both.into()),
            mode: pb::ApplyMode::Apply.into(),
            try_timeout: None,
        })
        .await
        .unwrap_err();
    assert!(
        refused
            .message()
            .starts_with("services.containerd.binary, services.k3s.binary: "),
        "{refused:?}"
    );
    let spec = admin
        .get_spec(pb::GetSpecRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spec.generation, 2, "no refused apply was stored");

    agent.stop().await;
}

/// The outcome of one call with a client that has `identity` (or none).
async fn status_with(agent: &RemoteAgent, ca: &Path, identity: Option<(&Path, &Path)>) -> String {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
        .domain_name("127.0.0.1");
    if let Some((cert, key)) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ));
    }
    let endpoint = Endpoint::from_shared(format!("https://{}", agent.address))
        .unwrap()
        .tls_config(tls)
        .unwrap();
    let channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(error) => return format!("connect failed: {error:?}"),
    };
    match NodeAgentClient::new(channel)
        .get_status(pb::GetStatusRequest {})
        .await
    {
        Ok(_) => "ok".into(),
        Err(status) => format!("{:?}: {}", status.code(), status.message()),
    }
}

#[tokio::test]
async fn the_handshake_refuses_clients_without_a_certificate_of_our_ca() {
    let pki = Pki::new();
    let agent = RemoteAgent::start(&pki).await;
    let ca = pki.path("ca.pem");

    let outcome = status_with(&agent, &ca, None).await;
    assert_ne!(outcome, "ok");
    // Refused by TLS, never reaching the role check.
    assert!(!outcome.starts_with("PermissionDenied"), "{outcome}");

    let (cert, key) = (pki.path("stranger.pem"), pki.path("stranger-key.pem"));
    let outcome = status_with(&agent, &ca, Some((&cert, &key))).await;
    assert_ne!(outcome, "ok");
    assert!(!outcome.starts_with("PermissionDenied"), "{outcome}");

    // The same client with a certificate of our CA gets through.
    let (cert, key) = (pki.path("reader.pem"), pki.path("reader-key.pem"));
    assert_eq!(status_with(&agent, &ca, Some((&cert, &key))).await, "ok");
    agent.stop().await;
}

#[tokio::test]
async fn a_client_checks_the_node_certificate_too() {
    let pki = Pki::new();
    let agent = RemoteAgent::start(&pki).await;
    // Trusting another CA, the client refuses the node.
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("ca.pem");
    std::fs::write(
        &other_ca,
        Authority::generate("unrelated")
            .unwrap()
            .certificate()
            .cert_pem
            .clone(),
    )
    .unwrap();
    let (cert, key) = (pki.path("admin.pem"), pki.path("admin-key.pem"));
    assert_ne!(
        status_with(&agent, &other_ca, Some((&cert, &key))).await,
        "ok"
    );
    agent.stop().await;
}

#[tokio::test]
async fn bad_certificate_files_fail_the_start_naming_the_file() {
    let pki = Pki::new();
    let missing = RemoteApi {
        address: "127.0.0.1:0".parse().unwrap(),
        cert: pki.path("nope.pem"),
        key: pki.path("node-key.pem"),
        client_ca: pki.path("ca.pem"),
    };
    let error = bind_tls(&missing).await.unwrap_err().to_string();
    assert!(error.contains("nope.pem"), "{error}");
    std::fs::write(pki.path("garbage.pem"), "not a certificate").unwrap();
    let garbage = RemoteApi {
        client_ca: pki.path("garbage.pem"),
        ..missing
    };
    let garbage = RemoteApi {
        cert: pki.path("node.pem"),
        ..garbage
    };
    let error = bind_tls(&garbage).await.unwrap_err().to_string();
    assert!(error.contains("garbage.pem"), "{error}");
}
