//! The network step against `wg syncconf`, on wireguard-go interfaces in a
//! private network namespace (as root; otherwise it says it was skipped):
//! a 1000-peer apply onto a fresh interface, and a 1-peer change on top of
//! it. Both sides configure the same peers; the agent also sets the link's
//! MTU, address and state.
//!
//! Goals: the 1000-peer apply ≤ 0.5× `wg syncconf`, the 1-peer change ≤ 0.1×
//! (it should touch one peer, not re-read them all).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use common::{Figure, Goal, Summary, report};
use tfagent::{
    network::{self, Backend},
    step::Step,
};
use tfagent_spec::{KeyPair, NodeSpec, Peer, SpecDocument, ValidationContext, Wireguard};
use tfagent_supervisor::{Supervisor, SupervisorConfig, cgroup::CgroupLayout};

const BENCH: &str = "wireguard";
/// Set in the re-executed bench that runs inside the private namespace.
const INSIDE: &str = "TFAGENT_BENCH_NETNS";

fn main() {
    if !nix::unistd::geteuid().is_root() {
        common::unmeasured(
            BENCH,
            "WireGuard apply vs wg syncconf",
            "needs root (private network namespaces)",
        );
        return;
    }
    for tool in ["ip", "wg", "wireguard-go", "setsid"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            common::unmeasured(
                BENCH,
                "WireGuard apply vs wg syncconf",
                &format!("needs {tool}"),
            );
            return;
        }
    }
    match std::env::var(INSIDE) {
        Ok(_) => inside(),
        Err(_) => outside(),
    }
}

/// Runs this bench again inside a private namespace, then removes it and
/// whatever still runs in it.
fn outside() {
    let ns = format!("twbench{}", std::process::id());
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .unwrap()
            .success()
    );
    let status = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(std::env::current_exe().unwrap())
        .env(INSIDE, &ns)
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

/// A wireguard-go of our own for one interface; stopped on drop.
struct Wg {
    child: Child,
    interface: String,
}

impl Wg {
    fn start(interface: &str) -> Self {
        let child = Command::new("wireguard-go")
            .args(["-f", interface])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let socket = socket(interface);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "wireguard-go did not start");
            thread::sleep(Duration::from_millis(10));
        }
        Self {
            child,
            interface: interface.to_owned(),
        }
    }
}

impl Drop for Wg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(socket(&self.interface));
    }
}

fn socket(interface: &str) -> PathBuf {
    Path::new(network::linux::WIREGUARD_SOCKET_DIR).join(format!("{interface}.sock"))
}

fn base_spec() -> NodeSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/agent.yaml");
    SpecDocument::parse(&fs::read_to_string(path).unwrap())
        .unwrap()
        .validate(&ValidationContext::default())
        .unwrap()
}

fn peers(keys: &[KeyPair]) -> Vec<Peer> {
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            let (hi, lo) = (i / 250, i % 250 + 2);
            Peer {
                name: format!("node-{i}").parse().unwrap(),
                public_key: key.public(),
                endpoint: Some(format!("10.201.{hi}.{lo}:51820").parse().unwrap()),
                allowed_ips: vec![format!("10.200.{hi}.{lo}/32").parse().unwrap()],
                persistent_keepalive: None,
            }
        })
        .collect()
}

fn wireguard(interface: &str, peers: Vec<Peer>) -> Wireguard {
    Wireguard {
        interface: interface.parse().unwrap(),
        listen_port: 0,
        addresses: vec!["10.200.0.1/16".parse().unwrap()],
        mtu: 1420,
        peers,
    }
}

/// The same configuration as a `wg` config file.
fn wg_config(own: &KeyPair, port: u16, peers: &[Peer]) -> String {
    let mut text = format!(
        "[Interface]\nPrivateKey = {}\nListenPort = {port}\n",
        own.private_base64()
    );
    for peer in peers {
        let _ = write!(
            text,
            "\n[Peer]\nPublicKey = {}\nEndpoint = {}\nAllowedIPs = {}\n",
            peer.public_key,
            peer.endpoint.as_ref().unwrap(),
            peer.allowed_ips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    text
}

fn syncconf(interface: &str, file: &Path) -> Duration {
    let start = Instant::now();
    let status = Command::new("wg")
        .args(["syncconf", interface])
        .arg(file)
        .status()
        .unwrap();
    let took = start.elapsed();
    assert!(status.success(), "wg syncconf failed");
    took
}

fn inside() {
    let _ = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let peer_count = common::knob("WG_PEERS", 1000) as usize;
    let rounds = common::knob("WG_ROUNDS", 5) as usize;
    let own = Arc::new(KeyPair::generate());
    let keys: Vec<KeyPair> = (0..peer_count).map(|_| KeyPair::generate()).collect();
    let all = peers(&keys);
    let mut changed = all.clone();
    changed[peer_count / 2]
        .allowed_ips
        .push("10.210.0.0/24".parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let full_conf = dir.path().join("full.conf");
    let changed_conf = dir.path().join("changed.conf");
    let tag = std::process::id() % 100_000;

    let (mut ours_full, mut ours_one, mut wg_full, mut wg_one) = (vec![], vec![], vec![], vec![]);
    let mut ours_plan = vec![];
    let mut wg_full_linked = vec![];
    for round in 0..rounds {
        let ours_if = format!("twba{tag}r{round}");
        let wg_if = format!("twbw{tag}r{round}");
        let port = 40000 + u16::try_from(round).unwrap();
        let mut spec = base_spec();
        spec.network.wireguard = wireguard(&ours_if, all.clone());
        spec.network.wireguard.listen_port = port;
        let mut spec_changed = spec.clone();
        spec_changed.network.wireguard.peers = changed.clone();
        fs::write(&full_conf, wg_config(&own, port + 100, &all)).unwrap();
        fs::write(&changed_conf, wg_config(&own, port + 100, &changed)).unwrap();

        // Both interfaces exist before the clock starts: wireguard-go's
        // start is not what is measured.
        let _ours_wg = Wg::start(&ours_if);
        let _theirs_wg = Wg::start(&wg_if);
        // wireguard-go already runs: the supervised launcher uses it as it is.
        let supervisor = Supervisor::new(
            SupervisorConfig {
                record_dir: dir.path().join("records"),
                log_dir: dir.path().join("logs"),
                cgroups: CgroupLayout::None,
                cgroup_parent: "unused".into(),
            },
            tokio_util::sync::CancellationToken::new(),
        );
        let userspace = Arc::new(network::SupervisedWireguardGo::new(
            supervisor,
            Path::new("wireguard-go"),
            Path::new(network::linux::WIREGUARD_SOCKET_DIR),
            Arc::new(tokio::sync::Notify::new()),
        ));
        let step = network::NetworkStep::new(
            Backend::Userspace,
            Arc::clone(&own),
            network::linux::host(Backend::Userspace, userspace),
        );

        let start = Instant::now();
        runtime.block_on(step.converge(&spec)).unwrap();
        ours_full.push(start.elapsed());
        let synced = syncconf(&wg_if, &full_conf);
        wg_full.push(synced);
        // The agent's apply also sets the MTU and address and brings the
        // link up (and wireguard-go starts the peers then): the same with ip.
        let start = Instant::now();
        for args in [
            vec!["link", "set", wg_if.as_str(), "mtu", "1420"],
            vec!["address", "add", "10.220.0.1/16", "dev", wg_if.as_str()],
            vec!["link", "set", wg_if.as_str(), "up"],
        ] {
            assert!(Command::new("ip").args(&args).status().unwrap().success());
        }
        wg_full_linked.push(synced + start.elapsed());

        // A 1-peer change happens on a mesh that has been running, not in
        // the instant after 1000 peers arrived (wireguard-go is still busy
        // then: its first request takes milliseconds, whoever sends it).
        thread::sleep(Duration::from_secs(1));

        // Observing and planning alone, for the breakdown.
        let start = Instant::now();
        let planned = runtime.block_on(step.plan(&spec_changed)).unwrap();
        ours_plan.push(start.elapsed());
        assert_eq!(planned.len(), 2, "{planned:?}");

        let start = Instant::now();
        runtime.block_on(step.converge(&spec_changed)).unwrap();
        ours_one.push(start.elapsed());
        wg_one.push(syncconf(&wg_if, &changed_conf));

        // Both really hold the change.
        let dump = |interface: &str| {
            let out = Command::new("wg")
                .args(["show", interface, "allowed-ips"])
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        assert!(dump(&ours_if).contains("10.210.0.0/24"));
        assert!(dump(&wg_if).contains("10.210.0.0/24"));
        assert_eq!(dump(&ours_if).lines().count(), peer_count);
    }

    println!("wireguard-go, {peer_count} peers, {rounds} rounds:");
    let summary = |times: &[Duration]| Summary::of_ms(times).unwrap();
    report(
        &Figure::new(
            BENCH,
            format!("WireGuard {peer_count}-peer apply"),
            "ms",
            summary(&ours_full),
        )
        .anchor("wg syncconf", summary(&wg_full))
        .goal(Goal::AtMost(0.5))
        .note("wireguard-go; tfagent also sets MTU, address, link up"),
    );
    report(
        &Figure::new(
            BENCH,
            format!("WireGuard {peer_count}-peer apply (vs syncconf + ip)"),
            "ms",
            summary(&ours_full),
        )
        .anchor("wg syncconf + ip link/addr", summary(&wg_full_linked))
        .goal(Goal::AtMost(0.5))
        .note("the anchor also sets MTU, address and link up with ip"),
    );
    report(
        &Figure::new(
            BENCH,
            format!("WireGuard 1-peer change of {peer_count}"),
            "ms",
            summary(&ours_one),
        )
        .anchor("wg syncconf", summary(&wg_one))
        .goal(Goal::AtMost(0.1))
        .note(format!(
            "of which observing and planning: median {:.2} ms",
            summary(&ours_plan).median
        )),
    );
}
