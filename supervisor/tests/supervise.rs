//! The supervisor with real processes: small shell children for the
//! timing rules, dependency order, restarts, environment and adoption, and
//! per-service cgroups v2 in a private mount namespace (root). Each test
//! has its own temp dir and cgroup parent, so they run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::{
    fs,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use tfagent_supervisor::{
    ExitInfo, ServiceState, ServiceStatus, Supervisor, SupervisorConfig,
    cgroup::CgroupLayout,
    def::{BackoffPolicy, CrashLoopPolicy},
    probe::{Probe, ProbePolicy},
};
use tfagent_testkit::{
    netns::unique,
    supervision::{SupervisorBed, shell, wait_for},
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

#[tokio::test]
async fn a_child_that_exits_at_once_backs_off_then_crash_loops_without_spinning() {
    let bed = SupervisorBed::new(false, &["flappy"]);
    let (supervisor, shutdown) = bed.supervisor();
    let mut def = shell("flappy", "exit 3");
    def.backoff = BackoffPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(800),
        reset_after: Duration::from_secs(10),
        jitter: 0.2,
    };
    def.crash_loop = CrashLoopPolicy {
        max_starts: 4,
        window: Duration::from_secs(10),
    };
    supervisor.ensure(def).unwrap();

    // The delays the supervisor chose (from its status messages), and the
    // number of starts.
    let mut watch = supervisor.watch("flappy").unwrap();
    let mut delays: Vec<Duration> = Vec::new();
    let mut last_message = String::new();
    let mut crash_looping = None;
    let begin = Instant::now();
    while begin.elapsed() < Duration::from_secs(3) {
        let status = watch.borrow_and_update().clone();
        if status.message != last_message
            && let Some((_, delay)) = status.message.split_once("next start in ")
        {
            delays.push(humantime::parse_duration(delay).unwrap());
            last_message = status.message.clone();
        }
        if status.state == ServiceState::CrashLooping && crash_looping.is_none() {
            crash_looping = Some(status.clone());
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), watch.changed()).await;
    }
    let restarts = supervisor.status()[0].restarts;
    eprintln!("delays chosen: {delays:?}; {restarts} restarts in 3 s");
    // Each delay at least the one before (±20 % jitter cannot undo a
    // doubling), up to the cap.
    let growing: Vec<&Duration> = delays.iter().filter(|d| !d.is_zero()).collect();
    assert!(growing.len() >= 4, "{delays:?}");
    for pair in growing.windows(2) {
        assert!(pair[1] >= pair[0], "back-off grows: {delays:?}");
    }
    assert!(growing[0] <= &Duration::from_millis(60), "{delays:?}");
    assert_eq!(
        growing.last(),
        Some(&&Duration::from_millis(800)),
        "{delays:?}"
    );
    let looping = crash_looping.expect("marked crash-looping");
    assert!(
        looping.message.contains("more than 4 starts"),
        "{looping:?}"
    );
    assert_eq!(looping.last_exit, Some(ExitInfo::Code(3)));
    // No busy loop: at the longest delay (800 ms) only a few starts in 3 s.
    assert!(restarts <= 8, "{restarts} restarts in 3 s");
    shutdown.cancel();
    supervisor.detached().await;
}

#[tokio::test]
async fn a_child_ignoring_sigterm_is_sigkilled_after_its_timeout() {
    let bed = SupervisorBed::new(false, &["stubborn"]);
    let (supervisor, shutdown) = bed.supervisor();
    let mut def = shell(
        "stubborn",
        "trap '' TERM; echo started; while true; do sleep 0.1; done",
    );
    def.stop_timeout = Duration::from_millis(700);
    supervisor.ensure(def).unwrap();
    let running = wait_for(&supervisor, "stubborn", Duration::from_secs(5), |s| s.ready).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let began = Instant::now();
    supervisor.stop_all().await;
    let took = began.elapsed();
    let status = supervisor.status().remove(0);
    assert_eq!(status.state, ServiceState::Stopped);
    assert_eq!(status.last_exit, Some(ExitInfo::Signal(9)), "{status:?}");
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let pid = nix::unistd::Pid::from_raw(running.pid.unwrap() as i32);
    assert!(nix::sys::signal::kill(pid, None).is_err(), "gone");
    shutdown.cancel();
}

#[tokio::test]
async fn dependencies_start_first_and_dependents_stop_first() {
    let bed = SupervisorBed::new(false, &["base", "middle", "top"]);
    let (supervisor, shutdown) = bed.supervisor();
    let dir = bed.dir.path().display().to_string();
    let service = |name: &str, delay: &str| {
        let mut def = shell(
            name,
            &format!(
                "trap 'echo {name} >> {dir}/order; exit 0' TERM; sleep {delay}; touch {dir}/{name}-ready; while true; do sleep 0.05; done"
            ),
        );
        def.readiness = Some(ProbePolicy {
            starting_period: Duration::from_millis(50),
            ..ProbePolicy::new(Probe::Exec {
                argv: vec![
                    "/usr/bin/test".into(),
                    "-e".into(),
                    format!("{dir}/{name}-ready"),
                ],
            })
        });
        def
    };
    supervisor.ensure(service("base", "0.4")).unwrap();
    let mut middle = service("middle", "0.2");
    middle.depends_on = vec!["base".parse().unwrap()];
    supervisor.ensure(middle).unwrap();
    let mut top = service("top", "0");
    top.depends_on = vec!["middle".parse().unwrap()];
    supervisor.ensure(top).unwrap();

    let waiting = supervisor.status();
    assert_eq!(waiting[2].state, ServiceState::Waiting, "{waiting:?}");
    wait_for(&supervisor, "top", Duration::from_secs(10), |s| s.ready).await;
    let status = supervisor.status();
    let started: Vec<_> = status.iter().map(|s| s.started_at.unwrap()).collect();
    // Each started only after the one before it was ready.
    assert!(started[1].duration_since(started[0]).unwrap() >= Duration::from_millis(400));
    assert!(started[2].duration_since(started[1]).unwrap() >= Duration::from_millis(200));

    supervisor.stop_all().await;
    let order = fs::read_to_string(bed.dir.path().join("order")).unwrap();
    assert_eq!(order, "top\nmiddle\nbase\n");
    shutdown.cancel();
}

#[tokio::test]
async fn restart_on_request_and_removal_stops_for_good() {
    let bed = SupervisorBed::new(false, &["worker"]);
    let (supervisor, shutdown) = bed.supervisor();
    supervisor
        .ensure(shell("worker", "echo hello from worker; exec sleep 600"))
        .unwrap();
    let first = wait_for(&supervisor, "worker", Duration::from_secs(5), |s| s.ready).await;
    supervisor.restart("worker").unwrap();
    let second = wait_for(&supervisor, "worker", Duration::from_secs(5), |s| {
        s.ready && s.pid != first.pid
    })
    .await;
    assert_eq!(second.restarts, 1);
    assert_eq!(second.last_exit, Some(ExitInfo::Signal(15)));
    assert!(supervisor.restart("nope").is_err());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (lines, _) = supervisor.logs("worker", 10).unwrap();
        if lines.len() >= 2 {
            assert_eq!(lines, ["hello from worker", "hello from worker"]);
            break;
        }
        assert!(Instant::now() < deadline, "{lines:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    supervisor.remove(&"worker".parse().unwrap()).await;
    assert!(supervisor.status().is_empty());
    let pid = nix::unistd::Pid::from_raw(second.pid.unwrap() as i32);
    assert!(nix::sys::signal::kill(pid, None).is_err());
    assert!(!bed.config.record_dir.join("worker.json").exists());
    shutdown.cancel();
}

#[tokio::test]
async fn children_get_their_own_environment_session_and_restart_policy() {
    let bed = SupervisorBed::new(false, &["env", "once", "failing"]);
    let (supervisor, shutdown) = bed.supervisor();
    let out = bed.dir.path().join("env.txt");
    let mut env = shell(
        "env",
        &format!(
            "env > {}; ps -o sid= -p $$ >> {}; exec sleep 600",
            out.display(),
            out.display()
        ),
    );
    env.env.push(("GREETING".into(), "hello".into()));
    supervisor.ensure(env).unwrap();
    let running = wait_for(&supervisor, "env", Duration::from_secs(5), |s| s.ready).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::read_to_string(&out).map_or(true, |t| t.lines().count() < 3) {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = fs::read_to_string(&out).unwrap();
    assert!(text.contains("GREETING=hello"), "{text}");
    assert!(text.contains("PATH="), "{text}");
    // Nothing of the agent's own environment leaks in.
    assert!(!text.contains("CARGO"), "{text}");
    let sid: u32 = text.lines().last().unwrap().trim().parse().unwrap();
    assert_eq!(Some(sid), running.pid, "its own session");

    // on-failure: a clean exit is final; never: no restart at all.
    let mut once = shell("once", "exit 0");
    once.restart = tfagent_supervisor::def::RestartPolicy::OnFailure;
    supervisor.ensure(once).unwrap();
    let done = wait_for(&supervisor, "once", Duration::from_secs(5), |s| {
        s.state == ServiceState::Stopped
    })
    .await;
    assert_eq!(
        (done.restarts, done.last_exit),
        (0, Some(ExitInfo::Code(0)))
    );
    let mut failing = shell("failing", "exit 7");
    failing.restart = tfagent_supervisor::def::RestartPolicy::Never;
    supervisor.ensure(failing).unwrap();
    let done = wait_for(&supervisor, "failing", Duration::from_secs(5), |s| {
        s.state == ServiceState::Stopped
    })
    .await;
    assert_eq!(
        (done.restarts, done.last_exit),
        (0, Some(ExitInfo::Code(7)))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(supervisor.status()[2].restarts, 0);
    supervisor.stop_all().await;
    shutdown.cancel();
}

#[tokio::test]
async fn a_new_supervisor_resumes_only_what_still_runs() {
    let bed = SupervisorBed::new(false, &["kept", "gone"]);
    let (first, first_shutdown) = bed.supervisor();
    first
        .ensure(shell("kept", "echo kept; exec sleep 600"))
        .unwrap();
    first.ensure(shell("gone", "exec sleep 600")).unwrap();
    let kept = wait_for(&first, "kept", Duration::from_secs(5), |s| s.ready).await;
    let gone = wait_for(&first, "gone", Duration::from_secs(5), |s| s.ready).await;
    // The agent goes away; its children stay.
    first_shutdown.cancel();
    first.detached().await;
    let pid = |s: &ServiceStatus| nix::unistd::Pid::from_raw(s.pid.unwrap() as i32);
    assert!(nix::sys::signal::kill(pid(&kept), None).is_ok());
    nix::sys::signal::kill(pid(&gone), nix::sys::signal::Signal::SIGKILL).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (second, shutdown) = bed.supervisor();
    assert!(
        second
            .resume(shell("kept", "echo kept; exec sleep 600"))
            .unwrap()
    );
    assert!(!second.resume(shell("gone", "exec sleep 600")).unwrap());
    assert!(!second.resume(shell("never", "exec sleep 600")).unwrap());
    assert_eq!(second.names().len(), 1, "nothing was started");
    let adopted = wait_for(&second, "kept", Duration::from_secs(5), |s| s.ready).await;
    assert_eq!(adopted.pid, kept.pid);
    assert!(adopted.adopted);
    // Resuming twice changes nothing.
    assert!(
        !second
            .resume(shell("kept", "echo kept; exec sleep 600"))
            .unwrap()
    );
    second.stop_all().await;
    // Ended (a zombie of this test process, which the first supervisor
    // started it from: reaped here).
    let stat = fs::read_to_string(format!("/proc/{}/stat", kept.pid.unwrap())).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z "), "{stat}");
    let _ = nix::sys::wait::waitpid(pid(&kept), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    let _ = nix::sys::wait::waitpid(pid(&gone), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    shutdown.cancel();
}

// cgroup v2, in a private mount namespace of its own.

const V2_HELPER_ENV: &str = "TFAGENT_SUPERVISE_TEST_CGROUP2";

/// Not a test by itself: run by the cgroup v2 test under `unshare --mount`,
/// it mounts the unified hierarchy in its private mount namespace and
/// supervises a service with a v2 cgroup there.
#[test]
#[ignore = "the body of the cgroup v2 test's private mount namespace; run only by that test"]
fn cgroup2_helper() {
    let Some(dir) = std::env::var_os(V2_HELPER_ENV) else {
        eprintln!("skipped: {V2_HELPER_ENV} is not set");
        return;
    };
    let dir = PathBuf::from(dir);
    let root = dir.join("cgroup2");
    fs::create_dir_all(&root).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "cgroup2", "none"])
        .arg(&root)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting cgroup2");
    let parent = unique("tfagent-test-v2");
    // The unified hierarchy is the host's, even mounted here: leave nothing.
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = fs::remove_dir(self.0.join("svc"));
            let _ = fs::remove_dir(&self.0);
        }
    }
    let _remove = Remove(root.join(&parent));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let token = CancellationToken::new();
        let supervisor = Supervisor::new(
            SupervisorConfig {
                record_dir: dir.join("records"),
                log_dir: dir.join("logs"),
                cgroups: CgroupLayout::V2(root.clone()),
                cgroup_parent: parent.clone(),
            },
            token.clone(),
        );
        supervisor
            .ensure(shell("svc", "echo in v2; exec sleep 600"))
            .unwrap();
        let running = wait_for(&supervisor, "svc", Duration::from_secs(10), |s| s.ready).await;
        let pid = running.pid.unwrap();
        let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(
            cgroups.lines().any(|l| l == format!("0::/{parent}/svc")),
            "{cgroups}"
        );
        let procs = fs::read_to_string(root.join(&parent).join("svc/cgroup.procs")).unwrap();
        assert_eq!(procs.trim(), pid.to_string());
        // Removal stops it and removes its cgroup.
        supervisor.remove(&"svc".parse().unwrap()).await;
        assert!(!root.join(&parent).join("svc").exists());
        token.cancel();
    });
    fs::write(dir.join("v2-ok"), "ok").unwrap();
}

#[test]
fn cgroup_v2_each_service_gets_its_own_cgroup() {
    needs_root!();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cgroup2_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(V2_HELPER_ENV, dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        dir.path().join("v2-ok").exists(),
        "the helper ran its checks"
    );
}
