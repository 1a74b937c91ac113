//! Crash consistency: the agent is killed with SIGKILL at random moments of
//! applies (20+ trials), started again each time, and must converge to the
//! last spec it accepted without duplicate addresses, routes, peers or
//! children. The agent and its WireGuard interface live in a namespace of
//! their own; its services are stand-ins kept in its temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

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
    println!(
        "{TRIALS} trials in {:.1} s, last generation {accepted}",
        started.elapsed().as_secs_f64()
    );
}
