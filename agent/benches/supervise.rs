//! Supervisor figures: the time from a child's death to its restart (goal:
//! the first restart within 50 ms) and the agent's CPU use while it
//! supervises idle services (goal: well under 1 % of one core).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::{Duration, Instant};

use common::{Figure, Goal, Summary, report};
use nix::sys::resource::{UsageWho, getrusage};
use tfagent_supervisor::{
    ServiceDef, Supervisor, SupervisorConfig,
    cgroup::CgroupLayout,
    def::{BackoffPolicy, CrashLoopPolicy},
    probe::{Probe, ProbePolicy},
};
use tokio_util::sync::CancellationToken;

const BENCH: &str = "supervise";

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

        let kills = common::knob("KILLS", 30) as usize;
        let idle = Duration::from_secs(common::knob("IDLE_SECS", 10));

        // 1. Death to restart.
        supervisor.ensure(sleeper("victim")).unwrap();
        let mut watch = supervisor.watch("victim").unwrap();
        let mut times = Vec::with_capacity(kills);
        for _ in 0..kills {
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
        report(
            &Figure::new(
                BENCH,
                "child death → restart",
                "ms",
                Summary::of_ms(&times).unwrap(),
            )
            .goal(Goal::AtMost(50.0))
            .note(format!(
                "{kills} SIGKILLs of a supervised sleep; first restart, no back-off"
            )),
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
        tokio::time::sleep(idle).await;
        let used = cpu_time() - cpu_before;
        let share = used.as_secs_f64() / wall.elapsed().as_secs_f64() * 100.0;
        report(
            &Figure::new(
                BENCH,
                "agent CPU while supervising 3 idle services",
                "% of a core",
                Summary::single(share),
            )
            .goal(Goal::AtMost(1.0))
            .note(format!(
                "{:.1} ms of CPU over {} s, one service probed over a unix socket",
                common::ms(used),
                idle.as_secs()
            )),
        );

        supervisor.stop_all().await;
        shutdown.cancel();
        supervisor.detached().await;
    });
}
