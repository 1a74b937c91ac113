//! A supervisor over a temp dir for the end-to-end tests of the supervisor
//! and of the services it runs: its records, logs and (optionally) cgroups
//! are the test's own, and whatever it left running is killed and its
//! cgroups removed on drop, even when the test fails.

use std::{fs, path::PathBuf, time::Duration};

use tfagent_supervisor::{
    ServiceDef, ServiceStatus, Supervisor, SupervisorConfig, cgroup::CgroupLayout,
};
use tokio_util::sync::CancellationToken;

use crate::netns::unique;

/// Kills whatever the test's services left running (their cgroups, their
/// recorded pids) and removes the cgroups, even when the test fails.
#[derive(Debug)]
struct Cleanup {
    cgroups: CgroupLayout,
    parent: String,
    records: PathBuf,
    names: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.names {
            if let Ok(text) = fs::read_to_string(self.records.join(format!("{name}.json")))
                && let Ok(record) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(pid) = record["pid"].as_i64()
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let dirs = self.cgroups.service_dirs(&self.parent, name);
            for _ in 0..3 {
                for dir in &dirs {
                    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
                        for pid in procs.lines().filter_map(|l| l.parse::<i32>().ok()) {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            for dir in &dirs {
                let _ = fs::remove_dir(dir);
            }
        }
        for root in self.cgroups.service_dirs(&self.parent, "x") {
            if let Some(parent) = root.parent() {
                let _ = fs::remove_dir(parent);
            }
        }
    }
}

/// A supervisor's files and cgroups, the test's own.
#[derive(Debug)]
pub struct SupervisorBed {
    // Dropped first: it reads the records in `dir`.
    _cleanup: Cleanup,
    pub dir: tempfile::TempDir,
    pub config: SupervisorConfig,
}

impl SupervisorBed {
    /// Records and logs under a new temp dir; per-service cgroups (the
    /// host's layout, under a parent unique to the test) when `cgroups`.
    /// `names` are the services to clean up after.
    pub fn new(cgroups: bool, names: &[&str]) -> Self {
        // Stand-in binaries go here too: not under /tmp.
        let dir = crate::trusted_tempdir();
        let (records, logs) = (dir.path().join("records"), dir.path().join("logs"));
        Self::with_dirs(dir, records, logs, cgroups, names)
    }

    /// [`Self::new`] with the records and logs where the caller wants them
    /// (e.g. where the agent's services keep theirs).
    pub fn with_dirs(
        dir: tempfile::TempDir,
        record_dir: PathBuf,
        log_dir: PathBuf,
        cgroups: bool,
        names: &[&str],
    ) -> Self {
        let layout = if cgroups {
            CgroupLayout::detect()
        } else {
            CgroupLayout::None
        };
        let parent = unique("tfagent-test");
        let cleanup = Cleanup {
            cgroups: layout.clone(),
            parent: parent.clone(),
            records: record_dir.clone(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        };
        Self {
            _cleanup: cleanup,
            dir,
            config: SupervisorConfig {
                record_dir,
                log_dir,
                cgroups: layout,
                cgroup_parent: parent,
            },
        }
    }

    /// A supervisor over the bed, and the token that stops it.
    pub fn supervisor(&self) -> (Supervisor, CancellationToken) {
        let token = CancellationToken::new();
        (Supervisor::new(self.config.clone(), token.clone()), token)
    }
}

/// A service running `script` with `/bin/sh -c`.
pub fn shell(name: &str, script: &str) -> ServiceDef {
    ServiceDef::new(
        name.parse().unwrap(),
        vec!["/bin/sh".into(), "-c".into(), script.into()],
    )
}

/// Waits until `ok` holds for the service's status, or panics with it.
pub async fn wait_for(
    supervisor: &Supervisor,
    name: &str,
    within: Duration,
    ok: impl Fn(&ServiceStatus) -> bool,
) -> ServiceStatus {
    let mut status = supervisor.watch(name).unwrap();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let current = status.borrow_and_update().clone();
        if ok(&current) {
            return current;
        }
        if tokio::time::timeout_at(deadline, status.changed())
            .await
            .is_err()
        {
            panic!("{name}: timed out; last status {current:?}");
        }
    }
}
