//! Crash consistency: the agent is killed with SIGKILL at random moments of
//! applies (20+ trials), started again each time, and must converge to the
//! last spec it accepted without duplicate addresses, routes, peers or
//! children. The agent, its WireGuard interface and the volume it mounts
//! (a loop device) live in mount and network namespaces of the test's own;
//! its services are stand-ins kept in its temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use tfagent_testkit as common;

use common::{
    crash::{Bed, Rng, seed},
    nsagent::cannot_run,
};

const TRIALS: usize = 24;

#[test]
fn killed_at_random_moments_of_applies_it_converges_to_the_last_accepted_spec() {
    if let Some(why) = cannot_run() {
        println!("skipped: {why}");
        return;
    }
    let seed = seed();
    println!("seed {seed} (TFAGENT_CRASH_SEED={seed} reruns these trials)");
    let mut rng = Rng::new(seed);
    let mut bed = Bed::new();
    let mut accepted = 0;
    let started = std::time::Instant::now();
    for trial in 0..TRIALS {
        if let Err(wrong) = bed.trial(&mut rng, &mut accepted) {
            panic!(
                "trial {trial} (seed {seed}): {wrong}\nlog:\n{}",
                bed.agent.log()
            );
        }
    }
    assert!(accepted > 0, "no apply was ever accepted");

    // The checks see what they look for: a stray address, a second
    // containerd, a mount stacked on another.
    let interface = bed.agent.interface.clone();
    bed.agent
        .ns
        .ip(&["addr", "add", "10.100.9.9/32", "dev", &interface]);
    let stray = bed.verify().unwrap_err();
    assert!(stray.contains("addresses"), "{stray}");
    bed.agent
        .ns
        .ip(&["addr", "del", "10.100.9.9/32", "dev", &interface]);
    bed.verify().unwrap();
    let mut twin = bed.agent.ns.command("sleep").arg("86401").spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let duplicate = bed.verify();
    let _ = twin.kill();
    let _ = twin.wait();
    let duplicate = duplicate.unwrap_err();
    assert!(duplicate.contains("2 containerd"), "{duplicate}");
    let stacked = bed.agent.path().join("stacked");
    std::fs::create_dir_all(&stacked).unwrap();
    let stacked = stacked.to_str().unwrap();
    for _ in 0..2 {
        bed.agent
            .ns
            .run_ok("mount", &["-t", "tmpfs", "stacked", stacked]);
    }
    let twice = bed.verify();
    for _ in 0..2 {
        bed.agent.ns.run_ok("umount", &[stacked]);
    }
    let twice = twice.unwrap_err();
    assert!(twice.contains("mounted twice"), "{twice}");
    println!(
        "{TRIALS} trials in {:.1} s, last generation {accepted}",
        started.elapsed().as_secs_f64()
    );
}
