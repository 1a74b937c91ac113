//! `tfagent.v1.NodeAgent`: thin handlers over the controller.

use std::{pin::Pin, sync::Arc};

use futures::Stream;
use tfagent_proto::v1::{self as pb, node_agent_server::NodeAgent};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{instrument, warn};

use super::view;
use crate::{
    control::{ApplyMode, Controller},
    spec::SpecDocument,
};

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

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

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
            .apply(SpecDocument::from(spec), mode)
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
        Ok(Response::new(view::status(
            self.controller.full_status().await,
        )))
    }

    // ---- network ----
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
        if name.parse::<crate::spec::NodeName>().is_err() {
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
        let (recent, mut live) = self.controller.subscribe();
        let shutdown = self.shutdown.clone();
        let stream = async_stream::stream! {
            for event in recent {
                yield Ok(view::event(event));
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
                    Ok(event) => yield Ok(view::event(event)),
                    Err(RecvError::Closed) => return,
                    // A reader that cannot keep up is cut off rather than
                    // allowed to grow the agent's memory.
                    Err(RecvError::Lagged(missed)) => {
                        warn!(missed, "event watcher fell behind; closing its stream");
                        yield Err(Status::resource_exhausted(format!(
                            "the reader fell {missed} events behind; watch again"
                        )));
                        return;
                    }
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }
}
