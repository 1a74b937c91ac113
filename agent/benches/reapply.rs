//! A full server spec held by a real `tfagent` (a btrfs loop disk with
//! persisted paths, a WireGuard interface with 4 peers on wireguard-go,
//! containerd's and k3s's definitions, the VIP section): once it has
//! converged, how many host changes and how much time each resync pass of
//! the unchanged spec takes (goal: 0 changes), read from the agent's own
//! metrics, and the agent's RSS and CPU while it holds that spec.
//!
//! As root, in a private network and mount namespace (a `/run` of its own)
//! that end with the run; otherwise it says it was not measured.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::{
    collections::BTreeMap,
    fs,
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};
use tfagent_testkit::{tfagent_bin, tfagentctl_bin};

use common::{Figure, Goal, Summary, report};

const BENCH: &str = "reapply";
/// Set in the re-executed bench that runs inside the namespaces.
const INSIDE: &str = "TFAGENT_BENCH_REAPPLY_INSIDE";
const METRICS: &str = "127.0.0.1:9368";

fn main() {
    if !nix::unistd::geteuid().is_root() {
        common::unmeasured(
            BENCH,
            "re-apply of an unchanged full spec",
            "needs root (namespaces, loop devices)",
        );
        return;
    }
    for tool in ["ip", "losetup", "mkfs.btrfs", "wireguard-go", "unshare"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            common::unmeasured(
                BENCH,
                "re-apply of an unchanged full spec",
                &format!("needs {tool}"),
            );
            return;
        }
    }
    if std::env::var_os(INSIDE).is_some() {
        inside();
    } else {
        outside();
    }
}

/// Runs this bench again in a private network namespace and mount
/// namespace, then removes the namespace and whatever still runs in it.
fn outside() {
    let ns = format!("tfrb{}", std::process::id());
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .unwrap()
            .success()
    );
    let status = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
        ])
        .arg(std::env::current_exe().unwrap())
        .env(INSIDE, "1")
        .status();
    let pids = Command::new("ip")
        .args(["netns", "pids", &ns])
        .output()
        .unwrap();
    for pid in String::from_utf8_lossy(&pids.stdout).lines() {
        if let Ok(pid) = pid.trim().parse() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    assert!(status.unwrap().success(), "the bench failed");
}

fn must(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A loop device over a sparse file; detached when its mounts go.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).output();
    }
}

/// The agent; everything it started dies with the namespace.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spec(dir: &Path, disk: &str, keys: &[String]) -> String {
    let d = dir.display();
    let mut peers = String::new();
    for (i, (name, address)) in [
        ("server-2", "10.100.0.2"),
        ("server-3", "10.100.0.3"),
        ("worker-1", "10.100.0.11"),
        ("worker-2", "10.100.0.12"),
    ]
    .iter()
    .enumerate()
    {
        peers += &format!(
            "      - {{name: {name}, public_key: \"{}\", endpoint: \"10.99.0.{}:51820\", allowed_ips: [{address}/32], persistent_keepalive: 25}}\n",
            keys[i],
            i + 2
        );
    }
    format!(
        "node_name: server-1
role: server-init
cluster:
  token: 37a19483e94eed8fa33078987edd509271efdba80b2b9d0a
  vip: 10.100.0.250
network:
  wireguard:
    interface: tfk3s
    listen_port: 51820
    addresses: [10.100.0.1/24]
    peers:
{peers}  vip:
    virtual_router_id: 51
    priority: 150
    advert_interval_ms: 200
    servers:
      - {{name: server-1, address: 10.100.0.1}}
      - {{name: server-2, address: 10.100.0.2}}
      - {{name: server-3, address: 10.100.0.3}}
storage:
  volumes:
    - {{name: data, device: {disk}, filesystem: btrfs, mount_point: {d}/data}}
  persist:
    volume: data
    paths:
      - {{path: {d}/k3s}}
      - {{path: {d}/kubelet}}
services:
  containerd: {{binary: /nonexistent/containerd}}
  k3s: {{binary: /nonexistent/k3s}}
"
    )
}

fn ctl(socket: &Path, args: &[&str]) -> String {
    must(
        tfagentctl_bin(),
        &[&["--socket", socket.to_str().unwrap()], args].concat(),
    )
}

/// `name{labels} value` lines of the agent's metrics, summed by name and
/// `step` label.
fn scrape() -> BTreeMap<String, f64> {
    let mut stream = TcpStream::connect(METRICS).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let mut values = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("tfagent_reconcile_")) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let name = key.split('{').next().unwrap_or(key);
        let step = key
            .split("step=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("");
        *values.entry(format!("{name}/{step}")).or_default() += value;
    }
    values
}

fn total(values: &BTreeMap<String, f64>, name: &str) -> f64 {
    values
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}/")))
        .map(|(_, v)| v)
        .sum()
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    fields
        .get(11)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn inside() {
    // A /run of our own: wireguard-go's socket and the services' run dir.
    must("mount", &["-t", "tmpfs", "tfagent-bench-run", "/run"]);
    must("ip", &["link", "set", "lo", "up"]);
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    fs::File::create(&image)
        .unwrap()
        .set_len(320 << 20)
        .unwrap();
    let disk = Loop(
        must("losetup", &["-f", "--show", image.to_str().unwrap()])
            .trim()
            .to_owned(),
    );
    let socket = dir.path().join("tfagent.sock");
    let config = dir.path().join("tfagent.toml");
    fs::write(
        &config,
        format!(
            "state_dir = \"{d}/state\"\nsocket = \"{s}\"\nlog_level = \"warn\"\nresync_interval_secs = 1\nwireguard_backend = \"userspace\"\nmetrics_address = \"{METRICS}\"\nallowed_devices = [\"{disk}\"]\n[services]\nrun_dir = \"/run/tfagent\"\ncontainerd_root = \"{d}/containerd\"\nk3s_data_dir = \"{d}/k3s\"\nkubelet_root_dir = \"{d}/kubelet\"\nlog_dir = \"{d}/log\"\ncgroups = false\n",
            d = dir.path().display(),
            s = socket.display(),
            disk = disk.0,
        ),
    )
    .unwrap();
    let agent = Agent(
        Command::new(tfagent_bin())
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = agent.0.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Command::new(tfagentctl_bin())
        .args(["--socket", socket.to_str().unwrap(), "info"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(Instant::now() < deadline, "tfagent did not serve");
        thread::sleep(Duration::from_millis(50));
    }

    // Peers' keys: the shape matters, not the holders (no peer answers).
    let keys: Vec<String> = (0..4)
        .map(|_| tfagent_spec::KeyPair::generate().public().to_string())
        .collect();
    let file = dir.path().join("spec.yaml");
    fs::write(&file, spec(dir.path(), &disk.0, &keys)).unwrap();
    ctl(&socket, &["apply", "-f", file.to_str().unwrap()]);

    // Converged: storage, network and services (the VIP step after them
    // reports what this build does with the VIP).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status: serde_json::Value =
            serde_json::from_str(&ctl(&socket, &["-o", "json", "status"])).unwrap();
        let done = status["steps"].as_array().unwrap().iter().all(|s| {
            !["storage", "network", "services"].contains(&s["step"].as_str().unwrap())
                || s["condition"] == "converged"
        });
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "did not converge: {status}");
        thread::sleep(Duration::from_millis(200));
    }

    // Resync passes of the unchanged spec, one a second.
    let passes = common::knob("REAPPLY_PASSES", 10);
    thread::sleep(Duration::from_millis(1500));
    let before = scrape();
    let (ticks_before, wall) = (cpu_ticks(pid), Instant::now());
    let started_runs = before
        .get("tfagent_reconcile_duration_seconds_count/storage")
        .copied()
        .unwrap_or(0.0);
    let deadline = Instant::now() + Duration::from_secs(passes * 3 + 10);
    let after = loop {
        thread::sleep(Duration::from_millis(250));
        let now = scrape();
        let runs = now
            .get("tfagent_reconcile_duration_seconds_count/storage")
            .copied()
            .unwrap_or(0.0);
        if runs - started_runs >= passes as f64 {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {passes} resync passes"
        );
    };
    let seconds = wall.elapsed().as_secs_f64();
    let ticks = cpu_ticks(pid) - ticks_before;
    let runs = after["tfagent_reconcile_duration_seconds_count/storage"] - started_runs;
    let changes = total(&after, "tfagent_reconcile_changes_total")
        - total(&before, "tfagent_reconcile_changes_total");
    let pass_seconds = (total(&after, "tfagent_reconcile_duration_seconds_sum")
        - total(&before, "tfagent_reconcile_duration_seconds_sum"))
        / runs;

    println!(
        "a converged server spec (btrfs loop disk, 4 WireGuard peers, services, VIP section), {runs} resync passes:"
    );
    report(
        &Figure::new(
            BENCH,
            "full-spec resync pass, unchanged: host changes",
            "changes",
            Summary::single(changes),
        )
        .goal(Goal::AtMost(0.0))
        .note(format!(
            "tfagent_reconcile_changes over {runs} passes of every step"
        )),
    );
    report(
        &Figure::new(
            BENCH,
            "full-spec resync pass, unchanged: time",
            "ms",
            Summary::single(pass_seconds * 1000.0),
        )
        .note("mean of the steps' own durations per pass (tfagent_reconcile_duration_seconds)"),
    );
    let ticks_per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    report(
        &Figure::new(
            BENCH,
            "agent CPU holding the full spec (resync every 1 s)",
            "% of a core",
            Summary::single(ticks as f64 / ticks_per_second / seconds * 100.0),
        )
        .note(format!(
            "over {seconds:.0} s; the default resync is every 60 s"
        )),
    );
    report(
        &Figure::new(
            BENCH,
            "agent RSS holding the full spec",
            "KiB",
            Summary::single(rss_kib(pid) as f64),
        )
        .note("the daemon alone; wireguard-go and the services are not counted"),
    );
    drop(agent);
}
