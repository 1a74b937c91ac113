//! A `tfagent` daemon in a network namespace of its own (so its WireGuard
//! interface and routes never touch the host's), with its state, services
//! and logs in a temp dir: started, killed with SIGKILL, started again.
//! Everything it made goes when it is dropped, even when a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub const TFAGENT: &str = env!("CARGO_BIN_EXE_tfagent");

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call: `{tag}{pid}x{n}`.
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{tag}{}x{n}", std::process::id() % 1_000_000)
}

/// Why this machine cannot run a namespaced agent, if it cannot.
pub fn cannot_run() -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root");
    }
    for tool in ["ip", "wireguard-go"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some("needs ip and wireguard-go");
        }
    }
    None
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A network namespace; what runs in it is killed and it is deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = unique(tag);
        let added = run("ip", &["netns", "add", &name]);
        assert!(added.status.success(), "ip netns add {name}: {added:?}");
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ARGS`, which must succeed; its stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend(args);
        let output = run("ip", &all);
        assert!(output.status.success(), "ip {all:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn pids(&self) -> Vec<i32> {
        String::from_utf8_lossy(&run("ip", &["netns", "pids", &self.name]).stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for _ in 0..100 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// An agent in its own namespace, userspace WireGuard, its services kept in
/// its temp dir.
pub struct NsAgent {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub interface: String,
    // Dropped last: kills what still runs in it (wireguard-go, services).
    pub ns: Netns,
}

impl NsAgent {
    pub fn start() -> Self {
        let mut agent = Self {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            interface: unique("tsw"),
            ns: Netns::new("tsa"),
        };
        agent.spawn();
        agent
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/tfagent.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("tfagent.log")
    }

    /// Starts the daemon and waits until it serves.
    pub fn spawn(&mut self) {
        let config = self.dir.path().join("tfagent.toml");
        fs::write(
            &config,
            format!(
                "state_dir = \"{}\"\nsocket = \"{}\"\nlog_level = \"tfagent=trace,info\"\nresync_interval_secs = 2\nwireguard_backend = \"userspace\"\n{}",
                self.state_dir().display(),
                self.socket().display(),
                super::services_config(&self.dir.path().join("services")),
            ),
        )
        .unwrap();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        // `ip netns exec` execs the agent: the child is the agent itself.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns.name, TFAGENT, "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ctl(&["info"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "tfagent did not serve:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, no goodbye; reaped.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        super::tfagentctl(&self.socket(), args)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        super::succeeded(self.ctl(args), args, &self.log())
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    /// Writes `spec` to a file of the temp dir and returns its path.
    pub fn spec_file(&self, spec: &Value) -> PathBuf {
        let file = self.dir.path().join(format!("{}.json", unique("spec")));
        fs::write(&file, serde_json::to_vec(spec).unwrap()).unwrap();
        file
    }

    /// The interface's addresses and routes as `ip` shows them, and its
    /// peers' allowed IPs as status shows them.
    pub fn link_addresses(&self) -> Vec<String> {
        let text = self.ns.ip(&["-o", "addr", "show", "dev", &self.interface]);
        text.lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                words.find(|w| *w == "inet" || *w == "inet6")?;
                words.next().map(str::to_owned)
            })
            .filter(|a| !a.starts_with("fe80"))
            .collect()
    }

    pub fn routes(&self) -> Vec<String> {
        self.ns
            .ip(&["route", "show", "dev", &self.interface])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Where the supervised services' files are.
    pub fn services_dir(&self) -> PathBuf {
        self.dir.path().join("services")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for NsAgent {
    fn drop(&mut self) {
        self.kill9();
        // wireguard-go leaves its control socket; the namespace (dropped
        // after this) kills the process.
        let _ = fs::remove_file(
            Path::new("/var/run/wireguard").join(format!("{}.sock", self.interface)),
        );
        if thread::panicking() {
            println!("---- log of {}:\n{}", self.ns.name, self.log());
        }
    }
}
