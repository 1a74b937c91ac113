//! The demo lab (`make demo`, `make demo-down`, i.e. scripts/demo.sh) as
//! root: it comes up with 3 servers and 2 workers meshed over WireGuard, can
//! be brought up again over itself, and its teardown leaves no namespace,
//! loop device, mount, process or file behind — also when nothing is up.
//!
//! Each run has its own namespace prefix and dir, so it can run beside a
//! person's demo and beside the other tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};
use tfagent_testkit::tfagent_bin;

const NODES: [&str; 5] = ["server-1", "server-2", "server-3", "worker-1", "worker-2"];

fn cannot_run() -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root");
    }
    for tool in [
        "ip",
        "losetup",
        "mkfs.btrfs",
        "wireguard-go",
        "unshare",
        "openssl",
        "python3",
    ] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(
                "needs ip, losetup, mkfs.btrfs, wireguard-go, unshare, openssl and python3",
            );
        }
    }
    None
}

/// One lab: its prefix and dir; taken down on drop, whatever happened.
struct Lab {
    prefix: String,
    dir: PathBuf,
}

impl Lab {
    fn new() -> Self {
        let pid = std::process::id();
        Self {
            prefix: format!("td{}", pid % 100_000),
            dir: std::env::temp_dir().join(format!("tfagent-demo-test-{pid}")),
        }
    }

    fn script(&self, action: &str) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo.sh");
        Command::new(script)
            .arg(action)
            .env("TFAGENT_DEMO_DIR", &self.dir)
            .env("TFAGENT_DEMO_PREFIX", &self.prefix)
            .env(
                "TFAGENT_DEMO_BIN",
                Path::new(tfagent_bin()).parent().unwrap(),
            )
            .env("NO_COLOR", "1")
            .env_remove("K3S_BIN")
            .output()
            .unwrap()
    }

    /// Runs `action`, which must succeed; returns its stdout.
    fn must(&self, action: &str) -> String {
        let output = self.script(action);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "demo.sh {action} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    fn namespaces(&self) -> Vec<String> {
        let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|ns| ns.starts_with(&format!("{}-", self.prefix)))
            .map(str::to_owned)
            .collect()
    }

    /// Every process in the lab's namespaces, with its start time (so a
    /// reused pid is not taken for one of ours).
    fn processes(&self) -> BTreeMap<i32, String> {
        let mut all = BTreeMap::new();
        for ns in self.namespaces() {
            let out = Command::new("ip")
                .args(["netns", "pids", &ns])
                .output()
                .unwrap();
            for pid in String::from_utf8_lossy(&out.stdout).lines() {
                if let Ok(pid) = pid.trim().parse()
                    && let Some(start) = start_time(pid)
                {
                    all.insert(pid, start);
                }
            }
        }
        all
    }

    fn loops(&self) -> Vec<String> {
        let out = Command::new("losetup")
            .args(["--list", "--noheadings", "--output", "NAME,BACK-FILE"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(self.dir.to_str().unwrap()))
            .map(str::to_owned)
            .collect()
    }

    fn mounts(&self) -> Vec<String> {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(self.dir.to_str().unwrap()))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.script("down");
    }
}

/// When a live process started: field 22 of /proc/PID/stat (after the
/// command, which may hold spaces). `None` once it is dead, zombies too (a
/// killed process whose new parent, init, has not reaped it yet).
fn start_time(pid: i32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 2..].split_whitespace();
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18).map(str::to_owned)
}

fn came_up(out: &str) {
    for node in NODES {
        assert!(
            out.contains(&format!("== {node}: tfagentctl status")),
            "{out}"
        );
        if node != "worker-1" {
            assert!(
                out.contains(&format!("worker-1 → {node} (")) && !out.contains("NO ANSWER"),
                "the mesh does not carry worker-1's ping to {node}:\n{out}"
            );
        }
    }
    // Every node converged its storage (the loop disk) and its mesh, with
    // the VIP in every spec and k3s honestly absent.
    let summary = &out[out.find("== summary").unwrap()..];
    for node in NODES {
        let line = summary
            .lines()
            .find(|l| l.starts_with(node))
            .unwrap_or_else(|| panic!("{node} not in the summary:\n{summary}"));
        assert!(line.contains("data mounted"), "{line}");
        assert!(line.contains("up, "), "{line}");
        assert!(line.contains("containerd ready"), "{line}");
    }
    assert!(out.contains("k3s is not installed here"), "{out}");
    // The same spec applied again changes nothing.
    assert!(out.contains("unchanged: generation 1"), "{out}");
    assert!(out.contains("make demo-down"), "{out}");
}

#[test]
fn demo_comes_up_again_over_itself_and_down_leaves_nothing() {
    if let Some(why) = cannot_run() {
        println!("skipped: {why}");
        return;
    }
    let lab = Lab::new();

    // Down with nothing up is fine.
    assert!(lab.must("down").contains("nothing was up"));

    let first = lab.must("up");
    came_up(&first);
    assert_eq!(lab.namespaces().len(), 6, "{:?}", lab.namespaces());
    assert_eq!(lab.loops().len(), 5, "{:?}", lab.loops());
    // The volumes are mounted only in the nodes' own mount namespaces.
    assert!(lab.mounts().is_empty(), "{:?}", lab.mounts());
    let mut seen = lab.processes();
    assert!(seen.len() >= 5 * 3, "{seen:?}");

    // Up again: the earlier lab goes first.
    let second = lab.must("up");
    assert!(second.contains("taking it down first"), "{second}");
    came_up(&second);
    for (pid, start) in &seen {
        assert_ne!(
            start_time(*pid).as_ref(),
            Some(start),
            "pid {pid} of the first lab survived"
        );
    }
    seen.extend(lab.processes());

    let down = lab.must("down");
    assert!(down.contains("removed namespaces"), "{down}");
    assert!(lab.namespaces().is_empty(), "{:?}", lab.namespaces());
    assert!(lab.loops().is_empty(), "{:?}", lab.loops());
    assert!(lab.mounts().is_empty(), "{:?}", lab.mounts());
    assert!(!lab.dir.exists(), "{} is left", lab.dir.display());
    for (pid, start) in &seen {
        assert_ne!(
            start_time(*pid).as_ref(),
            Some(start),
            "pid {pid} survived demo-down"
        );
    }

    assert!(lab.must("down").contains("nothing was up"));
}
