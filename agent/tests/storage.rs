//! Storage as root, for real: loop devices over sparse files, mkfs, btrfs
//! quotas and mounts, driven through a spawned `tfagent` and `tfagentctl`.
//! The agent runs inside a private mount namespace the test creates (held
//! open by a `sleep` so a restarted agent joins the same one), so the
//! host's own mounts never change. Everything is removed on drop, also when
//! a test fails. Without root each test says it was skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fs,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};
use tfagent_testkit::tfagent_bin;

use tfagent_testkit as common;
use tfagent_testkit::nsagent::Netns;

const TOKEN: &str = "37a19483e94eed8fa33078987edd509271efdba80b2b9d0a";
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn skip_unless_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    eprintln!("{test}: skipped: needs root (loop devices, mkfs, mounts)");
    true
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A loop device over a sparse file; detached on drop.
struct Loop {
    device: String,
    file: PathBuf,
}

impl Loop {
    /// `prepare` writes to the file before it is attached.
    fn new(dir: &Path, size_mib: u64, prepare: impl FnOnce(&fs::File)) -> Self {
        let file = dir.join(format!(
            "disk-{}-{}.img",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let f = fs::File::create(&file).unwrap();
        f.set_len(size_mib << 20).unwrap();
        prepare(&f);
        f.sync_all().unwrap();
        drop(f);
        let device = ok("losetup", &["-f", "--show", file.to_str().unwrap()])
            .trim()
            .to_owned();
        Self { device, file }
    }

    fn blank(dir: &Path) -> Self {
        Self::new(dir, 300, |_| {})
    }

    fn signature(&self) -> String {
        String::from_utf8(run("blkid", &["-p", "-o", "export", &self.device]).stdout).unwrap()
    }

    fn uuid(&self) -> String {
        self.signature()
            .lines()
            .find_map(|l| l.strip_prefix("UUID="))
            .unwrap()
            .to_owned()
    }

    fn image_checksum(&self) -> String {
        ok("sha256sum", &[self.file.to_str().unwrap()])
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        // Still in use (the namespace tearing down): the kernel detaches it
        // when the last user goes.
        let _ = run("losetup", &["-d", &self.device]);
    }
}

/// A tfagent in the namespace, with its own state dir and socket.
struct Agent {
    child: Option<Child>,
    dir: PathBuf,
}

impl Agent {
    fn start(ns: &Netns, dir: &Path, allowed: &[&str]) -> Self {
        let mut agent = Self {
            child: None,
            dir: dir.to_owned(),
        };
        agent.spawn(ns, allowed);
        agent
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("run/tfagent.sock")
    }

    fn spawn(&mut self, ns: &Netns, allowed: &[&str]) {
        let config = self.dir.join("tfagent.toml");
        let allowed: Vec<String> = allowed.iter().map(|d| format!("\"{d}\"")).collect();
        fs::write(
            &config,
            format!(
                "state_dir = \"{}\"\nsocket = \"{}\"\nlog_level = \"tfagent=debug,info\"\nresync_interval_secs = 2\nallowed_devices = [{}]\n{}",
                self.dir.join("state").display(),
                self.socket().display(),
                allowed.join(", "),
                common::services_config(&self.dir.join("services")),
            ),
        )
        .unwrap();
        let child = common::start_tfagent(
            ns.command(tfagent_bin()),
            &config,
            &self.dir.join("tfagent.log"),
            || self.ctl(&["info"]).status.success(),
        );
        self.child = Some(child);
    }

    fn restart(&mut self, ns: &Netns, allowed: &[&str]) {
        let mut child = self.child.take().unwrap();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        assert!(child.wait().unwrap().success(), "{}", self.log());
        self.spawn(ns, allowed);
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("tfagent.log")).unwrap_or_default()
    }

    fn ctl(&self, args: &[&str]) -> Output {
        common::tfagentctl(&self.socket(), args)
    }

    fn ok(&self, args: &[&str]) -> String {
        common::succeeded(self.ctl(args), args, &self.log())
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "-o", "json"])).unwrap()
    }

    fn apply(&self, spec: &str) -> Output {
        let file = self.dir.join(format!(
            "spec-{}.yaml",
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::write(&file, spec).unwrap();
        self.ctl(&["apply", "-f", file.to_str().unwrap()])
    }

    /// Applies and waits for the storage step's first run of the
    /// resulting generation to end (converged or failed); returns the
    /// status then.
    fn apply_and_settle(&self, spec: &str) -> serde_json::Value {
        let file = self.dir.join(format!(
            "spec-{}.yaml",
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::write(&file, spec).unwrap();
        let reply: serde_json::Value =
            serde_json::from_str(&self.ok(&["apply", "-f", file.to_str().unwrap(), "-o", "json"]))
                .unwrap();
        let generation = reply["generation"].as_u64().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let events = self.ok(&["events", "-o", "json"]);
            let settled = events.lines().any(|line| {
                let event: serde_json::Value = serde_json::from_str(line).unwrap();
                event["generation"] == generation
                    && event["step"] == "storage"
                    && (event["phase"] == "converged" || event["phase"] == "failed")
            });
            if settled {
                return self.status();
            }
            assert!(
                Instant::now() < deadline,
                "storage did not settle on generation {generation}: {:#}\nlog:\n{}",
                self.status(),
                self.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A spec with the example cluster and the given `storage:` section.
fn spec(storage: &str) -> String {
    format!(
        "node_name: node-1
role: server-init
cluster:
  token: {TOKEN}
network:
  wireguard:
    addresses: [10.100.0.1/24]
# Storage is under test: binaries that are not there keep the services
# step from starting containerd and k3s.
services:
  containerd:
    binary: /nonexistent/containerd
  k3s:
    binary: /nonexistent/k3s
storage:
{storage}"
    )
}

/// Everything one test owns, dropped in this order: the agent, the
/// namespace (its mounts go with it), the loop devices, the files.
struct Bed {
    agent: Option<Agent>,
    ns: Netns,
    loops: Vec<Loop>,
    dir: tempfile::TempDir,
}

impl Bed {
    fn new() -> Self {
        Self {
            agent: None,
            ns: Netns::new(),
            loops: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn agent(&self) -> &Agent {
        self.agent.as_ref().unwrap()
    }

    /// A btrfs pool on a new loop device, mounted in the namespace like
    /// zOS's storaged does (quotas on).
    fn pool(&mut self) -> (PathBuf, usize) {
        let device = Loop::blank(self.dir.path());
        ok("mkfs.btrfs", &["-q", &device.device]);
        let pool = self.path("pool");
        fs::create_dir_all(&pool).unwrap();
        self.ns
            .run_ok("mount", &[&device.device, pool.to_str().unwrap()]);
        self.ns
            .run_ok("btrfs", &["quota", "enable", pool.to_str().unwrap()]);
        self.loops.push(device);
        (pool, self.loops.len() - 1)
    }
}

#[test]
fn blank_disk_pool_quota_persist_restart_resize_and_removal() {
    if skip_unless_root("blank_disk_pool_quota_persist_restart_resize_and_removal") {
        return;
    }
    let mut bed = Bed::new();
    let (pool, _) = bed.pool();
    let disk = Loop::blank(bed.dir.path());
    let device = disk.device.clone();
    bed.loops.push(disk);
    let (data, k3s) = (bed.path("mnt/data"), bed.path("mnt/k3s"));
    let (rancher, kubelet) = (
        bed.path("root/etc/rancher"),
        bed.path("root/var/lib/kubelet"),
    );
    let volumes = |size: &str, with_data: bool, flags: &str| {
        let mut text = format!(
            "  volumes:
    - name: k3s
      pool: {}
      size: {size}
      mount_point: {}
",
            pool.display(),
            k3s.display()
        );
        if with_data {
            text.push_str(&format!(
                "    - name: data
      device: {device}
      mount_point: {}
      mount_options: [{flags}]
",
                data.display()
            ));
        }
        text.push_str(&format!(
            "  persist:
    volume: k3s
    paths:
      - path: {}
      - path: {}
        propagation: rshared
",
            rancher.display(),
            kubelet.display()
        ));
        spec(&text)
    };
    bed.agent = Some(Agent::start(&bed.ns, bed.dir.path(), &[&device]));

    // Blank device → btrfs, mounted; pool subvolume with quota; binds.
    let status = bed
        .agent()
        .apply_and_settle(&volumes("64MiB", true, "noatime"));
    assert_eq!(status["steps"][0]["condition"], "converged", "{status:#}");
    assert!(bed.loops[1].signature().contains("TYPE=btrfs"));
    let at_data = bed.ns.mounts_at(&data);
    assert_eq!(at_data.len(), 1, "{at_data:?}");
    assert!(at_data[0].contains(&device) && at_data[0].contains(&"btrfs".to_owned()));
    assert!(at_data[0][5].contains("noatime"), "{:?}", at_data[0]);
    let at_k3s = bed.ns.mounts_at(&k3s);
    assert_eq!(at_k3s[0][3], "/tfagent-k3s", "{at_k3s:?}");

    // Persisted paths: bind mounts from the volume, with their propagation.
    let at_kubelet = bed.ns.mounts_at(&kubelet);
    assert_eq!(at_kubelet.len(), 1);
    assert_eq!(
        at_kubelet[0][3],
        "/tfagent-k3s/.tfagent-persist".to_owned() + kubelet.to_str().unwrap()
    );
    assert!(
        at_kubelet[0].iter().any(|f| f.starts_with("shared:")),
        "rshared: {at_kubelet:?}"
    );
    let at_rancher = bed.ns.mounts_at(&rancher);
    assert!(
        !at_rancher[0].iter().any(|f| f.starts_with("shared:")),
        "private: {at_rancher:?}"
    );
    // What is written there lands on the volume.
    bed.ns.run_ok(
        "sh",
        &[
            "-c",
            &format!(
                "mkdir -p {0}/node && echo pw > {0}/node/password",
                rancher.display()
            ),
        ],
    );
    let on_volume = format!(
        "{}/.tfagent-persist{}/node/password",
        k3s.display(),
        rancher.display()
    );
    assert_eq!(bed.ns.run_ok("cat", &[&on_volume]), "pw\n");
    // None of it is visible outside the namespace.
    let host = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !host.contains(bed.dir.path().to_str().unwrap()),
        "leaked to the host"
    );

    // Writing past the quota fails with EDQUOT.
    let big = format!("{}/big", k3s.display());
    let dd = bed.ns.run(
        "dd",
        &[
            "if=/dev/zero",
            &format!("of={big}"),
            "bs=1M",
            "count=128",
            "conv=fsync",
        ],
    );
    assert!(!dd.status.success());
    let stderr = String::from_utf8_lossy(&dd.stderr);
    assert!(stderr.contains("Disk quota exceeded"), "{stderr}");
    bed.ns.run_ok("rm", &["-f", &big]);

    // Status per volume; `tfagentctl status` shows them.
    let volumes_status = &bed.agent().status()["volumes"];
    assert_eq!(volumes_status[0]["name"], "k3s");
    assert_eq!(volumes_status[0]["state"], "mounted");
    assert_eq!(volumes_status[0]["quota_bytes"], 64 << 20);
    assert_eq!(
        volumes_status[0]["uuid"].as_str().unwrap(),
        bed.loops[0].uuid()
    );
    assert_eq!(volumes_status[1]["state"], "mounted");
    assert_eq!(
        volumes_status[1]["uuid"].as_str().unwrap(),
        bed.loops[1].uuid()
    );
    assert!(volumes_status[1]["size_bytes"].as_u64().unwrap() > 200 << 20);
    let table = bed.agent().ok(&["status"]);
    assert!(
        table.contains("VOLUME") && table.contains("mounted"),
        "{table}"
    );
    let disks = bed.agent().ok(&["disks"]);
    assert!(
        disks
            .lines()
            .any(|l| l.starts_with(&device) && l.contains("btrfs filesystem")),
        "{disks}"
    );

    // A restart adopts what is mounted: no duplicate mounts.
    let before = bed.ns.mountinfo().len();
    let log_before = bed.agent().log().len();
    let mut agent = bed.agent.take().unwrap();
    agent.restart(&bed.ns, &[&device]);
    bed.agent = Some(agent);
    let status = bed
        .agent()
        .apply_and_settle(&volumes("64MiB", true, "noatime"));
    assert_eq!(status["steps"][0]["condition"], "converged");
    thread::sleep(Duration::from_millis(2500)); // a resync pass too
    assert_eq!(bed.ns.mountinfo().len(), before, "no mount was added");
    for target in [&data, &k3s, &rancher, &kubelet] {
        assert_eq!(bed.ns.mounts_at(target).len(), 1, "{}", target.display());
    }
    assert!(
        !bed.agent().log()[log_before..].contains("storage changed"),
        "the restart changed nothing"
    );

    // A size change updates the quota live.
    let status = bed
        .agent()
        .apply_and_settle(&volumes("128MiB", true, "noatime, nodev"));
    assert_eq!(status["steps"][0]["condition"], "converged", "{status:#}");
    let subvolume = format!("{}/tfagent-k3s", pool.display());
    let qgroups = bed.ns.run_ok(
        "btrfs",
        &["qgroup", "show", "-re", "--raw", "-f", &subvolume],
    );
    assert!(qgroups.contains(&(128u64 << 20).to_string()), "{qgroups}");
    // …and a flag change with a remount, the mount kept.
    let at_data = bed.ns.mounts_at(&data);
    assert_eq!(at_data.len(), 1, "{at_data:?}");
    assert!(
        at_data[0][5].contains("nodev") && at_data[0][5].contains("noatime"),
        "{at_data:?}"
    );

    // A removed volume that is busy: reported, not forced, retried.
    let mut sleeper = KillOnDrop(
        bed.ns
            .command("sh")
            .args(["-c", &format!("cd {} && exec sleep 120", data.display())])
            .spawn()
            .unwrap(),
    );
    let cwd = format!("/proc/{}/cwd", sleeper.0.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::read_link(&cwd).ok().as_deref() != Some(data.as_path()) {
        assert!(
            Instant::now() < deadline,
            "the sleeper did not enter {}",
            data.display()
        );
        thread::sleep(Duration::from_millis(10));
    }
    // A foreign mount is left alone throughout.
    let foreign = bed.path("foreign");
    fs::create_dir_all(&foreign).unwrap();
    bed.ns.run_ok(
        "mount",
        &["-t", "tmpfs", "tmpfs", foreign.to_str().unwrap()],
    );
    let status = bed.agent().apply_and_settle(&volumes("128MiB", false, ""));
    let storage = &status["steps"][0];
    assert_eq!(storage["condition"], "failed", "{status:#}");
    let error = storage["last_error"].as_str().unwrap();
    assert!(
        error.contains("busy") && error.contains("not forced"),
        "{error}"
    );
    assert_eq!(bed.ns.mounts_at(&data).len(), 1, "not forced");

    // Once it is free, the retry unmounts it.
    let _ = sleeper.0.kill();
    let _ = sleeper.0.wait();
    let deadline = Instant::now() + Duration::from_secs(30);
    while bed.agent().status()["steps"][0]["condition"] != "converged" {
        assert!(
            Instant::now() < deadline,
            "no retry: {:#}",
            bed.agent().status()
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert!(bed.ns.mounts_at(&data).is_empty(), "unmounted");
    assert_eq!(bed.ns.mounts_at(&foreign).len(), 1);
    assert_eq!(bed.ns.mounts_at(&k3s).len(), 1);
}

/// A helper process killed when the test ends, even by a panic.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes a DOS partition table with one partition into `file`.
fn partition_table(file: &fs::File) {
    let mut sector = [0u8; 512];
    sector[440..444].copy_from_slice(&0x1234_abcd_u32.to_le_bytes());
    let entry = &mut sector[446..462];
    entry[4] = 0x83; // Linux
    entry[8..12].copy_from_slice(&2048u32.to_le_bytes());
    entry[12..16].copy_from_slice(&(100u32 * 2048).to_le_bytes());
    sector[510] = 0x55;
    sector[511] = 0xaa;
    file.write_all_at(&sector, 0).unwrap();
}

#[test]
fn data_trap_disks_with_data_are_refused_and_left_as_they_were() {
    if skip_unless_root("data_trap_disks_with_data_are_refused_and_left_as_they_were") {
        return;
    }
    let mut bed = Bed::new();
    // ext4 and btrfs, each with a file; a disk with only a partition table.
    let mut file_sums = Vec::new();
    for mkfs in ["mkfs.ext4", "mkfs.btrfs"] {
        let disk = Loop::blank(bed.dir.path());
        ok(mkfs, &["-q", &disk.device]);
        let mnt = bed.path(&format!("prep-{mkfs}"));
        fs::create_dir_all(&mnt).unwrap();
        bed.ns
            .run_ok("mount", &[&disk.device, mnt.to_str().unwrap()]);
        let file = format!("{}/precious", mnt.display());
        bed.ns.run_ok(
            "sh",
            &[
                "-c",
                &format!("head -c 1048576 /dev/urandom > {file} && sync"),
            ],
        );
        let sum = bed.ns.run_ok("sha256sum", &[&file]);
        bed.ns.run_ok("umount", &[mnt.to_str().unwrap()]);
        file_sums.push((sum.split_whitespace().next().unwrap().to_owned(), mnt));
        bed.loops.push(disk);
    }
    bed.loops
        .push(Loop::new(bed.dir.path(), 300, partition_table));
    assert!(
        bed.loops[2].signature().contains("PTTYPE=dos"),
        "{}",
        bed.loops[2].signature()
    );
    let images: Vec<String> = bed.loops.iter().map(Loop::image_checksum).collect();
    let devices: Vec<String> = bed.loops.iter().map(|l| l.device.clone()).collect();
    let allowed: Vec<&str> = devices.iter().map(String::as_str).collect();
    bed.agent = Some(Agent::start(&bed.ns, bed.dir.path(), &allowed));

    let expectations = [
        "ext4 filesystem (UUID",
        "btrfs filesystem (UUID",
        "dos partition table",
    ];
    for (device, expected) in devices.iter().zip(expectations) {
        let target = bed.path("mnt/trap");
        let status = bed.agent().apply_and_settle(&spec(&format!(
            "  volumes:\n    - name: trap\n      device: {device}\n      format: if-blank\n      mount_point: {}\n",
            target.display()
        )));
        let storage = &status["steps"][0];
        assert_eq!(storage["condition"], "failed", "{status:#}");
        let error = storage["last_error"].as_str().unwrap();
        assert!(
            error.contains(device) && error.contains(expected),
            "{error}"
        );
        assert_eq!(status["volumes"][0]["state"], "refused", "{status:#}");
        assert!(bed.ns.mounts_at(&target).is_empty());
    }

    // wipe with the wrong expected UUID: refused too.
    let status = bed.agent().apply_and_settle(&spec(&format!(
        "  volumes:\n    - name: trap\n      device: {}\n      format: wipe\n      wipe_signature: 01234567-89ab-cdef-0123-456789abcdef\n      mount_point: {}\n",
        devices[0],
        bed.path("mnt/trap").display()
    )));
    let error = status["steps"][0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("not 01234567-89ab-cdef-0123-456789abcdef"),
        "{error}"
    );

    // Every disk is bit for bit what it was, and the files read back the same.
    let after: Vec<String> = bed.loops.iter().map(Loop::image_checksum).collect();
    assert_eq!(images, after);
    for (i, (sum, mnt)) in file_sums.iter().enumerate() {
        bed.ns
            .run_ok("mount", &["-o", "ro", &devices[i], mnt.to_str().unwrap()]);
        let now = bed
            .ns
            .run_ok("sha256sum", &[&format!("{}/precious", mnt.display())]);
        assert!(now.starts_with(sum.as_str()), "{now} vs {sum}");
        bed.ns.run_ok("umount", &[mnt.to_str().unwrap()]);
    }
    assert!(!bed.agent().log().contains("storage changed"));
}

#[test]
fn invalid_volume_specs_are_refused_with_their_fields_and_nothing_is_touched() {
    if skip_unless_root("invalid_volume_specs_are_refused_with_their_fields_and_nothing_is_touched")
    {
        return;
    }
    let mut bed = Bed::new();
    let allowed = Loop::blank(bed.dir.path());
    let outside = Loop::blank(bed.dir.path());
    let (allowed_device, outside_device) = (allowed.device.clone(), outside.device.clone());
    bed.loops.push(allowed);
    bed.loops.push(outside);
    // The agent's state dir on a disk of its own: that disk is never used,
    // allow-list or not.
    let system = Loop::blank(bed.dir.path());
    ok("mkfs.btrfs", &["-q", &system.device]);
    let state_dir = bed.path("state");
    fs::create_dir_all(&state_dir).unwrap();
    bed.ns
        .run_ok("mount", &[&system.device, state_dir.to_str().unwrap()]);
    let system_device = system.device.clone();
    bed.loops.push(system);
    bed.agent = Some(Agent::start(
        &bed.ns,
        bed.dir.path(),
        &[&allowed_device, &system_device],
    ));
    let mountinfo_before = bed.ns.mountinfo().len();

    let cases = [
        (
            "mount_point: relative/dir",
            "storage.volumes[0].mount_point",
            "absolute",
        ),
        (
            "mount_point: /srv/../etc",
            "storage.volumes[0].mount_point",
            "`..`",
        ),
        (
            "mount_point: /srv/x\n      filesystem: zfs",
            "storage.volumes[0].filesystem",
            "zfs",
        ),
    ];
    for (field_text, field, words) in cases {
        let spec = spec(&format!(
            "  volumes:\n    - name: a\n      device: {allowed_device}\n      {field_text}\n"
        ));
        let output = bed.agent().apply(&spec);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(field) && stderr.contains(words), "{stderr}");
    }
    // Duplicate mount points, a mount point inside a pool, a device outside
    // the allow-list: every fault at once, each naming its field.
    let spec = spec(&format!(
        "  volumes:
    - name: a
      device: {allowed_device}
      mount_point: /srv/a
    - name: b
      pool: /srv/pool
      size: 1GiB
      mount_point: /srv/a
    - name: c
      pool: /srv/pool
      size: 1GiB
      mount_point: /srv/pool/c
    - name: d
      device: {outside_device}
      mount_point: /srv/d
    - name: e
      device: {system_device}
      format: never
      mount_point: /srv/e
"
    ));
    let output = bed.agent().apply(&spec);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "storage.volumes[1].mount_point: also the mount point of volumes[0]",
        "storage.volumes[2].mount_point: lies in pool /srv/pool",
        &format!(
            "storage.volumes[3].device: {outside_device} is not in the boot config's allowed_devices"
        ),
        &format!(
            "storage.volumes[4].device: {system_device} is on the disk that holds {}",
            state_dir.display()
        ),
    ] {
        assert!(stderr.contains(expected), "{expected}\n{stderr}");
    }
    // Nothing stored, nothing changed.
    assert_eq!(bed.agent().status()["desired_generation"], 0);
    assert_eq!(bed.ns.mountinfo().len(), mountinfo_before);
    for disk in &bed.loops[..2] {
        assert!(disk.signature().is_empty(), "{}", disk.signature());
    }
    // `tfagentctl disks` says the same.
    let disks = bed.agent().ok(&["disks"]);
    let refused = disks
        .lines()
        .skip_while(|l| !l.starts_with(&format!("{system_device} ")))
        .nth(1)
        .unwrap_or_default();
    assert!(refused.contains("system disk"), "{disks}");
}

/// Issue 18: (a) a mount point that is, or passes through, a symlink is
/// refused at apply naming the field, and one that becomes a symlink
/// after the apply is refused by the storage step, before any change: in
/// both cases nothing is mounted anywhere; (b) a volume or persisted path
/// over the agent's state dir (or its parent) is refused at apply.
#[test]
fn symlinked_mount_points_and_the_state_dir_are_refused_and_nothing_is_mounted() {
    if skip_unless_root(
        "symlinked_mount_points_and_the_state_dir_are_refused_and_nothing_is_mounted",
    ) {
        return;
    }
    let mut bed = Bed::new();
    bed.agent = Some(Agent::start(&bed.ns, bed.dir.path(), &[]));
    let mounts_before = bed.ns.mount_points();
    let elsewhere = bed.path("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    let link = bed.path("link");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let pool = bed.path("pool");
    let volume = |mount_point: &Path| {
        spec(&format!(
            "  volumes:\n    - name: a\n      pool: {}\n      size: 64MiB\n      mount_point: {}\n",
            pool.display(),
            mount_point.display()
        ))
    };
    let persisted = |path: &Path| {
        format!(
            "{}  persist:\n    paths:\n      - path: {}\n",
            volume(&bed.path("data")),
            path.display()
        )
    };
    let state = bed.path("state");
    let cases = [
        (
            volume(&link),
            "storage.volumes[0].mount_point",
            "is a symlink",
        ),
        (
            volume(&link.join("data")),
            "storage.volumes[0].mount_point",
            "is a symlink",
        ),
        (
            persisted(&link.join("etc")),
            "storage.persist.paths[0].path",
            "is a symlink",
        ),
        (
            volume(&state),
            "storage.volumes[0].mount_point",
            "state dir",
        ),
        (
            volume(bed.dir.path()),
            "storage.volumes[0].mount_point",
            "state dir",
        ),
        (
            persisted(&state),
            "storage.persist.paths[0].path",
            "state dir",
        ),
    ];
    for (spec, field, words) in cases {
        let output = bed.agent().apply(&spec);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "accepted:\n{spec}");
        assert!(
            stderr.contains(field) && stderr.contains(words),
            "{field} ({words}) not in: {stderr}"
        );
    }
    assert_eq!(bed.ns.mount_points(), mounts_before);

    // A symlink that appears after the apply: the pool is not mounted yet,
    // so the first pass fails; then the mount point's parent becomes a
    // symlink and the pool comes. The next pass refuses, changing nothing.
    let late = bed.path("late");
    let status = bed.agent().apply_and_settle(&volume(&late.join("data")));
    assert_eq!(status["steps"][0]["condition"], "failed", "{status:#}");
    std::os::unix::fs::symlink(&elsewhere, &late).unwrap();
    bed.pool();
    let mounts_with_pool = bed.ns.mount_points();
    let deadline = Instant::now() + Duration::from_secs(30);
    let error = loop {
        let status = bed.agent().status();
        let error = status["steps"][0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if error.contains("is a symlink") {
            break error;
        }
        assert!(
            Instant::now() < deadline,
            "no refusal: {status:#}\nlog:\n{}",
            bed.agent().log()
        );
        thread::sleep(Duration::from_millis(200));
    };
    assert!(error.contains(late.to_str().unwrap()), "{error}");
    assert_eq!(bed.ns.mount_points(), mounts_with_pool);
    assert!(bed.ns.mounts_at(&elsewhere.join("data")).is_empty());
    // Refused before any change: not even the subvolume was made.
    assert!(!pool.join("tfagent-a").exists());
    assert!(!bed.agent().log().contains("storage changed"));
}
