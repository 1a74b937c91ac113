//! What a supervised service is: a generic definition (argv, environment,
//! readiness probe, dependencies, restart and stop policy, rlimits, logs),
//! the same for containerd, k3s and anything else the agent runs.

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use super::{probe::ProbePolicy, sys::Rlimit};

/// A service's name: 1–63 of `a-z 0-9 -`, starting with a letter or digit.
/// It names its log file, its adoption record and its cgroup.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("service name {0:?}: 1-63 characters of a-z, 0-9 and '-', not starting with '-'")]
pub struct ServiceNameError(pub String);

impl ServiceName {
    /// A name the code spells out; it must be valid.
    pub fn fixed(name: &'static str) -> Self {
        debug_assert!(name.parse::<ServiceName>().is_ok(), "{name}");
        Self(name.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ServiceName {
    type Err = ServiceNameError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && !name.starts_with('-')
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(ServiceNameError(name.to_owned()))
        }
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// When an exited service is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    /// Unless it exited with status 0.
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// Whether a process that ended with `exit_code` (None: killed by a
    /// signal, or unknown) is started again.
    pub fn restarts(self, exit_code: Option<i32>) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != Some(0),
            RestartPolicy::Never => false,
        }
    }
}

/// Exponential back-off between restarts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// The delay before the second restart in a row (the first is at once).
    pub initial: Duration,
    /// The longest delay, also the delay while crash-looping.
    pub max: Duration,
    /// A process that ran this long was healthy: the back-off starts over.
    pub reset_after: Duration,
    /// Each delay is multiplied by a random factor in 1 ± jitter.
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
            jitter: 0.2,
        }
    }
}

/// The restart-rate limit: more than `max_starts` starts within `window`
/// marks the service crash-looping, and it is then started again only at
/// the back-off's longest delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashLoopPolicy {
    pub max_starts: usize,
    pub window: Duration,
}

impl Default for CrashLoopPolicy {
    fn default() -> Self {
        Self {
            max_starts: 5,
            window: Duration::from_secs(120),
        }
    }
}

/// Size cap and rotation of a service's log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPolicy {
    /// The file is rotated once it grows past this.
    pub max_bytes: u64,
    /// Rotated files kept (`NAME.log.1` …).
    pub keep: usize,
    /// Lines kept in memory for `Logs`.
    pub memory_lines: usize,
}

impl Default for LogPolicy {
    fn default() -> Self {
        Self {
            max_bytes: 16 << 20,
            keep: 2,
            memory_lines: 1000,
        }
    }
}

/// Everything the supervisor needs to run one service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceDef {
    pub name: ServiceName,
    /// The program and its arguments; `argv[0]` is the binary's path.
    pub argv: Vec<String>,
    /// The whole environment of the child (nothing is inherited from the
    /// agent but what is listed here).
    pub env: Vec<(String, String)>,
    /// Working directory (default `/`).
    pub cwd: Option<PathBuf>,
    /// Services that must be ready before this one starts; they are stopped
    /// after it.
    pub depends_on: Vec<ServiceName>,
    /// When the service counts as ready; without one it is ready once started.
    pub readiness: Option<ProbePolicy>,
    pub restart: RestartPolicy,
    pub backoff: BackoffPolicy,
    pub crash_loop: CrashLoopPolicy,
    /// How long a stopping service has between SIGTERM and SIGKILL.
    pub stop_timeout: Duration,
    pub rlimits: Vec<Rlimit>,
    pub log: LogPolicy,
    /// Digest of the files the service reads (its rendered configuration),
    /// so a changed file restarts it like a changed argument does.
    pub config_digest: String,
}

impl ServiceDef {
    /// A definition with the default policies: always restarted, 10 s stop
    /// timeout, no probe, no dependencies.
    pub fn new(name: ServiceName, argv: Vec<String>) -> Self {
        Self {
            name,
            argv,
            env: vec![("PATH".into(), DEFAULT_PATH.into())],
            cwd: None,
            depends_on: Vec::new(),
            readiness: None,
            restart: RestartPolicy::Always,
            backoff: BackoffPolicy::default(),
            crash_loop: CrashLoopPolicy::default(),
            stop_timeout: Duration::from_secs(10),
            rlimits: Vec::new(),
            log: LogPolicy::default(),
            config_digest: String::new(),
        }
    }

    /// Identifies what the process runs: its argv, environment, working
    /// directory, rlimits and configuration files. A running process whose
    /// fingerprint differs from the definition's is restarted; policies
    /// (probe, back-off, timeouts) apply without a restart.
    pub fn fingerprint(&self) -> String {
        let mut hash = Fnv64::default();
        for arg in &self.argv {
            hash.field(b"arg", arg.as_bytes());
        }
        for (key, value) in &self.env {
            hash.field(b"env", key.as_bytes());
            hash.field(b"=", value.as_bytes());
        }
        if let Some(cwd) = &self.cwd {
            hash.field(b"cwd", cwd.as_os_str().as_encoded_bytes());
        }
        for limit in &self.rlimits {
            let text = format!("{:?}={}/{}", limit.resource, limit.soft, limit.hard);
            hash.field(b"rlimit", text.as_bytes());
        }
        hash.field(b"config", self.config_digest.as_bytes());
        format!("{:016x}", hash.0)
    }
}

/// The PATH children get unless their definition sets another.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// FNV-1a, 64 bit: a digest that stays the same across builds and
/// toolchains (std's hasher does not promise to), for fingerprints stored
/// in adoption records. Not for anything secret.
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(pub u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    pub fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// A length-prefixed field, so ("ab","c") and ("a","bc") differ.
    pub fn field(&mut self, tag: &[u8], bytes: &[u8]) {
        self.write(tag);
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["containerd", "k3s", "wireguard-go", "a", "0x"] {
            assert!(good.parse::<ServiceName>().is_ok(), "{good}");
        }
        let long = "a".repeat(64);
        for bad in ["", "-x", "K3s", "a/b", "a b", "..", long.as_str()] {
            assert!(bad.parse::<ServiceName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn restart_policies() {
        assert!(RestartPolicy::Always.restarts(Some(0)));
        assert!(RestartPolicy::OnFailure.restarts(Some(1)));
        assert!(RestartPolicy::OnFailure.restarts(None));
        assert!(!RestartPolicy::OnFailure.restarts(Some(0)));
        assert!(!RestartPolicy::Never.restarts(Some(1)));
    }

    #[test]
    fn fingerprint_follows_what_the_process_runs_not_the_policies() {
        let def = ServiceDef::new("x".parse().unwrap(), vec!["/bin/true".into()]);
        let base = def.fingerprint();
        assert_eq!(base.len(), 16);
        let mut policy = def.clone();
        policy.stop_timeout = Duration::from_secs(1);
        policy.restart = RestartPolicy::Never;
        assert_eq!(policy.fingerprint(), base);
        let mut changed = def.clone();
        changed.argv.push("-v".into());
        assert_ne!(changed.fingerprint(), base);
        let mut config = def.clone();
        config.config_digest = "abc".into();
        assert_ne!(config.fingerprint(), base);
        let mut env = def;
        env.env.push(("A".into(), "B".into()));
        assert_ne!(env.fingerprint(), base);
    }

    #[test]
    fn fnv_fields_are_unambiguous() {
        let mut a = Fnv64::default();
        a.field(b"f", b"ab");
        a.field(b"f", b"c");
        let mut b = Fnv64::default();
        b.field(b"f", b"a");
        b.field(b"f", b"bc");
        assert_ne!(a.0, b.0);
    }
}
