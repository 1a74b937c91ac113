//! Re-applying an unchanged 4-volume spec (2 pool subvolumes with quotas,
//! 2 btrfs disks) on the real host: how long a storage pass takes and how
//! many mutating host calls (mount, mkfs, btrfs, …) it makes.
//! Goal: 0 mutations, ≤ 10 ms per pass.
//!
//! Needs root: it re-runs itself in a private mount namespace, on loop
//! devices over sparse files it removes at the end.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    path::Path,
    process::{Command, ExitCode},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use common::{Figure, Goal, Summary, report};
use tfagent::{
    step::{Step, StepOutcome},
    storage::{
        DevicePolicy, OpsError, Storage, StorageOps,
        linux::LinuxStorage,
        ports::{BlockDevice, DeviceNode, MountSource, PathKind, QuotaState, Signature, Usage},
    },
};
use tfagent_spec::{Filesystem, NodeSpec, Propagation, SpecDocument, ValidationContext};

const IN_NAMESPACE: &str = "TFAGENT_BENCH_IN_NAMESPACE";
const BENCH: &str = "storage";

/// The Linux host, counting the calls that would change it.
#[derive(Debug, Default)]
struct Counting {
    host: LinuxStorage,
    mutations: AtomicUsize,
}

impl Counting {
    fn mutated(&self) {
        self.mutations.fetch_add(1, Ordering::Relaxed);
    }
}

impl StorageOps for Counting {
    fn mountinfo(&self) -> Result<String, OpsError> {
        self.host.mountinfo()
    }
    fn resolve_device(&self, path: &Path) -> Result<Option<DeviceNode>, OpsError> {
        self.host.resolve_device(path)
    }
    fn signatures(&self, device: &str) -> Result<Vec<Signature>, OpsError> {
        self.host.signatures(device)
    }
    fn whole_disk(&self, major_minor: &str) -> String {
        self.host.whole_disk(major_minor)
    }
    fn path_kind(&self, path: &Path) -> Result<PathKind, OpsError> {
        self.host.path_kind(path)
    }
    fn quota(&self, subvolume: &Path) -> Result<QuotaState, OpsError> {
        self.host.quota(subvolume)
    }
    fn usage(&self, path: &Path) -> Result<Usage, OpsError> {
        self.host.usage(path)
    }
    fn block_devices(&self) -> Result<Vec<BlockDevice>, OpsError> {
        self.host.block_devices()
    }
    fn has_entries(&self, dir: &Path) -> Result<bool, OpsError> {
        self.host.has_entries(dir)
    }
    fn symlink_in(&self, path: &Path) -> Result<Option<std::path::PathBuf>, OpsError> {
        self.host.symlink_in(path)
    }
    fn resolve_symlinks(&self, path: &Path) -> Option<std::path::PathBuf> {
        self.host.resolve_symlinks(path)
    }
    fn make_dir(&self, path: &Path) -> Result<(), OpsError> {
        self.mutated();
        self.host.make_dir(path)
    }
    fn wipe(&self, device: &str) -> Result<(), OpsError> {
        self.mutated();
        self.host.wipe(device)
    }
    fn new_uuid(&self) -> Result<String, OpsError> {
        self.host.new_uuid()
    }
    fn format(
        &self,
        device: &str,
        filesystem: Filesystem,
        label: &str,
        uuid: &str,
    ) -> Result<(), OpsError> {
        self.mutated();
        self.host.format(device, filesystem, label, uuid)
    }
    fn enable_quota(&self, pool: &Path) -> Result<(), OpsError> {
        self.mutated();
        self.host.enable_quota(pool)
    }
    fn create_subvolume(&self, path: &Path) -> Result<(), OpsError> {
        self.mutated();
        self.host.create_subvolume(path)
    }
    fn set_quota(&self, subvolume: &Path, bytes: u64) -> Result<(), OpsError> {
        self.mutated();
        self.host.set_quota(subvolume, bytes)
    }
    fn mount(
        &self,
        source: &MountSource,
        target: &Path,
        options: &[String],
    ) -> Result<(), OpsError> {
        self.mutated();
        self.host.mount(source, target, options)
    }
    fn remount(&self, target: &Path, options: &[String]) -> Result<(), OpsError> {
        self.mutated();
        self.host.remount(target, options)
    }
    fn set_propagation(&self, target: &Path, propagation: Propagation) -> Result<(), OpsError> {
        self.mutated();
        self.host.set_propagation(target, propagation)
    }
    fn unmount(&self, target: &Path) -> Result<(), OpsError> {
        self.mutated();
        self.host.unmount(target)
    }
    fn copy_contents(&self, from: &Path, to: &Path) -> Result<(), OpsError> {
        self.mutated();
        self.host.copy_contents(from, to)
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A loop device over a sparse file; detached on drop.
struct Loop(String);

impl Loop {
    fn new(dir: &Path, name: &str) -> Self {
        let file = dir.join(format!("{name}-{}.img", std::process::id()));
        std::fs::File::create(&file)
            .unwrap()
            .set_len(300 << 20)
            .unwrap();
        Self(
            run("losetup", &["-f", "--show", file.to_str().unwrap()])
                .trim()
                .to_owned(),
        )
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        // Busy while the namespace's mounts live: detached when they go.
        let _ = Command::new("losetup").args(["-d", &self.0]).output();
    }
}

fn spec(dir: &Path, pool: &Path, disks: &[Loop]) -> NodeSpec {
    let d = dir.display();
    let text = format!(
        "node_name: bench
role: server-init
cluster:
  token: 37a19483e94eed8fa33078987edd509271efdba80b2b9d0a
network:
  wireguard:
    addresses: [10.100.0.1/24]
storage:
  volumes:
    - {{name: k3s, pool: {pool}, size: 64MiB, mount_point: {d}/k3s}}
    - {{name: containerd, pool: {pool}, size: 64MiB, mount_point: {d}/containerd}}
    - {{name: local, device: {a}, mount_point: {d}/local}}
    - {{name: longhorn, device: {b}, mount_point: {d}/longhorn}}
  persist:
    paths:
      - {{path: {d}/etc/rancher}}
      - {{path: {d}/var/lib/kubelet, propagation: rshared}}
",
        pool = pool.display(),
        a = disks[0].0,
        b = disks[1].0,
    );
    SpecDocument::parse(&text)
        .unwrap()
        .validate(&ValidationContext::default())
        .unwrap()
}

fn bench() {
    let dir = tempfile::tempdir().unwrap();
    let pool_disk = Loop::new(dir.path(), "pool");
    run("mkfs.btrfs", &["-q", &pool_disk.0]);
    let pool = dir.path().join("pool");
    std::fs::create_dir_all(&pool).unwrap();
    run("mount", &[&pool_disk.0, pool.to_str().unwrap()]);
    let disks = [Loop::new(dir.path(), "a"), Loop::new(dir.path(), "b")];
    let spec = spec(dir.path(), &pool, &disks);

    let ops = Arc::new(Counting::default());
    let state = dir.path().join("state");
    let storage = Storage::new(
        Arc::clone(&ops) as Arc<dyn StorageOps>,
        &state,
        DevicePolicy::new(None, &state),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let first = runtime.block_on(storage.converge(&spec)).unwrap();
    assert!(matches!(first, StepOutcome::Applied { .. }), "{first:?}");
    let setup = ops.mutations.swap(0, Ordering::Relaxed);

    let passes = common::knob("PASSES", 50);
    let mut times = Vec::new();
    for _ in 0..passes {
        let start = Instant::now();
        let outcome = runtime.block_on(storage.converge(&spec)).unwrap();
        times.push(start.elapsed());
        assert_eq!(outcome, StepOutcome::UpToDate);
    }
    let mutations = ops.mutations.load(Ordering::Relaxed);
    println!(
        "storage re-apply of an unchanged 4-volume spec ({passes} passes; setup made {setup} changes)"
    );
    report(
        &Figure::new(
            BENCH,
            "storage re-apply, unchanged spec: host mutations",
            "calls",
            Summary::single(mutations as f64),
        )
        .goal(Goal::AtMost(0.0))
        .note(format!(
            "mount/mkfs/btrfs/… calls over {passes} passes; 2 pool subvolumes + 2 disks"
        )),
    );
    report(
        &Figure::new(
            BENCH,
            "storage re-apply, unchanged spec: time per pass",
            "ms",
            Summary::of_ms(&times).unwrap(),
        )
        .goal(Goal::AtMost(10.0))
        .note("loop devices, private mount namespace"),
    );
}

fn main() -> ExitCode {
    if !nix::unistd::geteuid().is_root() {
        common::unmeasured(
            BENCH,
            "storage re-apply, unchanged spec",
            "needs root (loop devices and mounts)",
        );
        return ExitCode::SUCCESS;
    }
    if std::env::var_os(IN_NAMESPACE).is_some() {
        bench();
        return ExitCode::SUCCESS;
    }
    // The mounts are made in a private mount namespace that ends with the run.
    let status = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(std::env::args_os().skip(1))
        .env(IN_NAMESPACE, "1")
        .status()
        .unwrap();
    if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
