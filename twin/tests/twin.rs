//! The zOS twin, end to end: tfagent installed from its flist on VMs
//! shaped like zOS nodes, through a node's life. One boot of the cluster
//! serves every check (VMs are the expensive part), in the order a node
//! lives them. Each check prints what it saw.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    collections::BTreeMap,
    thread,
    time::{Duration, Instant},
};

use serde_json::json;
use tfagent_testkit::step_status;
use tfagent_twin::{Images, Twin, VIP, cannot_run, cluster::INTERFACE};

#[test]
fn a_zos_node_lives_its_life_on_the_twin() {
    let images = Images::locate();
    if let Some(why) = cannot_run(&images) {
        // As root (CI), a twin that cannot run is a failure, never a skip.
        if nix::unistd::geteuid().is_root() {
            panic!("zOS twin: {why}");
        }
        eprintln!("skipped: {why}");
        return;
    }
    let started = Instant::now();
    let mut twin = Twin::boot(&images, 3, 1);
    println!(
        "twin: 3 servers + 1 worker booted ({:?}), agents up from the flist under zinit in {:?}",
        tfagent_twin::Accel::detect(&images),
        started.elapsed()
    );
    let worker = twin.index_of("worker-1");

    no_ext4_or_xfs(&mut twin, worker);
    kernel_wireguard_mesh(&mut twin, worker);
    let holder = vip_over_kernel_wireguard(&mut twin, worker);
    cgroup_v1_only(&mut twin);
    zinit_runs_the_flist(&mut twin, worker);
    power_loss_and_reboot(&mut twin, worker, &holder);
    println!("twin: all checks passed in {:?}", started.elapsed());
}

/// A spec asking for ext4 is refused naming the field, on the twin's real
/// module list (zOS builds neither ext4 nor xfs).
fn no_ext4_or_xfs(twin: &mut Twin, worker: usize) {
    let modules = twin.nodes[worker]
        .vm
        .sh("cat /lib/modules/$(uname -r)/modules.dep; cat /proc/filesystems");
    assert!(!modules.contains("ext4") && !modules.contains("xfs"));
    for filesystem in ["ext4", "xfs"] {
        let mut spec = twin.spec(worker);
        spec["storage"]["volumes"].as_array_mut().unwrap().push(
            json!({"name": "data", "device": "/dev/vdb", "filesystem": filesystem,
                         "format": "if-blank", "mount_point": "/srv/twin-data"}),
        );
        let reply = twin.nodes[worker].apply(&spec);
        assert!(!reply.ok(), "an {filesystem} volume was accepted");
        assert!(
            reply.stderr.contains("storage.volumes[2].filesystem")
                && reply.stderr.contains(filesystem),
            "the refusal does not name the field: {}",
            reply.stderr
        );
        println!("no {filesystem}: refused: {}", reply.stderr.trim());
    }
    let status = twin.nodes[worker].status();
    assert_eq!(
        status["desired_generation"], 0,
        "a refused spec changed the node"
    );
}

/// Every node runs the mesh on the kernel module; it pings end to end; a
/// one-peer change leaves the other peers' sessions alone.
fn kernel_wireguard_mesh(twin: &mut Twin, worker: usize) {
    twin.apply_all();
    twin.converged(Duration::from_secs(300));
    for node in &mut twin.nodes {
        let info = node.ctl_json("info");
        assert_eq!(
            info["wireguard_backend"],
            "kernel",
            "{}: {info}",
            node.name()
        );
        let status = node.ctl("status");
        assert!(
            status.stdout.contains("kernel"),
            "{}: status does not say kernel: {}",
            node.name(),
            status.stdout
        );
        let link = node
            .vm
            .sh(&format!("/usr/sbin/ip -d link show {INTERFACE}"));
        assert!(link.contains("wireguard"), "{}: {link}", node.name());
    }
    let targets: Vec<String> = twin
        .nodes
        .iter()
        .filter(|n| n.index as usize != worker + 1)
        .map(|n| n.mesh_ip.clone())
        .collect();
    for target in &targets {
        let reply = twin.nodes[worker].vm.sh_with(
            &format!("ping -c 1 -W 2 {target} || ping -c 3 -W 2 {target}"),
            b"",
            Duration::from_secs(20),
        );
        assert!(
            reply.ok(),
            "worker-1 cannot ping {target}: {}",
            reply.stdout
        );
    }
    println!("kernel WireGuard: 4 nodes on the kernel module; worker-1 pings every server");

    let server = 0;
    let handshakes = |twin: &mut Twin| -> BTreeMap<String, u64> {
        twin.nodes[server]
            .vm
            .sh(&format!("wg show {INTERFACE} latest-handshakes"))
            .lines()
            .filter_map(|l| {
                let (key, at) = l.split_once(char::is_whitespace)?;
                Some((key.to_owned(), at.trim().parse().ok()?))
            })
            .collect()
    };
    let ifindex = |twin: &mut Twin| {
        twin.nodes[server]
            .vm
            .sh(&format!("cat /sys/class/net/{INTERFACE}/ifindex"))
    };
    // Every peer has a session first (keepalives start them within seconds).
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let now = handshakes(twin);
        if now.len() == 3 && now.values().all(|at| *at > 0) {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "not every peer shook hands: {now:?}"
        );
        thread::sleep(Duration::from_millis(500));
    };
    let index_before = ifindex(twin);
    let newcomer = twin.nodes[server]
        .vm
        .sh("wg genkey | wg pubkey")
        .trim()
        .to_owned();
    let mut spec = twin.spec(server);
    spec["network"]["wireguard"]["peers"]
        .as_array_mut()
        .unwrap()
        .push(
            json!({"name": "newcomer", "public_key": newcomer, "allowed_ips": ["10.100.0.99/32"]}),
        );
    let reply = twin.nodes[server].apply(&spec);
    assert!(reply.ok(), "{}", reply.stderr);
    twin.converged(Duration::from_secs(120));
    let after = handshakes(twin);
    assert!(
        after.contains_key(&newcomer),
        "the new peer is missing: {after:?}"
    );
    for (key, at) in &before {
        assert!(
            after.get(key).is_some_and(|now| now >= at && *now > 0),
            "peer {key}'s session was reset by a one-peer change: {at} -> {:?}",
            after.get(key)
        );
    }
    assert_eq!(index_before, ifindex(twin), "the interface was recreated");
    println!(
        "kernel WireGuard: adding one peer left the other {} sessions alone",
        before.len()
    );
}

/// The VIP is elected among the servers over the kernel mesh and answers
/// at the worker.
fn vip_over_kernel_wireguard(twin: &mut Twin, worker: usize) -> String {
    let holder = twin.agreed_holder(Duration::from_secs(120));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = twin.ask_vip(worker);
        if answer.as_deref() == Some(holder.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the VIP answers {answer:?} at worker-1, holder {holder}"
        );
        thread::sleep(Duration::from_millis(500));
    }
    println!("VIP: {holder} holds {VIP}; worker-1 reaches its apiserver through it");
    holder
}

/// Supervised services land in their cgroup v1 hierarchies; nothing on
/// the node mounts cgroup v2.
fn cgroup_v1_only(twin: &mut Twin) {
    for node in &mut twin.nodes {
        let mounts = node.vm.sh("cat /proc/mounts");
        assert!(!mounts.contains("cgroup2"), "{}: {mounts}", node.name());
        let mut services = vec!["containerd"];
        if node.server() {
            services.push("keepalived");
        }
        for service in services {
            let cgroups = node.vm.sh(&format!(
                "cat /proc/$(pidof {service} | cut -d' ' -f1)/cgroup"
            ));
            assert!(
                !cgroups.lines().any(|l| l.starts_with("0::")),
                "{}: {service}: {cgroups}",
                node.name()
            );
            for controller in ["memory", "pids", "cpu,cpuacct"] {
                let line = cgroups
                    .lines()
                    .find(|l| {
                        l.split(':').nth(1) == Some(controller)
                            || (controller == "cpu,cpuacct" && l.split(':').nth(1) == Some("cpu"))
                    })
                    .unwrap_or_else(|| {
                        panic!(
                            "{}: {service}: no {controller} hierarchy: {cgroups}",
                            node.name()
                        )
                    });
                assert!(
                    line.contains(&format!("/tfagent/{service}"))
                        || line.contains(&format!("tfagent/{service}")),
                    "{}: {service} is not in its own v1 cgroup: {line}",
                    node.name()
                );
            }
        }
    }
    // Kubernetes 1.35+ refuses cgroup v1 unless told: the rendered k3s
    // config allows it, and status says so.
    let node = &mut twin.nodes[0];
    let config = node.vm.sh("cat /run/tfagent/services/k3s-config.yaml");
    assert!(config.contains("fail-cgroupv1=false"), "{config}");
    let status = node.ctl("status");
    assert!(
        status
            .stdout
            .contains("cgroup v1 host: the kubelet runs with fail-cgroupv1=false"),
        "{}",
        status.stdout
    );
    println!(
        "cgroup v1: containerd and keepalived run in their own v1 cgroups; no cgroup2 anywhere; the kubelet is allowed on v1 and status says so"
    );
}

/// zinit runs the flist's unit: the agent is up once its test passes,
/// `stop` ends it within the shutdown timeout and leaves containerd
/// running, `start` brings it back and it adopts containerd, and its log
/// is in zinit's ring.
fn zinit_runs_the_flist(twin: &mut Twin, worker: usize) {
    let node = &mut twin.nodes[worker];
    let list = node.zinit("print(zinit_list_md());");
    let line = list
        .lines()
        .find(|l| l.contains("| tfagent |"))
        .unwrap_or_default();
    assert!(line.contains("Running"), "zinit list: {list}");
    let containerd = node.vm.sh("pidof containerd").trim().to_owned();
    assert!(!containerd.is_empty());

    let stopping = Instant::now();
    let stopped = node.zinit("zinit_stop(\"tfagent\"); print(zinit_status_md(\"tfagent\"));");
    let deadline = Instant::now() + Duration::from_secs(15);
    while node
        .vm
        .sh_with("pidof tfagent", b"", Duration::from_secs(10))
        .ok()
    {
        assert!(
            Instant::now() < deadline,
            "tfagent still runs after zinit stop: {stopped}"
        );
        thread::sleep(Duration::from_millis(200));
    }
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(12),
        "zinit stop took {took:?} (timeout 10 s)"
    );
    assert_eq!(
        node.vm.sh("pidof containerd").trim(),
        containerd,
        "containerd did not keep running"
    );

    node.zinit("zinit_start(\"tfagent\");");
    node.wait_agent(Duration::from_secs(120));
    let deadline = Instant::now() + Duration::from_secs(120);
    while step_status(&node.status(), "services")["condition"] != "converged"
        && step_status(&node.status(), "services")["message"]
            .as_str()
            .is_none_or(|m| !m.contains("k3s"))
    {
        assert!(
            Instant::now() < deadline,
            "services did not settle after the restart"
        );
        thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        node.vm.sh("pidof containerd").trim(),
        containerd,
        "the restarted agent did not adopt containerd"
    );
    let ring = node.zinit("zinit_logs_print();");
    assert!(
        ring.lines()
            .any(|l| l.starts_with("[+] tfagent:") && l.contains("tfagent starting")),
        "the agent's log is not in zinit's ring: {ring}"
    );
    println!(
        "zinit: stop took {took:?}, containerd (pid {containerd}) kept running and was adopted; the log is in the ring"
    );
}

/// The holder loses power; the VIP answers from another server. The VM
/// boots again from its disk: the agent comes back from the flist, with
/// its spec, key and volumes, rejoins, and stays a backup.
fn power_loss_and_reboot(twin: &mut Twin, worker: usize, holder: &str) {
    let victim = twin.index_of(holder);
    let key = twin.nodes[victim].public_key.clone();
    let generation = twin.nodes[victim].status()["converged_generation"].clone();
    let checksum = twin.nodes[victim]
        .vm
        .sh("head -c 1048576 /dev/urandom >/var/lib/rancher/k3s/twin-check && sync && sha256sum /var/lib/rancher/k3s/twin-check");
    let label = twin.nodes[victim].pool.clone();

    let outage = tfagent_twin::failover_after_power_loss(twin, worker, victim);
    let new_holder = twin.agreed_holder(Duration::from_secs(60));
    assert_ne!(new_holder, holder);
    println!(
        "power loss: {holder} killed; {new_holder} answers at the VIP after {outage:?} without an answer"
    );

    let booted_at = Instant::now();
    twin.nodes[victim].vm.power_on();
    let up = twin.await_node(victim, Duration::from_secs(240));
    let node = &mut twin.nodes[victim];
    assert_eq!(
        node.public_key, key,
        "the node's key changed across the reboot"
    );
    assert_eq!(node.pool, label, "storaged's pool changed");
    assert_eq!(
        node.vm.sh("sha256sum /var/lib/rancher/k3s/twin-check"),
        checksum,
        "the volume lost data (formatted?)"
    );
    twin.converged(Duration::from_secs(240));
    let converged = booted_at.elapsed();
    let node = &mut twin.nodes[victim];
    let status = node.status();
    assert_eq!(
        status["converged_generation"], generation,
        "the spec was not found again: {status}"
    );
    let reply = node.vm.sh_with(
        &format!("ping -c 3 -W 2 {}", tfagent_twin::mesh_ip(worker)),
        b"",
        Duration::from_secs(20),
    );
    assert!(
        reply.ok(),
        "the rebooted node cannot reach worker-1: {}",
        reply.stdout
    );
    assert_eq!(
        twin.agreed_holder(Duration::from_secs(60)),
        new_holder,
        "the rebooted server took the VIP back"
    );
    println!(
        "reboot: {holder} back with its key, spec and volume data (agent up {up:?} after power on, converged {converged:?}); {new_holder} keeps the VIP"
    );
}
