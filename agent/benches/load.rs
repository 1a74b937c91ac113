//! The local API under a crowd: 100 concurrent clients, each on its own
//! connection to the unix socket, mixing `GetStatus` (60 of them),
//! dry-run `Apply` of the server-init example (20) and `WatchEvents`
//! streams that follow and are re-opened every 2 s (20), for 60 s
//! (TFAGENT_BENCH_SECS shortens it). Prints throughput, p50/p99 latency per
//! kind, errors (goal 0) and the agent's RSS at the start and the end
//! (goal: flat). A real `tfagent` process serves; it is given no spec, so
//! nothing on the host changes (dry runs only read it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use common::{Figure, Goal, LocalAgent, Summary, report, rss_kib};
use std::{
    fs,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};
use tfagent_testkit::tfagent_bin;

use tfagent_proto::v1 as pb;
use tfagent_spec::SpecDocument;
use tfagentctl::client::connect_unix;

const CLIENTS: usize = 100;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Status,
    DryRun,
    Watch,
}

impl Kind {
    fn of(client: usize) -> Self {
        match client % 10 {
            0..=5 => Kind::Status,
            6 | 7 => Kind::DryRun,
            _ => Kind::Watch,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Status => "GetStatus",
            Kind::DryRun => "Apply (dry run)",
            Kind::Watch => "WatchEvents (open)",
        }
    }
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

async fn client(
    socket: Arc<std::path::PathBuf>,
    kind: Kind,
    spec: pb::NodeSpec,
    until: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut client = match connect_unix(&socket).await {
        Ok(client) => client,
        Err(error) => {
            tally.errors += 1;
            tally.first_error = Some(error.to_string());
            return tally;
        }
    };
    while Instant::now() < until {
        let started = Instant::now();
        let result = match kind {
            Kind::Status => client.get_status(pb::GetStatusRequest {}).await.map(drop),
            Kind::DryRun => client
                .apply(pb::ApplyRequest {
                    spec: Some(spec.clone()),
                    mode: pb::ApplyMode::DryRun.into(),
                    try_timeout: None,
                })
                .await
                .map(drop),
            Kind::Watch => match client
                .watch_events(pb::WatchEventsRequest { follow: true })
                .await
            {
                Ok(stream) => {
                    tally.latencies.push(started.elapsed());
                    // Hold the stream open a while, reading what comes.
                    let mut stream = stream.into_inner();
                    let hold = tokio::time::sleep(
                        Duration::from_secs(2).min(until.saturating_duration_since(Instant::now())),
                    );
                    tokio::pin!(hold);
                    loop {
                        tokio::select! {
                            () = &mut hold => break,
                            message = stream.message() => match message {
                                Ok(Some(_)) => {}
                                Ok(None) => break,
                                Err(status) => {
                                    tally.errors += 1;
                                    tally.first_error.get_or_insert(status.to_string());
                                    break;
                                }
                            },
                        }
                    }
                    continue;
                }
                Err(status) => Err(status),
            },
        };
        match result {
            Ok(()) => tally.latencies.push(started.elapsed()),
            Err(status) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(status.to_string());
            }
        }
    }
    tally
}

fn main() {
    let run = Duration::from_secs(
        std::env::var("TFAGENT_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("tfagent.sock");
    let config = dir.path().join("tfagent.toml");
    let services = dir.path().join("services");
    fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\nsocket = \"{}\"\nlog_level = \"warn\"\nsocket_allowed_uids = [{}]\n[services]\nrun_dir = \"{}\"\ncontainerd_root = \"{}\"\nk3s_data_dir = \"{}\"\nkubelet_root_dir = \"{}\"\nlog_dir = \"{}\"\ncgroups = false\n",
            dir.path().join("state").display(),
            socket.display(),
            nix::unistd::geteuid().as_raw(),
            services.join("run").display(),
            services.join("containerd").display(),
            services.join("k3s").display(),
            services.join("kubelet").display(),
            services.join("log").display(),
        ),
    )
    .unwrap();
    let agent = LocalAgent::start(tfagent_bin(), &config, &socket);
    let pid = agent.pid();
    std::thread::sleep(Duration::from_millis(300));
    let rss_start = rss_kib(pid);

    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/server-init.yaml");
    let mut document = SpecDocument::parse(&fs::read_to_string(example).unwrap()).unwrap();
    // An interface the host does not have: the dry runs read, never find it.
    document.network.wireguard.interface = format!("tfl{}", std::process::id() % 100_000);
    // Without the whole-disk volume, whose device this host lacks.
    document.storage.volumes.retain(|v| v.device.is_none());
    document.addons.local_path.path = "/var/lib/rancher/k3s/storage".into();
    let spec = pb::NodeSpec::from(document);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{CLIENTS} clients over the unix socket for {} s",
        run.as_secs()
    );
    let until = Instant::now() + run;
    // RSS once a second: the start is an idle agent, so what matters for
    // "flat" is whether it keeps growing once the crowd is connected.
    let sampler = std::thread::spawn(move || {
        let mut samples = Vec::new();
        while Instant::now() < until {
            std::thread::sleep(Duration::from_secs(1));
            samples.push(rss_kib(pid));
        }
        samples
    });
    let socket = Arc::new(socket);
    let tallies: Vec<(Kind, Tally)> = runtime.block_on(async {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let kind = Kind::of(i);
                (
                    kind,
                    tokio::spawn(client(Arc::clone(&socket), kind, spec.clone(), until)),
                )
            })
            .collect();
        let mut tallies = Vec::new();
        for (kind, task) in tasks {
            tallies.push((kind, task.await.unwrap()));
        }
        tallies
    });
    // Let the agent drop the closed connections before measuring.
    std::thread::sleep(Duration::from_secs(1));
    let rss_end = rss_kib(pid);

    println!(
        "{:<20} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "call", "calls", "calls/s", "p50", "p99", "errors"
    );
    let mut total = 0;
    let mut errors = 0;
    let mut first_error = None;
    for kind in [Kind::Status, Kind::DryRun, Kind::Watch] {
        let mut latencies: Vec<Duration> = Vec::new();
        let mut kind_errors = 0;
        for (_, tally) in tallies.iter().filter(|(k, _)| *k == kind) {
            latencies.extend(&tally.latencies);
            kind_errors += tally.errors;
            if first_error.is_none() {
                first_error.clone_from(&tally.first_error);
            }
        }
        latencies.sort_unstable();
        println!(
            "{:<20} {:>10} {:>10.0} {:>8.2}ms {:>8.2}ms {:>8}",
            kind.name(),
            latencies.len(),
            latencies.len() as f64 / run.as_secs_f64(),
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            kind_errors
        );
        total += latencies.len();
        errors += kind_errors;
    }
    let mut all: Vec<Duration> = tallies
        .iter()
        .flat_map(|(_, t)| t.latencies.iter().copied())
        .collect();
    all.sort_unstable();
    println!(
        "all: {total} calls, {:.0} calls/s, p99 {:.2} ms, {errors} errors (goal 0){}",
        total as f64 / run.as_secs_f64(),
        percentile(&all, 0.99).as_secs_f64() * 1e3,
        first_error.map_or(String::new(), |e| format!("; first: {e}"))
    );
    let mix = format!(
        "{CLIENTS} clients (status, dry-run applies, event streams), {} s",
        run.as_secs()
    );
    report(
        &Figure::new(
            "load",
            "throughput under load",
            "calls/s",
            Summary::single(total as f64 / run.as_secs_f64()),
        )
        .note(mix.clone()),
    );
    if let Some(latency) = Summary::of_ms(&all) {
        report(&Figure::new("load", "call latency under load", "ms", latency).note(mix.clone()));
    }
    report(
        &Figure::new(
            "load",
            "errors under load",
            "calls",
            Summary::single(errors as f64),
        )
        .goal(Goal::AtMost(0.0))
        .note(mix),
    );
    let samples = sampler.join().unwrap();
    // After a tenth of the run (at least 1 s): every connection is open.
    let warm = samples
        .get(
            (samples.len() / 10)
                .max(1)
                .min(samples.len().saturating_sub(1)),
        )
        .copied()
        .unwrap_or(rss_start);
    let peak = samples.iter().copied().max().unwrap_or(rss_end);
    let every: Vec<String> = samples
        .iter()
        .step_by((samples.len() / 12).max(1))
        .map(|kib| format!("{}", kib / 1024))
        .collect();
    println!("agent RSS through the run (MiB): {}", every.join(" "));
    println!(
        "agent RSS: {rss_start} KiB idle at the start, {warm} KiB once loaded, {peak} KiB at most, {rss_end} KiB at the end (goal: flat under load; {:+.1}% from loaded to end)",
        (rss_end as f64 - warm as f64) * 100.0 / warm.max(1) as f64
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    report(
        &Figure::new(
            "load",
            "agent RSS after the load run",
            "MiB",
            Summary::single(mib(rss_end)),
        )
        .anchor("the same agent once loaded", Summary::single(mib(warm)))
        .goal(Goal::AtMost(1.05))
        .note(format!(
            "flat means within 5 % of its loaded size; {} MiB idle before",
            mib(rss_start)
        )),
    );
    drop(agent);
}
