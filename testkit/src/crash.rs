//! Crash trials: an agent is killed with SIGKILL at a random moment of an
//! apply (while the spec is being stored, or while the host is being
//! changed), started again, and must converge to the last spec it accepted
//! with no duplicate address, route, peer or child process. Shared by the
//! crash test and the crash bench.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::nsagent::NsAgent;

const TOKEN: &str = "crash-trial-token-5e1d0c";

/// Public keys of the peers the specs choose from.
const PEER_KEYS: [&str; 4] = [
    "zz0Gb1q1briV2JILKwhxvCgG0vuXsmMhjzACYmVOln4=",
    "i9S8p3N1RLF1RNVGDU2qxEUvSEt0badseOsteDcDnkw=",
    "RlWP4aRXhB8Tck8sHYA4S+ammZDFS1PJKODPJ/LRUMw=",
    "SN1PXl+MHMQyPZO0z1+53V3mlOMOwKym7J3ZN5aGx+w=",
];

/// A small xorshift generator: trials are reproducible from their seed.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A seed from the clock, printed by the caller so a failure can be rerun
/// with TFAGENT_CRASH_SEED.
pub fn seed() -> u64 {
    std::env::var("TFAGENT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// The agent under trial and the stand-ins for its services.
#[derive(Debug)]
pub struct Bed {
    pub agent: NsAgent,
    containerd: PathBuf,
    k3s: PathBuf,
    /// Where the volume is mounted when a variant has it.
    mount_point: PathBuf,
    // After the agent: its namespace (and so the mount) is gone by then.
    disk: Disk,
}

/// A blank loop device over a sparse file; detached on drop.
#[derive(Debug)]
struct Disk {
    device: String,
    _dir: tempfile::TempDir,
}

impl Disk {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        fs::File::create(&image)
            .unwrap()
            .set_len(300 << 20)
            .unwrap();
        let output = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(output.status.success(), "losetup: {output:?}");
        Self {
            device: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            _dir: dir,
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.device]).output();
    }
}

impl Bed {
    pub fn new() -> Self {
        let disk = Disk::new();
        let agent = NsAgent::start_with(format!("allowed_devices = [\"{}\"]\n", disk.device));
        let mount_point = agent.path().join("mnt/data");
        // Stand-ins that just stay up, told apart by their argument; k3s's
        // never starts as containerd's never becomes ready, so a duplicate
        // would be containerd's.
        let containerd = agent.path().join("containerd-stand-in");
        let k3s = agent.path().join("k3s-stand-in");
        for (path, seconds) in [(&containerd, 86_401), (&k3s, 86_402)] {
            let text = path.with_extension("txt");
            fs::write(&text, format!("#!/bin/sh\nexec sleep {seconds}\n")).unwrap();
            crate::copy_executable(text.to_str().unwrap(), path);
        }
        Self {
            agent,
            containerd,
            k3s,
            mount_point,
            disk,
        }
    }

    /// Spec variant `n`: some of the peers, one or two addresses.
    pub fn spec(&self, n: u64) -> Value {
        let mut addresses = vec!["10.100.0.1/24".to_owned()];
        if n % 2 == 1 {
            addresses.push(format!("10.101.{}.1/24", n % 5));
        }
        let peers: Vec<Value> = PEER_KEYS
            .iter()
            .enumerate()
            .filter(|(i, _)| (n >> i) & 1 == 1 || *i == usize::try_from(n % 4).unwrap())
            .map(|(i, key)| {
                let mut allowed = vec![format!("10.100.0.{}/32", i + 2)];
                if (n + i as u64).is_multiple_of(3) {
                    allowed.push(format!("10.{}.0.0/16", 110 + i));
                }
                json!({"name": format!("peer-{i}"), "public_key": key, "allowed_ips": allowed})
            })
            .collect();
        // Two variants in three have the volume: its mount comes and goes.
        // Its persisted path is in the test's dir: the default ones (under
        // /etc and /var/lib) would be made on the host's disk.
        let kept = self
            .mount_point
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .join("kept");
        let storage = if n.is_multiple_of(3) {
            json!({"volumes": []})
        } else {
            json!({
                "volumes": [{
                    "name": "data",
                    "device": self.disk.device,
                    "filesystem": "btrfs",
                    "format": "if-blank",
                    "mount_point": self.mount_point,
                }],
                "persist": {"volume": "data", "paths": [{"path": kept}]},
            })
        };
        json!({
            "storage": storage,
            "node_name": "crash-node",
            "role": "agent",
            "cluster": {"token": TOKEN, "join_url": "https://10.100.0.250:6443"},
            "services": {
                "containerd": {"binary": self.containerd},
                "k3s": {"binary": self.k3s},
            },
            "network": {"wireguard": {
                "interface": self.agent.interface,
                "listen_port": 51820,
                "addresses": addresses,
                "peers": peers,
            }},
        })
    }

    /// The stored spec's generation and WireGuard section (None before
    /// any spec).
    fn stored(&self) -> Option<(u64, Value)> {
        let generation = self.agent.json(&["status"])["desired_generation"]
            .as_u64()
            .unwrap_or(0);
        let output = self.agent.ctl(&["get", "spec", "-o", "json"]);
        if generation == 0 || !output.status.success() {
            return None;
        }
        let spec: Value = serde_json::from_slice(&output.stdout).ok()?;
        Some((generation, spec))
    }

    /// One trial: an apply of a new variant with the agent killed at a
    /// random moment of it, a restart, and the checks. Returns what was
    /// wrong, if anything.
    pub fn trial(&mut self, rng: &mut Rng, accepted: &mut u64) -> Result<(), String> {
        let variant = rng.below(64);
        let file = self.agent.spec_file(&self.spec(variant));
        let apply = Command::new(crate::tfagentctl_bin())
            .arg("--socket")
            .arg(self.agent.socket())
            .args(["apply", "-f"])
            .arg(&file)
            .args(["-o", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // From before the request lands to well into the reconcile pass.
        // Half the kills land within the Apply call itself (validation,
        // the atomic write), the others in the reconcile pass after it.
        let delay = if rng.below(2) == 0 {
            rng.below(40)
        } else {
            40 + rng.below(400)
        };
        thread::sleep(Duration::from_millis(delay));
        self.agent.kill9();
        let output = apply.wait_with_output().unwrap();
        if output.status.success() {
            let reply: Value = serde_json::from_slice(&output.stdout).unwrap();
            *accepted = reply["generation"].as_u64().unwrap();
        }
        self.agent.spawn();
        let Some((generation, spec)) = self.stored() else {
            // Killed before any spec was ever stored: nothing to converge to.
            return if *accepted == 0 {
                Ok(())
            } else {
                Err(format!("no spec stored, but {accepted} was accepted"))
            };
        };
        if generation < *accepted {
            return Err(format!(
                "generation {generation} stored, but {accepted} was accepted"
            ));
        }
        *accepted = generation;
        self.converged(generation)?;
        self.check(&spec)
    }

    /// The checks of a trial on the agent as it is now.
    pub fn verify(&self) -> Result<(), String> {
        let (_, wireguard) = self.stored().ok_or_else(|| "no spec stored".to_owned())?;
        self.check(&wireguard)
    }

    /// Waits until the network step converged to `generation`.
    fn converged(&self, generation: u64) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.agent.json(&["status"]);
            let network = crate::step_status(&status, "network");
            if network["converged_generation"].as_u64() >= Some(generation)
                && network["condition"] == "converged"
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no convergence to {generation}: {network}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The host matches `spec` exactly: addresses, peers, routes, the
    /// volume mounted once when asked for and not otherwise, no mount
    /// stacked on another; and each child runs once.
    fn check(&self, spec: &Value) -> Result<(), String> {
        let mounts = self.agent.ns.mount_points();
        let ours: Vec<&String> = mounts
            .iter()
            .filter(|m| Path::new(m.as_str()).starts_with(self.agent.path()))
            .collect();
        let distinct: BTreeSet<&&String> = ours.iter().collect();
        if distinct.len() != ours.len() {
            return Err(format!("a mount point mounted twice: {ours:?}"));
        }
        let wants_volume = spec["storage"]["volumes"]
            .as_array()
            .is_some_and(|v| !v.is_empty());
        let mounted = ours
            .iter()
            .any(|m| Path::new(m.as_str()) == self.mount_point);
        if wants_volume != mounted {
            return Err(format!(
                "volume wanted: {wants_volume}, mounted: {mounted}: {ours:?}"
            ));
        }
        let wireguard = &spec["network"]["wireguard"];
        let strings = |value: &Value| -> Vec<String> {
            value
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut want_addresses = strings(&wireguard["addresses"]);
        want_addresses.sort();
        // Storage converges before the network step makes the interface:
        // between the two, the interface is not there yet.
        let link = self
            .agent
            .ns
            .run("ip", &["link", "show", "dev", &self.agent.interface]);
        if !link.status.success() {
            return Err(format!("no interface {} yet", self.agent.interface));
        }
        let mut addresses = self.agent.link_addresses();
        addresses.sort();
        if addresses != want_addresses {
            return Err(format!("addresses {addresses:?}, want {want_addresses:?}"));
        }
        let want_peers: BTreeSet<(String, Vec<String>)> = wireguard["peers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|p| {
                let mut allowed = strings(&p["allowed_ips"]);
                allowed.sort();
                (
                    p["public_key"].as_str().unwrap_or_default().to_owned(),
                    allowed,
                )
            })
            .collect();
        let status = self.agent.json(&["status"]);
        let live: Vec<(String, Vec<String>)> = status["wireguard"]["peers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|p| {
                let mut allowed = strings(&p["allowed_ips"]);
                allowed.sort();
                (
                    p["public_key"].as_str().unwrap_or_default().to_owned(),
                    allowed,
                )
            })
            .collect();
        let live_set: BTreeSet<_> = live.iter().cloned().collect();
        if live.len() != live_set.len() || live_set != want_peers {
            return Err(format!("peers {live:?}, want {want_peers:?}"));
        }
        // Each peer's networks routed once through the interface, and no
        // route left from an earlier spec.
        let routes = self.agent.routes();
        let mut destinations: Vec<String> = routes
            .iter()
            .filter(|r| !r.contains("proto kernel"))
            .filter_map(|r| r.split_whitespace().next().map(str::to_owned))
            .collect();
        destinations.sort();
        let mut want_routes: Vec<String> = want_peers
            .iter()
            .flat_map(|(_, allowed)| allowed.iter().cloned())
            .filter(|net| {
                // Inside the interface's own networks: no route of its own.
                !want_addresses.iter().any(|a| covers(a, net))
            })
            .map(|net| net.trim_end_matches("/32").to_owned())
            .collect();
        want_routes.sort();
        want_routes.dedup();
        if destinations != want_routes {
            return Err(format!("routes {routes:?}, want {want_routes:?}"));
        }
        // The services step runs after the network step: containerd may
        // still be on its way; a duplicate never goes away by waiting.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let children = self.children();
            let count = |needle: &str| children.iter().filter(|c| c.contains(needle)).count();
            let wireguard_go = count(&format!("wireguard-go -f {}", self.agent.interface));
            let containerd = count("sleep 86401");
            let k3s = count("sleep 86402");
            if wireguard_go == 1 && containerd == 1 && k3s <= 1 {
                return Ok(());
            }
            if wireguard_go > 1 || containerd > 1 || k3s > 1 || Instant::now() > deadline {
                return Err(format!(
                    "children: {wireguard_go} wireguard-go, {containerd} containerd, {k3s} k3s: {children:?}"
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The command lines of the processes in the agent's namespace.
    fn children(&self) -> Vec<String> {
        self.agent
            .ns
            .pids()
            .into_iter()
            .filter_map(|pid| {
                fs::read(Path::new("/proc").join(pid.to_string()).join("cmdline")).ok()
            })
            .map(|cmdline| {
                String::from_utf8_lossy(&cmdline)
                    .replace('\0', " ")
                    .trim()
                    .to_owned()
            })
            .collect()
    }
}

/// Whether IPv4 network `outer` (an address with its prefix, host bits
/// allowed) contains `inner`.
fn covers(outer: &str, inner: &str) -> bool {
    let parse = |net: &str| -> Option<(u32, u32)> {
        let (ip, len) = net.split_once('/')?;
        let ip: std::net::Ipv4Addr = ip.parse().ok()?;
        Some((u32::from(ip), len.parse().ok()?))
    };
    let (Some((outer_ip, outer_len)), Some((inner_ip, inner_len))) = (parse(outer), parse(inner))
    else {
        return false;
    };
    let mask = |len: u32| if len == 0 { 0 } else { u32::MAX << (32 - len) };
    inner_len >= outer_len && outer_ip & mask(outer_len) == inner_ip & mask(outer_len)
}
