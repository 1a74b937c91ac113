//! Newtypes that validate on construction and print back their canonical text.
//!
//! Their error messages never repeat the input (the caller knows the field it
//! came from), so they are safe to show for any field.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ipnet::IpNet;

use super::REDACTED;
use super::limits::MAX_STRING_BYTES;

/// Serializes a type as its `Display` text and deserializes it through `FromStr`.
macro_rules! serde_as_string {
    ($($t:ty),+ $(,)?) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )+};
}

/// `TryFrom<&str>` through `FromStr`.
macro_rules! try_from_str {
    ($($t:ty),+ $(,)?) => {$(
        impl TryFrom<&str> for $t {
            type Error = <$t as FromStr>::Err;
            fn try_from(text: &str) -> Result<Self, Self::Error> {
                text.parse()
            }
        }
    )+};
}

/// Shows a piece of user input inside a message: quoted, escaped and cut short.
pub(crate) fn quote(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut shown: String = text
        .chars()
        .take(MAX_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        shown.push('…');
    }
    format!("`{shown}`")
}

// ---------------------------------------------------------------- names

/// Why a DNS-style name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing given.
    #[error("required")]
    Empty,
    /// Over the length limit.
    #[error("longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// Upper-case letters.
    #[error("must be lower case")]
    UpperCase,
    /// A character outside the allowed set.
    #[error("may contain only {allowed}")]
    BadChar {
        /// The allowed set, in words.
        allowed: &'static str,
    },
    /// Two dots in a row, or a dot at either end.
    #[error("has an empty label (`..` or a leading or trailing dot)")]
    EmptyLabel,
    /// A label over 63 bytes.
    #[error("has a label longer than 63 bytes")]
    LabelTooLong,
    /// A label starting or ending with `-`.
    #[error("labels must start and end with a letter or digit")]
    LabelEdge,
}

fn check_label(label: &str, allowed: &'static str) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::EmptyLabel);
    }
    if label.len() > 63 {
        return Err(NameError::LabelTooLong);
    }
    for c in label.chars() {
        if c.is_ascii_uppercase() {
            return Err(NameError::UpperCase);
        }
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(NameError::BadChar { allowed });
        }
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(NameError::LabelEdge);
    }
    Ok(())
}

fn check_subdomain(text: &str) -> Result<(), NameError> {
    const ALLOWED: &str = "a-z, 0-9, '-' and '.'";
    if text.is_empty() {
        return Err(NameError::Empty);
    }
    if text.len() > 253 {
        return Err(NameError::TooLong { max: 253 });
    }
    text.split('.')
        .try_for_each(|label| check_label(label, ALLOWED))
}

/// A Kubernetes node name (also used for peers): an RFC 1123 DNS subdomain,
/// lower case, at most 253 bytes, labels at most 63.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName(String);

impl NodeName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodeName {
    type Err = NameError;
    fn from_str(text: &str) -> Result<Self, NameError> {
        check_subdomain(text)?;
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A short name: an RFC 1123 DNS label (lower case, at most 63 bytes).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label(String);

impl Label {
    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Label {
    type Err = NameError;
    fn from_str(text: &str) -> Result<Self, NameError> {
        if text.is_empty() {
            return Err(NameError::Empty);
        }
        if text.len() > 63 {
            return Err(NameError::TooLong { max: 63 });
        }
        check_label(text, "a-z, 0-9 and '-'")?;
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------- IfName

/// Why an interface name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IfNameError {
    /// Nothing given.
    #[error("required")]
    Empty,
    /// The kernel's limit (IFNAMSIZ - 1).
    #[error("longer than 15 bytes")]
    TooLong,
    /// A character the kernel (or a config file) cannot take.
    #[error("must not contain '/', ':', whitespace or control characters")]
    BadChar,
    /// `.` or `..`.
    #[error("`.` and `..` are not interface names")]
    Dots,
}

/// A network interface name as the kernel accepts it: 1..=15 bytes, no '/',
/// ':', whitespace or control characters, not `.` or `..`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfName(String);

impl IfName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for IfName {
    type Err = IfNameError;
    fn from_str(text: &str) -> Result<Self, IfNameError> {
        if text.is_empty() {
            return Err(IfNameError::Empty);
        }
        if text.len() > 15 {
            return Err(IfNameError::TooLong);
        }
        if text
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(IfNameError::BadChar);
        }
        if text == "." || text == ".." {
            return Err(IfNameError::Dots);
        }
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------- WgKey

/// Why a WireGuard key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Nothing given.
    #[error("required")]
    Empty,
    /// Not (canonical, padded) base64.
    #[error("not a 32-byte base64 key (invalid base64)")]
    Base64,
    /// Valid base64 of the wrong length.
    #[error("not a 32-byte base64 key (it decodes to {len} bytes)")]
    Length {
        /// The decoded length.
        len: usize,
    },
}

/// A WireGuard (Curve25519) public key: 32 bytes, written in base64.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WgKey([u8; 32]);

impl WgKey {
    /// The key with these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for WgKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, KeyError> {
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        let bytes = BASE64.decode(text).map_err(|_| KeyError::Base64)?;
        let len = bytes.len();
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| KeyError::Length { len })
    }
}

impl fmt::Display for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE64.encode(self.0))
    }
}

// A public key is not secret; show it the way `wg` does.
impl fmt::Debug for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WgKey({self})")
    }
}

// ---------------------------------------------------------------- Secret

/// A secret string whose `Debug` and `Display` print [`REDACTED`]; only
/// [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; use it only where it must go (a 0600 file, a
    /// child's config), never in logs or errors.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

// ---------------------------------------------------------------- AbsPath

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Nothing given.
    #[error("required")]
    Empty,
    /// Over [`MAX_STRING_BYTES`].
    #[error("longer than {MAX_STRING_BYTES} bytes")]
    TooLong,
    /// Does not start with `/`.
    #[error("must be an absolute path")]
    NotAbsolute,
    /// NUL or another control character.
    #[error("must not contain control characters")]
    BadChar,
    /// A `.` or `..` component.
    #[error("must not contain `.` or `..` components")]
    DotComponent,
    /// `//` inside the path.
    #[error("must not contain `//`")]
    EmptyComponent,
    /// A trailing `/` (other than the root itself).
    #[error("must not end with `/`")]
    TrailingSlash,
}

/// An absolute path in canonical form: starts with `/`, no `.` or `..`
/// components, no `//`, no trailing slash except `/` itself, no control
/// characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AbsPath(String);

impl AbsPath {
    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path as a [`Path`].
    pub fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }

    /// Whether `self` is `dir` or lies below it (component-wise).
    pub fn is_within(&self, dir: &AbsPath) -> bool {
        self.as_path().starts_with(dir.as_path())
    }
}

impl FromStr for AbsPath {
    type Err = PathError;
    fn from_str(text: &str) -> Result<Self, PathError> {
        if text.is_empty() {
            return Err(PathError::Empty);
        }
        if text.len() > MAX_STRING_BYTES {
            return Err(PathError::TooLong);
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(PathError::NotAbsolute);
        };
        if text.chars().any(char::is_control) {
            return Err(PathError::BadChar);
        }
        if rest.is_empty() {
            return Ok(Self(text.to_owned()));
        }
        if rest.ends_with('/') {
            return Err(PathError::TrailingSlash);
        }
        for component in rest.split('/') {
            match component {
                "" => return Err(PathError::EmptyComponent),
                "." | ".." => return Err(PathError::DotComponent),
                _ => {}
            }
        }
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Display for AbsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------- Host, Endpoint, JoinUrl

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

// ---------------------------------------------------------------- ByteSize

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ByteSizeError {
    /// Nothing given.
    #[error("required")]
    Empty,
    /// Not a number with an optional unit.
    #[error("not a size (e.g. 50GiB, 10G, 512MiB or a number of bytes)")]
    Invalid,
    /// Beyond 2^64 - 1 bytes.
    #[error("too large")]
    TooLarge,
}

/// A number of bytes, written "50GiB", "10G", "512MiB" or "1073741824":
/// K/M/G/T are decimal, Ki/Mi/Gi/Ti binary, a trailing B optional.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ByteSize(u64);

impl ByteSize {
    /// A size of `bytes` bytes.
    pub fn from_bytes(bytes: u64) -> Self {
        Self(bytes)
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

const KI: u64 = 1 << 10;
const KB: u64 = 1000;
const SIZE_UNITS: [(u64, &str); 8] = [
    (KI * KI * KI * KI, "TiB"),
    (KI * KI * KI, "GiB"),
    (KI * KI, "MiB"),
    (KI, "KiB"),
    (KB * KB * KB * KB, "TB"),
    (KB * KB * KB, "GB"),
    (KB * KB, "MB"),
    (KB, "KB"),
];

impl FromStr for ByteSize {
    type Err = ByteSizeError;
    fn from_str(text: &str) -> Result<Self, ByteSizeError> {
        if text.is_empty() {
            return Err(ByteSizeError::Empty);
        }
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        if digits.is_empty() {
            return Err(ByteSizeError::Invalid);
        }
        let unit = unit.to_ascii_lowercase();
        let unit = unit.strip_suffix('b').unwrap_or(&unit);
        let multiplier = match unit {
            "" => 1,
            "k" => KB,
            "m" => KB * KB,
            "g" => KB * KB * KB,
            "t" => KB * KB * KB * KB,
            "ki" => KI,
            "mi" => KI * KI,
            "gi" => KI * KI * KI,
            "ti" => KI * KI * KI * KI,
            _ => return Err(ByteSizeError::Invalid),
        };
        let number: u64 = digits.parse().map_err(|_| ByteSizeError::TooLarge)?;
        number
            .checked_mul(multiplier)
            .map(Self)
            .ok_or(ByteSizeError::TooLarge)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The exact unit giving the smallest number: 10G rather than 9765625KiB.
        let best = SIZE_UNITS
            .iter()
            .filter(|(size, _)| self.0 != 0 && self.0.is_multiple_of(*size))
            .min_by_key(|(size, _)| self.0 / size);
        match best {
            Some((size, unit)) => write!(f, "{}{unit}", self.0 / size),
            None => write!(f, "{}", self.0),
        }
    }
}

// ---------------------------------------------------------------- choices

/// Why a value of a fixed set of choices was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    /// Nothing given.
    #[error("required")]
    Empty,
    /// Not one of the choices.
    #[error("{} is not one of {}", quote(.value), .expected.join(", "))]
    Unknown {
        /// What was given.
        value: String,
        /// The choices.
        expected: &'static [&'static str],
    },
}

/// An enum written as fixed kebab-case words.
macro_rules! choice_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $( $(#[$vmeta])* $variant, )+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            const TEXTS: &'static [&'static str] = &[$($text),+];

            /// The document's word for this value.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }

        impl FromStr for $name {
            type Err = ChoiceError;
            fn from_str(text: &str) -> Result<Self, ChoiceError> {
                match text {
                    "" => Err(ChoiceError::Empty),
                    $($text => Ok($name::$variant),)+
                    other => Err(ChoiceError::Unknown { value: other.to_owned(), expected: Self::TEXTS }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

choice_enum! {
    /// What the node is in the cluster.
    Role {
        /// The first server: initialises embedded etcd.
        ServerInit => "server-init",
        /// A further server joining through `cluster.join_url`.
        ServerJoin => "server-join",
        /// A worker (k3s agent).
        Agent => "agent",
    }
}

impl Role {
    /// Whether the node runs a k3s server.
    pub fn is_server(self) -> bool {
        matches!(self, Self::ServerInit | Self::ServerJoin)
    }
}

choice_enum! {
    /// When the agent may create a filesystem on a device volume.
    #[derive(Default)]
    FormatPolicy {
        /// Never: the device must already hold the filesystem.
        Never => "never",
        /// Only when the device holds no signature at all (the default).
        #[default]
        IfBlank => "if-blank",
        /// Also over the exact signature named by `wipe_signature`.
        Wipe => "wipe",
    }
}

choice_enum! {
    /// Which Let's Encrypt directory cert-manager uses.
    #[derive(Default)]
    AcmeServer {
        /// The staging directory (untrusted certificates, generous limits; the default).
        #[default]
        Staging => "staging",
        /// The production directory.
        Production => "production",
    }
}

impl AcmeServer {
    /// The ACME directory URL.
    pub fn directory_url(self) -> &'static str {
        match self {
            Self::Staging => "https://acme-staging-v02.api.letsencrypt.org/directory",
            Self::Production => "https://acme-v02.api.letsencrypt.org/directory",
        }
    }
}

choice_enum! {
    /// Filesystems a device volume may carry.
    #[derive(Default)]
    Filesystem {
        /// btrfs (the only one the zOS kernel has; the default).
        #[default]
        Btrfs => "btrfs",
        /// ext4.
        Ext4 => "ext4",
        /// XFS.
        Xfs => "xfs",
    }
}

choice_enum! {
    /// Mount propagation of a persisted path (see mount_namespaces(7)).
    Propagation {
        /// Mounts below it are not shared with other mount namespaces.
        Private => "private",
        /// Mounts below it are shared both ways, recursively (what the
        /// kubelet and Longhorn need for the volumes they mount).
        Rshared => "rshared",
    }
}

// ---------------------------------------------------------------- WipeSignature

/// Why a wipe signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be `blank` or a filesystem UUID (8-4-4-4-12 hex digits)")]
pub struct WipeSignatureError;

/// What a device must hold right now for `format: wipe` to overwrite it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WipeSignature {
    /// No signature at all.
    Blank,
    /// The filesystem with this UUID (lower case).
    Uuid(String),
}

impl FromStr for WipeSignature {
    type Err = WipeSignatureError;
    fn from_str(text: &str) -> Result<Self, WipeSignatureError> {
        if text == "blank" {
            return Ok(Self::Blank);
        }
        let groups: Vec<&str> = text.split('-').collect();
        let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lengths != [8, 4, 4, 4, 12]
            || !groups
                .iter()
                .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(WipeSignatureError);
        }
        Ok(Self::Uuid(text.to_ascii_lowercase()))
    }
}

impl fmt::Display for WipeSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Blank => f.write_str("blank"),
            Self::Uuid(uuid) => f.write_str(uuid),
        }
    }
}

// ---------------------------------------------------------------- CIDRs

/// Why a network CIDR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Nothing given.
    #[error("required")]
    Empty,
    /// An address without a prefix length.
    #[error("not a CIDR, did you mean {suggestion}")]
    BareAddress {
        /// The address as a host route.
        suggestion: IpNet,
    },
    /// Not a CIDR at all.
    #[error("not a CIDR (e.g. 10.42.0.0/16)")]
    Invalid,
    /// Host bits set.
    #[error("not a network address, did you mean {suggestion}")]
    HostBits {
        /// The same prefix with the host bits cleared.
        suggestion: IpNet,
    },
}

/// Parses a network CIDR: host bits must be zero (`10.42.0.0/16`, not
/// `10.42.0.1/16`).
pub fn parse_network(text: &str) -> Result<IpNet, CidrError> {
    if text.is_empty() {
        return Err(CidrError::Empty);
    }
    let net: IpNet = match text.parse() {
        Ok(net) => net,
        Err(_) => {
            return Err(match text.parse::<IpAddr>() {
                Ok(ip) => CidrError::BareAddress {
                    suggestion: IpNet::from(ip),
                },
                Err(_) => CidrError::Invalid,
            });
        }
    };
    if net.trunc() != net {
        return Err(CidrError::HostBits {
            suggestion: net.trunc(),
        });
    }
    Ok(net)
}

/// Whether two networks share any address.
pub(crate) fn nets_overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

// ---------------------------------------------------------------- AddressPool

/// Why a MetalLB address pool was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Nothing given.
    #[error("required")]
    Empty,
    /// A CIDR with host bits set.
    #[error("not a network address, did you mean {suggestion}")]
    HostBits {
        /// The same prefix with the host bits cleared.
        suggestion: IpNet,
    },
    /// Neither form.
    #[error("not a CIDR or a first-last address range")]
    Invalid,
    /// An IPv4 and an IPv6 end.
    #[error("range ends are of different address families")]
    MixedFamilies,
    /// `first` after `last`.
    #[error("range starts after it ends")]
    Reversed,
}

/// Addresses MetalLB may hand out: a CIDR or an inclusive `first-last` range.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AddressPool {
    /// A network, host bits zero.
    Cidr(IpNet),
    /// An inclusive range of one family, `first <= last`.
    Range {
        /// First address.
        first: IpAddr,
        /// Last address.
        last: IpAddr,
    },
}

impl AddressPool {
    /// First and last address.
    pub fn bounds(&self) -> (IpAddr, IpAddr) {
        match self {
            Self::Cidr(net) => (net.network(), net.broadcast()),
            Self::Range { first, last } => (*first, *last),
        }
    }

    /// Whether the pool shares an address with `net`.
    pub fn overlaps_net(&self, net: &IpNet) -> bool {
        ranges_overlap(self.bounds(), (net.network(), net.broadcast()))
    }

    /// Whether two pools share an address.
    pub fn overlaps(&self, other: &AddressPool) -> bool {
        ranges_overlap(self.bounds(), other.bounds())
    }
}

fn ranges_overlap(
    (a_first, a_last): (IpAddr, IpAddr),
    (b_first, b_last): (IpAddr, IpAddr),
) -> bool {
    a_first.is_ipv4() == b_first.is_ipv4() && a_first <= b_last && b_first <= a_last
}

impl FromStr for AddressPool {
    type Err = PoolError;
    fn from_str(text: &str) -> Result<Self, PoolError> {
        if text.is_empty() {
            return Err(PoolError::Empty);
        }
        if let Some((first, last)) = text.split_once('-') {
            let first: IpAddr = first.trim().parse().map_err(|_| PoolError::Invalid)?;
            let last: IpAddr = last.trim().parse().map_err(|_| PoolError::Invalid)?;
            if first.is_ipv4() != last.is_ipv4() {
                return Err(PoolError::MixedFamilies);
            }
            if first > last {
                return Err(PoolError::Reversed);
            }
            return Ok(Self::Range { first, last });
        }
        match parse_network(text) {
            Ok(net) => Ok(Self::Cidr(net)),
            Err(CidrError::HostBits { suggestion }) => Err(PoolError::HostBits { suggestion }),
            Err(_) => Err(PoolError::Invalid),
        }
    }
}

impl fmt::Display for AddressPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cidr(net) => write!(f, "{net}"),
            Self::Range { first, last } => write!(f, "{first}-{last}"),
        }
    }
}

/// The zOS networks the agent must never route or overlap.
pub(crate) fn zos_reserved() -> [IpNet; 2] {
    [
        IpNet::from(ipnet::Ipv4Net::new_assert(Ipv4Addr::new(100, 64, 0, 0), 16)),
        IpNet::from(ipnet::Ipv4Net::new_assert(
            Ipv4Addr::new(100, 127, 0, 0),
            16,
        )),
    ]
}

try_from_str!(
    NodeName,
    Label,
    IfName,
    WgKey,
    AbsPath,
    Host,
    Endpoint,
    JoinUrl,
    ByteSize,
    Role,
    FormatPolicy,
    AcmeServer,
    Filesystem,
    WipeSignature,
    AddressPool,
    Propagation,
);

serde_as_string!(
    NodeName,
    Label,
    IfName,
    WgKey,
    AbsPath,
    Host,
    Endpoint,
    JoinUrl,
    ByteSize,
    Role,
    FormatPolicy,
    AcmeServer,
    Filesystem,
    WipeSignature,
    AddressPool,
    Propagation,
);
