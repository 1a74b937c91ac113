//! The zOS twin under power loss (root; `make twin-image` first): three
//! server VMs and a worker VM, tfagent booted from its flist under zinit on
//! kernel WireGuard. Each trial cuts the VIP holder's power (the qemu
//! process is killed), times how long the worker finds nobody at the VIP
//! before another server answers, then boots the VM again from its disk and
//! times boot → agent up → converged. TRIALS trials
//! (TFAGENT_BENCH_TWIN_TRIALS, default 10).
//!
//! Goal: failover p95 ≤ 1.0 s at 100 ms adverts, as in the namespace lab.
//! The outage is measured in the worker VM, which asks every 20 ms with a
//! 100 ms wait per ask; under TCG (no working KVM) every VM runs slower
//! than it would on hardware, and the note says which ran.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::{Duration, Instant};

use common::{Figure, Goal, Summary, report};
use tfagent_twin::{Accel, Images, Twin, cannot_run, cluster::ADVERT_INTERVAL_MS};

const BENCH: &str = "twin";
const FAILOVER: &str = "VIP failover, node power loss, kernel WireGuard";
const REBOOT: &str = "node reboot on the twin, power on → converged";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let images = Images::locate();
    if let Some(why) = cannot_run(&images) {
        common::unmeasured(BENCH, FAILOVER, &why);
        common::unmeasured(BENCH, REBOOT, &why);
        return;
    }
    let count = common::knob("TWIN_TRIALS", 10) as usize;
    let accel = match Accel::detect(&images) {
        Accel::Kvm => "KVM",
        Accel::Tcg => "TCG (no working KVM here)",
    };
    println!("twin: {count} power losses of the VIP holder, {accel}");

    let mut twin = Twin::boot(&images, 3, 1);
    twin.apply_all();
    twin.converged(Duration::from_secs(300));
    let worker = twin.index_of("worker-1");
    let mut outages = Vec::new();
    let mut reboots = Vec::new();
    for trial in 1..=count {
        let holder = twin.agreed_holder(Duration::from_secs(120));
        let victim = twin.index_of(&holder);
        let outage = tfagent_twin::failover_after_power_loss(&mut twin, worker, victim);
        let powered_on = Instant::now();
        twin.nodes[victim].vm.power_on();
        twin.await_node(victim, Duration::from_secs(240));
        twin.converged(Duration::from_secs(240));
        let reboot = powered_on.elapsed();
        println!(
            "  trial {trial}: {holder} lost power; {outage:?} without an answer; back and converged in {reboot:?}"
        );
        outages.push(outage);
        reboots.push(reboot);
    }

    let failover = Figure::new(BENCH, FAILOVER, "ms", Summary::of_ms(&outages).unwrap())
        .on_p95()
        .goal(Goal::AtMost(1000.0))
        .note(format!(
            "qemu of the holder killed → first answer from another server at the worker VM (asks every 20 ms), advert {ADVERT_INTERVAL_MS} ms, {accel}"
        ));
    report(&failover);
    let seconds: Vec<f64> = reboots.iter().map(Duration::as_secs_f64).collect();
    let reboot = Figure::new(BENCH, REBOOT, "s", Summary::of(&seconds).unwrap()).note(format!(
        "tmpfs root: kernel, storaged's pool, the flist unpacked, zinit, tfagent with its stored spec, {accel}"
    ));
    report(&reboot);
}
