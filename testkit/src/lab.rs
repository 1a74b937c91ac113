//! The VIP lab, shared by the end-to-end test and the failover bench:
//! server and worker namespaces on one underlay bridge, each with its own
//! tfagent (and, on servers, its keepalived and a stand-in apiserver), a
//! WireGuard mesh built from specs, and the user's namespace dialling in
//! through worker-1 as its hub. Everything it starts lives in namespaces it
//! made, and is killed with them on drop.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

pub use crate::netns::{Netns, have_tools, kill, must, run, spawn_tfagent, unique};

pub const STAND_IN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/stand-in-apiserver.py"
);
pub const WATCH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/vip-watch.py");
pub const TOKEN: &str = "5b0e7c9a4f1d2e3c8b6a7f0e1d2c3b4a5f6e7d8c9b0a1f2e";
pub const VIP: &str = "10.100.0.250";
const USER_IP: &str = "10.100.0.100";

/// Why this machine cannot run the lab, if it cannot.
pub fn cannot_run() -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root");
    }
    let tools = [
        "ip",
        "wg",
        "wireguard-go",
        "keepalived",
        "curl",
        "openssl",
        "python3",
    ];
    if !have_tools(&tools) {
        return Some("needs ip, wg, wireguard-go, keepalived, curl, openssl and python3");
    }
    None
}

/// A test cluster node's role: the first server starts the cluster, the
/// other servers join it, the rest are agents (the lab's and the twin's).
pub fn node_role(server: bool, index: u8) -> &'static str {
    match (server, index) {
        (true, 1) => "server-init",
        (true, _) => "server-join",
        (false, _) => "agent",
    }
}

/// The spec's `cluster` section for a node of `role`: joiners reach the
/// first server through the VIP.
pub fn cluster_section(role: &str, token: &str, vip: &str) -> Value {
    let mut cluster = json!({"token": token, "vip": vip});
    if role != "server-init" {
        cluster["join_url"] = json!(format!("https://{vip}:6443"));
    }
    cluster
}

/// The peer whose allowed IPs hold `vip`/32, by public key, in the output
/// of `wg show INTERFACE allowed-ips`.
pub fn vip_peer(allowed_ips: &str, vip: &str) -> Option<String> {
    let host = format!("{vip}/32");
    allowed_ips.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let key = words.next()?;
        words.any(|w| w == host).then(|| key.to_owned())
    })
}

/// The lab's certificates: a CA and, per server, a stand-in certificate for
/// 127.0.0.1, its mesh address and the VIP.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn make_ca(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=tfagent lab CA",
        ],
    );
}

/// A certificate `name.pem` (key `name.key`) for 127.0.0.1 and `ips`,
/// signed by the lab CA in `dir`.
pub fn make_cert(dir: &Path, name: &str, ips: &[&str]) {
    let sans: Vec<String> = std::iter::once("127.0.0.1")
        .chain(ips.iter().copied())
        .map(|ip| format!("IP:{ip}"))
        .collect();
    let ext = format!("subjectAltName={}", sans.join(","));
    fs::write(dir.join(format!("{name}.ext")), &ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.pem"),
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

/// One node of the lab.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub server: bool,
    pub priority: u8,
    pub index: u8,
    pub underlay_ip: String,
    pub mesh_ip: String,
    pub interface: String,
    pub public_key: String,
    pub dir: PathBuf,
    pub agent: Option<Child>,
    pub stand_in: Option<Child>,
    /// Whether a spec was applied to it.
    pub applied: std::cell::Cell<bool>,
    // Dropped last.
    pub ns: Netns,
}

impl Node {
    fn socket(&self) -> PathBuf {
        self.dir.join("tfagent.sock")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("tfagent.log")).unwrap_or_default()
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(crate::tfagentctl_bin())
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let output = self.ctl(&all);
        assert!(
            output.status.success(),
            "{} tfagentctl {args:?}: {}\nlog:\n{}",
            self.name,
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Starts (or starts again) this node's agent and waits until it serves.
    pub fn spawn_agent(&mut self) {
        let config = self.dir.join("tfagent.toml");
        let services = self.dir.join("services");
        fs::write(
            &config,
            format!(
                "state_dir = \"{state}\"\nsocket = \"{socket}\"\nlog_level = \"tfagent=debug,info\"\nresync_interval_secs = 5\nwireguard_backend = \"userspace\"\nmetrics_address = \"127.0.0.1:9368\"\n\
                 [services]\nrun_dir = \"{run}\"\ncontainerd_root = \"{s}/containerd\"\nk3s_data_dir = \"{s}/k3s\"\nkubelet_root_dir = \"{s}/kubelet\"\nlog_dir = \"{s}/log\"\ncgroups = false\n\
                 [vip]\nready_url = \"https://127.0.0.1:6443/readyz\"\nready_ca = \"{ca}\"\nprobe_interval_ms = 100\n",
                state = self.dir.join("state").display(),
                socket = self.socket().display(),
                run = services.join("run").display(),
                s = services.display(),
                ca = self.dir.parent().unwrap().join("ca.pem").display(),
            ),
        )
        .unwrap();
        let log = self.dir.join("tfagent.log");
        let child = spawn_tfagent(&self.ns, crate::tfagent_bin(), &config, &log, || {
            self.ctl(&["info"]).status.success()
        });
        self.agent = Some(child);
    }

    /// Starts this server's stand-in apiserver (ready unless told).
    pub fn spawn_stand_in(&mut self) {
        let lab = self.dir.parent().unwrap();
        let log = fs::File::create(self.dir.join("stand-in.log")).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns.name,
                "python3",
                STAND_IN,
                &self.name,
                "6443",
            ])
            .arg(lab.join(format!("{}.pem", self.name)))
            .arg(lab.join(format!("{}.key", self.name)))
            .arg(self.ready_file())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.stand_in = Some(child);
    }

    pub fn ready_file(&self) -> PathBuf {
        self.dir.join("apiserver-ready")
    }

    /// Makes the stand-in answer /readyz with 200 (true) or 503.
    pub fn set_ready(&self, ready: bool) {
        if ready {
            fs::write(self.ready_file(), "").unwrap();
        } else {
            let _ = fs::remove_file(self.ready_file());
        }
    }

    /// Stops the agent: SIGKILL, or SIGTERM and a wait (graceful).
    pub fn stop_agent(&mut self, graceful: bool) {
        if let Some(mut child) = self.agent.take() {
            if graceful {
                let pid = i32::try_from(child.id()).unwrap();
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            } else {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    /// Kill -9 of the agent, keepalived and the stand-in together.
    pub fn crash(&mut self) {
        let mut pids: Vec<i32> = self.ns.pids_of("keepalived");
        pids.extend(self.agent.as_ref().map(|c| i32::try_from(c.id()).unwrap()));
        pids.extend(
            self.stand_in
                .as_ref()
                .map(|c| i32::try_from(c.id()).unwrap()),
        );
        for pid in pids {
            kill(pid);
        }
        for child in [self.agent.take(), self.stand_in.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.wait();
        }
        // keepalived's pid files would make the next one think it runs.
        let vip_dir = self.dir.join("services/run/vip");
        for file in ["keepalived.pid", "vrrp.pid"] {
            let _ = fs::remove_file(vip_dir.join(file));
        }
    }

    /// Who this node sends VIP traffic to, as the kernel and WireGuard see
    /// it: `Some(self)` when the VIP is on its interface, else the peer
    /// whose allowed IPs hold VIP/32, by public key.
    pub fn vip_route(&self) -> Option<String> {
        let addresses = run(
            "ip",
            &[
                "-n",
                &self.ns.name,
                "-o",
                "addr",
                "show",
                "dev",
                &self.interface,
            ],
        );
        if String::from_utf8_lossy(&addresses.stdout).contains(&format!("inet {VIP}/32")) {
            return Some(self.public_key.clone());
        }
        let allowed = self
            .ns
            .exec(&["wg", "show", &self.interface, "allowed-ips"]);
        vip_peer(&String::from_utf8_lossy(&allowed.stdout), VIP)
    }

    /// The agent's metrics (its own namespace's loopback, port 9368).
    pub fn metrics(&self) -> String {
        let output = self.ns.exec(&[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "http://127.0.0.1:9368/metrics",
        ]);
        assert!(
            output.status.success(),
            "{}: metrics: {output:?}",
            self.name
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// GET https://VIP:6443/ from this namespace: the answering server's
    /// name.
    pub fn ask_vip(&self, timeout: Duration) -> Option<String> {
        let ca = self.dir.parent().unwrap().join("ca.pem");
        let max = format!("{:.2}", timeout.as_secs_f64());
        let output = self.ns.exec(&[
            "curl",
            "-s",
            "--max-time",
            &max,
            "--cacert",
            ca.to_str().unwrap(),
            &format!("https://{VIP}:6443/"),
        ]);
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if thread::panicking() {
            // What the mesh looked like, before it is torn down.
            let wg = self.ns.exec(&["wg", "show", &self.interface]);
            let addresses = self.ns.exec(&["ip", "-o", "addr"]);
            println!(
                "---- {}: wg show:\n{}\naddresses:\n{}\nlog:\n{}",
                self.name,
                String::from_utf8_lossy(&wg.stdout),
                String::from_utf8_lossy(&addresses.stdout),
                self.log()
            );
        }
        for child in [self.agent.take(), self.stand_in.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        self.ns.kill_all();
        let _ = fs::remove_file(
            Path::new("/var/run/wireguard").join(format!("{}.sock", self.interface)),
        );
    }
}

/// The user: wireguard-go in its own namespace, peered with the hub.
#[derive(Debug)]
pub struct User {
    pub interface: String,
    pub ns: Netns,
}

impl Drop for User {
    fn drop(&mut self) {
        self.ns.kill_all();
        let _ = fs::remove_file(
            Path::new("/var/run/wireguard").join(format!("{}.sock", self.interface)),
        );
    }
}

/// The whole lab.
#[derive(Debug)]
pub struct Lab {
    pub nodes: Vec<Node>,
    pub user: Option<User>,
    pub advert_interval_ms: u32,
    pub dir: tempfile::TempDir,
    // Dropped last: the bridge.
    pub underlay: Netns,
}

impl Lab {
    /// [`Lab::new`] with every node's spec applied.
    pub fn start(servers: u8, workers: u8, user: bool, advert_interval_ms: u32) -> Self {
        let lab = Self::new(servers, workers, user, advert_interval_ms);
        for i in 0..lab.nodes.len() {
            lab.apply_spec(i);
        }
        lab
    }

    /// `servers` servers (priorities 150, 100, 50, …) and `workers` workers,
    /// each with its agent running and no spec yet; with `user`, the user's
    /// namespace dials worker-1.
    pub fn new(servers: u8, workers: u8, user: bool, advert_interval_ms: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        make_ca(dir.path());
        let underlay = Netns::new("tvbr");
        underlay.ip(&["link", "add", "br0", "type", "bridge"]);
        underlay.ip(&["link", "set", "br0", "up"]);
        let mut lab = Self {
            nodes: Vec::new(),
            user: None,
            advert_interval_ms,
            dir,
            underlay,
        };
        let members: Vec<(String, bool, u8)> = (1..=servers)
            .map(|i| (format!("server-{i}"), true, i))
            .chain((1..=workers).map(|i| (format!("worker-{i}"), false, 10 + i)))
            .collect();
        for (name, server, index) in members {
            let node = lab.add_node(&name, server, index);
            lab.nodes.push(node);
        }
        if user {
            lab.add_user();
        }
        lab
    }

    /// Applies node `i`'s spec of [`Lab::spec`].
    pub fn apply_spec(&self, i: usize) {
        let spec = self.spec(i);
        self.apply(i, &spec);
    }

    fn plug(&self, ns: &Netns, address: &str, port: &str) {
        self.underlay.ip(&[
            "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        self.underlay
            .ip(&["link", "set", port, "master", "br0", "up"]);
        ns.ip(&["addr", "add", address, "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
    }

    fn add_node(&mut self, name: &str, server: bool, index: u8) -> Node {
        let ns = Netns::new("tvn");
        let underlay_ip = format!("192.0.2.{index}");
        self.plug(&ns, &format!("{underlay_ip}/24"), &format!("p{index}"));
        let dir = self.dir.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        if server {
            make_cert(self.dir.path(), name, &[&format!("10.100.0.{index}"), VIP]);
        }
        let mut node = Node {
            name: name.to_owned(),
            server,
            priority: if server { 200 - 50 * index.min(3) } else { 0 },
            index,
            underlay_ip,
            mesh_ip: format!("10.100.0.{index}"),
            interface: unique("tvg"),
            public_key: String::new(),
            dir,
            agent: None,
            stand_in: None,
            applied: std::cell::Cell::new(false),
            ns,
        };
        if server {
            node.set_ready(true);
            node.spawn_stand_in();
        }
        node.spawn_agent();
        node.public_key = node.json(&["info"])["wireguard_public_key"]
            .as_str()
            .unwrap()
            .to_owned();
        node
    }

    fn add_user(&mut self) {
        let ns = Netns::new("tvu");
        self.plug(&ns, "192.0.2.100/24", "p100");
        let interface = unique("tvu");
        let key = must("wg", &["genkey"]);
        let key_file = self.dir.path().join("user.key");
        fs::write(&key_file, key.trim()).unwrap();
        let user = User { interface, ns };
        let started = Command::new("ip")
            .args([
                "netns",
                "exec",
                &user.ns.name,
                "wireguard-go",
                &user.interface,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(started.status.success(), "wireguard-go: {started:?}");
        self.user = Some(user);
        let hub = self.hub();
        let user = self.user.as_ref().unwrap();
        let out = user.ns.exec(&[
            "wg",
            "set",
            &user.interface,
            "private-key",
            key_file.to_str().unwrap(),
            "peer",
            &hub.public_key,
            "endpoint",
            &format!("{}:51820", hub.underlay_ip),
            "allowed-ips",
            "10.100.0.0/24",
            "persistent-keepalive",
            "5",
        ]);
        assert!(out.status.success(), "{out:?}");
        user.ns.ip(&[
            "addr",
            "add",
            &format!("{USER_IP}/24"),
            "dev",
            &user.interface,
        ]);
        user.ns.ip(&["link", "set", &user.interface, "up"]);
        // The hub forwards between the user and the mesh.
        let forward = hub.ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        assert!(forward.status.success(), "{forward:?}");
    }

    /// The user's public key.
    fn user_key(&self) -> Option<String> {
        self.user.as_ref().map(|user| {
            let out = user.ns.exec(&["wg", "show", &user.interface, "public-key"]);
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
    }

    pub fn hub(&self) -> &Node {
        self.nodes.iter().find(|n| n.name == "worker-1").unwrap()
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    pub fn name_of_key(&self, key: &str) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| n.public_key == key)
            .map(|n| n.name.clone())
    }

    /// The spec of node `i`.
    pub fn spec(&self, i: usize) -> Value {
        let node = &self.nodes[i];
        let user_key = self.user_key();
        let mut peers: Vec<Value> = self
            .nodes
            .iter()
            .filter(|other| other.name != node.name)
            .map(|other| {
                let mut allowed = vec![format!("{}/32", other.mesh_ip)];
                if other.name == "worker-1" && user_key.is_some() {
                    allowed.push(format!("{USER_IP}/32"));
                }
                json!({
                    "name": other.name,
                    "public_key": other.public_key,
                    "endpoint": format!("{}:51820", other.underlay_ip),
                    "allowed_ips": allowed,
                    "persistent_keepalive": 5,
                })
            })
            .collect();
        if node.name == "worker-1"
            && let Some(key) = user_key
        {
            peers.push(json!({"name": "user", "public_key": key, "allowed_ips": [format!("{USER_IP}/32")]}));
        }
        let servers: Vec<Value> = self
            .nodes
            .iter()
            .filter(|n| n.server)
            .map(|n| json!({"name": n.name, "address": n.mesh_ip}))
            .collect();
        let role = node_role(node.server, node.index);
        let cluster = cluster_section(role, TOKEN, VIP);
        let mut vip = json!({
            "advert_interval_ms": self.advert_interval_ms,
            "servers": servers,
        });
        if node.server {
            vip["priority"] = json!(node.priority);
        }
        json!({
            "node_name": node.name,
            "role": role,
            "cluster": cluster,
            "services": {
                "containerd": {"binary": "/nonexistent/containerd"},
                "k3s": {"binary": "/nonexistent/k3s"},
            },
            "network": {
                "wireguard": {
                    "interface": node.interface,
                    "listen_port": 51820,
                    "addresses": [format!("{}/24", node.mesh_ip)],
                    "peers": peers,
                },
                "vip": vip,
            },
        })
    }

    pub fn apply(&self, i: usize, spec: &Value) {
        let node = &self.nodes[i];
        let file = node.dir.join(format!("spec-{}.json", unique("s")));
        fs::write(&file, serde_json::to_vec(spec).unwrap()).unwrap();
        let output = node.ctl(&["apply", "-f", file.to_str().unwrap()]);
        assert!(
            output.status.success(),
            "{}: apply: {}\nlog:\n{}",
            node.name,
            String::from_utf8_lossy(&output.stderr),
            node.log()
        );
        node.applied.set(true);
    }

    /// The nodes whose agent runs with a spec applied.
    fn active(&self) -> impl Iterator<Item = &Node> {
        self.nodes
            .iter()
            .filter(|n| n.agent.is_some() && n.applied.get())
    }

    /// Waits until every running node's vip step converged.
    pub fn converged(&self, within: Duration) {
        let deadline = Instant::now() + within;
        for node in self.active() {
            loop {
                let status = node.json(&["status"]);
                let vip = crate::step_status(&status, "vip");
                if vip["condition"] == "converged" {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{}: vip did not converge: {status}\nlog:\n{}",
                    node.name,
                    node.log()
                );
                thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Every running node's VIP route, by node name (holder names).
    pub fn routes(&self) -> Vec<(String, Option<String>)> {
        self.active()
            .map(|n| {
                let holder = n.vip_route().and_then(|key| self.name_of_key(&key));
                (n.name.clone(), holder)
            })
            .collect()
    }

    /// Waits until every running node routes the VIP to one holder (a
    /// running server), and returns it.
    pub fn agreed_holder(&self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let routes = self.routes();
            let first = routes[0].1.clone();
            if let Some(holder) = &first
                && routes.iter().all(|(_, h)| h.as_ref() == Some(holder))
                && self
                    .nodes
                    .iter()
                    .any(|n| &n.name == holder && n.agent.is_some())
            {
                return holder.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no agreed VIP holder: {routes:?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn index_of(&self, name: &str) -> usize {
        self.nodes.iter().position(|n| n.name == name).unwrap()
    }
}
