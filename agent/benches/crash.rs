//! Crash consistency, 50 trials: the agent is killed with SIGKILL at a
//! random moment of an apply, restarted, and checked for convergence to the
//! last accepted spec with no duplicate address, route, peer or child.
//! Prints how many trials converged (goal: all). Needs root, ip and
//! wireguard-go; says so and exits otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;
use tfagent_testkit as harness;

use common::{Figure, Goal, Summary, report};
use harness::{
    crash::{Bed, Rng, seed},
    nsagent::cannot_run,
};

const METRIC: &str = "trials converged after a SIGKILL during an apply";

const TRIALS: usize = 50;

fn main() {
    if let Some(why) = cannot_run() {
        common::unmeasured("crash", METRIC, why);
        return;
    }
    let seed = seed();
    let mut rng = Rng::new(seed);
    let mut bed = Bed::new();
    let mut accepted = 0;
    let mut converged = 0;
    let started = std::time::Instant::now();
    for trial in 0..TRIALS {
        match bed.trial(&mut rng, &mut accepted) {
            Ok(()) => converged += 1,
            Err(wrong) => println!("trial {trial}: {wrong}"),
        }
    }
    report(
        &Figure::new("crash", METRIC, "trials", Summary::single(converged as f64))
            .goal(Goal::AtLeast(TRIALS as f64))
            .note(format!(
                "of {TRIALS}: to the last accepted spec, no duplicate address, route, peer, mount or child; last generation {accepted}; {:.1} s; seed {seed}",
                started.elapsed().as_secs_f64()
            )),
    );
}
