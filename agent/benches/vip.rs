//! VIP failover times (root): the lab of tests/vip.rs (three servers, one
//! worker), timed from the fault to the first answer from another server at
//! the worker, over TRIALS trials each (TFAGENT_BENCH_VIP_TRIALS, default 20):
//! - hard kill: kill -9 of the holder's agent, keepalived and stand-in;
//! - graceful: SIGTERM to the holder's agent, which hands the VIP over;
//! - not ready: the holder's stand-in answers /readyz with 503;
//! - baseline: keepalived alone moving an address between two namespaces on
//!   one bridge (gratuitous ARP), at the same advert interval.
//!
//! Goals: hard kill p95 ≤ 1.0 s and ≤ 1.2 × the baseline's p95; graceful
//! p95 ≤ 0.2 s.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;
use tfagent_testkit::lab;

use std::{
    fs,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use common::{Figure, Goal, Summary, report};
use lab::{Lab, Netns, cannot_run, kill, make_ca, make_cert};

const BENCH: &str = "vip";

const ADVERT_INTERVAL_MS: u32 = 100;

fn monotonic() -> f64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    now.tv_sec() as f64 + now.tv_nsec() as f64 / 1e9
}

/// A watcher in `ns` asking `address` until a server other than `old`
/// answers; returns once it asked once.
fn watch(
    ns: &Netns,
    address: &str,
    ca: &Path,
    old: &str,
) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "python3",
            lab::WATCH,
            address,
            "6443",
        ])
        .arg(ca)
        .args([old, "20"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "watching");
    (child, out)
}

/// Seconds from `fault` to the watcher's first answer from another server.
fn answered(
    mut child: Child,
    mut out: BufReader<std::process::ChildStdout>,
    fault: f64,
) -> Option<f64> {
    let mut line = String::new();
    out.read_line(&mut line).ok()?;
    let _ = child.wait();
    let at: f64 = line.split_whitespace().next()?.parse().ok()?;
    Some(at - fault)
}

/// The figure of one kind of fault, in ms; `None` when no trial
/// recovered (then it says so).
fn figure(metric: &str, times: &[f64], failed: usize) -> Option<Figure> {
    let millis: Vec<f64> = times.iter().map(|t| t * 1000.0).collect();
    let Some(summary) = Summary::of(&millis) else {
        common::unmeasured(
            BENCH,
            metric,
            &format!("no trial recovered ({failed} failed)"),
        );
        return None;
    };
    let mut note = format!(
        "fault → first answer from another server at a worker, advert {ADVERT_INTERVAL_MS} ms"
    );
    if failed > 0 {
        note += &format!("; {failed} trial(s) did not recover within 20 s");
    }
    Some(
        Figure::new(BENCH, metric, "ms", summary)
            .on_p95()
            .note(note),
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    HardKill,
    Graceful,
    NotReady,
}

fn trials(lab: &mut Lab, fault: Fault, count: usize) -> (Vec<f64>, usize) {
    let ca = lab.dir.path().join("ca.pem");
    let mut times = Vec::new();
    let mut failed = 0;
    for _ in 0..count {
        let holder = lab.agreed_holder(Duration::from_secs(30));
        let index = lab.index_of(&holder);
        let (child, out) = watch(&lab.node("worker-1").ns, lab::VIP, &ca, &holder);
        let fault_at = monotonic();
        match fault {
            Fault::HardKill => lab.nodes[index].crash(),
            Fault::Graceful => lab.nodes[index].stop_agent(true),
            Fault::NotReady => lab.nodes[index].set_ready(false),
        }
        match answered(child, out, fault_at) {
            Some(seconds) => times.push(seconds),
            None => {
                failed += 1;
                println!(
                    "  (no other server answered after the fault on {holder}; routes {:?})",
                    lab.routes()
                );
                for node in lab.nodes.iter().filter(|n| n.server && n.agent.is_some()) {
                    let status = node.json(&["status"]);
                    println!("  ({}: {})", node.name, status["vip"]);
                }
            }
        }
        // Bring it back; it rejoins as a backup.
        match fault {
            Fault::HardKill => {
                lab.nodes[index].spawn_stand_in();
                lab.nodes[index].spawn_agent();
            }
            Fault::Graceful => lab.nodes[index].spawn_agent(),
            Fault::NotReady => lab.nodes[index].set_ready(true),
        }
        lab.converged(Duration::from_secs(30));
        // Let its keepalived settle as a backup before the next fault.
        thread::sleep(Duration::from_millis(1500));
    }
    (times, failed)
}

/// keepalived alone: two namespaces on a bridge move 198.51.100.250 by
/// VRRP and gratuitous ARP; a third asks it. Kill -9 of the master's
/// keepalived and stand-in, timed the same way.
fn baseline(dir: &Path, count: usize) -> (Vec<f64>, usize) {
    let vip = "198.51.100.250";
    let bridge = Netns::new("tkbr");
    bridge.ip(&["link", "add", "br0", "type", "bridge"]);
    bridge.ip(&["link", "set", "br0", "up"]);
    let plug = |ns: &Netns, address: &str, port: &str| {
        bridge.ip(&[
            "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        bridge.ip(&["link", "set", port, "master", "br0", "up"]);
        ns.ip(&["addr", "add", address, "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
    };
    let client = Netns::new("tkc");
    plug(&client, "198.51.100.9/24", "k9");
    let nodes: Vec<(Netns, String)> = (1..=2)
        .map(|i| {
            let ns = Netns::new("tkn");
            plug(&ns, &format!("198.51.100.{i}/24"), &format!("k{i}"));
            (ns, format!("base-{i}"))
        })
        .collect();
    let start = |i: usize| -> Vec<Child> {
        let (ns, name) = &nodes[i];
        let me = format!("198.51.100.{}", i + 1);
        let peer = format!("198.51.100.{}", 2 - i);
        let conf = dir.join(format!("{name}.conf"));
        fs::write(
            &conf,
            format!(
                "global_defs {{\n router_id {name}\n}}\nvrrp_instance base {{\n state BACKUP\n nopreempt\n version 3\n interface eth0\n virtual_router_id 52\n priority {prio}\n advert_int {advert}\n unicast_src_ip {me}\n unicast_peer {{\n  {peer}\n }}\n virtual_ipaddress {{\n  {vip}/24 dev eth0\n }}\n}}\n",
                prio = 150 - 50 * i,
                advert = f64::from(ADVERT_INTERVAL_MS) / 1000.0,
            ),
        )
        .unwrap();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{name}.log")))
            .unwrap();
        let keepalived = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                "keepalived",
                "--dont-fork",
                "--no-syslog",
                "--log-console",
                "--vrrp",
            ])
            .arg(format!("--use-file={}", conf.display()))
            .arg(format!(
                "--pid={}",
                dir.join(format!("{name}.pid")).display()
            ))
            .arg(format!(
                "--vrrp_pid={}",
                dir.join(format!("{name}.vrrp.pid")).display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let stand_in = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                "python3",
                lab::STAND_IN,
                name,
                "6443",
            ])
            .arg(dir.join(format!("{name}.pem")))
            .arg(dir.join(format!("{name}.key")))
            .arg(dir.join("always-ready"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        vec![keepalived, stand_in]
    };
    for (_, name) in &nodes {
        make_cert(dir, name, &[vip]);
    }
    let mut running: Vec<Vec<Child>> = (0..2).map(start).collect();
    let ca = dir.join("ca.pem");
    let ask = |ns: &Netns| -> Option<String> {
        let out = ns.exec(&[
            "curl",
            "-s",
            "--max-time",
            "0.5",
            "--cacert",
            ca.to_str().unwrap(),
            &format!("https://{vip}:6443/"),
        ]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let mut times = Vec::new();
    let mut failed = 0;
    for _ in 0..count {
        let holder = loop {
            if let Some(name) = ask(&client) {
                break name;
            }
            thread::sleep(Duration::from_millis(100));
        };
        let i = nodes.iter().position(|(_, n)| *n == holder).unwrap();
        let (child, out) = watch(&client, vip, &ca, &holder);
        let fault_at = monotonic();
        // The master's host dies: keepalived, its server and its link go
        // at once (a live kernel would go on answering ARP for the
        // address keepalived left on it).
        for pid in nodes[i].0.pids_of("keepalived") {
            kill(pid);
        }
        for c in &mut running[i] {
            let _ = c.kill();
        }
        nodes[i].0.ip(&["link", "set", "eth0", "down"]);
        match answered(child, out, fault_at) {
            Some(seconds) => times.push(seconds),
            None => {
                failed += 1;
                for (_, name) in &nodes {
                    let log =
                        fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(8).collect();
                    println!(
                        "  (keepalived alone: no answer from another server; {name}'s log ends: {tail:?})"
                    );
                }
            }
        }
        for c in &mut running[i] {
            let _ = c.wait();
        }
        // keepalived killed -9 leaves the VIP behind: take it off. Its
        // pid files too: a child not yet reaped would pass for a running
        // keepalived.
        for file in [
            format!("{}.pid", nodes[i].1),
            format!("{}.vrrp.pid", nodes[i].1),
        ] {
            let _ = fs::remove_file(dir.join(file));
        }
        let _ = nodes[i]
            .0
            .exec(&["ip", "addr", "del", &format!("{vip}/24"), "dev", "eth0"]);
        nodes[i].0.ip(&["link", "set", "eth0", "up"]);
        running[i] = start(i);
        thread::sleep(Duration::from_millis(1500));
    }
    for children in &mut running {
        for c in children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    (times, failed)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let metrics = [
        "VIP failover, hard kill of the holder",
        "VIP failover, hard kill, against keepalived alone",
        "VIP failover, graceful stop of the holder's agent",
        "VIP move, the holder's apiserver turns not ready",
    ];
    if let Some(why) = cannot_run() {
        for metric in metrics {
            common::unmeasured(BENCH, metric, why);
        }
        return;
    }
    let count = common::knob("VIP_TRIALS", 20) as usize;
    println!(
        "vip: failovers over {count} trials each, advert interval {ADVERT_INTERVAL_MS} ms, timed at a worker"
    );

    let base_dir = tempfile::tempdir().unwrap();
    make_ca(base_dir.path());
    fs::write(base_dir.path().join("always-ready"), "").unwrap();
    let (base, base_failed) = baseline(base_dir.path(), count);
    let base = figure(
        "keepalived alone, kill -9 of the master",
        &base,
        base_failed,
    );

    let mut lab = Lab::start(3, 1, false, ADVERT_INTERVAL_MS);
    lab.converged(Duration::from_secs(60));
    let (hard, hard_failed) = trials(&mut lab, Fault::HardKill, count);
    if let Some(hard) = figure(metrics[0], &hard, hard_failed) {
        let note = format!(
            "{}; kill -9 of its agent, keepalived and stand-in together",
            hard.note
        );
        report(&hard.clone().goal(Goal::AtMost(1000.0)).note(note.clone()));
        match &base {
            Some(base) => report(
                &Figure {
                    metric: metrics[1].into(),
                    ..hard
                }
                .anchor(
                    "keepalived alone (address moved by VRRP and gratuitous ARP, its host gone)",
                    base.value,
                )
                .goal(Goal::AtMost(1.2))
                .note(note),
            ),
            None => common::unmeasured(BENCH, metrics[1], "keepalived alone did not recover"),
        }
    }
    let (graceful, graceful_failed) = trials(&mut lab, Fault::Graceful, count);
    if let Some(graceful) = figure(metrics[2], &graceful, graceful_failed) {
        let note = format!("{}; SIGTERM: the agent hands the VIP over", graceful.note);
        report(&graceful.goal(Goal::AtMost(200.0)).note(note));
    }
    let (not_ready, not_ready_failed) = trials(&mut lab, Fault::NotReady, count);
    if let Some(not_ready) = figure(metrics[3], &not_ready, not_ready_failed) {
        let note = format!(
            "{}; /readyz 503, probed every 100 ms, 2 in a row",
            not_ready.note
        );
        report(&not_ready.note(note));
    }
}
