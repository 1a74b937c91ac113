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
use tfagent_testkit::{tfagent_bin, tfagentctl_bin};

use tfagent_testkit as common;

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
    /// Boot config lines beyond the ones every test daemon has.
    extra_config: String,
}

impl Daemon {
    fn start() -> Self {
        Self::start_with_env(Vec::new())
    }

    fn start_with_env(env: Vec<(&'static str, PathBuf)>) -> Self {
        Self::start_with(env, String::new())
    }

    fn start_with(env: Vec<(&'static str, PathBuf)>, extra_config: String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut daemon = Self {
            dir,
            child: None,
            env,
            extra_config,
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

    fn spawn(&mut self) {
        let config = self.dir.path().join("tfagent.toml");
        fs::write(
            &config,
            format!(
                // Top-level keys first: after `[services]` they would be its.
                "state_dir = \"{}\"\nsocket = \"{}\"\nlog_format = \"json\"\nlog_level = \"tfagent=trace,info\"\nsocket_allowed_uids = [{}]\n{}{}",
                self.state_dir().display(),
                self.socket().display(),
                nix::unistd::geteuid().as_raw(),
                self.extra_config,
                common::services_config(&self.dir.path().join("services")),
            ),
        )
        .unwrap();
        let log = self.dir.path().join("tfagent.log");
        // A log of this start only.
        let _ = fs::remove_file(&log);
        let mut tfagent = Command::new(tfagent_bin());
        tfagent.envs(self.env.iter().map(|(k, v)| (k, v)));
        let child = common::start_tfagent(tfagent, &config, &log, || {
            self.ctl(&["info"]).status.success()
        });
        self.child = Some(child);
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("tfagent.log")).unwrap_or_default()
    }

    fn ctl_command(&self, args: &[&str]) -> Command {
        self.ctl_command_of(Path::new(tfagentctl_bin()), args)
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
        dry.contains("plan:")
            && dry.contains("storage")
            && dry.contains("run keepalived with the configuration"),
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
fn feeds_the_systemd_watchdog_after_ready() {
    use std::os::unix::net::UnixDatagram;

    let notify_dir = tempfile::tempdir().unwrap();
    let notify_path = notify_dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // WatchdogSec=0.4 as systemd passes it; no WATCHDOG_PID, which means
    // "this process".
    let _daemon = Daemon::start_with_env(vec![
        ("NOTIFY_SOCKET", notify_path),
        ("WATCHDOG_USEC", PathBuf::from("400000")),
    ]);
    let mut messages = Vec::new();
    let mut buf = [0u8; 512];
    while messages
        .iter()
        .filter(|m: &&String| m.contains("WATCHDOG=1"))
        .count()
        < 3
    {
        let n = notify.recv(&mut buf).expect("watchdog pings keep coming");
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(messages[0].contains("READY=1"), "{messages:?}");
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
fn health_says_alive_but_not_converged_until_the_spec_is() {
    let daemon = Daemon::start();
    let live = daemon.ctl(&["health", "--live"]);
    assert!(live.status.success());
    let fresh = daemon.ctl(&["health"]);
    assert!(!fresh.status.success());
    assert!(String::from_utf8_lossy(&fresh.stderr).contains("no spec has been applied"));

    // On this host the example's volumes and services cannot come up, so
    // the spec never converges; health names the steps that hold it up.
    let spec = example("agent");
    daemon.ok(&["apply", "-f", spec.to_str().unwrap()]);
    let applied = daemon.ctl(&["health"]);
    assert!(!applied.status.success());
    let said = String::from_utf8_lossy(&applied.stderr);
    assert!(said.contains("not converged"), "{said}");
    assert!(said.contains("  services: "), "{said}");
}

/// GET of a loopback URL with curl: (HTTP status, body).
fn curl(url: &str) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl is installed (scripts/deps.sh)");
    assert!(
        output.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

#[test]
fn serves_valid_prometheus_metrics_of_status_and_reconcile_runs() {
    let port = free_port();
    let daemon = Daemon::start_with(
        Vec::new(),
        format!("metrics_address = \"127.0.0.1:{port}\"\n"),
    );
    let url = format!("http://127.0.0.1:{port}/metrics");
    let spec = example("agent");
    daemon.ok(&["apply", "-f", spec.to_str().unwrap()]);

    // The first pass runs right after the apply.
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let (code, body) = curl(&url);
        assert_eq!(code, 200);
        if body.contains("tfagent_reconcile_runs_total{") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no reconcile run counted:\n{body}"
        );
        thread::sleep(Duration::from_millis(50));
    };
    let families = common::openmetrics_families(&text);
    for family in [
        "tfagent_build_info gauge",
        "tfagent_desired_generation gauge",
        "tfagent_converged_generation gauge",
        "tfagent_step_condition gauge",
        "tfagent_reconcile_runs counter",
        "tfagent_reconcile_duration_seconds histogram",
        "tfagent_service_state gauge",
        "tfagent_service_restarts counter",
        "tfagent_wireguard_peer_handshake_age_seconds gauge",
        "tfagent_wireguard_peer_receive_bytes counter",
        "tfagent_volume_mounted gauge",
        "tfagent_volume_used_bytes gauge",
    ] {
        assert!(
            families.iter().any(|f| f == family),
            "{family}: {families:?}"
        );
    }
    assert!(text.contains("tfagent_desired_generation 1"), "{text}");
    // This host has none of the example's pools: storage refuses.
    assert!(
        text.contains("tfagent_step_condition{step=\"storage\",condition=\"failed\"} 1"),
        "{text}"
    );
    // The example's volumes are refused here: known, not mounted.
    assert!(
        text.contains("tfagent_volume_mounted{volume=\"k3s\"} 0"),
        "{text}"
    );
    // Nothing secret: the example's token is not in the metrics.
    assert!(!text.contains("37a19483e94eed8f"), "{text}");

    let (code, _) = curl(&format!("http://127.0.0.1:{port}/other"));
    assert_eq!(code, 404);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_remote_client_with_mutual_tls_gets_what_its_role_allows() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path().join("pki");
    let init = Command::new(tfagentctl_bin())
        .args(["certs", "init"])
        .arg(&dir)
        .args(["--name", "node-1", "--address", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let key_mode = fs::metadata(dir.join("admin-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    // Never over existing certificates.
    let again = Command::new(tfagentctl_bin())
        .args(["certs", "init"])
        .arg(&dir)
        .args(["--name", "node-1"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    let port = free_port();
    let daemon = Daemon::start_with(
        Vec::new(),
        format!(
            "tls_address = \"127.0.0.1:{port}\"\ntls_cert = \"{0}/node.pem\"\ntls_key = \"{0}/node-key.pem\"\ntls_client_ca = \"{0}/ca.pem\"\n",
            dir.display()
        ),
    );
    let remote = |who: &str, args: &[&str]| {
        Command::new(tfagentctl_bin())
            .arg("--endpoint")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--cert")
            .arg(dir.join(format!("{who}.pem")))
            .arg("--key")
            .arg(dir.join(format!("{who}-key.pem")))
            .arg("--ca")
            .arg(dir.join("ca.pem"))
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let info = remote("reader", &["info"]);
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains(&format!("127.0.0.1:{port} (mutual TLS")),
        "{info}"
    );

    let spec = example("agent");
    let refused = remote("reader", &["apply", "-f", spec.to_str().unwrap()]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("needs the operator role"), "{said}");
    assert!(!daemon.state_dir().join("spec.json").exists());

    let applied = remote("operator", &["apply", "-f", spec.to_str().unwrap()]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let status = remote("reader", &["-o", "json", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["desired_generation"], 1);
}

#[test]
fn no_agent_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(tfagentctl_bin())
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
    common::copy_executable(tfagentctl_bin(), &binary);
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

#[test]
fn members_of_the_reader_group_may_read_and_nothing_more() {
    if !is_root() {
        eprintln!("skipped: members_of_the_reader_group_may_read_and_nothing_more needs root");
        return;
    }
    // 65533 stands for a group of readers that uid 65534 is in.
    let daemon = Daemon::start_with(Vec::new(), "socket_reader_group = 65533\n".into());
    let mode = fs::metadata(daemon.socket()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "the socket opens to its group");
    fs::set_permissions(daemon.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let binary = daemon.dir.path().join("tfagentctl");
    common::copy_executable(tfagentctl_bin(), &binary);
    let spec = daemon.dir.path().join("spec.yaml");
    fs::copy(example("agent"), &spec).unwrap();
    fs::set_permissions(&spec, fs::Permissions::from_mode(0o644)).unwrap();
    let as_reader = |args: &[&str]| {
        let mut command = daemon.ctl_command_of(&binary, args);
        command.uid(65534).gid(65533);
        command.output().unwrap()
    };
    let status = as_reader(&["status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let refused = as_reader(&["apply", "-f", spec.to_str().unwrap()]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("needs the operator role"), "{said}");
    assert_eq!(daemon.json(&["status"])["desired_generation"], 0);
}

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
