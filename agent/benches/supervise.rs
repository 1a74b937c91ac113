//! Supervisor figures: the time from a child's death to its restart (goal:
//! the first restart within 50 ms) and the agent's CPU use while it
//! supervises idle services (goal: well under 1 % of one core).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use tfagent::supervise::{
    ServiceDef, Supervisor, SupervisorConfig,
    cgroup::CgroupLayout,
    def::{BackoffPolicy, CrashLoopPolicy},
    probe::{Probe, ProbePolicy},
};
use tokio_util::sync::CancellationToken;

const KILLS: usize = 30;
const IDLE: Duration = Duration::from_secs(10);

fn sleeper(name: &str) -> ServiceDef {
    let mut def = ServiceDef::new(
        name.parse().unwrap(),
        vec!["/bin/sleep".into(), "3600".into()],
    );
    // Every death is a "first restart": the measure is the restart path,
    // not the back-off.
    def.backoff = BackoffPolicy {
        reset_after: Duration::ZERO,
        ..BackoffPolicy::default()
    };
    def.crash_loop = CrashLoopPolicy {
        max_starts: 10_000,
        window: Duration::from_secs(1),
    };
    def
}

fn cpu_time() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::new(
            SupervisorConfig {
                record_dir: dir.path().join("records"),
                log_dir: dir.path().join("logs"),
                cgroups: CgroupLayout::None,
                cgroup_parent: "unused".into(),
            },
            shutdown.clone(),
        );

        // 1. Death to restart.
        supervisor.ensure(sleeper("victim")).unwrap();
        let mut watch = supervisor.watch("victim").unwrap();
        let mut times = Vec::with_capacity(KILLS);
        for _ in 0..KILLS {
            let pid = loop {
                if let Some(pid) = watch.borrow_and_update().pid {
                    break pid;
                }
                watch.changed().await.unwrap();
            };
            let killed = Instant::now();
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            loop {
                watch.changed().await.unwrap();
                let new = watch.borrow_and_update().pid;
                if new.is_some_and(|p| p != pid) {
                    break;
                }
            }
            times.push(killed.elapsed());
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "death → restart ({KILLS} kills): min {:.2} ms, median {:.2} ms, p90 {:.2} ms, max {:.2} ms  (goal: ≤ 50 ms)",
            ms(times[0]),
            ms(times[KILLS / 2]),
            ms(times[KILLS * 9 / 10]),
            ms(times[KILLS - 1]),
        );

        // 2. Idle CPU: three services, one probed over a unix socket.
        let socket = dir.path().join("probe.sock");
        let _listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let mut probed = sleeper("probed");
        probed.readiness = Some(ProbePolicy::new(Probe::UnixConnect { path: socket }));
        supervisor.ensure(probed).unwrap();
        supervisor.ensure(sleeper("plain")).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (cpu_before, wall) = (cpu_time(), Instant::now());
        tokio::time::sleep(IDLE).await;
        let used = cpu_time() - cpu_before;
        let share = used.as_secs_f64() / wall.elapsed().as_secs_f64() * 100.0;
        println!(
            "idle CPU while supervising 3 services for {} s: {:.1} ms of CPU = {share:.3} % of one core  (goal: < 1 %)",
            IDLE.as_secs(),
            ms(used),
        );

        supervisor.stop_all().await;
        shutdown.cancel();
        supervisor.detached().await;
    });
}
