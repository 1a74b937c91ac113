//! A `tfagent` daemon in a network namespace of its own (so its WireGuard
//! interface and routes never touch the host's), with its state, services
//! and logs in a temp dir: started, killed with SIGKILL, started again.
//! Everything it made goes when it is dropped, even when a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub use crate::netns::unique;

/// Why this machine cannot run a namespaced agent, if it cannot.
pub fn cannot_run() -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root");
    }
    if !crate::netns::have_tools(&["ip", "wireguard-go", "unshare", "nsenter"]) {
        return Some("needs ip, wireguard-go, unshare and nsenter");
    }
    None
}

/// Private mount and network namespaces held open by a `sleep`, with a
/// `/run` of their own (wireguard-go's control sockets stay inside), so an
/// agent restarted in them finds its interface, mounts and children again,
/// and the host's own network and mounts never change. What runs in them is
/// killed on drop; their mounts go with them.
#[derive(Debug)]
pub struct Netns {
    holder: Child,
}

impl Netns {
    pub fn new() -> Self {
        let holder = Command::new("unshare")
            .args([
                "--mount",
                "--net",
                "--propagation",
                "private",
                "--",
                "sleep",
                "3600",
            ])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let ns = Self { holder };
        let own = fs::read_link("/proc/self/ns/mnt").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while fs::read_link(format!("/proc/{}/ns/mnt", ns.pid()))
            .ok()
            .as_ref()
            == Some(&own)
            || fs::read_link(format!("/proc/{}/exe", ns.pid()))
                .is_ok_and(|exe| !exe.ends_with("sleep"))
        {
            assert!(Instant::now() < deadline, "unshare did not start");
            thread::sleep(Duration::from_millis(10));
        }
        ns.run_ok("mount", &["-t", "tmpfs", "tfagent-test-run", "/run"]);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn pid(&self) -> String {
        self.holder.id().to_string()
    }

    /// A command that runs inside the namespaces.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .args(["-t", &self.pid(), "-m", "-n", "--", program])
            .stdin(Stdio::null());
        command
    }

    /// Runs `program` inside.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program).args(args).output().unwrap()
    }

    /// Runs `program` inside; it must succeed. Its stdout.
    pub fn run_ok(&self, program: &str, args: &[&str]) -> String {
        let output = self.run(program, args);
        assert!(
            output.status.success(),
            "in ns: {program} {args:?}: {output:?}"
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `ip ARGS` inside, which must succeed; its stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        self.run_ok("ip", args)
    }

    /// The namespace's mountinfo, each line split into its fields.
    pub fn mountinfo(&self) -> Vec<Vec<String>> {
        self.run_ok("cat", &["/proc/self/mountinfo"])
            .lines()
            .map(|l| l.split(' ').map(str::to_owned).collect())
            .collect()
    }

    /// The mount points of the namespace, one per mount (a point mounted
    /// twice shows twice).
    pub fn mount_points(&self) -> Vec<String> {
        self.mountinfo()
            .into_iter()
            .filter_map(|fields| fields.into_iter().nth(4))
            .collect()
    }

    /// The mountinfo lines (split) whose mount point is `target`.
    pub fn mounts_at(&self, target: &Path) -> Vec<Vec<String>> {
        let target = target.to_str().unwrap();
        self.mountinfo()
            .into_iter()
            .filter(|f| f[4] == target)
            .collect()
    }

    /// The processes in the network namespace, but the holder.
    pub fn pids(&self) -> Vec<i32> {
        let Ok(netns) = fs::read_link(format!("/proc/{}/ns/net", self.pid())) else {
            return Vec::new();
        };
        let holder = self.holder.id();
        fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| u32::try_from(pid).ok() != Some(holder))
            .filter(|pid| {
                fs::read_link(format!("/proc/{pid}/ns/net")).ok().as_ref() == Some(&netns)
            })
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
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// An agent in its own namespace, userspace WireGuard, its services kept in
/// its temp dir.
#[derive(Debug)]
pub struct NsAgent {
    child: Option<Child>,
    // Before the dir: what runs inside is killed, the mounts go, then the
    // files are removed.
    pub ns: Netns,
    pub dir: tempfile::TempDir,
    pub interface: String,
    /// Boot config lines beyond the ones every agent here has.
    extra_config: String,
}

impl NsAgent {
    pub fn start() -> Self {
        Self::start_with(String::new())
    }

    pub fn start_with(extra_config: String) -> Self {
        let mut agent = Self {
            child: None,
            ns: Netns::new(),
            // Stand-in binaries go here: not under /tmp.
            dir: crate::trusted_tempdir(),
            interface: unique("tsw"),
            extra_config,
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
                "state_dir = \"{}\"\nsocket = \"{}\"\nlog_level = \"tfagent=trace,info\"\nresync_interval_secs = 2\nwireguard_backend = \"userspace\"\n{}{}",
                self.state_dir().display(),
                self.socket().display(),
                self.extra_config,
                crate::services_config(&self.dir.path().join("services")),
            ),
        )
        .unwrap();
        // nsenter execs the agent: the child is the agent itself.
        let child = crate::start_tfagent(
            self.ns.command(crate::tfagent_bin()),
            &config,
            &self.log_path(),
            || self.ctl(&["info"]).status.success(),
        );
        self.child = Some(child);
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
        crate::tfagentctl(&self.socket(), args)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        crate::succeeded(self.ctl(args), args, &self.log())
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
        if thread::panicking() {
            println!(
                "---- log of the agent in {}:\n{}",
                self.ns.pid(),
                self.log()
            );
        }
    }
}
