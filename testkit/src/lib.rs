//! Dev-only: what tfagent's end-to-end tests and benches share. Finding the
//! workspace's binaries, running tfagentctl against a daemon's socket, a
//! `[services]` boot-config table that keeps a daemon's services inside the
//! test's temp dir, named network namespaces ([`netns`]), an agent in
//! private namespaces ([`nsagent`]), kill -9 trials ([`crash`]) and the
//! 5-node VIP lab ([`lab`]).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Constructors here make namespaces, disks and processes: none is a default.
#![allow(clippy::new_without_default)]

pub mod crash;
pub mod lab;
pub mod netns;
pub mod nsagent;
pub mod supervision;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
};

/// A binary of this workspace, from the profile dir the running test or
/// bench was built in (`target/<profile>/deps/…` → `target/<profile>/NAME`).
/// `cargo test --workspace` and `make test` build every binary first.
fn workspace_binary(name: &str) -> String {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir: PathBuf = exe
        .ancestors()
        .find(|dir| dir.join(name).is_file())
        .map(Path::to_owned)
        .unwrap_or_else(|| {
            panic!(
                "{name} is not built beside {}: run `cargo build --workspace --bins` (make test does)",
                exe.display()
            )
        });
    profile_dir.join(name).display().to_string()
}

/// Starts `tfagent --config CONFIG` as `tfagent` says (the binary itself,
/// or through `nsenter` / `ip netns exec`), its output appended to `log`,
/// and waits (up to 30 s) until `serves()` says it answers; the log is
/// shown if it never does.
pub fn start_tfagent(
    mut tfagent: Command,
    config: &Path,
    log: &Path,
    serves: impl Fn() -> bool,
) -> std::process::Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = tfagent
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !serves() {
        assert!(
            std::time::Instant::now() < deadline,
            "tfagent did not serve within 30 s; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child
}

/// One step's entry in `tfagentctl -o json status` (`Null` when absent).
pub fn step_status(status: &serde_json::Value, step: &str) -> serde_json::Value {
    status["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["step"] == step))
        .cloned()
        .unwrap_or_default()
}

/// A file of `testkit/fixtures/` (stand-in apiserver, k3s, VIP watcher).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The `tfagent` daemon binary.
pub fn tfagent_bin() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| workspace_binary("tfagent"))
}

/// The `tfagentctl` binary.
pub fn tfagentctl_bin() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| workspace_binary("tfagentctl"))
}

/// tfagentctl against the agent at `socket`, without colours.
pub fn tfagentctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(tfagentctl_bin())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The stdout of a tfagentctl run that must have succeeded; `log` (the
/// agent's) is shown when it did not.
pub fn succeeded(output: Output, args: &[&str], log: &str) -> String {
    assert!(
        output.status.success(),
        "tfagentctl {args:?}: {}\nagent log:\n{log}",
        String::from_utf8_lossy(&output.stderr),
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Every file of the supervised services under `dir`, and no cgroups, so a
/// daemon that gets to start them touches nothing of the host. A TOML table:
/// it goes after the top-level keys.
pub fn services_config(dir: &Path) -> String {
    format!(
        "[services]\nrun_dir = \"{run}\"\ncontainerd_root = \"{root}\"\nk3s_data_dir = \"{k3s}\"\nkubelet_root_dir = \"{kubelet}\"\nlog_dir = \"{log}\"\ncgroups = false\n",
        run = dir.join("run").display(),
        root = dir.join("containerd").display(),
        k3s = dir.join("k3s").display(),
        kubelet = dir.join("kubelet").display(),
        log = dir.join("log").display(),
    )
}

/// A new temp dir whose binaries a tfagent will run as root: the agent runs
/// only binaries that root alone may change, through directories root alone
/// may write to (a root-owned sticky directory such as /tmp passes what is
/// root's in it). A temp dir is root's and 0700 when a root test makes it,
/// so what it copies there is trusted; a test not run as root runs no
/// service as root either.
pub fn trusted_tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Copies the executable `from` to `to` (0755) in a `cp` process: a file
/// this process held open for writing would be inherited by a child another
/// test thread forks meanwhile, and executing the copy would then fail with
/// ETXTBSY ("Text file busy").
pub fn copy_executable(from: &str, to: &Path) {
    let copied = Command::new("cp").arg(from).arg(to).status().unwrap();
    assert!(copied.success(), "cp {from} {}", to.display());
    let chmod = Command::new("chmod").arg("0755").arg(to).status().unwrap();
    assert!(chmod.success());
}

/// The metric families in OpenMetrics `text`, as the Prometheus project's
/// own parser reads it (it refuses anything malformed).
pub fn openmetrics_families(text: &str) -> Vec<String> {
    use std::io::Write;
    let mut parser = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys\n\
             from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\n\
             for family in parse(sys.stdin.read()):\n    print(family.name, family.type)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with prometheus_client is installed (scripts/deps.sh)");
    parser
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = parser.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "not valid OpenMetrics: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}
