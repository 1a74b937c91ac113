//! End to end, as root: WireGuard meshes built only through `Apply`.
//!
//! Each node is a network namespace joined by veth to a bridge that lives in
//! a namespace of its own, with one `tfagent` per node (own state dir,
//! socket and interface name; wireguard-go, as this test bed has no
//! wireguard kernel module). Every name carries the pid and a counter, so
//! tests run in parallel with each other and with anyone else's. Traffic
//! stays inside these namespaces (192.0.2.0/24 underlay, 10.100.0.0/24
//! mesh). Everything is removed on drop, also when a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};
use tfagent_testkit::tfagent_bin;

use serde_json::{Value, json};

use common::netns::{Netns, have_tools, spawn_tfagent, unique};
use tfagent_testkit as common;

const TOKEN: &str = "37a19483e94eed8fa33078987edd509271efdba80b2b9d0a";

/// Why this machine cannot run these tests, if it cannot.
fn cannot_run() -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root");
    }
    if !have_tools(&["ip", "wg", "wireguard-go", "ping", "setsid"]) {
        return Some("needs ip, wg, wireguard-go, ping and setsid");
    }
    None
}

macro_rules! require_root {
    () => {
        if let Some(why) = cannot_run() {
            println!("skipped: {why}");
            return;
        }
    };
}

/// The underlay: a bridge in a namespace of its own.
struct Underlay {
    ns: Netns,
    ports: u32,
}

impl Underlay {
    fn new() -> Self {
        let ns = Netns::new("twbr");
        ns.ip(&["link", "add", "br0", "type", "bridge"]);
        ns.ip(&["link", "set", "br0", "up"]);
        Self { ns, ports: 0 }
    }

    /// Plugs `node` in as eth0 with `address` (e.g. 192.0.2.1/24).
    fn plug(&mut self, node: &Netns, address: &str) {
        self.ports += 1;
        let port = format!("p{}", self.ports);
        self.ns.ip(&[
            "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &node.name,
        ]);
        self.ns.ip(&["link", "set", &port, "master", "br0", "up"]);
        node.ip(&["addr", "add", address, "dev", "eth0"]);
        node.ip(&["link", "set", "eth0", "up"]);
    }
}

/// One node: a namespace, a tfagent in it, and that agent's files.
struct Node {
    agent: Option<Child>,
    dir: tempfile::TempDir,
    /// Its WireGuard interface (unique per run: wireguard-go's socket
    /// folder is host-wide).
    interface: String,
    underlay_ip: String,
    mesh_ip: String,
    public_key: String,
    // Dropped last: kills what still runs in it.
    ns: Netns,
}

impl Node {
    fn start(underlay: &mut Underlay, index: u8) -> Self {
        let ns = Netns::new("twn");
        let underlay_ip = format!("192.0.2.{index}");
        underlay.plug(&ns, &format!("{underlay_ip}/24"));
        let dir = tempfile::tempdir().unwrap();
        let mut node = Self {
            agent: None,
            dir,
            interface: unique("twg"),
            underlay_ip,
            mesh_ip: format!("10.100.0.{index}"),
            public_key: String::new(),
            ns,
        };
        node.spawn();
        node.public_key = node.json(&["info"])["wireguard_public_key"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(node.public_key.len(), 44, "{}", node.public_key);
        node
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("tfagent.sock")
    }

    fn spawn(&mut self) {
        let config = self.dir.path().join("tfagent.toml");
        fs::write(
            &config,
            format!(
                // wireguard-go runs under the supervisor: its records and
                // logs stay in the temp dir, and no host cgroup is made.
                "state_dir = \"{}\"\nsocket = \"{}\"\nlog_level = \"tfagent=debug,info\"\nresync_interval_secs = 5\nwireguard_backend = \"userspace\"\n{}",
                self.dir.path().join("state").display(),
                self.socket().display(),
                common::services_config(&self.dir.path().join("services")),
            ),
        )
        .unwrap();
        let log = self.dir.path().join("tfagent.log");
        let child = spawn_tfagent(&self.ns, tfagent_bin(), &config, &log, || {
            self.ctl(&["info"]).status.success()
        });
        self.agent = Some(child);
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("tfagent.log")).unwrap_or_default()
    }

    fn ctl(&self, args: &[&str]) -> Output {
        common::tfagentctl(&self.socket(), args)
    }

    fn ok(&self, args: &[&str]) -> String {
        common::succeeded(self.ctl(args), args, &self.log())
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    /// A spec for this node with these peers.
    fn spec(&self, name: &str, peers: Vec<Value>) -> Value {
        json!({
            "node_name": name,
            "role": "agent",
            "cluster": {"token": TOKEN, "join_url": "https://10.100.0.250:6443"},
            // The mesh is under test, not containerd and k3s: binaries that
            // are not there keep the services step from starting anything.
            "services": {
                "containerd": {"binary": "/nonexistent/containerd"},
                "k3s": {"binary": "/nonexistent/k3s"},
            },
            "network": {"wireguard": {
                "interface": self.interface,
                "listen_port": 51820,
                "addresses": [format!("{}/24", self.mesh_ip)],
                "peers": peers,
            }},
        })
    }

    /// Applies `spec` with extra tfagentctl flags; returns the generation.
    fn apply(&self, spec: &Value, flags: &[&str]) -> u64 {
        let file = self.dir.path().join(format!("spec-{}.json", unique("s")));
        fs::write(&file, serde_json::to_vec(spec).unwrap()).unwrap();
        let mut args = vec!["apply", "-f", file.to_str().unwrap()];
        args.extend(flags);
        args.extend(["-o", "json"]);
        let reply: Value = serde_json::from_str(&self.ok(&args)).unwrap();
        reply["generation"].as_u64().unwrap()
    }

    /// Waits until the network step converged to `generation`.
    fn converged(&self, generation: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.json(&["status"]);
            let network = common::step_status(&status, "network");
            if network["converged_generation"].as_u64() >= Some(generation)
                && network["condition"] == "converged"
            {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "network did not converge to {generation}: {network}\nlog:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn apply_and_wait(&self, spec: &Value) -> u64 {
        let generation = self.apply(spec, &[]);
        self.converged(generation);
        generation
    }

    /// This node's peer entry for `other`.
    fn peer_of(&self, other: &Node, name: &str, extra_allowed: &[&str]) -> Value {
        let mut allowed = vec![format!("{}/32", other.mesh_ip)];
        allowed.extend(extra_allowed.iter().map(|s| (*s).to_owned()));
        let _ = self;
        json!({
            "name": name,
            "public_key": other.public_key,
            "endpoint": format!("{}:51820", other.underlay_ip),
            "allowed_ips": allowed,
        })
    }

    /// Live peers by public key: (latest handshake, rx, tx, allowed IPs).
    fn peers(&self) -> Vec<(String, Value)> {
        let status = self.json(&["status"]);
        status["wireguard"]["peers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p["public_key"].as_str().unwrap().to_owned(), p))
            .collect()
    }

    fn peer_state(&self, key: &str) -> Option<Value> {
        self.peers()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, p)| p)
    }
}

/// Removes the control socket a killed wireguard-go leaves behind.
fn remove_socket(interface: &str) {
    let _ = fs::remove_file(Path::new("/var/run/wireguard").join(format!("{interface}.sock")));
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The namespace (dropped after this) kills wireguard-go; its socket
        // is left, and removed here.
        remove_socket(&self.interface);
        if thread::panicking() {
            println!("---- log of {}:\n{}", self.ns.name, self.log());
        }
    }
}

/// Three nodes, each peered with the other two (names node-1..3).
fn mesh(underlay: &mut Underlay, count: u8) -> Vec<Node> {
    let nodes: Vec<Node> = (1..=count).map(|i| Node::start(underlay, i)).collect();
    for (i, node) in nodes.iter().enumerate() {
        let peers = nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, other)| node.peer_of(other, &format!("node-{}", j + 1), &[]))
            .collect();
        node.apply_and_wait(&node.spec(&format!("node-{}", i + 1), peers));
    }
    nodes
}

/// Samples until two reads a second apart agree (no packet in flight, no
/// passive keepalive pending), then returns that state.
fn quiet_peers(node: &Node) -> Vec<(String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = node.peers();
    loop {
        thread::sleep(Duration::from_secs(1));
        let now = node.peers();
        if now == last {
            return now;
        }
        assert!(Instant::now() < deadline, "the peers never went quiet");
        last = now;
    }
}

#[test]
fn three_nodes_mesh_a_user_joins_and_peer_changes_touch_only_that_peer() {
    require_root!();
    let mut underlay = Underlay::new();
    let nodes = mesh(&mut underlay, 3);

    // Everyone reaches everyone over WireGuard.
    for from in &nodes {
        for to in &nodes {
            if from.mesh_ip != to.mesh_ip {
                assert!(
                    from.ns.reaches(&to.mesh_ip, Duration::from_secs(10)),
                    "{} cannot reach {}",
                    from.mesh_ip,
                    to.mesh_ip
                );
            }
        }
    }
    let status = nodes[0].json(&["status"]);
    let wg = &status["wireguard"];
    assert_eq!(wg["backend"], "userspace");
    assert_eq!(wg["up"], true);
    assert_eq!(wg["listen_port"], 51820);
    assert_eq!(
        wg["public_key"].as_str(),
        Some(nodes[0].public_key.as_str())
    );
    let peer2 = nodes[0].peer_state(&nodes[1].public_key).unwrap();
    assert_eq!(peer2["name"], "node-2");
    assert_eq!(peer2["endpoint"], "192.0.2.2:51820");
    assert!(peer2["latest_handshake"].is_string(), "{peer2}");
    assert!(peer2["rx_bytes"].as_u64().unwrap() > 0, "{peer2}");
    let table = nodes[0].ok(&["status"]);
    assert!(
        table.contains("node-2") && table.contains("userspace"),
        "{table}"
    );
    assert!(nodes[0].ok(&["info"]).contains(&nodes[0].public_key));
    // The private key stays in its 0600 file: not in logs, status or info.
    let key_file = nodes[0].dir.path().join("state/wireguard.key");
    let private = fs::read_to_string(&key_file).unwrap().trim().to_owned();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&key_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // The UAPI socket carries it in hex: look for that form too, and in
    // wireguard-go's own log.
    let private_hex: String = tfagent_spec::KeyPair::from_private_base64(&private)
        .unwrap()
        .private_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let wireguard_go_log = fs::read_to_string(nodes[0].dir.path().join(format!(
        "services/log/wireguard-go-{}.log",
        nodes[0].interface
    )))
    .expect("wireguard-go logs to its own file");
    for text in [
        nodes[0].log(),
        table.clone(),
        nodes[0].ok(&["info", "-o", "json"]),
        wireguard_go_log,
        nodes[0].ok(&["logs", &format!("wireguard-go-{}", nodes[0].interface)]),
    ] {
        assert!(!text.contains(&private), "the private key leaked");
        assert!(!text.contains(&private_hex), "the private key leaked (hex)");
    }

    // A user joins through node 1 (the hub), configured from access-config.
    let access = nodes[0].json(&[
        "wg",
        "access-config",
        "--name",
        "user",
        "--address",
        "10.100.0.100/32",
        "--endpoint",
        "192.0.2.1",
    ]);
    let config = access["config"].as_str().unwrap();
    assert!(config.contains("Endpoint = 192.0.2.1:51820"), "{config}");
    assert!(config.contains("AllowedIPs = 10.100.0.0/24"), "{config}");
    assert!(config.contains("PersistentKeepalive = 25"), "{config}");
    let user_key = access["public_key"].as_str().unwrap().to_owned();
    let user_private = config
        .lines()
        .find_map(|l| l.strip_prefix("PrivateKey = "))
        .unwrap()
        .to_owned();
    assert!(
        !nodes[0].log().contains(&user_private),
        "the agent saw the user's key"
    );
    assert!(
        !fs::read_dir(nodes[0].dir.path().join("state"))
            .unwrap()
            .any(|e| fs::read_to_string(e.unwrap().path())
                .unwrap_or_default()
                .contains(&user_private)),
        "the user's private key was stored"
    );
    assert!(access["peer_entry"].as_str().unwrap().contains(&user_key));

    // The hub admits the user and forwards; the others route the user via the hub.
    nodes[0].exec_sysctl_forwarding();
    let hub_peers = vec![
        nodes[0].peer_of(&nodes[1], "node-2", &[]),
        nodes[0].peer_of(&nodes[2], "node-3", &[]),
        json!({"name": "user", "public_key": user_key, "allowed_ips": ["10.100.0.100/32"]}),
    ];
    nodes[0].apply_and_wait(&nodes[0].spec("node-1", hub_peers.clone()));
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let peers = nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, other)| {
                let extra: &[&str] = if j == 0 { &["10.100.0.100/32"] } else { &[] };
                node.peer_of(other, &format!("node-{}", j + 1), extra)
            })
            .collect();
        node.apply_and_wait(&node.spec(&format!("node-{}", i + 1), peers));
    }
    let user = Netns::new("twu");
    underlay.plug(&user, "192.0.2.100/24");
    let user_if = unique("twg");
    let _user_wg = UserWg::start(&user, &user_if);
    let conf = nodes[0].dir.path().join("user.conf");
    // wg setconf takes the config without wg-quick's own lines.
    let stripped: String = config
        .lines()
        .filter(|l| !l.starts_with("Address") && !l.starts_with("MTU"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&conf, stripped).unwrap();
    assert!(
        user.exec(&["wg", "setconf", &user_if, conf.to_str().unwrap()])
            .status
            .success()
    );
    user.ip(&["addr", "add", "10.100.0.100/32", "dev", &user_if]);
    user.ip(&["link", "set", &user_if, "mtu", "1420", "up"]);
    user.ip(&["route", "add", "10.100.0.0/24", "dev", &user_if]);
    for node in &nodes {
        assert!(
            user.reaches(&node.mesh_ip, Duration::from_secs(10)),
            "the user cannot reach {}",
            node.mesh_ip
        );
    }

    // Changing node-2's allowed IPs on node 1 leaves node-3 and the user
    // exactly as they were: no re-handshake, no packet.
    let before = quiet_peers(&nodes[0]);
    let mut changed = hub_peers.clone();
    changed[0]["allowed_ips"] = json!(["10.100.0.2/32", "10.102.0.0/16"]);
    let plan = nodes[0].json(&[
        "apply",
        "-f",
        &write_spec(&nodes[0], &nodes[0].spec("node-1", changed.clone())),
        "--dry-run",
    ]);
    let network_plan = plan["plan"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["step"] == "network")
        .unwrap()
        .clone();
    let actions: Vec<&str> = network_plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert!(actions[0].starts_with("update peer node-2"), "{actions:?}");
    assert_eq!(actions[1], "add route 10.102.0.0/16");
    nodes[0].apply_and_wait(&nodes[0].spec("node-1", changed.clone()));
    let after = nodes[0].peers();
    for ((key, was), (_, now)) in before.iter().zip(&after) {
        if *key == nodes[1].public_key {
            assert_eq!(
                now["allowed_ips"],
                json!(["10.100.0.2/32", "10.102.0.0/16"])
            );
            assert_eq!(
                now["latest_handshake"], was["latest_handshake"],
                "node-2 re-handshook"
            );
        } else {
            assert_eq!(now, was, "an untouched peer changed");
        }
    }
    let route = nodes[0].ns.ip(&["route", "show", "10.102.0.0/16"]);
    assert!(route.contains(&nodes[0].interface), "{route}");

    // A network a peer is given that the node already routes elsewhere is
    // refused, naming the device, until that route goes.
    nodes[0]
        .ns
        .ip(&["route", "add", "10.103.0.0/16", "dev", "lo"]);
    let mut clash = changed.clone();
    clash[0]["allowed_ips"] = json!(["10.100.0.2/32", "10.102.0.0/16", "10.103.0.0/16"]);
    let generation = nodes[0].apply(&nodes[0].spec("node-1", clash), &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = nodes[0].json(&["status"]);
        let network = common::step_status(&status, "network");
        let error = network["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if network["condition"] == "failed" {
            assert!(
                error.contains("10.103.0.0/16 already goes through lo"),
                "{network}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the clash was not reported: {network}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    nodes[0]
        .ns
        .ip(&["route", "del", "10.103.0.0/16", "dev", "lo"]);
    nodes[0].converged(generation);
    let route = nodes[0].ns.ip(&["route", "show", "10.103.0.0/16"]);
    assert!(route.contains(&nodes[0].interface), "{route}");
    nodes[0].apply_and_wait(&nodes[0].spec("node-1", changed.clone()));

    // Removing node-3 from node 1 removes only it (and its route).
    let before = quiet_peers(&nodes[0]);
    let without: Vec<Value> = changed
        .iter()
        .filter(|p| p["name"] != "node-3")
        .cloned()
        .collect();
    nodes[0].apply_and_wait(&nodes[0].spec("node-1", without));
    let after = nodes[0].peers();
    assert_eq!(after.len(), 2, "{after:?}");
    for (key, now) in &after {
        let was = &before.iter().find(|(k, _)| k == key).unwrap().1;
        assert_eq!(now, was, "a remaining peer changed");
    }
    assert!(nodes[0].peer_state(&nodes[2].public_key).is_none());
    assert!(
        nodes[0]
            .ns
            .reaches(&nodes[1].mesh_ip, Duration::from_secs(5))
    );
    assert!(!nodes[0].ns.pings(&nodes[2].mesh_ip));
}

fn write_spec(node: &Node, spec: &Value) -> String {
    let file = node.dir.path().join(format!("spec-{}.json", unique("s")));
    fs::write(&file, serde_json::to_vec(spec).unwrap()).unwrap();
    file.to_str().unwrap().to_owned()
}

impl Node {
    fn exec_sysctl_forwarding(&self) {
        let output = self.ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        assert!(output.status.success(), "{output:?}");
    }
}

/// The user's own wireguard-go, in the user's namespace.
struct UserWg {
    child: Child,
    interface: String,
}

impl UserWg {
    fn start(ns: &Netns, interface: &str) -> Self {
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "wireguard-go", "-f", interface])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let socket = Path::new("/var/run/wireguard").join(format!("{interface}.sock"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "wireguard-go did not start");
            thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            interface: interface.to_owned(),
        }
    }
}

impl Drop for UserWg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_socket(&self.interface);
    }
}

#[test]
fn try_mode_reverts_a_cut_off_unless_confirmed() {
    require_root!();
    let mut underlay = Underlay::new();
    let mut nodes = mesh(&mut underlay, 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    // With a keepalive, as real meshes have: a peer (re)configured on a
    // running interface handshakes at once, so node 2 is back as soon as
    // its peer is.
    let mut peer = b.peer_of(a, "node-1", &[]);
    peer["persistent_keepalive"] = json!(25);
    let good = b.spec("node-2", vec![peer]);
    b.apply_and_wait(&good);
    assert!(a.ns.reaches(&b.mesh_ip, Duration::from_secs(10)));
    // Node 2 drops its only peer: it is cut off.
    let cut = b.spec("node-2", vec![]);

    let timeout = Duration::from_secs(3);
    let tried_at = Instant::now();
    let tried = b.apply(&cut, &["--try", "3s"]);
    b.converged(tried);
    let status = b.json(&["status"]);
    assert_eq!(status["trial"]["generation"], tried);
    assert!(!a.ns.pings(&b.mesh_ip), "still reachable after the cut");
    // Without Confirm: back to the previous spec within timeout + 2 s.
    let reverted = loop {
        let status = b.json(&["status"]);
        if status["desired_generation"].as_u64() == Some(tried + 1) {
            break status;
        }
        assert!(
            tried_at.elapsed() < timeout + Duration::from_secs(2),
            "no revert within timeout + 2 s: {status}"
        );
        thread::sleep(Duration::from_millis(50));
    };
    assert!(reverted["trial"].is_null(), "{reverted}");
    assert!(
        reverted["last_trial"]
            .as_str()
            .unwrap()
            .contains("reverted")
    );
    b.converged(tried + 1);
    assert!(
        tried_at.elapsed() < timeout + Duration::from_secs(2),
        "the revert took {:?}",
        tried_at.elapsed()
    );
    assert!(
        a.ns.reaches(&b.mesh_ip, Duration::from_secs(10)),
        "node 2 does not answer again"
    );

    // With Confirm it stays.
    let tried = b.apply(&cut, &["--try", "3s"]);
    b.converged(tried);
    let confirmed = b.ok(&["confirm"]);
    assert!(
        confirmed.contains(&format!("generation {tried} confirmed")),
        "{confirmed}"
    );
    thread::sleep(timeout + Duration::from_secs(2));
    let status = b.json(&["status"]);
    assert_eq!(
        status["desired_generation"].as_u64(),
        Some(tried),
        "{status}"
    );
    assert!(status["trial"].is_null());
    assert!(!a.ns.pings(&b.mesh_ip));
    // And a plain apply brings it back.
    b.apply_and_wait(&good);
    assert!(a.ns.reaches(&b.mesh_ip, Duration::from_secs(10)));

    // An agent that dies inside the window still reverts once restarted
    // (and adopts the wireguard-go it started).
    let tried_at = Instant::now();
    let tried = nodes[1].apply(&cut, &["--try", "4s"]);
    nodes[1].converged(tried);
    let service = format!("wireguard-go-{}", nodes[1].interface);
    let wireguard_go = |status: &Value| {
        status["services"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["name"] == service.as_str()))
            .cloned()
    };
    let before = wireguard_go(&nodes[1].json(&["status"])).expect("wireguard-go is supervised");
    nodes[1].crash_and_restart();
    // The restarted agent supervises the same wireguard-go again at once.
    let after = wireguard_go(&nodes[1].json(&["status"])).expect("wireguard-go is adopted");
    assert_eq!(after["pid"], before["pid"], "{after}");
    assert_eq!(after["adopted"], true, "{after}");
    loop {
        let status = nodes[1].json(&["status"]);
        if status["desired_generation"].as_u64() == Some(tried + 1) {
            break;
        }
        assert!(
            tried_at.elapsed() < Duration::from_secs(4 + 2),
            "no revert after the restart: {status}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    nodes[1].converged(tried + 1);
    assert!(
        nodes[0]
            .ns
            .reaches(&nodes[1].mesh_ip, Duration::from_secs(10)),
        "node 2 does not answer after the revert"
    );
}

impl Node {
    /// SIGKILL, as a crash would, then start the agent again.
    fn crash_and_restart(&mut self) {
        let mut child = self.agent.take().unwrap();
        // `ip netns exec` execs tfagent: the child is the agent itself.
        child.kill().unwrap();
        child.wait().unwrap();
        self.spawn();
    }
}
