//! The services step with real processes (root): real containerd (Debian's
//! containerd and runc) under the supervisor, adopted by a restarted agent
//! and by the real daemon; the step starting containerd then k3s (a
//! stand-in, or the real binary with K3S_BIN). Each test has its own temp
//! dir, sockets and cgroup parent, so they run in parallel with each other
//! and with other tests; nothing touches /run/containerd or the host's
//! services. The supervisor's own rules are tested in its crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};
use tfagent_testkit::{
    netns::unique,
    supervision::{SupervisorBed, shell, wait_for},
    tfagent_bin, tfagentctl_bin,
};

use tfagent::services::{self, ServicePaths};
use tfagent_supervisor::{
    ExitInfo, ServiceDef, ServiceState, Supervisor, SupervisorConfig,
    cgroup::CgroupLayout,
    probe::{CustomProbe, Probe},
};
use tokio_util::sync::CancellationToken;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

macro_rules! needs_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

/// A supervisor bed whose records and logs are where the agent's services
/// keep theirs.
struct Bed {
    supervised: SupervisorBed,
    paths: ServicePaths,
}

impl Bed {
    fn new(cgroups: bool, names: &[&str]) -> Self {
        // Stand-in binaries go here: the agent runs none from under /tmp.
        let dir = tfagent_testkit::trusted_tempdir();
        let paths = ServicePaths::under(dir.path());
        let supervised = SupervisorBed::with_dirs(
            dir,
            paths.record_dir.clone(),
            paths.log_dir.clone(),
            cgroups,
            names,
        );
        Self { supervised, paths }
    }

    fn supervisor(&self) -> (Supervisor, CancellationToken) {
        self.supervised.supervisor()
    }

    fn dir(&self) -> &Path {
        self.supervised.dir.path()
    }

    fn containerd(&self) -> ServiceDef {
        let config = services::containerd::render_config(&self.paths);
        fs::create_dir_all(&self.paths.config_dir).unwrap();
        fs::write(self.paths.containerd_config(), &config).unwrap();
        let spec = tfagent_spec::Service {
            binary: "/usr/bin/containerd".parse().unwrap(),
            extra_args: vec![],
        };
        services::containerd::service(&spec, &self.paths, &config)
    }
}

async fn containerd_answers(socket: &Path) -> Result<String, String> {
    let check = services::linux::VersionCheck {
        socket: socket.to_owned(),
    };
    tfagent_supervisor::probe::check(
        &Probe::Custom(CustomProbe(std::sync::Arc::new(check))),
        Duration::from_secs(2),
    )
    .await
    .map_err(|error| error.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_is_ready_when_its_api_answers_and_comes_back_after_kill_9() {
    needs_root!();
    let bed = Bed::new(true, &["containerd"]);
    let (supervisor, shutdown) = bed.supervisor();
    let socket = bed.paths.containerd_socket.clone();
    assert!(containerd_answers(&socket).await.is_err());
    supervisor.ensure(bed.containerd()).unwrap();

    // Not ready while its API does not answer; ready once it does.
    let mut watch = supervisor.watch("containerd").unwrap();
    let ready = loop {
        let status = watch.borrow_and_update().clone();
        if status.ready {
            break status;
        }
        if status.state == ServiceState::Starting {
            assert!(!status.message.contains("answers"), "{status:?}");
        }
        if tokio::time::timeout(Duration::from_secs(30), watch.changed())
            .await
            .is_err()
        {
            panic!("containerd not ready within 30 s: {status:?}");
        }
    };
    assert_eq!(ready.state, ServiceState::Ready);
    assert!(ready.message.contains("answers"), "{ready:?}");
    assert!(containerd_answers(&socket).await.is_ok());
    assert!(socket.starts_with(bed.dir()));
    let pid = ready.pid.unwrap();

    // Its own session, its rlimit, its cgroups.
    let raw = nix::unistd::Pid::from_raw(pid as i32);
    assert_eq!(nix::unistd::getsid(Some(raw)).unwrap(), raw);
    // 1048576 open files, or as many as this host lets root have.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let wanted = if nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_NOFILE,
        hard,
        hard.max(1_048_576),
    )
    .is_ok()
    {
        1_048_576
    } else {
        hard.min(1_048_576)
    };
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(&format!("{wanted}"))),
        "{limits}"
    );
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    if bed.supervised.config.cgroups != CgroupLayout::None {
        assert!(
            cgroups.contains(&format!(
                "/{}/containerd",
                bed.supervised.config.cgroup_parent
            )),
            "{cgroups}"
        );
    }

    // kill -9: restarted, ready again, the restart counted.
    nix::sys::signal::kill(raw, nix::sys::signal::Signal::SIGKILL).unwrap();
    let again = wait_for(&supervisor, "containerd", Duration::from_secs(30), |s| {
        s.ready && s.pid != Some(pid)
    })
    .await;
    assert_eq!(again.restarts, 1);
    assert_eq!(again.last_exit, Some(ExitInfo::Signal(9)));
    assert!(containerd_answers(&socket).await.is_ok());

    // Its output went to its own log file, also kept in memory.
    let log = fs::read_to_string(bed.paths.log_dir.join("containerd.log")).unwrap();
    assert!(log.contains("containerd successfully booted"), "{log}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (tail, _) = supervisor.logs("containerd", 1000).unwrap();
    assert!(tail.iter().any(|l| l.contains("successfully booted")));

    supervisor.stop_all().await;
    let stopped = supervisor.status();
    assert_eq!(stopped[0].state, ServiceState::Stopped);
    assert!(containerd_answers(&socket).await.is_err());
    shutdown.cancel();
}

// Adoption: the agent is a separate process, SIGKILLed and restarted.

const HELPER_ENV: &str = "TFAGENT_SUPERVISE_TEST_AGENT";

/// Not a test by itself: the body of the "agent" process the adoption test
/// starts (this test binary run again with HELPER_ENV set). It supervises
/// containerd and a ticker, and writes their status to a file.
#[test]
#[ignore = "the agent process of the adoption test; run only by that test"]
fn helper_agent() {
    let Some(dir) = std::env::var_os(HELPER_ENV) else {
        eprintln!("skipped: {HELPER_ENV} is not set");
        return;
    };
    let dir = PathBuf::from(dir);
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("helper.json")).unwrap()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let paths = ServicePaths::under(&dir);
        let supervisor = Supervisor::new(
            SupervisorConfig {
                record_dir: paths.record_dir.clone(),
                log_dir: paths.log_dir.clone(),
                cgroups: CgroupLayout::detect(),
                cgroup_parent: config["parent"].as_str().unwrap().to_owned(),
            },
            CancellationToken::new(),
        );
        let containerd_config = services::containerd::render_config(&paths);
        fs::create_dir_all(&paths.config_dir).unwrap();
        fs::write(paths.containerd_config(), &containerd_config).unwrap();
        let spec = tfagent_spec::Service {
            binary: "/usr/bin/containerd".parse().unwrap(),
            extra_args: vec![],
        };
        supervisor
            .ensure(services::containerd::service(
                &spec,
                &paths,
                &containerd_config,
            ))
            .unwrap();
        supervisor
            .ensure(shell(
                "ticker",
                "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done",
            ))
            .unwrap();
        loop {
            let mut text = String::new();
            for status in supervisor.status() {
                text.push_str(&format!(
                    "{} {} {} {} {} {} {}\n",
                    status.name,
                    status.state,
                    status.pid.unwrap_or(0),
                    status.restarts,
                    status.adopted,
                    status.ready,
                    status.message.replace('\n', " ")
                ));
            }
            let (tail, _) = supervisor.logs("ticker", 1).unwrap();
            text.push_str(&format!("tail {}\n", tail.join("")));
            let tmp = dir.join("status.tmp");
            fs::File::create(&tmp)
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            fs::rename(&tmp, dir.join("status.txt")).unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

struct HelperAgent {
    child: Child,
}

impl HelperAgent {
    fn start(dir: &Path) -> Self {
        let _ = fs::remove_file(dir.join("status.txt"));
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "helper_agent",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_ENV, dir)
            .stdout(fs::File::create(dir.join("helper-agent.out")).unwrap())
            .stderr(fs::File::create(dir.join("helper-agent.err")).unwrap())
            .spawn()
            .unwrap();
        Self { child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HelperAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug, Clone)]
struct Line {
    state: String,
    pid: u32,
    restarts: u32,
    adopted: bool,
    ready: bool,
    /// Why it is in its state: read only by the timeout's panic message.
    #[allow(dead_code)]
    message: String,
}

fn read_status(dir: &Path) -> Option<(Vec<(String, Line)>, String)> {
    let text = fs::read_to_string(dir.join("status.txt")).ok()?;
    let mut services = Vec::new();
    let mut tail = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("tail ") {
            tail = rest.to_owned();
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        services.push((
            f[0].to_owned(),
            Line {
                state: f[1].to_owned(),
                pid: f[2].parse().ok()?,
                restarts: f[3].parse().ok()?,
                adopted: f[4] == "true",
                ready: f[5] == "true",
                message: f.get(6..).map(|m| m.join(" ")).unwrap_or_default(),
            },
        ));
    }
    Some((services, tail))
}

fn wait_status(
    dir: &Path,
    within: Duration,
    ok: impl Fn(&Line, &Line, &str) -> bool,
) -> (Line, Line, String) {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some((services, tail)) = read_status(dir)
            && services.len() == 2
        {
            let (c, t) = (services[0].1.clone(), services[1].1.clone());
            if ok(&c, &t, &tail) {
                return (c, t, tail);
            }
            last = Some((c, t, tail));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out; last status {last:?}");
}

#[test]
fn a_killed_and_restarted_agent_adopts_containerd_and_keeps_supervising_it() {
    needs_root!();
    let bed = Bed::new(true, &["containerd", "ticker"]);
    let dir = bed.dir();
    fs::write(
        dir.join("helper.json"),
        serde_json::json!({ "parent": bed.supervised.config.cgroup_parent }).to_string(),
    )
    .unwrap();

    let mut agent = HelperAgent::start(dir);
    let (containerd, ticker, _) =
        wait_status(dir, Duration::from_secs(30), |c, t, _| c.ready && t.ready);
    assert!(!containerd.adopted);

    // The agent dies hard; its children do not.
    agent.kill();
    let alive =
        |pid: u32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok();
    assert!(alive(containerd.pid) && alive(ticker.pid));
    let log = bed.paths.log_dir.join("ticker.log");
    let before = fs::metadata(&log).unwrap().len();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        fs::metadata(&log).unwrap().len() > before,
        "the child logs on without the agent"
    );

    // A new agent adopts the same processes instead of starting others.
    let _agent = HelperAgent::start(dir);
    let (adopted, ticker_adopted, tail) =
        wait_status(dir, Duration::from_secs(30), |c, t, tail| {
            c.ready && t.ready && c.adopted && t.adopted && !tail.is_empty()
        });
    assert_eq!(adopted.pid, containerd.pid);
    assert_eq!(ticker_adopted.pid, ticker.pid);
    assert_eq!(adopted.restarts, 0);
    // Its logs keep flowing into the new agent's memory.
    let first_tail = tail;
    let (_, _, later_tail) =
        wait_status(dir, Duration::from_secs(5), |_, _, tail| tail != first_tail);
    assert!(later_tail.starts_with("tick "), "{later_tail}");

    // A later kill of containerd is noticed and handled by the new agent.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(containerd.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let (restarted, _, _) = wait_status(dir, Duration::from_secs(30), |c, _, _| {
        c.ready && c.pid != containerd.pid
    });
    assert_eq!(restarted.restarts, 1);
    assert!(!restarted.adopted);
    assert_eq!(restarted.state, "ready");
}

// The services step: containerd, then k3s, and the token kept secret.

fn example_spec(name: &str) -> tfagent_spec::NodeSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(format!("{name}.yaml"));
    tfagent_spec::SpecDocument::parse(&fs::read_to_string(path).unwrap())
        .unwrap()
        .validate(&tfagent_spec::ValidationContext::default())
        .unwrap()
}

/// A tracing writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn the_services_step_starts_containerd_then_k3s_and_never_shows_the_token() {
    needs_root!();
    use std::os::unix::fs::PermissionsExt;
    use tfagent::{
        events::EventBus,
        reconcile::{Reconciler, StatusBoard},
        state::Desired,
        step::{Step, StepName},
    };

    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let bed = Bed::new(true, &["containerd", "k3s"]);
    // A stand-in k3s that shows everything it was given: its arguments, its
    // config file, its environment.
    let fake = bed.dir().join("fake-k3s");
    fs::write(
        &fake,
        "#!/bin/sh\necho \"fake k3s $*\"\ncat \"$3\"\nenv\nexec sleep 600\n",
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let mut spec = example_spec("server-init");
    spec.services.k3s.binary = fake.display().to_string().parse().unwrap();
    let token = spec.cluster.token.expose().to_owned();

    let (supervisor, shutdown) = bed.supervisor();
    let services = services::Services::new(supervisor.clone(), bed.paths.clone());
    let steps: Vec<std::sync::Arc<dyn Step>> = vec![std::sync::Arc::new(services)];
    let status = std::sync::Arc::new(StatusBoard::new(&[StepName::Services]));
    let events = std::sync::Arc::new(EventBus::default());
    let reconciler = Reconciler::new(
        steps.clone(),
        status.clone(),
        events.clone(),
        Duration::from_secs(60),
    );
    let desired = Desired {
        generation: 1,
        spec: spec.clone(),
    };
    assert!(reconciler.converge(&desired).await);

    // containerd first; k3s only once containerd answers.
    let containerd = wait_for(&supervisor, "containerd", Duration::from_secs(30), |s| {
        s.ready
    })
    .await;
    let k3s = wait_for(&supervisor, "k3s", Duration::from_secs(10), |s| {
        s.pid.is_some()
    })
    .await;
    assert!(k3s.started_at.unwrap() >= containerd.started_at.unwrap());
    assert_eq!(
        k3s.state,
        ServiceState::Starting,
        "its apiserver never answers"
    );
    // Converging again changes nothing.
    let plan = steps[0].plan(&spec).await.unwrap();
    assert!(plan.is_empty(), "{plan:?}");

    // The token is in the 0600 token file only.
    let token_file = bed.paths.k3s_token();
    assert_eq!(fs::read_to_string(&token_file).unwrap().trim(), token);
    assert_eq!(
        fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let config = fs::read_to_string(bed.paths.k3s_config()).unwrap();
    assert!(config.contains("token-file:") && !config.contains(&token));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let k3s_log = fs::read_to_string(bed.paths.log_dir.join("k3s.log")).unwrap();
    assert!(k3s_log.contains("fake k3s server --config"), "{k3s_log}");
    assert!(k3s_log.contains("token-file:"), "{k3s_log}");
    for (what, text) in [
        ("config.yaml", config),
        ("k3s log", k3s_log),
        (
            "containerd log",
            fs::read_to_string(bed.paths.log_dir.join("containerd.log")).unwrap(),
        ),
        ("service status", format!("{:?}", supervisor.status())),
        ("step status", format!("{:?}", status.snapshot())),
        ("events", format!("{:?}", events.subscribe().0)),
        ("plan", format!("{:?}", steps[0].plan(&spec).await)),
        (
            "agent logs",
            String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned(),
        ),
    ] {
        assert!(!text.is_empty(), "{what} is empty");
        assert!(!text.contains(&token), "the token is in the {what}");
    }
    supervisor.stop_all().await;
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(logs.contains("service state"), "transitions are logged");
    assert!(
        !logs.contains("unexpected service state transition"),
        "every transition follows the table:\n{logs}"
    );
    shutdown.cancel();
}

const K3S_HELPER_ENV: &str = "TFAGENT_SUPERVISE_TEST_K3S";
/// Set for the real k3s only: the helper then also runs the add-ons step
/// and waits for k3s to create the add-ons' resources.
const K3S_ADDONS_ENV: &str = "TFAGENT_SUPERVISE_TEST_ADDONS";

/// k3s itself, when K3S_BIN names a binary: a server-init node, run by the
/// services step exactly as the agent runs it (config.yaml, token file, our
/// containerd, the HTTPS readiness probe with the cluster CA), in a network
/// namespace of its own where a veth interface stands in for WireGuard.
/// The agent side runs in that namespace too (`ip netns exec`, whose mount
/// namespace is a slave of the host's), with overlays over the host
/// directories k3s writes to.
#[test]
fn k3s_server_init_becomes_ready_with_the_real_binary() {
    let Some(k3s_bin) = std::env::var_os("K3S_BIN") else {
        eprintln!(
            "skipped: K3S_BIN is not set (k3s is not installable here); set K3S_BIN=/path/to/k3s to run it"
        );
        return;
    };
    needs_root!();
    k3s_server_in_a_namespace(&k3s_bin, true);
}

/// The same run with a stand-in for k3s (testkit/fixtures/stand-in-k3s.sh):
/// it serves HTTPS on :6443 with k3s's certificate layout and wants a client
/// certificate, so the agent's server readiness probe (cluster CA, admin
/// client certificate) is exercised on every run, k3s or not.
#[test]
fn the_k3s_server_readiness_probe_trusts_the_cluster_ca_and_presents_the_admin_certificate() {
    needs_root!();
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipped: needs the openssl CLI");
        return;
    }
    let stand_in = tfagent_testkit::fixture("stand-in-k3s.sh")
        .canonicalize()
        .unwrap();
    k3s_server_in_a_namespace(stand_in.as_os_str(), false);
}

fn k3s_server_in_a_namespace(k3s_bin: &std::ffi::OsStr, addons: bool) {
    let dir = tempfile::tempdir().unwrap();
    let netns = unique("tfk3s");
    let run = |args: &[&str]| {
        let status = Command::new(args[0]).args(&args[1..]).status().unwrap();
        assert!(status.success(), "{args:?}");
    };
    struct Netns(String);
    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    run(&["ip", "netns", "add", &netns]);
    let _netns = Netns(netns.clone());
    run(&["ip", "-n", &netns, "link", "set", "lo", "up"]);
    // A veth pair inside the namespace (dummy interfaces need a module
    // not every kernel has).
    run(&[
        "ip",
        "-n",
        &netns,
        "link",
        "add",
        "tfk3s",
        "type",
        "veth",
        "peer",
        "name",
        "tfk3s-peer",
    ]);
    run(&[
        "ip",
        "-n",
        &netns,
        "addr",
        "add",
        "10.100.0.1/24",
        "dev",
        "tfk3s",
    ]);
    run(&["ip", "-n", &netns, "link", "set", "tfk3s-peer", "up"]);
    run(&["ip", "-n", &netns, "link", "set", "tfk3s", "up"]);
    run(&[
        "ip", "-n", &netns, "route", "add", "default", "dev", "tfk3s",
    ]);
    let status = Command::new("ip")
        .args(["netns", "exec", &netns])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "k3s_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(K3S_HELPER_ENV, dir.path())
        .env(K3S_ADDONS_ENV, if addons { "1" } else { "" })
        .env("K3S_BIN", k3s_bin)
        .output()
        .unwrap();
    let shown = format!(
        "{}\n{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(status.status.success(), "the k3s helper failed:\n{shown}");
    eprintln!("{shown}");
    assert!(
        dir.path().join("k3s-ok").exists(),
        "the helper ran its checks"
    );
}

/// Not a test by itself: the agent side of the k3s test, in its namespaces.
#[test]
#[ignore = "the body of the k3s test inside its namespaces; run only by that test"]
fn k3s_helper() {
    let (Some(dir), Some(k3s_bin)) = (
        std::env::var_os(K3S_HELPER_ENV),
        std::env::var_os("K3S_BIN"),
    ) else {
        eprintln!("skipped: {K3S_HELPER_ENV} and K3S_BIN are not set");
        return;
    };
    let dir = PathBuf::from(dir);
    // k3s writes under /etc, /var/lib, /var/log and /run: each gets an
    // overlay whose upper layer is a tmpfs of this mount namespace, so the
    // host's directories are neither changed nor even created.
    let layers = dir.join("layers");
    fs::create_dir_all(&layers).unwrap();
    let mount = |args: &[&str]| {
        let status = Command::new("mount").args(args).status().unwrap();
        assert!(status.success(), "mount {args:?}");
    };
    mount(&["-t", "tmpfs", "tmpfs", layers.to_str().unwrap()]);
    for (name, path) in [
        ("etc", "/etc"),
        ("var-lib", "/var/lib"),
        ("var-log", "/var/log"),
        ("run", "/run"),
    ] {
        let (upper, work) = (
            layers.join(name).join("upper"),
            layers.join(name).join("work"),
        );
        fs::create_dir_all(&upper).unwrap();
        fs::create_dir_all(&work).unwrap();
        let options = format!(
            "lowerdir={path},upperdir={},workdir={}",
            upper.display(),
            work.display()
        );
        mount(&["-t", "overlay", "overlay", "-o", &options, path]);
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use tfagent::step::Step;
        let paths = ServicePaths::under(&dir);
        let token = CancellationToken::new();
        let supervisor = Supervisor::new(
            SupervisorConfig {
                record_dir: paths.record_dir.clone(),
                log_dir: paths.log_dir.clone(),
                cgroups: CgroupLayout::None,
                cgroup_parent: "unused".into(),
            },
            token.clone(),
        );
        let mut spec = example_spec("server-init");
        spec.services.k3s.binary = k3s_bin.to_string_lossy().parse().unwrap();
        let services = services::Services::new(supervisor.clone(), paths.clone());
        let outcome = services.converge(&spec).await.unwrap();
        eprintln!("services step: {outcome:?}");
        let ready = wait_for(&supervisor, "k3s", Duration::from_secs(300), |s| s.ready).await;
        eprintln!("k3s ready: {ready:?}");
        assert!(ready.message.contains("/readyz answered 200"), "{ready:?}");
        if std::env::var_os(K3S_ADDONS_ENV).is_some_and(|v| v == "1") {
            addons_are_deployed(&spec, &paths, &k3s_bin).await;
        }
        supervisor.stop_all().await;
        token.cancel();
    });
    fs::write(dir.join("k3s-ok"), "ok").unwrap();
}

/// The add-ons step writes its manifests into this k3s's manifests dir, and
/// k3s's deploy controller creates the add-ons' HelmChart resources (the
/// charts themselves then need the internet, which a test may not use).
async fn addons_are_deployed(
    spec: &tfagent_spec::NodeSpec,
    paths: &ServicePaths,
    k3s_bin: &std::ffi::OsStr,
) {
    use tfagent::{
        addons::{AddonsStep, K3sPaths},
        step::Step,
    };
    let step = AddonsStep::new(K3sPaths::under(&paths.k3s_data_dir));
    let outcome = step.converge(spec).await.unwrap();
    eprintln!("addons step: {outcome:?}");
    let wanted = ["metallb", "ingress-nginx", "cert-manager"];
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let listed = Command::new(k3s_bin)
            .args(["kubectl", "--kubeconfig"])
            // Where the rendered config.yaml has k3s write it (0600).
            .arg(paths.k3s_kubeconfig())
            .args(["get", "helmcharts.helm.cattle.io", "-A", "-o", "name"])
            .output()
            .unwrap();
        let names = String::from_utf8_lossy(&listed.stdout).into_owned();
        if wanted
            .iter()
            .all(|chart| names.lines().any(|l| l.ends_with(&format!("/{chart}"))))
        {
            eprintln!("k3s created the add-ons' HelmCharts:\n{names}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "k3s did not create the HelmCharts of {wanted:?}; it lists:\n{names}{}",
            String::from_utf8_lossy(&listed.stderr)
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

// The real daemon adopts at start, and serves status, logs, restart.

/// A `tfagent` process; SIGKILLed when dropped.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(dir: &Path, name: &str) -> Self {
        let log = fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(tfagent_bin())
            .arg("--config")
            .arg(dir.join("tfagent.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let daemon = Self { child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ctl(dir, &["info"]).status.success() {
            assert!(Instant::now() < deadline, "tfagent did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    fn kill(&mut self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal);
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ctl(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(tfagentctl_bin())
        .arg("--socket")
        .arg(dir.join("tfagent.sock"))
        .args(args)
        .output()
        .unwrap()
}

fn containerd_status(dir: &Path) -> Option<serde_json::Value> {
    let output = ctl(dir, &["-o", "json", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    status["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == "containerd")
        .cloned()
}

fn wait_containerd(dir: &Path, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(status) = containerd_status(dir) {
            if ok(&status) {
                return status;
            }
            last = Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs: Vec<String> = ["first", "second", "third"]
        .iter()
        .filter_map(|name| fs::read_to_string(dir.join(format!("{name}.log"))).ok())
        .collect();
    panic!(
        "timed out; last containerd status {last:?}\ndaemon logs:\n{}",
        logs.join("\n----\n")
    );
}

#[test]
fn the_tfagent_daemon_adopts_containerd_and_serves_its_status_logs_and_restart() {
    needs_root!();
    let bed = Bed::new(true, &["containerd", "k3s"]);
    let dir = bed.dir();
    let paths = &bed.paths;
    fs::write(
        dir.join("tfagent.toml"),
        format!(
            "state_dir = \"{state}\"\nsocket = \"{socket}\"\nlog_level = \"tfagent=debug,info\"\n\n\
             [services]\nrun_dir = \"{run}\"\ncontainerd_root = \"{root}\"\nk3s_data_dir = \"{k3s}\"\n\
             kubelet_root_dir = \"{kubelet}\"\nlog_dir = \"{log}\"\ncgroup_parent = \"{parent}\"\n",
            state = dir.join("state").display(),
            socket = dir.join("tfagent.sock").display(),
            run = paths.run_dir.display(),
            root = paths.containerd_root.display(),
            k3s = paths.k3s_data_dir.display(),
            kubelet = paths.kubelet_root_dir.display(),
            log = paths.log_dir.display(),
            parent = bed.supervised.config.cgroup_parent,
        ),
    )
    .unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/server-init.yaml");
    let mut document =
        tfagent_spec::SpecDocument::parse(&fs::read_to_string(example).unwrap()).unwrap();
    document.services.k3s.binary = "/bin/false".into();
    let spec = document
        .clone()
        .validate(&tfagent_spec::ValidationContext::default())
        .unwrap();
    let spec_file = dir.join("spec.yaml");
    fs::write(&spec_file, serde_yaml_ng::to_string(&document).unwrap()).unwrap();

    // The spec is stored (the services step itself waits for storage and
    // network in this build).
    let mut first = Daemon::start(dir, "first");
    let applied = ctl(dir, &["apply", "-f", spec_file.to_str().unwrap()]);
    assert!(applied.status.success(), "{applied:?}");
    first.kill(nix::sys::signal::Signal::SIGTERM);

    // containerd, started as the services step starts it, by an agent that
    // then goes away.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let started = runtime.block_on(async {
        let wanted = services::desired(&spec, paths);
        for file in &wanted.files {
            fs::create_dir_all(file.path.parent().unwrap()).unwrap();
            fs::write(&file.path, &file.contents).unwrap();
        }
        let (supervisor, shutdown) = bed.supervisor();
        supervisor
            .ensure(wanted.services.into_iter().next().unwrap())
            .unwrap();
        let ready = wait_for(&supervisor, "containerd", Duration::from_secs(30), |s| {
            s.ready
        })
        .await;
        shutdown.cancel();
        supervisor.detached().await;
        ready
    });
    let pid = started.pid.unwrap();

    // The real daemon adopts it at start: same pid, ready, no restart.
    let mut second = Daemon::start(dir, "second");
    let adopted = wait_containerd(dir, |s| s["state"] == "ready");
    assert_eq!(adopted["pid"], pid, "{adopted}");
    assert_eq!(adopted["adopted"], true, "{adopted}");
    assert_eq!(adopted["restarts"], 0, "{adopted}");
    let table = String::from_utf8(ctl(dir, &["status"]).stdout).unwrap();
    assert!(
        table.contains("containerd") && table.contains("(adopted)"),
        "{table}"
    );
    let logs = ctl(dir, &["logs", "containerd", "--tail", "500"]);
    assert!(logs.status.success(), "{logs:?}");
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("containerd successfully booted"),
        "{logs:?}"
    );

    // It notices a kill -9 and restarts containerd.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
    let restarted = wait_containerd(dir, |s| s["state"] == "ready" && s["pid"] != pid);
    assert_eq!(restarted["restarts"], 1, "{restarted}");
    assert_eq!(restarted["adopted"], false, "{restarted}");

    // tfagentctl restart: a new process, counted.
    let before = restarted["pid"].clone();
    let output = ctl(dir, &["restart", "containerd"]);
    assert!(output.status.success(), "{output:?}");
    let again = wait_containerd(dir, |s| s["state"] == "ready" && s["pid"] != before);
    assert_eq!(again["restarts"], 2, "{again}");
    // containerd ends cleanly on SIGTERM.
    assert_eq!(again["last_exit"], "code 0", "{again}");

    // SIGKILL the daemon: the next one adopts the process it started.
    second.kill(nix::sys::signal::Signal::SIGKILL);
    let _third = Daemon::start(dir, "third");
    let readopted = wait_containerd(dir, |s| s["state"] == "ready");
    assert_eq!(readopted["pid"], again["pid"], "{readopted}");
    assert_eq!(readopted["adopted"], true, "{readopted}");
    assert_eq!(readopted["restarts"], 2, "{readopted}");
}
