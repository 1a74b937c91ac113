//! Boot configuration: an optional TOML file (`tfagent --config PATH`). Every
//! field has a default, so `tfagent` with no arguments runs.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

/// Where zOS keeps persistent daemon state (`/var/cache/modules/NAME`).
pub const DEFAULT_STATE_DIR: &str = "/var/cache/modules/tfagent";
/// The local control socket.
pub const DEFAULT_SOCKET: &str = "/run/tfagent/tfagent.sock";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("config {path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The file as written; validated into [`BootConfig`].
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    state_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    log_format: LogFormat,
    log_level: Option<String>,
    resync_interval_secs: Option<u64>,
    socket_allowed_uids: Option<Vec<u32>>,
    // ---- network ----
    wireguard_backend: crate::net::BackendChoice,
}

/// Validated boot configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct BootConfig {
    /// Holds the persisted spec and the agent's own state (0700).
    pub state_dir: PathBuf,
    /// Local gRPC socket (0600).
    pub socket: PathBuf,
    pub log_format: LogFormat,
    /// A tracing filter directive, e.g. `info` or `tfagent=debug`.
    pub log_level: String,
    /// How often converged steps are checked again for drift.
    pub resync_interval: Duration,
    /// Peer uids the local socket serves; root only unless widened.
    pub socket_allowed_uids: Vec<u32>,
    // ---- network ----
    /// `auto` (kernel module when present, else wireguard-go), `kernel` or
    /// `userspace`.
    pub wireguard_backend: crate::net::BackendChoice,
}

impl fmt::Debug for BootConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootConfig")
            .field("state_dir", &self.state_dir)
            .field("socket", &self.socket)
            .field("log_format", &self.log_format)
            .field("log_level", &self.log_level)
            .field("resync_interval", &self.resync_interval)
            .field("socket_allowed_uids", &self.socket_allowed_uids)
            .field("wireguard_backend", &self.wireguard_backend)
            .finish()
    }
}

impl Default for BootConfig {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            socket: PathBuf::from(DEFAULT_SOCKET),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            resync_interval: Duration::from_secs(60),
            socket_allowed_uids: vec![0],
            wireguard_backend: crate::net::BackendChoice::Auto,
        }
    }
}

impl BootConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text; `origin` only names the source in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: origin.to_owned(),
            source,
        })?;
        let invalid = |field, message: &str| ConfigError::Invalid {
            path: origin.to_owned(),
            field,
            message: message.to_owned(),
        };
        let defaults = Self::default();
        let state_dir = raw.state_dir.unwrap_or(defaults.state_dir);
        if !state_dir.is_absolute() {
            return Err(invalid("state_dir", "must be an absolute path"));
        }
        let socket = raw.socket.unwrap_or(defaults.socket);
        if !socket.is_absolute() {
            return Err(invalid("socket", "must be an absolute path"));
        }
        // sun_path holds 108 bytes including the terminating NUL.
        if socket.as_os_str().len() > 107 {
            return Err(invalid(
                "socket",
                "longer than a unix socket path may be (107 bytes)",
            ));
        }
        let log_level = raw.log_level.unwrap_or(defaults.log_level);
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(invalid(
                "log_level",
                "not a tracing filter such as `info` or `tfagent=debug`",
            ));
        }
        let resync_interval = match raw.resync_interval_secs {
            None => defaults.resync_interval,
            Some(0) => return Err(invalid("resync_interval_secs", "must be at least 1")),
            Some(secs) => Duration::from_secs(secs),
        };
        let socket_allowed_uids = raw
            .socket_allowed_uids
            .unwrap_or(defaults.socket_allowed_uids);
        if socket_allowed_uids.is_empty() {
            return Err(invalid("socket_allowed_uids", "must name at least one uid"));
        }
        Ok(Self {
            state_dir,
            socket,
            log_format: raw.log_format,
            log_level,
            resync_interval,
            socket_allowed_uids,
            wireguard_backend: raw.wireguard_backend,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(text: &str) -> Result<BootConfig, ConfigError> {
        BootConfig::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").unwrap(), BootConfig::default());
    }

    #[test]
    fn every_field_is_read() {
        let config = parse(
            r#"
            state_dir = "/tmp/state"
            socket = "/tmp/s.sock"
            log_format = "json"
            log_level = "tfagent=debug"
            resync_interval_secs = 5
            socket_allowed_uids = [0, 1000]
            wireguard_backend = "userspace"
            "#,
        )
        .unwrap();
        assert_eq!(config.state_dir, PathBuf::from("/tmp/state"));
        assert_eq!(config.socket, PathBuf::from("/tmp/s.sock"));
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.log_level, "tfagent=debug");
        assert_eq!(config.resync_interval, Duration::from_secs(5));
        assert_eq!(config.socket_allowed_uids, vec![0, 1000]);
        assert_eq!(
            config.wireguard_backend,
            crate::net::BackendChoice::Userspace
        );
        let err = parse("wireguard_backend = \"ebpf\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ebpf") || err.contains("wireguard_backend"),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = parse("state_dri = \"/x\"").unwrap_err().to_string();
        assert!(err.contains("state_dri"), "{err}");
    }

    #[test]
    fn bad_values_name_the_field() {
        for (text, field) in [
            ("state_dir = \"relative\"", "state_dir"),
            ("socket = \"s.sock\"", "socket"),
            ("log_level = \"[[[\"", "log_level"),
            ("resync_interval_secs = 0", "resync_interval_secs"),
            ("socket_allowed_uids = []", "socket_allowed_uids"),
            ("log_format = \"xml\"", "log_format"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(field) || err.contains("xml"), "{text}: {err}");
        }
        let long = format!("socket = \"/{}\"", "s".repeat(120));
        assert!(parse(&long).unwrap_err().to_string().contains("socket"));
    }
}
