//! Prometheus metrics on an HTTP endpoint (off unless the boot config gives
//! an address). Reconcile runs are counted as they happen; everything else
//! (steps, services, WireGuard peers, volumes) is read from the agent's
//! status at scrape time, so the figures can never disagree with
//! `tfagentctl status`.

use std::{
    convert::Infallible,
    fmt,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Bytes, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::{
    control::{Controller, NodeStatus, VERSION},
    network::InterfaceStatus,
    reconcile::RunObserver,
    step::{Condition, StepError, StepName, StepOutcome},
    storage::{VolumeState, VolumeStatus},
};
use tfagent_supervisor::{ServiceState, ServiceStatus};

/// The OpenMetrics text format, which Prometheus scrapes natively.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Scrapes served at once; more wait for a slot.
const MAX_CONNECTIONS: usize = 16;
/// A client that has not sent its request headers by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen for metrics on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    step: &'static str,
    result: &'static str,
}

/// Counters the reconciler feeds as it runs steps (it tells them through
/// [`RunObserver`]).
#[derive(Debug, Clone)]
pub struct ReconcileMetrics {
    runs: Family<RunLabels, Counter>,
    changes: Family<StepLabels, Counter>,
    duration: Family<StepLabels, Histogram>,
}

impl Default for ReconcileMetrics {
    fn default() -> Self {
        Self {
            runs: Family::default(),
            changes: Family::default(),
            // 1 ms … ~65 s: from a no-op resync to a mkfs or a k3s start.
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 4.0, 9))
            }),
        }
    }
}

impl RunObserver for ReconcileMetrics {
    fn step_ran(&self, step: StepName, result: Result<&StepOutcome, &StepError>, took: Duration) {
        let step = step.as_str();
        let label = match result {
            Ok(StepOutcome::UpToDate) => "up_to_date",
            Ok(StepOutcome::Applied { .. }) => "applied",
            Err(_) => "failed",
        };
        self.runs
            .get_or_create(&RunLabels {
                step,
                result: label,
            })
            .inc();
        if let Ok(StepOutcome::Applied { changes }) = result {
            self.changes
                .get_or_create(&StepLabels { step })
                .inc_by(*changes as u64);
        }
        self.duration
            .get_or_create(&StepLabels { step })
            .observe(took.as_secs_f64());
    }
}

impl ReconcileMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "tfagent_reconcile_runs",
            "Converge runs of each reconcile step, by result",
            self.runs.clone(),
        );
        registry.register(
            "tfagent_reconcile_changes",
            "Host changes made by each reconcile step",
            self.changes.clone(),
        );
        registry.register(
            "tfagent_reconcile_duration_seconds",
            "Time each converge run of a step took",
            self.duration.clone(),
        );
    }
}

/// Everything the endpoint serves.
pub struct Metrics {
    registry: Registry,
    controller: Arc<Controller>,
    /// What the status collector encodes; taken (async) just before.
    snapshot: Arc<std::sync::Mutex<Snapshot>>,
    /// One scrape at a time, so a snapshot is encoded by its own scrape.
    scrape: tokio::sync::Mutex<()>,
}

/// The agent's status at one scrape.
#[derive(Debug, Default)]
struct Snapshot {
    status: Option<NodeStatus>,
    volumes: Vec<VolumeStatus>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(reconcile: &ReconcileMetrics, controller: Arc<Controller>) -> Self {
        let mut registry = Registry::default();
        reconcile.register(&mut registry);
        let snapshot = Arc::new(std::sync::Mutex::new(Snapshot::default()));
        registry.register_collector(Box::new(StatusCollector {
            snapshot: Arc::clone(&snapshot),
        }));
        Self {
            registry,
            controller,
            snapshot,
            scrape: tokio::sync::Mutex::new(()),
        }
    }

    /// The exposition text of one scrape.
    pub async fn render(&self) -> Result<String, fmt::Error> {
        let _one_at_a_time = self.scrape.lock().await;
        let status = self.controller.full_status().await;
        // Volumes that cannot be read are left out; status says why.
        let volumes = self.controller.volumes().await.unwrap_or_default();
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Snapshot {
            status: Some(status),
            volumes,
        };
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Encodes the snapshot its scrape took.
#[derive(Debug)]
struct StatusCollector {
    snapshot: Arc<std::sync::Mutex<Snapshot>>,
}

fn condition_label(condition: Condition) -> &'static str {
    match condition {
        Condition::Pending => "pending",
        Condition::Progressing => "progressing",
        Condition::Converged => "converged",
        Condition::Failed => "failed",
        Condition::Blocked => "blocked",
    }
}

const CONDITIONS: [Condition; 5] = [
    Condition::Pending,
    Condition::Progressing,
    Condition::Converged,
    Condition::Failed,
    Condition::Blocked,
];

/// One gauge family from `(labels, value)` samples.
fn gauges<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, f64)>,
) -> Result<(), fmt::Error> {
    let mut family =
        encoder.encode_descriptor(name, help, None, ConstGauge::new(0.0).metric_type())?;
    for (labels, value) in samples {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn service_state_label(state: ServiceState) -> &'static str {
    match state {
        ServiceState::Waiting => "waiting",
        ServiceState::Starting => "starting",
        ServiceState::Ready => "ready",
        ServiceState::Unready => "unready",
        ServiceState::BackingOff => "backing_off",
        ServiceState::CrashLooping => "crash_looping",
        ServiceState::Stopping => "stopping",
        ServiceState::Stopped => "stopped",
        ServiceState::Failed => "failed",
    }
}

const SERVICE_STATES: [ServiceState; 9] = [
    ServiceState::Waiting,
    ServiceState::Starting,
    ServiceState::Ready,
    ServiceState::Unready,
    ServiceState::BackingOff,
    ServiceState::CrashLooping,
    ServiceState::Stopping,
    ServiceState::Stopped,
    ServiceState::Failed,
];

/// One counter family from `(labels, value)` samples.
fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), fmt::Error> {
    let mut family =
        encoder.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for (labels, value) in samples {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl StatusCollector {
    fn encode_services(
        encoder: &mut DescriptorEncoder,
        services: &[ServiceStatus],
    ) -> Result<(), fmt::Error> {
        gauges(
            encoder,
            "tfagent_service_state",
            "Current state of each supervised service",
            services.iter().flat_map(|service| {
                SERVICE_STATES.iter().map(move |&state| {
                    (
                        vec![
                            ("service", service.name.to_string()),
                            ("state", service_state_label(state).to_owned()),
                        ],
                        f64::from(u8::from(service.state == state)),
                    )
                })
            }),
        )?;
        gauges(
            encoder,
            "tfagent_service_ready",
            "1 while the service's readiness probe passes",
            services.iter().map(|s| {
                (
                    vec![("service", s.name.to_string())],
                    f64::from(u8::from(s.ready)),
                )
            }),
        )?;
        counters(
            encoder,
            "tfagent_service_restarts",
            "Restarts of each service since the agent first started it",
            services
                .iter()
                .map(|s| (vec![("service", s.name.to_string())], u64::from(s.restarts))),
        )
    }

    fn encode_wireguard(
        encoder: &mut DescriptorEncoder,
        wireguard: Option<&InterfaceStatus>,
    ) -> Result<(), fmt::Error> {
        let peers = wireguard.map(|w| w.peers.as_slice()).unwrap_or_default();
        let label = |peer: &crate::network::PeerStatus| {
            let name = if peer.name.is_empty() {
                peer.public_key.to_string()
            } else {
                peer.name.clone()
            };
            vec![("peer", name)]
        };
        let now = SystemTime::now();
        gauges(
            encoder,
            "tfagent_wireguard_up",
            "1 while the WireGuard interface exists and is up",
            wireguard.map(|w| {
                (
                    vec![("interface", w.interface.clone())],
                    f64::from(u8::from(w.up)),
                )
            }),
        )?;
        gauges(
            encoder,
            "tfagent_wireguard_peer_handshake_age_seconds",
            "Seconds since each peer's latest handshake (absent before the first)",
            peers.iter().filter_map(|peer| {
                let age = now.duration_since(peer.last_handshake?).unwrap_or_default();
                Some((label(peer), age.as_secs_f64()))
            }),
        )?;
        counters(
            encoder,
            "tfagent_wireguard_peer_receive_bytes",
            "Bytes received from each peer",
            peers.iter().map(|peer| (label(peer), peer.rx_bytes)),
        )?;
        counters(
            encoder,
            "tfagent_wireguard_peer_transmit_bytes",
            "Bytes sent to each peer",
            peers.iter().map(|peer| (label(peer), peer.tx_bytes)),
        )
    }

    fn encode_vip(
        encoder: &mut DescriptorEncoder,
        vip: Option<&crate::vip::VipStatus>,
    ) -> Result<(), fmt::Error> {
        use crate::vip::VrrpState;
        let Some(election) = vip.and_then(|v| v.election.as_ref()) else {
            return Ok(());
        };
        let no_labels = Vec::<(&str, String)>::new;
        let holder = election
            .holder_name
            .as_ref()
            .map(ToString::to_string)
            .or_else(|| election.ledger.holder.map(|a| a.to_string()));
        gauges(
            encoder,
            "tfagent_vip_holder",
            "1 for the server this node routes the VIP to (absent before any claim)",
            holder.map(|h| (vec![("holder", h)], 1.0)),
        )?;
        gauges(
            encoder,
            "tfagent_vip_epoch",
            "Epoch of the newest VIP claim this node took",
            [(no_labels(), election.ledger.epoch as f64)],
        )?;
        counters(
            encoder,
            "tfagent_vip_transitions",
            "Moves of the VIP's route on this node since the agent started",
            [(no_labels(), election.transitions)],
        )?;
        gauges(
            encoder,
            "tfagent_vip_last_failover_seconds",
            "The last failover as the new holder measured it, from the old holder's loss to its claim",
            election
                .last_failover
                .map(|d| (no_labels(), d.as_secs_f64())),
        )?;
        if vip.is_some_and(|v| v.server) {
            gauges(
                encoder,
                "tfagent_vip_election_state",
                "keepalived's state of this server (1 for the current one)",
                [
                    VrrpState::Unknown,
                    VrrpState::Backup,
                    VrrpState::Master,
                    VrrpState::Fault,
                    VrrpState::Stop,
                ]
                .into_iter()
                .map(|state| {
                    (
                        vec![("state", state.as_str().to_owned())],
                        f64::from(u8::from(election.vrrp == state)),
                    )
                }),
            )?;
            gauges(
                encoder,
                "tfagent_vip_apiserver_ready",
                "1 while the local apiserver the VIP is gated on answers ready",
                vip.and_then(|v| v.apiserver_ready)
                    .map(|ready| (no_labels(), f64::from(u8::from(ready)))),
            )?;
        }
        Ok(())
    }

    fn encode_volumes(
        encoder: &mut DescriptorEncoder,
        volumes: &[VolumeStatus],
    ) -> Result<(), fmt::Error> {
        let mounted: Vec<&VolumeStatus> = volumes
            .iter()
            .filter(|v| v.state == VolumeState::Mounted)
            .collect();
        let label = |v: &VolumeStatus| vec![("volume", v.name.clone())];
        for (name, help, value) in [
            (
                "tfagent_volume_size_bytes",
                "Size of each mounted volume (its quota for a pool volume)",
                (|v: &VolumeStatus| v.size_bytes) as fn(&VolumeStatus) -> u64,
            ),
            (
                "tfagent_volume_used_bytes",
                "Bytes used on each mounted volume",
                |v: &VolumeStatus| v.used_bytes,
            ),
            (
                "tfagent_volume_free_bytes",
                "Bytes free on each mounted volume",
                |v: &VolumeStatus| v.free_bytes,
            ),
        ] {
            gauges(
                encoder,
                name,
                help,
                mounted.iter().map(|v| (label(v), value(v) as f64)),
            )?;
        }
        gauges(
            encoder,
            "tfagent_volume_mounted",
            "1 while each volume of the spec is mounted",
            volumes.iter().map(|v| {
                (
                    label(v),
                    f64::from(u8::from(v.state == VolumeState::Mounted)),
                )
            }),
        )
    }
}

impl Collector for StatusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snapshot = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        let Some(status) = &snapshot.status else {
            return Ok(());
        };
        gauges(
            &mut encoder,
            "tfagent_build_info",
            "The running agent's version (always 1)",
            [(vec![("version", VERSION)], 1.0)],
        )?;
        gauges(
            &mut encoder,
            "tfagent_desired_generation",
            "Generation of the stored spec (0: none)",
            [(Vec::<(&str, &str)>::new(), status.desired_generation as f64)],
        )?;
        gauges(
            &mut encoder,
            "tfagent_converged_generation",
            "Generation every step has converged to",
            [(
                Vec::<(&str, &str)>::new(),
                status.converged_generation as f64,
            )],
        )?;
        gauges(
            &mut encoder,
            "tfagent_spec_refused",
            "1 while the stored spec was refused at start",
            [(
                Vec::<(&str, &str)>::new(),
                f64::from(u8::from(status.refused_spec.is_some())),
            )],
        )?;
        // A state set: 1 for the step's current condition, 0 for the others.
        gauges(
            &mut encoder,
            "tfagent_step_condition",
            "Current condition of each reconcile step",
            status.steps.iter().flat_map(|step| {
                CONDITIONS.iter().map(move |&condition| {
                    (
                        vec![
                            ("step", step.step.as_str()),
                            ("condition", condition_label(condition)),
                        ],
                        f64::from(u8::from(step.condition == condition)),
                    )
                })
            }),
        )?;
        gauges(
            &mut encoder,
            "tfagent_step_last_transition_timestamp_seconds",
            "When each step last changed condition",
            status.steps.iter().map(|step| {
                (
                    vec![("step", step.step.as_str())],
                    unix_seconds(step.last_transition),
                )
            }),
        )?;
        Self::encode_services(&mut encoder, &status.services)?;
        Self::encode_wireguard(&mut encoder, status.wireguard.as_ref())?;
        Self::encode_vip(&mut encoder, status.vip.as_ref())?;
        Self::encode_volumes(&mut encoder, &snapshot.volumes)
    }
}

/// Binds the metrics listener (before the agent says it is ready, so a bad
/// address fails the start).
pub async fn bind(address: SocketAddr) -> Result<TcpListener, MetricsError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| MetricsError::Bind { address, source })?;
    info!(%address, "serving metrics");
    Ok(listener)
}

/// Serves `GET /metrics` until `shutdown`.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // E.g. out of file descriptors: back off, don't spin.
                    warn!(%error, "accepting a metrics connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let metrics = Arc::clone(&metrics);
        let shutdown = shutdown.clone();
        connections.spawn(
            async move {
                let service = service_fn(move |request| {
                    let metrics = Arc::clone(&metrics);
                    async move { Ok::<_, Infallible>(respond(&metrics, &request).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(connection);
                tokio::select! {
                    served = connection.as_mut() => {
                        if let Err(error) = served {
                            debug!(%error, "metrics connection ended");
                        }
                    }
                    () = shutdown.cancelled() => {
                        connection.as_mut().graceful_shutdown();
                        if let Err(error) = connection.as_mut().await {
                            debug!(%error, "metrics connection ended");
                        }
                    }
                }
                drop(permit);
            }
            .instrument(info_span!("metrics", %peer)),
        );
    }
    connections.close();
    connections.wait().await;
}

async fn respond<B>(metrics: &Metrics, request: &Request<B>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    };
    if request.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "tfagent serves /metrics only\n".into(),
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET /metrics\n".into(),
        );
    }
    match metrics.render().await {
        Ok(text) => reply(StatusCode::OK, CONTENT_TYPE, text),
        Err(fmt::Error) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "encoding the metrics failed\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use crate::network::{Backend, PeerStatus};
    use tfagent_spec::KeyPair;

    fn scrape(snapshot: Snapshot) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(StatusCollector {
            snapshot: Arc::new(std::sync::Mutex::new(snapshot)),
        }));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn services_peers_and_volumes_are_exported_from_the_status() {
        let mut containerd = ServiceStatus::new("containerd".parse().unwrap(), Vec::new());
        containerd.state = ServiceState::CrashLooping;
        containerd.restarts = 3;
        let key = KeyPair::generate().public();
        let wireguard = InterfaceStatus {
            interface: "tfk3s".into(),
            backend: Backend::Userspace,
            public_key: key,
            up: true,
            listen_port: 51820,
            peers: vec![PeerStatus {
                name: "server-2".into(),
                public_key: key,
                endpoint: None,
                last_handshake: Some(SystemTime::now() - Duration::from_secs(30)),
                rx_bytes: 4096,
                tx_bytes: 1024,
                allowed_ips: Vec::new(),
            }],
            error: None,
        };
        let vip = crate::vip::VipStatus {
            vip: Some("10.100.0.250".parse().unwrap()),
            server: true,
            election: Some(crate::vip::election::ElectionStatus {
                vrrp: crate::vip::VrrpState::Master,
                ledger: crate::vip::election::Ledger {
                    epoch: 4,
                    holder: Some("10.100.0.1".parse().unwrap()),
                },
                holder_name: Some("server-1".parse().unwrap()),
                transitions: 2,
                last_transition: None,
                last_reason: String::new(),
                last_failover: Some(Duration::from_millis(350)),
            }),
            apiserver_ready: Some(true),
            apiserver_message: String::new(),
            error: None,
        };
        let status = NodeStatus {
            services: vec![containerd],
            wireguard: Some(wireguard),
            vip: Some(vip),
            ..NodeStatus::default()
        };
        let volume = VolumeStatus {
            name: "k3s".into(),
            size_bytes: 50 << 30,
            used_bytes: 1 << 30,
            free_bytes: 49 << 30,
            state: VolumeState::Mounted,
            ..VolumeStatus::default()
        };
        let text = scrape(Snapshot {
            status: Some(status),
            volumes: vec![volume],
        });
        for line in [
            "tfagent_service_state{service=\"containerd\",state=\"crash_looping\"} 1",
            "tfagent_service_state{service=\"containerd\",state=\"ready\"} 0",
            "tfagent_service_restarts_total{service=\"containerd\"} 3",
            "tfagent_wireguard_up{interface=\"tfk3s\"} 1",
            "tfagent_wireguard_peer_receive_bytes_total{peer=\"server-2\"} 4096",
            "tfagent_wireguard_peer_transmit_bytes_total{peer=\"server-2\"} 1024",
            "tfagent_volume_size_bytes{volume=\"k3s\"} 53687091200",
            "tfagent_volume_mounted{volume=\"k3s\"} 1",
            "tfagent_vip_holder{holder=\"server-1\"} 1",
            "tfagent_vip_epoch 4",
            "tfagent_vip_transitions_total 2",
            "tfagent_vip_last_failover_seconds 0.35",
            "tfagent_vip_election_state{state=\"master\"} 1",
            "tfagent_vip_election_state{state=\"backup\"} 0",
            "tfagent_vip_apiserver_ready 1",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        let age = text
            .lines()
            .find(|l| l.starts_with("tfagent_wireguard_peer_handshake_age_seconds{"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap();
        assert!((29.0..120.0).contains(&age), "{age}");
    }

    #[test]
    fn nothing_is_exported_before_the_first_snapshot() {
        assert!(!scrape(Snapshot::default()).contains("tfagent_service_state"));
    }
}
