//! Named network namespaces for the end-to-end tests and benches, and the
//! small process helpers they share. Every name carries the pid and a
//! counter, so runs in parallel never collide.

use std::{
    fs,
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call: `{tag}{pid}x{n}`.
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{tag}{}x{n}", std::process::id() % 1_000_000)
}

/// Whether every one of `tools` is on PATH (or in /usr/sbin).
pub fn have_tools(tools: &[&str]) -> bool {
    tools.iter().all(|tool| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool} || test -x /usr/sbin/{tool}"))
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs `program`, which must succeed; its stdout.
pub fn must(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

pub fn kill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// A named network namespace (`ip netns`); what runs in it is killed, and
/// it is deleted, on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = unique(tag);
        must("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS`, which must succeed; its stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend(args);
        must("ip", &all)
    }

    /// Runs a command inside.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", self.name.as_str()];
        all.extend(args);
        run("ip", &all)
    }

    pub fn pings(&self, address: &str) -> bool {
        self.exec(&["ping", "-c", "1", "-W", "1", address])
            .status
            .success()
    }

    /// Pings until an answer (the first packets wait for a handshake).
    pub fn reaches(&self, address: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.pings(address) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
        }
    }

    pub fn pids(&self) -> Vec<i32> {
        String::from_utf8_lossy(&run("ip", &["netns", "pids", &self.name]).stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// The pids inside whose command is `comm`.
    pub fn pids_of(&self, comm: &str) -> Vec<i32> {
        self.pids()
            .into_iter()
            .filter(|pid| {
                fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
            })
            .collect()
    }

    /// SIGKILLs everything inside (wireguard-go and other services run in
    /// sessions of their own: they are ours to stop), until nothing is left.
    pub fn kill_all(&self) {
        for _ in 0..100 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                kill(pid);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.kill_all();
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// Starts `tfagent --config CONFIG` inside `ns` (see
/// [`crate::start_tfagent`]).
pub fn spawn_tfagent(
    ns: &Netns,
    tfagent: &str,
    config: &std::path::Path,
    log: &std::path::Path,
    serves: impl Fn() -> bool,
) -> std::process::Child {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", &ns.name, tfagent]);
    crate::start_tfagent(command, config, log, serves)
}
