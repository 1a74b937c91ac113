//! End to end: a spawned `tfagent` daemon driven only through `tfagentctl`,
//! the way a person on the node would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fs,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

const TFAGENT: &str = env!("CARGO_BIN_EXE_tfagent");
const TFAGENTCTL: &str = env!("CARGO_BIN_EXE_tfagentctl");

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(format!("{name}.yaml"))
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A daemon in its own temp dir; killed and reaped when dropped, even when
/// the test fails.
struct Daemon {
    dir: tempfile::TempDir,
    child: Option<Child>,
    env: Vec<(&'static str, PathBuf)>,
}

impl Daemon {
    fn start() -> Self {
        Self::start_with_env(Vec::new())
    }

    fn start_with_env(env: Vec<(&'static str, PathBuf)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut daemon = Self {
            dir,
            child: None,
            env,
        };
        daemon.spawn();
        daemon
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/tfagent.sock")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    // ---- services ----
    /// Keeps every file of the supervised services in the temp dir, with no
    /// cgroups, so a daemon that gets to start them touches nothing of the host.
    fn services_config(&self) -> String {
        let dir = self.dir.path().join("services");
        format!(
            "[services]\nrun_dir = \"{run}\"\ncontainerd_root = \"{root}\"\nk3s_data_dir = \"{k3s}\"\nkubelet_root_dir = \"{kubelet}\"\nlog_dir = \"{log}\"\ncgroups = false\n",
            run = dir.join("run").display(),
            root = dir.join("containerd").display(),
            k3s = dir.join("k3s").display(),
            kubelet = dir.join("kubelet").display(),
            log = dir.join("log").display(),
        )
    }

    fn spawn(&mut self) {
        let config = self.dir.path().join("tfagent.toml");
        fs::write(
            &config,
            format!(
                "state_dir = \"{}\"\nsocket = \"{}\"\nlog_format = \"json\"\nlog_level = \"tfagent=trace,info\"\nsocket_allowed_uids = [{}]\n{}",
                self.state_dir().display(),
                self.socket().display(),
                nix::unistd::geteuid().as_raw(),
                self.services_config(),
            ),
        )
        .unwrap();
        let log = fs::File::create(self.dir.path().join("tfagent.log")).unwrap();
        let child = Command::new(TFAGENT)
            .arg("--config")
            .arg(&config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ctl(&["info"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "tfagent did not serve within 30 s; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("tfagent.log")).unwrap_or_default()
    }

    fn ctl_command(&self, args: &[&str]) -> Command {
        self.ctl_command_of(Path::new(TFAGENTCTL), args)
    }

    fn ctl_command_of(&self, binary: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(binary);
        command
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        command
    }

    fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_command(args).output().unwrap()
    }

    /// Runs tfagentctl and returns its stdout; it must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.ctl(args);
        assert!(
            output.status.success(),
            "tfagentctl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    /// SIGTERM, as zinit and systemd stop it; returns whether it exited 0.
    fn terminate(&mut self) -> bool {
        let mut child = self.child.take().unwrap();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("tfagent ignored SIGTERM for 10 s");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn apply_dry_run_apply_again_and_survive_a_restart() {
    let mut daemon = Daemon::start();
    let spec = example("server-init");
    let spec = spec.to_str().unwrap();

    let dry = daemon.ok(&["apply", "-f", spec, "--dry-run"]);
    assert!(dry.contains("dry run"), "{dry}");
    assert!(
        dry.contains("plan:") && dry.contains("storage") && dry.contains("not implemented"),
        "{dry}"
    );
    assert_eq!(daemon.json(&["status"])["desired_generation"], 0);

    let applied = daemon.ok(&["apply", "-f", spec]);
    assert!(applied.contains("applied: generation 1"), "{applied}");
    let again = daemon.ok(&["apply", "-f", spec]);
    assert!(again.contains("unchanged: generation 1"), "{again}");
    let dry = daemon.json(&["apply", "-f", spec, "--dry-run"]);
    assert_eq!(dry["changed"], false);
    assert_eq!(dry["generation"], 1);

    // A spec on standard input, and YAML output.
    let mut piped = daemon.ctl_command(&["apply", "-f", "-", "--dry-run", "-o", "yaml"]);
    let stdin = fs::File::open(example("server-init")).unwrap();
    let output = piped.stdin(stdin).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("changed: false") && stdout.contains("generation: 1"),
        "{stdout}"
    );

    let status = daemon.ok(&["status"]);
    assert!(status.contains("server-1 (server-init)"), "{status}");
    assert!(status.contains("desired 1"), "{status}");
    for step in ["storage", "network", "services", "vip", "addons"] {
        assert!(
            status.lines().any(|l| l.starts_with(step)),
            "{step} missing:\n{status}"
        );
    }

    let spec_text = daemon.ok(&["get", "spec"]);
    assert!(spec_text.contains("<redacted>"), "{spec_text}");
    let token = fs::read_to_string(example("server-init")).unwrap();
    let token = token
        .lines()
        .find_map(|l| l.trim().strip_prefix("token:"))
        .unwrap()
        .trim()
        .trim_matches('"');
    assert!(!spec_text.contains(token), "the token leaked");
    assert!(!daemon.log().contains(token), "the token reached the log");

    let events = daemon.ok(&["events"]);
    assert!(events.contains("spec accepted"), "{events}");

    assert!(daemon.terminate(), "tfagent exits 0 on SIGTERM");
    assert!(!daemon.socket().exists(), "the socket is removed on exit");

    daemon.spawn();
    assert_eq!(
        daemon.json(&["status"])["desired_generation"],
        1,
        "resumed from the stored spec"
    );
    let info = daemon.json(&["info"]);
    assert_eq!(info["generation"], 1);
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn an_invalid_spec_is_refused_with_every_field_and_changes_nothing() {
    let daemon = Daemon::start();
    let good = example("server-init");
    daemon.ok(&["apply", "-f", good.to_str().unwrap()]);
    let stored = fs::read(daemon.state_dir().join("spec.json")).unwrap();

    let text = fs::read_to_string(&good)
        .unwrap()
        .replace("node_name: server-1", "node_name: Server_1")
        .replace("listen_port: 51820", "listen_port: 51820\n    mtu: 100")
        .replace("cluster_cidr: 10.42.0.0/16", "cluster_cidr: 10.42.0.1/16");
    let bad = daemon.dir.path().join("bad.yaml");
    fs::write(&bad, text).unwrap();
    let output = daemon.ctl(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    // (A host without btrfs would add a fourth fault: the examples use it.)
    assert!(
        stderr.starts_with("tfagentctl: the agent refused the spec: "),
        "{stderr}"
    );
    for field in [
        "node_name:",
        "network.wireguard.mtu:",
        "cluster.cluster_cidr:",
    ] {
        assert!(
            stderr.contains(&format!("\n  {field}")),
            "{field} missing:\n{stderr}"
        );
    }
    assert!(
        daemon.log().contains("spec refused"),
        "the agent logs refusals"
    );
    assert_eq!(
        fs::read(daemon.state_dir().join("spec.json")).unwrap(),
        stored
    );
    assert_eq!(daemon.json(&["status"])["desired_generation"], 1);

    // A field the schema does not know is refused before anything is sent.
    let unknown = daemon.dir.path().join("unknown.yaml");
    let text = fs::read_to_string(&good)
        .unwrap()
        .replace("listen_port: 51820", "listen_port: 51820\n    mtuu: 9000");
    fs::write(&unknown, text).unwrap();
    let output = daemon.ctl(&["apply", "-f", unknown.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("mtuu"), "{stderr}");

    // A word the wire cannot carry is reported by tfagentctl itself.
    let misspelled = daemon.dir.path().join("misspelled.yaml");
    let text = fs::read_to_string(&good)
        .unwrap()
        .replace("role: server-init", "role: master");
    fs::write(&misspelled, text).unwrap();
    let output = daemon.ctl(&["apply", "-f", misspelled.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("\n  role: "), "{stderr}");
    assert!(stderr.contains("master"), "{stderr}");

    let output = daemon.ctl(&["apply", "-f", "/nonexistent/spec.yaml"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/spec.yaml"));
}

#[test]
fn tells_systemd_it_is_ready_and_stops_promptly_with_a_follower_attached() {
    use std::os::unix::net::UnixDatagram;

    // A notify socket as systemd hands one to a Type=notify service.
    let notify_dir = tempfile::tempdir().unwrap();
    let notify_path = notify_dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut daemon = Daemon::start_with_env(vec![("NOTIFY_SOCKET", notify_path)]);
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));

    let follower = daemon
        .ctl_command(&["events", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut follower = ChildGuard(Some(follower));
    let lines = follow_lines(follower.0.as_mut().unwrap().stdout.take().unwrap());
    let spec = example("agent");
    daemon.ok(&["apply", "-f", spec.to_str().unwrap()]);
    // The follower is connected once it has printed the acceptance.
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("spec accepted")) {
        seen.push(
            lines
                .recv_timeout(Duration::from_secs(30))
                .expect("the follower prints the accepted spec"),
        );
    }

    // An open event stream must not hold up the shutdown.
    assert!(daemon.terminate(), "tfagent exits 0 on SIGTERM");
    let n = notify.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    let output = follower.0.take().unwrap().wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("tfagent is shutting down"), "{stderr}");
    assert!(!output.status.success(), "a cut-off follow is an error");
}

/// The lines a child prints, as they come.
fn follow_lines(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;

    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Kills a helper process if the test fails before reaping it.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn no_agent_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(TFAGENTCTL)
        .arg("--socket")
        .arg(dir.path().join("absent.sock"))
        .arg("status")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("cannot reach tfagent"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[test]
fn a_non_root_uid_is_refused() {
    if !is_root() {
        eprintln!("skipped: a_non_root_uid_is_refused needs root to act as another uid");
        return;
    }
    let daemon = Daemon::start();
    // Let uid 65534 reach the socket's directory.
    fs::set_permissions(daemon.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // A copy of tfagentctl that uid 65534 may run, wherever the checkout is.
    let binary = daemon.dir.path().join("tfagentctl");
    fs::copy(TFAGENTCTL, &binary).unwrap();
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |args: &[&str]| {
        let mut command = daemon.ctl_command_of(&binary, args);
        command.uid(65534).gid(65534);
        command.output().unwrap()
    };

    // The socket is 0600: the kernel refuses the connection.
    let output = as_nobody(&["status"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("Permission denied"), "{stderr}");

    // Even with the mode loosened by mistake, the peer-credential check holds.
    fs::set_permissions(daemon.socket(), fs::Permissions::from_mode(0o666)).unwrap();
    // A copy nobody can read, wherever the checkout lives.
    let spec = daemon.dir.path().join("spec.yaml");
    fs::copy(example("server-init"), &spec).unwrap();
    fs::set_permissions(&spec, fs::Permissions::from_mode(0o644)).unwrap();
    let output = as_nobody(&["apply", "-f", spec.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("uid 65534 may not use the tfagent socket"),
        "{stderr}"
    );
    assert_eq!(
        daemon.json(&["status"])["desired_generation"],
        0,
        "nothing was applied"
    );
}

// ---- services ----
#[test]
fn logs_and_restart_name_the_missing_service() {
    let daemon = Daemon::start();
    for args in [
        &["logs", "k3s", "--tail", "5"][..],
        &["restart", "containerd"][..],
    ] {
        let output = daemon.ctl(args);
        assert!(!output.status.success(), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("no service named"), "{args:?}: {stderr}");
    }
}
