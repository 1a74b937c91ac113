//! Prometheus metrics on an HTTP endpoint (off unless the boot config gives
//! an address). Reconcile runs are counted as they happen; everything else
//! is read from the agent's status at scrape time, so the figures can never
//! disagree with `tfagentctl status`.

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
        counter::Counter,
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
    control::{Controller, VERSION},
    reconcile::{Condition, StepName},
};

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

/// How a converge run of a step ended, as the metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    UpToDate,
    Applied { changes: usize },
    Failed,
    NotImplemented,
}

impl RunResult {
    fn label(self) -> &'static str {
        match self {
            RunResult::UpToDate => "up_to_date",
            RunResult::Applied { .. } => "applied",
            RunResult::Failed => "failed",
            RunResult::NotImplemented => "not_implemented",
        }
    }
}

/// Counters the reconciler feeds as it runs steps.
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

impl ReconcileMetrics {
    /// Records one converge run of `step` (blocked steps do not run).
    pub fn observe(&self, step: StepName, result: RunResult, took: Duration) {
        let step = step.as_str();
        self.runs
            .get_or_create(&RunLabels {
                step,
                result: result.label(),
            })
            .inc();
        if let RunResult::Applied { changes } = result {
            self.changes
                .get_or_create(&StepLabels { step })
                .inc_by(changes as u64);
        }
        self.duration
            .get_or_create(&StepLabels { step })
            .observe(took.as_secs_f64());
    }

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
        registry.register_collector(Box::new(StatusCollector { controller }));
        Self { registry }
    }

    /// The exposition text of one scrape.
    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Reads the agent's status at each scrape.
#[derive(Debug)]
struct StatusCollector {
    controller: Arc<Controller>,
}

fn condition_label(condition: Condition) -> &'static str {
    match condition {
        Condition::Pending => "pending",
        Condition::Progressing => "progressing",
        Condition::Converged => "converged",
        Condition::Failed => "failed",
        Condition::Blocked => "blocked",
        Condition::NotImplemented => "not_implemented",
    }
}

const CONDITIONS: [Condition; 6] = [
    Condition::Pending,
    Condition::Progressing,
    Condition::Converged,
    Condition::Failed,
    Condition::Blocked,
    Condition::NotImplemented,
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

impl Collector for StatusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let status = self.controller.status();
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
        Ok(())
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
                    async move { Ok::<_, Infallible>(respond(&metrics, &request)) }
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

fn respond<B>(metrics: &Metrics, request: &Request<B>) -> Response<Full<Bytes>> {
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
    match metrics.render() {
        Ok(text) => reply(StatusCode::OK, CONTENT_TYPE, text),
        Err(fmt::Error) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "encoding the metrics failed\n".into(),
        ),
    }
}
