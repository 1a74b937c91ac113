//! The local API under load: `GetStatus` latency (p50/p99) and throughput
//! over the unix socket with 1 and 16 concurrent clients, the agent's RSS
//! before and after, and the release binaries' sizes. A real `tfagent`
//! process serves; the clients run in this process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::{
    fs,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};
use tfagent_testkit::{tfagent_bin, tfagentctl_bin};

use common::{Figure, Goal, LocalAgent, Summary, report, rss_kib};
use tfagent_proto::v1 as pb;
use tfagentctl::client::connect_unix;

const BENCH: &str = "api";

async fn load(socket: &Path, clients: usize, run: Duration) -> (Vec<Duration>, usize) {
    let socket = Arc::new(socket.to_owned());
    let deadline = Instant::now() + run;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let socket = Arc::clone(&socket);
        tasks.push(tokio::spawn(async move {
            let mut client = connect_unix(&socket).await.unwrap();
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let started = Instant::now();
                match client.get_status(pb::GetStatusRequest {}).await {
                    Ok(_) => latencies.push(started.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, failed) = task.await.unwrap();
        all.extend(latencies);
        errors += failed;
    }
    (all, errors)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("tfagent.sock");
    let config = dir.path().join("tfagent.toml");
    fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\nsocket = \"{}\"\nlog_level = \"warn\"\nsocket_allowed_uids = [{}]\n",
            dir.path().join("state").display(),
            socket.display(),
            nix::unistd::geteuid().as_raw()
        ),
    )
    .unwrap();
    let agent = LocalAgent::start(tfagent_bin(), &config, &socket);
    let pid = agent.pid();
    std::thread::sleep(Duration::from_millis(200));
    let rss_idle = rss_kib(pid);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = Duration::from_secs(common::knob("API_SECS", 5));
    println!(
        "GetStatus over the unix socket, {} s per run",
        run.as_secs()
    );
    for clients in [1, 16] {
        let (latencies, errors) = runtime.block_on(load(&socket, clients, run));
        let us: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        let note = format!("{errors} errors");
        match Summary::of(&us) {
            Some(latency) => {
                report(
                    &Figure::new(
                        BENCH,
                        format!("GetStatus latency, {clients} client(s)"),
                        "µs",
                        latency,
                    )
                    .note(note.clone()),
                );
                report(
                    &Figure::new(
                        BENCH,
                        format!("GetStatus throughput, {clients} client(s)"),
                        "calls/s",
                        Summary::single(latencies.len() as f64 / run.as_secs_f64()),
                    )
                    .note(note),
                );
            }
            None => common::unmeasured(
                BENCH,
                &format!("GetStatus, {clients} client(s)"),
                "no call succeeded",
            ),
        }
    }
    let rss_after = rss_kib(pid);
    report(
        &Figure::new(
            BENCH,
            "agent RSS after the GetStatus load",
            "KiB",
            Summary::single(rss_after as f64),
        )
        .anchor("idle RSS before it", Summary::single(rss_idle as f64))
        .goal(Goal::AtMost(1.2))
        .note("goal: flat (within 20 % of idle)"),
    );
    drop(agent);

    for binary in [tfagent_bin(), tfagentctl_bin()] {
        let size = fs::metadata(binary).map(|m| m.len()).unwrap_or(0);
        let name = Path::new(binary).file_name().unwrap().to_string_lossy();
        let profile = if binary.contains("/release/") {
            "release profile, stripped"
        } else {
            "bench profile"
        };
        report(
            &Figure::new(
                BENCH,
                format!("binary size: {name}"),
                "MiB",
                Summary::single(size as f64 / (1 << 20) as f64),
            )
            .note(profile),
        );
    }
}
