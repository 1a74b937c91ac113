//! Boot configuration: an optional TOML file (`tfagent --config PATH`). Every
//! field has a default, so `tfagent` with no arguments runs.

use std::{
    fmt, fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

pub use crate::servers::grpc::RemoteApi;
use crate::services::ServicePaths;

/// The boot config read when none is named.
pub const DEFAULT_CONFIG: &str = "/etc/tfagent/tfagent.toml";
/// Where zOS keeps persistent daemon state (`/var/cache/modules/NAME`).
pub const DEFAULT_STATE_DIR: &str = "/var/cache/modules/tfagent";
/// The local control socket.
pub use tfagent_proto::DEFAULT_SOCKET;

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
    allowed_devices: Option<Vec<String>>,
    metrics_address: Option<String>,
    socket_reader_group: Option<GroupRef>,
    tls_address: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    services: RawServices,
    wireguard_backend: crate::network::BackendChoice,
    vip: RawVip,
}

/// `[vip]`: keepalived, its runtime files, and the apiserver probe the VIP
/// is gated on (by default k3s's own readiness check).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawVip {
    keepalived: Option<PathBuf>,
    dir: Option<PathBuf>,
    /// `http(s)://HOST:PORT/PATH`.
    ready_url: Option<String>,
    ready_ca: Option<PathBuf>,
    ready_cert: Option<PathBuf>,
    ready_key: Option<PathBuf>,
    probe_interval_ms: Option<u64>,
}

impl RawVip {
    fn validate(
        self,
        services: &ServicePaths,
        invalid: impl Fn(&'static str, &str) -> ConfigError,
    ) -> Result<crate::vip::VipSettings, ConfigError> {
        use tfagent_supervisor::probe::Probe;
        let mut readiness = crate::vip::default_readiness(services);
        let Probe::Http(http) = &mut readiness.probe else {
            unreachable!("k3s's server readiness is an HTTP probe")
        };
        if let Some(url) = &self.ready_url {
            let parsed = parse_url(url).ok_or_else(|| {
                invalid(
                    "vip.ready_url",
                    "must be http(s)://HOST:PORT/PATH, e.g. https://127.0.0.1:6443/readyz",
                )
            })?;
            (http.https, http.host, http.port, http.path) = parsed;
            // Another server than k3s's: its files do not apply.
            http.ca = None;
            http.client_cert = None;
        }
        for (field, value) in [
            ("vip.ready_ca", &self.ready_ca),
            ("vip.ready_cert", &self.ready_cert),
            ("vip.ready_key", &self.ready_key),
            ("vip.keepalived", &self.keepalived),
            ("vip.dir", &self.dir),
        ] {
            if value.as_ref().is_some_and(|p| !p.is_absolute()) {
                return Err(invalid(field, "must be an absolute path"));
            }
        }
        if let Some(ca) = self.ready_ca {
            http.ca = Some(ca);
        }
        match (self.ready_cert, self.ready_key) {
            (Some(cert), Some(key)) => http.client_cert = Some((cert, key)),
            (None, None) => {}
            _ => {
                return Err(invalid(
                    "vip.ready_cert",
                    "ready_cert and ready_key go together",
                ));
            }
        }
        if let Some(ms) = self.probe_interval_ms {
            if !(10..=60_000).contains(&ms) {
                return Err(invalid("vip.probe_interval_ms", "must be 10..=60000"));
            }
            readiness.period = Duration::from_millis(ms);
        }
        Ok(crate::vip::VipSettings {
            keepalived: self
                .keepalived
                .unwrap_or_else(|| PathBuf::from("/usr/sbin/keepalived")),
            dir: self.dir.unwrap_or_else(|| services.run_dir.join("vip")),
            readiness,
        })
    }
}

/// `http(s)://HOST:PORT/PATH` (HOST an IPv6 address in brackets).
fn parse_url(url: &str) -> Option<(bool, String, u16, String)> {
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        (false, url.strip_prefix("http://")?)
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let (host, port) = authority.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || path.chars().any(char::is_whitespace) {
        return None;
    }
    Some((https, host.to_owned(), port.parse().ok()?, path))
}

/// `[services]`: where the supervised services keep their files (defaults
/// in [`ServicePaths`]), and whether they get cgroups.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawServices {
    run_dir: Option<PathBuf>,
    containerd_socket: Option<PathBuf>,
    containerd_root: Option<PathBuf>,
    containerd_state: Option<PathBuf>,
    config_dir: Option<PathBuf>,
    k3s_data_dir: Option<PathBuf>,
    kubelet_root_dir: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    record_dir: Option<PathBuf>,
    cgroup_parent: Option<String>,
    /// false: services run in the agent's own cgroup.
    cgroups: Option<bool>,
}

impl RawServices {
    fn validate(
        self,
        invalid: impl Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(ServicePaths, bool), ConfigError> {
        let mut paths = match self.run_dir {
            Some(run_dir) => ServicePaths::under_run_dir(run_dir),
            None => ServicePaths::default(),
        };
        let fields: [(&'static str, Option<PathBuf>, &mut PathBuf); 8] = [
            (
                "services.containerd_socket",
                self.containerd_socket,
                &mut paths.containerd_socket,
            ),
            (
                "services.containerd_root",
                self.containerd_root,
                &mut paths.containerd_root,
            ),
            (
                "services.containerd_state",
                self.containerd_state,
                &mut paths.containerd_state,
            ),
            (
                "services.config_dir",
                self.config_dir,
                &mut paths.config_dir,
            ),
            (
                "services.k3s_data_dir",
                self.k3s_data_dir,
                &mut paths.k3s_data_dir,
            ),
            (
                "services.kubelet_root_dir",
                self.kubelet_root_dir,
                &mut paths.kubelet_root_dir,
            ),
            ("services.log_dir", self.log_dir, &mut paths.log_dir),
            (
                "services.record_dir",
                self.record_dir,
                &mut paths.record_dir,
            ),
        ];
        for (field, value, slot) in fields {
            if let Some(value) = value {
                *slot = value;
            }
            if !slot.is_absolute() {
                return Err(invalid(field, "must be an absolute path"));
            }
        }
        if !paths.run_dir.is_absolute() {
            return Err(invalid("services.run_dir", "must be an absolute path"));
        }
        if paths.containerd_socket.as_os_str().len() > 107 {
            return Err(invalid(
                "services.containerd_socket",
                "longer than a unix socket path may be (107 bytes)",
            ));
        }
        if paths.containerd_socket.starts_with("/run/containerd") {
            return Err(invalid(
                "services.containerd_socket",
                "/run/containerd belongs to zOS's own containerd",
            ));
        }
        if let Some(parent) = self.cgroup_parent {
            if parent.is_empty() || parent.contains(['/', '.']) {
                return Err(invalid(
                    "services.cgroup_parent",
                    "must be one directory name",
                ));
            }
            paths.cgroup_parent = parent;
        }
        Ok((paths, self.cgroups.unwrap_or(true)))
    }
}

/// A group by name or number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum GroupRef {
    Id(u32),
    Name(String),
}

/// Validated boot configuration.
#[derive(Clone, PartialEq)]
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
    /// Where Prometheus metrics are served; `None` (the default): off.
    pub metrics_address: Option<SocketAddr>,
    /// Members of this group may read through the local socket.
    pub socket_reader_gid: Option<u32>,
    /// The remote API; `None` (the default): off.
    pub remote_api: Option<RemoteApi>,
    /// Device path patterns (`*`, `?`) storage volumes may use; `None`
    /// admits any device except the disk holding `/` or the state dir,
    /// which is always refused.
    pub allowed_devices: Option<Vec<String>>,
    /// Where containerd and k3s keep their files.
    pub services: ServicePaths,
    /// Whether each service gets its own cgroup.
    pub service_cgroups: bool,
    /// `auto` (kernel module when present, else wireguard-go), `kernel` or
    /// `userspace`.
    pub wireguard_backend: crate::network::BackendChoice,
    pub vip: crate::vip::VipSettings,
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
            .field("metrics_address", &self.metrics_address)
            .field("socket_reader_gid", &self.socket_reader_gid)
            .field("remote_api", &self.remote_api)
            .field("allowed_devices", &self.allowed_devices)
            .field("services", &self.services)
            .field("service_cgroups", &self.service_cgroups)
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
            metrics_address: None,
            socket_reader_gid: None,
            remote_api: None,
            allowed_devices: None,
            services: ServicePaths::default(),
            service_cgroups: true,
            wireguard_backend: crate::network::BackendChoice::Auto,
            vip: RawVip::default()
                .validate(&ServicePaths::default(), |_, _| unreachable!())
                .unwrap_or_else(|_| unreachable!("the defaults are valid")),
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
        let metrics_address = match raw.metrics_address {
            None => None,
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "metrics_address",
                    "not an address and port such as 127.0.0.1:9368",
                )
            })?),
        };
        let socket_reader_gid = match raw.socket_reader_group {
            None => None,
            Some(GroupRef::Id(gid)) => Some(gid),
            Some(GroupRef::Name(name)) => match nix::unistd::Group::from_name(&name) {
                Ok(Some(group)) => Some(group.gid.as_raw()),
                _ => return Err(invalid("socket_reader_group", "no such group")),
            },
        };
        let remote_api = match (
            raw.tls_address,
            raw.tls_cert,
            raw.tls_key,
            raw.tls_client_ca,
        ) {
            (None, None, None, None) => None,
            (Some(address), Some(cert), Some(key), Some(client_ca)) => {
                let address = address.parse::<SocketAddr>().map_err(|_| {
                    invalid(
                        "tls_address",
                        "not an address and port such as 0.0.0.0:7443",
                    )
                })?;
                for (field, path) in [
                    ("tls_cert", &cert),
                    ("tls_key", &key),
                    ("tls_client_ca", &client_ca),
                ] {
                    if !path.is_absolute() {
                        return Err(invalid(field, "must be an absolute path"));
                    }
                }
                Some(RemoteApi {
                    address,
                    cert,
                    key,
                    client_ca,
                })
            }
            _ => {
                return Err(invalid(
                    "tls_address",
                    "the remote API needs all of tls_address, tls_cert, tls_key and tls_client_ca",
                ));
            }
        };
        if let Some(patterns) = &raw.allowed_devices
            && patterns
                .iter()
                .any(|p| !p.starts_with("/dev/") || p.chars().any(char::is_control))
        {
            return Err(invalid(
                "allowed_devices",
                "each entry must be a device path pattern under /dev/, e.g. /dev/disk/by-id/nvme-*",
            ));
        }
        let (services, service_cgroups) = raw.services.validate(invalid)?;
        let vip = raw.vip.validate(&services, invalid)?;
        Ok(Self {
            state_dir,
            socket,
            log_format: raw.log_format,
            log_level,
            resync_interval,
            socket_allowed_uids,
            metrics_address,
            socket_reader_gid,
            remote_api,
            allowed_devices: raw.allowed_devices,
            services,
            service_cgroups,
            wireguard_backend: raw.wireguard_backend,
            vip,
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
            metrics_address = "127.0.0.1:9368"
            socket_reader_group = 4
            tls_address = "0.0.0.0:7443"
            tls_cert = "/etc/tfagent/node.pem"
            tls_key = "/etc/tfagent/node-key.pem"
            tls_client_ca = "/etc/tfagent/clients-ca.pem"
            allowed_devices = ["/dev/disk/by-id/nvme-*"]
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
            config.metrics_address,
            Some("127.0.0.1:9368".parse().unwrap())
        );
        assert_eq!(config.socket_reader_gid, Some(4));
        let remote = config.remote_api.unwrap();
        assert_eq!(remote.address, "0.0.0.0:7443".parse().unwrap());
        assert_eq!(
            remote.client_ca,
            PathBuf::from("/etc/tfagent/clients-ca.pem")
        );
        assert_eq!(
            config.allowed_devices,
            Some(vec!["/dev/disk/by-id/nvme-*".to_owned()])
        );
        assert_eq!(
            config.wireguard_backend,
            crate::network::BackendChoice::Userspace
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
    fn services_paths_are_read_and_checked() {
        let config = parse(
            "[services]\nrun_dir = \"/tmp/r\"\nk3s_data_dir = \"/data/k3s\"\ncgroups = false\ncgroup_parent = \"t1\"\n",
        )
        .unwrap();
        assert_eq!(
            config.services.containerd_socket,
            PathBuf::from("/tmp/r/containerd/containerd.sock")
        );
        assert_eq!(config.services.k3s_data_dir, PathBuf::from("/data/k3s"));
        assert_eq!(config.services.cgroup_parent, "t1");
        assert!(!config.service_cgroups);
        for (text, field) in [
            ("[services]\nlog_dir = \"rel\"", "services.log_dir"),
            (
                "[services]\ncontainerd_socket = \"/run/containerd/containerd.sock\"",
                "services.containerd_socket",
            ),
            (
                "[services]\ncgroup_parent = \"a/b\"",
                "services.cgroup_parent",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
    }

    #[test]
    fn the_vip_table_points_the_probe_elsewhere() {
        let config = parse(
            "[vip]\nready_url = \"https://[::1]:7443/healthz\"\nready_ca = \"/etc/lab/ca.pem\"\nprobe_interval_ms = 100\nkeepalived = \"/opt/keepalived\"\n",
        )
        .unwrap();
        let tfagent_supervisor::probe::Probe::Http(http) = &config.vip.readiness.probe else {
            panic!("{:?}", config.vip.readiness)
        };
        assert_eq!(http.url(), "https://[::1]:7443/healthz");
        assert_eq!(http.ca, Some(PathBuf::from("/etc/lab/ca.pem")));
        // An explicit URL is not k3s's: its client certificate goes.
        assert_eq!(http.client_cert, None);
        assert_eq!(config.vip.readiness.period, Duration::from_millis(100));
        assert_eq!(config.vip.keepalived, PathBuf::from("/opt/keepalived"));
        assert_eq!(config.vip.dir, PathBuf::from("/run/tfagent/vip"));
        // The default: k3s's own readiness check, with its admin certificate.
        let default = parse("").unwrap();
        let tfagent_supervisor::probe::Probe::Http(http) = &default.vip.readiness.probe else {
            panic!()
        };
        assert!(http.client_cert.is_some() && http.path == "/readyz");
        for (text, field) in [
            ("[vip]\nready_url = \"ftp://x:1/\"", "vip.ready_url"),
            ("[vip]\nready_url = \"https://x/\"", "vip.ready_url"),
            ("[vip]\nready_cert = \"/a\"", "vip.ready_cert"),
            ("[vip]\ndir = \"rel\"", "vip.dir"),
            ("[vip]\nprobe_interval_ms = 1", "vip.probe_interval_ms"),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(field), "{text}: {error}");
        }
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
            ("metrics_address = \"localhost\"", "metrics_address"),
            ("tls_address = \"0.0.0.0:7443\"", "tls_address"),
            (
                "socket_reader_group = \"no-such-group-here\"",
                "socket_reader_group",
            ),
            (
                "tls_address = \"0.0.0.0:1\"\ntls_cert = \"c\"\ntls_key = \"/k\"\ntls_client_ca = \"/ca\"",
                "tls_cert",
            ),
            ("allowed_devices = [\"sda\"]", "allowed_devices"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(field) || err.contains("xml"), "{text}: {err}");
        }
        let long = format!("socket = \"/{}\"", "s".repeat(120));
        assert!(parse(&long).unwrap_err().to_string().contains("socket"));
    }
}
