//! The local API under load: `GetStatus` latency (p50/p99) and throughput
//! over the unix socket with 1 and 16 concurrent clients, the agent's RSS
//! before and after, and the release binaries' sizes. A real `tfagent`
//! process serves; the clients run in this process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    fs,
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use tfagent::api::{connect_unix, proto as pb};

const TFAGENT: &str = env!("CARGO_BIN_EXE_tfagent");
const TFAGENTCTL: &str = env!("CARGO_BIN_EXE_tfagentctl");
const RUN: Duration = Duration::from_secs(5);

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

async fn load(socket: &Path, clients: usize) -> (Vec<Duration>, usize) {
    let socket = Arc::new(socket.to_owned());
    let deadline = Instant::now() + RUN;
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
    all.sort_unstable();
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
    let child = Command::new(TFAGENT)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent = Agent(child);
    let pid = agent.0.id();
    let started = Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "tfagent did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let rss_idle = rss_kib(pid);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "GetStatus over the unix socket, {} s per run",
        RUN.as_secs()
    );
    println!(
        "{:<10} {:>10} {:>10} {:>12} {:>8}",
        "clients", "p50", "p99", "calls/s", "errors"
    );
    for clients in [1, 16] {
        let (latencies, errors) = runtime.block_on(load(&socket, clients));
        println!(
            "{:<10} {:>8.0}µs {:>8.0}µs {:>12.0} {:>8}",
            clients,
            percentile(&latencies, 0.5).as_secs_f64() * 1e6,
            percentile(&latencies, 0.99).as_secs_f64() * 1e6,
            latencies.len() as f64 / RUN.as_secs_f64(),
            errors
        );
    }
    let rss_after = rss_kib(pid);
    println!("agent RSS: {rss_idle} KiB idle, {rss_after} KiB after the load (goal: flat)");
    drop(agent);

    for binary in [TFAGENT, TFAGENTCTL] {
        let size = fs::metadata(binary).map(|m| m.len()).unwrap_or(0);
        let name = Path::new(binary).file_name().unwrap().to_string_lossy();
        println!(
            "binary {name}: {:.1} MiB ({} profile)",
            size as f64 / (1 << 20) as f64,
            if binary.contains("/release/") {
                "release, stripped"
            } else {
                "bench"
            }
        );
    }
}
