//! A twin cluster: server and worker VMs on one underlay bridge inside a
//! network namespace the twin owns, each node's spec built the way the
//! reservation layer would (a pool volume on storaged's pool, the kernel
//! WireGuard mesh, the VIP among the servers).

use std::{
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tfagent_testkit::{
    lab::{cluster_section, node_role, vip_peer},
    netns::Netns,
    step_status,
};

use crate::{
    channel::Reply,
    images::Images,
    vm::{Vm, VmConfig},
};

pub const VIP: &str = "10.100.0.250";
/// Node `n` (1-based, servers first) is `MESH_PREFIX.10+n`.
pub const MESH_PREFIX: &str = "10.100.0";
const UNDERLAY_PREFIX: &str = "192.0.2";
const TOKEN: &str = "7c1e0a9b3f5d2e4c6b8a0f1e3d5c7b9a1f3e5d7c9b1a3f5e";
pub const INTERFACE: &str = "tfmesh";
const PORT: u16 = 51820;
pub const ADVERT_INTERVAL_MS: u32 = 100;

/// One node of the twin and what the test learned about it.
#[derive(Debug)]
pub struct Node {
    pub vm: Vm,
    pub index: u8,
    pub mesh_ip: String,
    pub underlay_ip: String,
    pub public_key: String,
    /// The storaged pool the node's volumes live on (`/mnt/<uuid>`).
    pub pool: String,
}

impl Node {
    pub fn name(&self) -> &str {
        &self.vm.config.name
    }

    pub fn server(&self) -> bool {
        self.vm.config.server
    }

    /// `tfagentctl ARGS -o json` in the VM, which must succeed.
    pub fn ctl_json(&mut self, args: &str) -> Value {
        let out = self.vm.sh(&format!("tfagentctl {args} -o json"));
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{}: tfagentctl {args}: {e}: {out}", self.name()))
    }

    /// `tfagentctl ARGS` in the VM, whatever it returns.
    pub fn ctl(&mut self, args: &str) -> Reply {
        self.vm
            .sh_with(&format!("tfagentctl {args}"), b"", Duration::from_secs(60))
    }

    /// Waits until the agent (started by zinit from the flist) answers.
    pub fn wait_agent(&mut self, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if self.ctl("info").ok() {
                return started.elapsed();
            }
            if started.elapsed() >= within {
                let zinit = self.zinit("zinit_list_md()");
                panic!(
                    "{}: tfagent did not answer within {within:?}; zinit:\n{zinit}\nconsole:\n{}",
                    self.name(),
                    self.vm.console()
                );
            }
            thread::sleep(Duration::from_millis(500));
        }
    }

    /// Runs a script against zinit's control socket (zinit 0.2.1 takes
    /// Rhai scripts from `zinit -i`).
    pub fn zinit(&mut self, script: &str) -> String {
        let reply = self.vm.sh_with(
            "HOME=/ zinit -i",
            script.as_bytes(),
            Duration::from_secs(30),
        );
        format!("{}{}", reply.stdout, reply.stderr)
    }

    /// Writes `spec` to the VM and applies it.
    pub fn apply(&mut self, spec: &Value) -> Reply {
        let body = serde_json::to_vec_pretty(spec).unwrap();
        self.vm.sh_with(
            "cat >/tmp/spec.json && tfagentctl apply -f /tmp/spec.json",
            &body,
            Duration::from_secs(90),
        )
    }

    pub fn status(&mut self) -> Value {
        self.ctl_json("status")
    }

    /// Whether the node's vip step converged.
    pub fn vip_converged(&mut self) -> bool {
        step_status(&self.status(), "vip")["condition"] == "converged"
    }

    /// Who this node sends VIP traffic to: its own name when the VIP is
    /// on its interface, else the public key of the peer routed to it.
    pub fn vip_route(&mut self) -> Option<String> {
        let own = self
            .vm
            .sh(&format!("ip -o addr show dev {INTERFACE} || true"));
        if own.contains(&format!("inet {VIP}/32")) {
            return Some(self.public_key.clone());
        }
        let allowed = self
            .vm
            .sh(&format!("wg show {INTERFACE} allowed-ips || true"));
        vip_peer(&allowed, VIP)
    }
}

/// The twin: its underlay namespace, its VMs, its directory. Dropping it
/// powers every VM off and removes the namespace (taps, bridge) and files.
#[derive(Debug)]
pub struct Twin {
    pub nodes: Vec<Node>,
    // Dropped after the nodes: the VMs die before their taps go.
    pub underlay: Netns,
    pub dir: tempfile::TempDir,
}

impl Twin {
    /// Boots `servers` server VMs and `workers` worker VMs and waits until
    /// every agent answers. Panics with the VM's console when one does not.
    pub fn boot(images: &Images, servers: u8, workers: u8) -> Self {
        let mut twin = Self::power_on_all(images, servers, workers);
        for i in 0..twin.nodes.len() {
            twin.await_node(i, Duration::from_secs(240));
        }
        twin
    }

    /// Creates the underlay and the VMs and powers them all on, without
    /// waiting for them.
    pub fn power_on_all(images: &Images, servers: u8, workers: u8) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tfagent-twin-")
            .tempdir()
            .unwrap();
        let underlay = Netns::new("tftwin");
        underlay.ip(&["link", "add", "br0", "type", "bridge"]);
        underlay.ip(&["link", "set", "br0", "up"]);
        let mut nodes = Vec::new();
        for index in 1..=servers + workers {
            let server = index <= servers;
            let name = if server {
                format!("server-{index}")
            } else {
                format!("worker-{}", index - servers)
            };
            let tap = format!("tap{index}");
            underlay.ip(&["tuntap", "add", "dev", &tap, "mode", "tap"]);
            underlay.ip(&["link", "set", &tap, "master", "br0", "up"]);
            let underlay_ip = format!("{UNDERLAY_PREFIX}.{}", 10 + index);
            let config = VmConfig {
                name,
                server,
                underlay: format!("{underlay_ip}/24"),
                mac: format!("52:54:00:12:34:{:02x}", index),
                tap,
                netns: underlay.name.clone(),
                memory_mib: 768,
            };
            nodes.push(Node {
                vm: Vm::new(config, dir.path(), images, 2048),
                index,
                mesh_ip: format!("{MESH_PREFIX}.{}", 10 + index),
                underlay_ip,
                public_key: String::new(),
                pool: String::new(),
            });
        }
        let mut twin = Self {
            nodes,
            underlay,
            dir,
        };
        for node in &mut twin.nodes {
            node.vm.power_on();
        }
        twin
    }

    /// After a power on: waits for the guest, then the agent, and learns
    /// the node's key and pool. Returns the time from power on to the
    /// agent answering (boot, storaged, the flist, zinit, tfagent).
    pub fn await_node(&mut self, i: usize, within: Duration) -> Duration {
        let node = &mut self.nodes[i];
        let booted = node
            .vm
            .wait_booted(within)
            .unwrap_or_else(|e| panic!("{e}"));
        let agent = node.wait_agent(within);
        node.public_key = node.ctl_json("info")["wireguard_public_key"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            !node.public_key.is_empty(),
            "{}: no public key",
            node.name()
        );
        let pools = node.vm.sh("ls /mnt");
        node.pool = format!(
            "/mnt/{}",
            pools
                .lines()
                .find(|l| l.len() == 36)
                .unwrap_or_else(|| panic!("{}: no storaged pool in /mnt: {pools}", node.name()))
        );
        booted + agent
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn index_of(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name() == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    pub fn name_of_key(&self, key: &str) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| n.public_key == key)
            .map(|n| n.name().to_owned())
    }

    /// Node `i`'s spec: volumes on its storaged pool, the mesh over kernel
    /// WireGuard, the VIP among the servers. k3s cannot be fetched here:
    /// its binary is absent, and a stand-in apiserver answers for it.
    pub fn spec(&self, i: usize) -> Value {
        let node = &self.nodes[i];
        let peers: Vec<Value> = self
            .nodes
            .iter()
            .filter(|other| other.index != node.index)
            .map(|other| {
                json!({
                    "name": other.name(),
                    "public_key": other.public_key,
                    "endpoint": format!("{}:{PORT}", other.underlay_ip),
                    "allowed_ips": [format!("{}/32", other.mesh_ip)],
                    "persistent_keepalive": 5,
                })
            })
            .collect();
        let servers: Vec<Value> = self
            .nodes
            .iter()
            .filter(|n| n.server())
            .map(|n| json!({"name": n.name(), "address": n.mesh_ip}))
            .collect();
        let role = node_role(node.server(), node.index);
        let cluster = cluster_section(role, TOKEN, VIP);
        let mut vip = json!({"advert_interval_ms": ADVERT_INTERVAL_MS, "servers": servers});
        if node.server() {
            vip["priority"] = json!(200 - u32::from(node.index));
        }
        json!({
            "node_name": node.name(),
            "role": role,
            "cluster": cluster,
            "storage": {"volumes": [
                {"name": "k3s", "pool": node.pool, "size": "256MiB",
                 "mount_point": "/var/lib/rancher/k3s"},
                {"name": "containerd", "pool": node.pool, "size": "512MiB",
                 "mount_point": "/var/lib/tfagent-containerd"},
            ]},
            "services": {"k3s": {"binary": "/nonexistent/k3s"}},
            "network": {
                "wireguard": {
                    "interface": INTERFACE,
                    "listen_port": PORT,
                    "addresses": [format!("{}/24", node.mesh_ip)],
                    "peers": peers,
                },
                "vip": vip,
            },
        })
    }

    /// Applies every node's spec, which must be accepted.
    pub fn apply_all(&mut self) {
        for i in 0..self.nodes.len() {
            let spec = self.spec(i);
            let node = &mut self.nodes[i];
            let reply = node.apply(&spec);
            assert!(
                reply.ok(),
                "{}: apply: {}{}",
                node.name(),
                reply.stdout,
                reply.stderr
            );
        }
    }

    /// Waits until every running node's vip step converged.
    pub fn converged(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        for node in self.nodes.iter_mut().filter(|n| n.vm.is_on()) {
            while !node.vip_converged() {
                if Instant::now() >= deadline {
                    let status = node.status();
                    panic!("{}: vip did not converge: {status}", node.name());
                }
                thread::sleep(Duration::from_millis(500));
            }
        }
    }

    /// Waits until every running node routes the VIP to one running
    /// server, and returns its name.
    pub fn agreed_holder(&mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let routes: Vec<Option<String>> = self
                .nodes
                .iter_mut()
                .filter(|n| n.vm.is_on())
                .map(|n| n.vip_route())
                .collect();
            let holder = routes[0].as_deref().and_then(|k| self.name_of_key(k));
            if let Some(holder) = holder
                && routes.iter().all(|r| r == &routes[0])
                && self.nodes[self.index_of(&holder)].vm.is_on()
            {
                return holder;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed VIP holder: {routes:?}"
            );
            thread::sleep(Duration::from_millis(300));
        }
    }

    /// Asks the VIP from node `i` who serves it (the stand-in's name).
    pub fn ask_vip(&mut self, i: usize) -> Option<String> {
        let reply = self.nodes[i].vm.sh_with(
            &format!("/usr/lib/twin/twin-guest ask {VIP}:6443"),
            b"",
            Duration::from_secs(10),
        );
        reply.ok().then(|| reply.stdout.trim().to_owned())
    }

    /// Where the twin keeps a node's files (disk image, consoles).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Node `i`'s (0-based) mesh address.
pub fn mesh_ip(i: usize) -> String {
    format!("{MESH_PREFIX}.{}", 11 + i)
}

const WATCH_LOG: &str = "/tmp/vip-watch.log";

/// Cuts node `victim`'s power while node `watcher` asks the VIP who serves
/// it every 20 ms, and returns how long nobody answered before another
/// server did (measured in the watcher VM, on its clock; a probe waits
/// 100 ms for an answer, which bounds the resolution).
pub fn failover_after_power_loss(twin: &mut Twin, watcher: usize, victim: usize) -> Duration {
    let holder = twin.nodes[victim].name().to_owned();
    let node = &mut twin.nodes[watcher];
    node.vm.sh(&format!(
        "kill $(cat {WATCH_LOG}.pid 2>/dev/null) 2>/dev/null; rm -f {WATCH_LOG}; \
         /usr/lib/twin/twin-guest watch {VIP}:6443 20 >{WATCH_LOG} 2>&1 </dev/null & echo $! >{WATCH_LOG}.pid"
    ));
    let read = |node: &mut Node| -> Vec<(u64, String)> {
        node.vm
            .sh(&format!("cat {WATCH_LOG}"))
            .lines()
            .filter_map(|l| {
                let (at, who) = l.split_once(' ')?;
                Some((at.parse().ok()?, who.to_owned()))
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !read(node).iter().any(|(_, who)| *who == holder) {
        assert!(
            Instant::now() < deadline,
            "the watcher never saw {holder} at the VIP"
        );
        thread::sleep(Duration::from_millis(200));
    }
    twin.nodes[victim].vm.kill();
    let node = &mut twin.nodes[watcher];
    let deadline = Instant::now() + Duration::from_secs(60);
    let lines = loop {
        let lines = read(node);
        let after_holder = lines.iter().skip_while(|(_, who)| *who != holder);
        if after_holder
            .clone()
            .any(|(_, who)| *who != holder && who != "-")
        {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "no other server answered at the VIP within 60 s: {lines:?}"
        );
        thread::sleep(Duration::from_millis(200));
    };
    node.vm
        .sh(&format!("kill $(cat {WATCH_LOG}.pid) 2>/dev/null; true"));
    let start = lines
        .iter()
        .position(|(_, who)| *who == holder)
        .unwrap_or(0);
    let rest = &lines[start..];
    let silent = rest.iter().find(|(_, who)| who == "-").map(|(at, _)| *at);
    let answered = rest
        .iter()
        .find(|(_, who)| *who != holder && who != "-")
        .map(|(at, _)| *at)
        .unwrap_or_default();
    Duration::from_millis(silent.map_or(0, |silent| answered.saturating_sub(silent)))
}
