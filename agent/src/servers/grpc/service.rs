//! `tfagent.v1.NodeAgent`: thin handlers over the controller.

use std::{pin::Pin, sync::Arc};

use futures::Stream;
use tfagent_proto::v1::{self as pb, node_agent_server::NodeAgent};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{instrument, warn};

use super::{auth::Caller, view};
use crate::control::{ApplyMode, ApplyRights, Controller};
use tfagent_pki::AccessRole;
use tfagent_spec::SpecDocument;

#[derive(Debug, Clone)]
pub struct NodeAgentService {
    controller: Arc<Controller>,
    /// Ends open event streams so a graceful shutdown does not wait on them.
    shutdown: CancellationToken,
}

impl NodeAgentService {
    pub fn new(controller: Arc<Controller>, shutdown: CancellationToken) -> Self {
        Self {
            controller,
            shutdown,
        }
    }
}

type EventStream = ReplyStream<pb::Event>;
type ReplyStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// What a stream does after telling a reader that fell behind.
enum AfterLag {
    Continue,
    End,
}

/// `recent`, then, with `follow`, what `live` brings, until the agent shuts
/// down. The broadcast buffer bounds what a slow reader costs; `on_lag`
/// says what it is told when it fell behind, and whether it goes on.
fn replay_then_follow<E, T>(
    recent: Vec<E>,
    mut live: broadcast::Receiver<E>,
    follow: bool,
    shutdown: CancellationToken,
    view: impl Fn(E) -> T + Send + 'static,
    on_lag: impl Fn(u64) -> (Result<T, Status>, AfterLag) + Send + 'static,
) -> ReplyStream<T>
where
    E: Clone + Send + 'static,
    T: Send + 'static,
{
    Box::pin(async_stream::stream! {
        for item in recent {
            yield Ok(view(item));
        }
        if !follow {
            return;
        }
        loop {
            let received = tokio::select! {
                () = shutdown.cancelled() => {
                    yield Err(Status::unavailable("tfagent is shutting down"));
                    return;
                }
                received = live.recv() => received,
            };
            match received {
                Ok(item) => yield Ok(view(item)),
                Err(RecvError::Closed) => return,
                Err(RecvError::Lagged(missed)) => {
                    let (told, after) = on_lag(missed);
                    yield told;
                    if let AfterLag::End = after {
                        return;
                    }
                }
            }
        }
    })
}

#[tonic::async_trait]
impl NodeAgent for NodeAgentService {
    #[instrument(name = "rpc.get_info", skip_all)]
    async fn get_info(
        &self,
        _request: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::NodeInfo>, Status> {
        let info = self.controller.info().await?;
        Ok(Response::new(view::info(info)))
    }

    // The request holds the cluster token: never recorded in the span.
    #[instrument(name = "rpc.apply", skip_all, fields(mode))]
    async fn apply(
        &self,
        request: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        let rights = apply_rights(request.extensions().get::<Caller>());
        let request = request.into_inner();
        let mode = match pb::ApplyMode::try_from(request.mode) {
            Ok(pb::ApplyMode::Unspecified | pb::ApplyMode::Apply) => ApplyMode::Apply,
            Ok(pb::ApplyMode::DryRun) => ApplyMode::DryRun,
            Ok(pb::ApplyMode::Try) => {
                let timeout = request
                    .try_timeout
                    .and_then(|d| std::time::Duration::try_from(d).ok())
                    .ok_or_else(|| {
                        Status::invalid_argument("try_timeout: required with mode try")
                    })?;
                ApplyMode::Try(timeout)
            }
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "mode: unknown apply mode {}",
                    request.mode
                )));
            }
        };
        tracing::Span::current().record("mode", format!("{mode:?}"));
        let spec = request
            .spec
            .ok_or_else(|| Status::invalid_argument("spec: required"))?;
        let outcome = self
            .controller
            .apply(SpecDocument::from(spec), mode, rights)
            .await?;
        Ok(Response::new(view::apply_outcome(outcome)))
    }

    #[instrument(name = "rpc.get_spec", skip_all)]
    async fn get_spec(
        &self,
        _request: Request<pb::GetSpecRequest>,
    ) -> Result<Response<pb::GetSpecResponse>, Status> {
        let response = match self.controller.redacted_spec() {
            Some((generation, document)) => pb::GetSpecResponse {
                spec: Some(document.into()),
                generation,
            },
            None => pb::GetSpecResponse::default(),
        };
        Ok(Response::new(response))
    }

    #[instrument(name = "rpc.get_status", skip_all)]
    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::NodeStatus>, Status> {
        let mut status = view::status(self.controller.full_status().await);
        // The storage step reports the same failure; the rest of the status
        // is still worth serving.
        match self.controller.volumes().await {
            Ok(volumes) => status.volumes = volumes.into_iter().map(view::volume).collect(),
            Err(error) => warn!(%error, "cannot read the volumes for the status"),
        }
        Ok(Response::new(status))
    }

    #[instrument(name = "rpc.list_disks", skip_all)]
    async fn list_disks(
        &self,
        _request: Request<pb::ListDisksRequest>,
    ) -> Result<Response<pb::ListDisksResponse>, Status> {
        let disks = self.controller.disks().await?;
        Ok(Response::new(pb::ListDisksResponse {
            disks: disks.into_iter().map(view::disk).collect(),
        }))
    }

    #[instrument(name = "rpc.confirm", skip_all)]
    async fn confirm(
        &self,
        request: Request<pb::ConfirmRequest>,
    ) -> Result<Response<pb::ConfirmResponse>, Status> {
        let generation = self
            .controller
            .confirm(request.into_inner().generation)
            .await?;
        Ok(Response::new(pb::ConfirmResponse { generation }))
    }

    #[instrument(name = "rpc.wireguard_access_config", skip_all)]
    async fn wireguard_access_config(
        &self,
        request: Request<pb::WireguardAccessConfigRequest>,
    ) -> Result<Response<pb::WireguardAccessConfigResponse>, Status> {
        let name = request.into_inner().name;
        if name.parse::<tfagent_spec::NodeName>().is_err() {
            return Err(Status::invalid_argument(
                "name: must be a lower-case DNS name such as `user`",
            ));
        }
        let hub = self.controller.access_hub(&name)?;
        Ok(Response::new(view::access_hub(&name, hub)))
    }

    type WatchEventsStream = EventStream;

    #[instrument(name = "rpc.watch_events", skip_all)]
    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let follow = request.into_inner().follow;
        let (recent, live) = self.controller.subscribe();
        Ok(Response::new(replay_then_follow(
            recent,
            live,
            follow,
            self.shutdown.clone(),
            view::event,
            // A reader that cannot keep up is cut off rather than allowed to
            // grow the agent's memory.
            |missed| {
                warn!(missed, "event watcher fell behind; closing its stream");
                (
                    Err(Status::resource_exhausted(format!(
                        "the reader fell {missed} events behind; watch again"
                    ))),
                    AfterLag::End,
                )
            },
        )))
    }

    type LogsStream = ReplyStream<pb::LogLine>;

    #[instrument(name = "rpc.logs", skip_all, fields(service))]
    async fn logs(
        &self,
        request: Request<pb::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let request = request.into_inner();
        tracing::Span::current().record("service", request.service.as_str());
        let tail = match request.tail {
            0 => DEFAULT_LOG_TAIL,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let (recent, live) = self.controller.service_logs(&request.service, tail)?;
        Ok(Response::new(replay_then_follow(
            recent,
            live,
            request.follow,
            self.shutdown.clone(),
            |line| pb::LogLine { line },
            // Lines were lost, not the stream: say so and go on.
            |missed| {
                (
                    Ok(pb::LogLine {
                        line: format!("[tfagent: {missed} lines skipped: the reader fell behind]"),
                    }),
                    AfterLag::Continue,
                )
            },
        )))
    }

    #[instrument(name = "rpc.restart_service", skip_all, fields(service))]
    async fn restart_service(
        &self,
        request: Request<pb::RestartServiceRequest>,
    ) -> Result<Response<pb::RestartServiceResponse>, Status> {
        let request = request.into_inner();
        tracing::Span::current().record("service", request.service.as_str());
        self.controller.restart_service(&request.service)?;
        Ok(Response::new(pb::RestartServiceResponse {}))
    }

    #[instrument(name = "rpc.kubeconfig", skip_all)]
    async fn kubeconfig(
        &self,
        _request: Request<pb::KubeconfigRequest>,
    ) -> Result<Response<pb::KubeconfigResponse>, Status> {
        let kubeconfig = self.controller.kubeconfig()?;
        Ok(Response::new(pb::KubeconfigResponse { kubeconfig }))
    }

    #[instrument(name = "rpc.reset", skip_all)]
    async fn reset(
        &self,
        request: Request<pb::ResetRequest>,
    ) -> Result<Response<pb::ResetResponse>, Status> {
        let confirm = request.into_inner().confirm_node_name;
        let outcome = self.controller.reset(&confirm).await?;
        Ok(Response::new(pb::ResetResponse {
            generation: outcome.generation,
            actions: outcome.actions,
        }))
    }
}

/// What a caller may change with Apply: admins (root on the local socket
/// among them) everything, anyone else not what runs as root. A request
/// the auth layer did not mark gets the narrower rights.
fn apply_rights(caller: Option<&Caller>) -> ApplyRights {
    match caller {
        Some(Caller {
            role: AccessRole::Admin,
            ..
        }) => ApplyRights::All,
        _ => ApplyRights::NotRootFields,
    }
}

/// Lines `Logs` sends when the request does not say.
const DEFAULT_LOG_TAIL: usize = 100;
