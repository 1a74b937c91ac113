//! Hosts, and the `host:port` endpoints and join URLs built on them.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use super::names::check_subdomain;
use super::text::{serde_as_string, try_from_str};

/// Why a host was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Nothing given.
    #[error("required")]
    Empty,
    /// Neither an IP address nor a DNS name.
    #[error("not an IP address or DNS name")]
    Invalid,
}

/// An IP address or a DNS name (stored lower case).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// An IP address.
    Ip(IpAddr),
    /// A DNS name.
    Name(String),
}

impl FromStr for Host {
    type Err = HostError;
    fn from_str(text: &str) -> Result<Self, HostError> {
        if text.is_empty() {
            return Err(HostError::Empty);
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        let name = text.to_ascii_lowercase();
        check_subdomain(&name).map_err(|_| HostError::Invalid)?;
        // An all-numeric last label reads as a (malformed) IPv4 address.
        let top = name.rsplit('.').next().unwrap_or_default();
        if top.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HostError::Invalid);
        }
        Ok(Self::Name(name))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// Why an endpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Nothing given.
    #[error("required")]
    Empty,
    /// No `:port`.
    #[error("must be host:port or [v6]:port")]
    MissingPort,
    /// An IPv6 address without brackets.
    #[error("an IPv6 address must be written [v6]:port")]
    Unbracketed,
    /// The host part.
    #[error("host is not an IP address or DNS name")]
    BadHost,
    /// The port part.
    #[error("port must be 1..=65535")]
    BadPort,
}

/// `host:port` or `[v6]:port`, the host an IP address or DNS name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    host: Host,
    port: u16,
}

impl Endpoint {
    /// An endpoint from its parts; `None` for port 0.
    pub fn new(host: Host, port: u16) -> Option<Self> {
        (port != 0).then_some(Self { host, port })
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port, 1..=65535.
    pub fn port(&self) -> u16 {
        self.port
    }
}

fn parse_port(text: &str) -> Result<u16, EndpointError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EndpointError::BadPort);
    }
    match text.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(EndpointError::BadPort),
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;
    fn from_str(text: &str) -> Result<Self, EndpointError> {
        if text.is_empty() {
            return Err(EndpointError::Empty);
        }
        if let Some(rest) = text.strip_prefix('[') {
            let (inside, port) = rest.split_once("]:").ok_or(EndpointError::MissingPort)?;
            let ip: Ipv6Addr = inside.parse().map_err(|_| EndpointError::BadHost)?;
            return Ok(Self {
                host: Host::Ip(IpAddr::V6(ip)),
                port: parse_port(port)?,
            });
        }
        let (host, port) = text.rsplit_once(':').ok_or(EndpointError::MissingPort)?;
        if host.contains(':') {
            return Err(EndpointError::Unbracketed);
        }
        let host: Host = host.parse().map_err(|_| EndpointError::BadHost)?;
        Ok(Self {
            host,
            port: parse_port(port)?,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            host => write!(f, "{host}:{}", self.port),
        }
    }
}

/// Why a join URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinUrlError {
    /// Nothing given.
    #[error("required")]
    Empty,
    /// Another scheme, a path, a query or user info.
    #[error("must be https://host:port, with no path, query or user info")]
    Shape,
    /// No port.
    #[error("needs a port: https://host:port, e.g. https://10.100.0.250:6443")]
    MissingPort,
    /// The `host:port` part.
    #[error("must be https://host:port: {0}")]
    Endpoint(EndpointError),
}

/// The k3s API a node joins through: `https://host:port` (a trailing `/`
/// is accepted and dropped).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JoinUrl(Endpoint);

impl JoinUrl {
    /// The URL for this endpoint.
    pub fn new(endpoint: Endpoint) -> Self {
        Self(endpoint)
    }

    /// Host and port.
    pub fn endpoint(&self) -> &Endpoint {
        &self.0
    }
}

impl FromStr for JoinUrl {
    type Err = JoinUrlError;
    fn from_str(text: &str) -> Result<Self, JoinUrlError> {
        if text.is_empty() {
            return Err(JoinUrlError::Empty);
        }
        let rest = text.strip_prefix("https://").ok_or(JoinUrlError::Shape)?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(JoinUrlError::Shape);
        }
        authority.parse().map(Self).map_err(|err| match err {
            EndpointError::MissingPort => JoinUrlError::MissingPort,
            err => JoinUrlError::Endpoint(err),
        })
    }
}

impl fmt::Display for JoinUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https://{}", self.0)
    }
}

try_from_str!(Host, Endpoint, JoinUrl);

serde_as_string!(Host, Endpoint, JoinUrl);
