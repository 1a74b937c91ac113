//! How tfagent ships: the flist tarball zOS copies into `/` (with its zinit
//! service) and the systemd unit for plain Linux hosts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};
use tfagent_testkit::tfagent_bin;

use serde::Deserialize;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The keys zinit 0.2 reads from a service file; anything else is a typo
/// zinit would silently ignore.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read to check the file's shape
struct ZinitService {
    exec: String,
    test: Option<String>,
    #[serde(default)]
    oneshot: bool,
    #[serde(default)]
    after: Vec<String>,
    signal: Option<ZinitSignal>,
    log: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    dir: Option<String>,
    shutdown_timeout: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ZinitSignal {
    stop: String,
}

/// Splits a zinit command line into the binary (inside the flist root) and
/// its arguments.
fn command_in(root: &Path, line: &str) -> (PathBuf, Vec<String>) {
    let mut words = line.split_whitespace().map(str::to_owned);
    let binary = words.next().expect("a command");
    let binary = root.join(binary.trim_start_matches('/'));
    (binary, words.collect())
}

#[test]
fn the_flist_tarball_unpacks_into_a_root_zinit_can_run() {
    let work = tempfile::tempdir().unwrap();
    // A stand-in for the k3s binary, to check extra binaries are packed.
    let k3s = work.path().join("k3s-stand-in");
    fs::write(&k3s, "#!/bin/sh\necho k3s version v0.0.0-test\n").unwrap();
    fs::set_permissions(&k3s, fs::Permissions::from_mode(0o755)).unwrap();
    let tarball = work.path().join("out/tfagent.tar.gz");
    let bin_dir = Path::new(tfagent_bin()).parent().unwrap();
    // The test binaries are dynamically linked; `make flist` builds static
    // ones (the zOS twin boots those).
    let packed = Command::new(repo().join("scripts/flist.sh"))
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--out")
        .arg(&tarball)
        .arg("--allow-dynamic")
        .env("K3S_BIN", &k3s)
        .env("FLIST_GZIP_LEVEL", "1")
        .env_remove("CONTAINERD_BIN")
        .env_remove("RUNC_BIN")
        .env_remove("KEEPALIVED_BIN")
        .env_remove("WIREGUARD_GO_BIN")
        .output()
        .unwrap();
    assert!(
        packed.status.success(),
        "flist.sh failed: {}",
        String::from_utf8_lossy(&packed.stderr)
    );

    let root = work.path().join("root");
    fs::create_dir(&root).unwrap();
    let unpacked = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&root)
        .status()
        .unwrap();
    assert!(unpacked.success());

    let mut files: Vec<String> = walk(&root)
        .into_iter()
        .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "bin/tfagent",
            "bin/tfagentctl",
            "etc/zinit/tfagent.yaml",
            "usr/local/bin/k3s",
        ]
    );
    for binary in ["bin/tfagent", "bin/tfagentctl", "usr/local/bin/k3s"] {
        let mode = fs::metadata(root.join(binary))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755, "{binary}");
    }

    let service: ZinitService =
        serde_yaml_ng::from_str(&fs::read_to_string(root.join("etc/zinit/tfagent.yaml")).unwrap())
            .expect("the zinit service has only keys zinit reads");
    assert!(!service.oneshot, "the agent is a long-running service");
    assert_eq!(service.signal.unwrap().stop, "sigterm");
    assert!(service.shutdown_timeout.unwrap() >= 10);
    // zOS's own units log to zinit's ring, which `zinit log` shows.
    assert_eq!(service.log.as_deref(), Some("ring"));
    assert!(service.after.iter().any(|s| s == "storaged"));

    // exec and test name binaries of the flist, and both run.
    let (exec, _) = command_in(&root, &service.exec);
    let version = Command::new(&exec).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("tfagent "));
    let (test, test_args) = command_in(&root, service.test.as_deref().unwrap());
    assert_eq!(test.file_name().unwrap(), "tfagentctl");
    let version = Command::new(&test).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("tfagentctl "));
    // The health check's arguments are ones tfagentctl accepts.
    let help = Command::new(&test)
        .args(&test_args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success(), "{test_args:?}");
}

#[test]
fn a_missing_extra_binary_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(tfagent_bin()).parent().unwrap();
    let packed = Command::new(repo().join("scripts/flist.sh"))
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--out")
        .arg(work.path().join("t.tar.gz"))
        .arg("--allow-dynamic")
        .env("KEEPALIVED_BIN", work.path().join("nope"))
        .output()
        .unwrap();
    assert!(!packed.status.success());
    assert!(String::from_utf8_lossy(&packed.stderr).contains("keepalived"));
    assert!(!work.path().join("t.tar.gz").exists());
}

#[test]
fn a_dynamically_linked_agent_is_refused() {
    // zOS brings no libraries: the flist's own binaries must be static.
    let work = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(tfagent_bin()).parent().unwrap();
    let packed = Command::new(repo().join("scripts/flist.sh"))
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--out")
        .arg(work.path().join("t.tar.gz"))
        .output()
        .unwrap();
    assert!(!packed.status.success());
    let stderr = String::from_utf8_lossy(&packed.stderr);
    assert!(stderr.contains("tfagent is dynamically linked"), "{stderr}");
    assert!(!work.path().join("t.tar.gz").exists());
}

#[test]
fn systemd_accepts_the_unit() {
    let Ok(found) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    };
    assert!(found.status.success());
    // The unit as installed, pointing at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let unit = fs::read_to_string(repo().join("systemd/tfagent.service"))
        .unwrap()
        .replace("/usr/local/bin/tfagent", tfagent_bin());
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
    assert!(unit.contains("KillMode=process") && unit.contains("Delegate=yes"));
    let path = dir.path().join("tfagent.service");
    fs::write(&path, unit).unwrap();
    let verified = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&verified.stderr);
    assert!(verified.status.success(), "{complaints}");
    // verify exits 0 on unknown keys, which it only warns about.
    assert!(complaints.trim().is_empty(), "{complaints}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
