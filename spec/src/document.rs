//! The spec as people write it (`tfagentctl apply -f FILE`, YAML or JSON) and
//! as the agent persists it.
//!
//! Every leaf is a plain string, number, bool, list or option, so a file
//! parses whenever it is well-formed; what the values mean is checked by
//! [`SpecDocument::validate`](crate::SpecDocument::validate), which
//! reports every fault at once. Empty values mean "the default" and are left
//! out when serializing.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::MAX_DOCUMENT_BYTES;
use crate::types::REDACTED;

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// The whole desired state of one node, as written (mirrors the proto
/// `NodeSpec` field for field).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpecDocument {
    /// Kubernetes node name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    /// `server-init`, `server-join` or `agent`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub role: String,
    /// Cluster membership.
    #[serde(skip_serializing_if = "is_default")]
    pub cluster: ClusterDoc,
    /// WireGuard mesh and VIP election.
    #[serde(skip_serializing_if = "is_default")]
    pub network: NetworkDoc,
    /// Volumes to format and mount.
    #[serde(skip_serializing_if = "is_default")]
    pub storage: StorageDoc,
    /// containerd and k3s.
    #[serde(skip_serializing_if = "is_default")]
    pub services: ServicesDoc,
    /// Cluster add-ons.
    #[serde(skip_serializing_if = "is_default")]
    pub addons: AddonsDoc,
}

/// `cluster:`. Its `Debug` hides the token.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterDoc {
    /// The cluster's shared secret.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// `https://HOST:PORT` of the API to join through.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub join_url: String,
    /// The servers' floating address.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub vip: String,
    /// Extra certificate names and addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls_sans: Vec<String>,
    /// Pod network.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_cidr: String,
    /// Service network.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service_cidr: String,
}

impl fmt::Debug for ClusterDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = if self.token.is_empty() { "" } else { REDACTED };
        f.debug_struct("ClusterDoc")
            .field("token", &token)
            .field("join_url", &self.join_url)
            .field("vip", &self.vip)
            .field("tls_sans", &self.tls_sans)
            .field("cluster_cidr", &self.cluster_cidr)
            .field("service_cidr", &self.service_cidr)
            .finish()
    }
}

/// `network:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkDoc {
    /// The mesh interface.
    #[serde(skip_serializing_if = "is_default")]
    pub wireguard: WireguardDoc,
    /// The VIP election; absent when empty.
    #[serde(skip_serializing_if = "is_default")]
    pub vip: VipDoc,
}

/// `network.wireguard:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WireguardDoc {
    /// Interface name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub interface: String,
    /// UDP listen port.
    #[serde(skip_serializing_if = "is_zero")]
    pub listen_port: u32,
    /// This node's addresses on the mesh, with prefix.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Interface MTU.
    #[serde(skip_serializing_if = "is_zero")]
    pub mtu: u32,
    /// The other members of the mesh.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerDoc>,
}

/// `network.wireguard.peers[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeerDoc {
    /// Peer name (its node name, or e.g. `user`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Base64 public key.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub public_key: String,
    /// `host:port`; empty when the peer dials us.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    /// Networks routed to the peer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_ips: Vec<String>,
    /// Keepalive seconds; 0 disables.
    #[serde(skip_serializing_if = "is_zero")]
    pub persistent_keepalive: u32,
}

/// `network.vip:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VipDoc {
    /// VRRP virtual router id.
    #[serde(skip_serializing_if = "is_zero")]
    pub virtual_router_id: u32,
    /// This server's VRRP priority.
    #[serde(skip_serializing_if = "is_zero")]
    pub priority: u32,
    /// VRRP advertisement interval.
    #[serde(skip_serializing_if = "is_zero")]
    pub advert_interval_ms: u32,
    /// The servers that may hold the VIP.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<VipServerDoc>,
    /// UDP port of the agents' holder announcements.
    #[serde(skip_serializing_if = "is_zero")]
    pub announce_port: u32,
}

/// `network.vip.servers[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VipServerDoc {
    /// This node's name or a peer name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its WireGuard address, without prefix.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub address: String,
}

/// `storage:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageDoc {
    /// The volumes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeDoc>,
    /// Directories kept on a volume through bind mounts.
    #[serde(skip_serializing_if = "is_default")]
    pub persist: PersistDoc,
}

/// `storage.persist`: host paths bind-mounted from subdirectories of a
/// volume, so what k3s and friends write there survives a tmpfs root.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistDoc {
    /// The volume that holds them (default: the first volume).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub volume: String,
    /// The paths (default: those the role needs that no volume covers).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PersistPathDoc>,
}

/// `storage.persist.paths[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistPathDoc {
    /// The host path.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// `private` or `rshared` (default: rshared for the kubelet and
    /// Longhorn directories, private otherwise).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub propagation: String,
}

/// `storage.volumes[]`: exactly one of `device` and `pool`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VolumeDoc {
    /// Short name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// A block device under /dev.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// A mounted btrfs pool to take a subvolume from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Filesystem of a device volume.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filesystem: String,
    /// Where the volume is mounted.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mount_point: String,
    /// Mount options, one per entry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
    /// `never`, `if-blank` or `wipe`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub format: String,
    /// With `format: wipe`: `blank` or the filesystem UUID now on the device.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub wipe_signature: String,
    /// Quota of a pool volume.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub size: String,
}

/// `services:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServicesDoc {
    /// containerd.
    #[serde(skip_serializing_if = "is_default")]
    pub containerd: ServiceDoc,
    /// k3s.
    #[serde(skip_serializing_if = "is_default")]
    pub k3s: ServiceDoc,
}

/// `services.containerd:` / `services.k3s:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceDoc {
    /// Absolute path of the binary.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub binary: String,
    /// Extra flags: only those on the allow-list of the service (README
    /// "Services"), one per entry, a value after `=`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
}

/// `addons:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AddonsDoc {
    /// MetalLB.
    #[serde(skip_serializing_if = "is_default")]
    pub metallb: MetallbDoc,
    /// ingress-nginx.
    #[serde(skip_serializing_if = "is_default")]
    pub ingress_nginx: IngressNginxDoc,
    /// cert-manager.
    #[serde(skip_serializing_if = "is_default")]
    pub cert_manager: CertManagerDoc,
    /// local-path provisioner.
    #[serde(skip_serializing_if = "is_default")]
    pub local_path: LocalPathDoc,
    /// Longhorn.
    #[serde(skip_serializing_if = "is_default")]
    pub longhorn: LonghornDoc,
}

/// `addons.metallb:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetallbDoc {
    /// Whether it is deployed; the other fields are ignored when not.
    #[serde(skip_serializing_if = "is_false")]
    pub enabled: bool,
    /// CIDRs or `first-last` ranges.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Interface for L2 announcements.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub interface: String,
}

/// `addons.ingress_nginx:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressNginxDoc {
    /// Whether it is deployed.
    #[serde(skip_serializing_if = "is_false")]
    pub enabled: bool,
}

/// `addons.cert_manager:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CertManagerDoc {
    /// Whether it is deployed; the other fields are ignored when not.
    #[serde(skip_serializing_if = "is_false")]
    pub enabled: bool,
    /// ACME account e-mail.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub email: String,
    /// `staging` or `production`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub server: String,
}

/// `addons.local_path:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalPathDoc {
    /// Whether it is deployed; the path is ignored when not.
    #[serde(skip_serializing_if = "is_false")]
    pub enabled: bool,
    /// Where volumes are created.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
}

/// `addons.longhorn:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LonghornDoc {
    /// Whether it is deployed; the path is ignored when not.
    #[serde(skip_serializing_if = "is_false")]
    pub enabled: bool,
    /// Longhorn's data path.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub data_path: String,
}

/// Why a document could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but whitespace.
    #[error("the spec is empty")]
    Empty,
    /// Over [`MAX_DOCUMENT_BYTES`].
    #[error("the spec is {size} bytes, over the limit of {MAX_DOCUMENT_BYTES}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Malformed, an unknown field or a value of the wrong type.
    #[error("{}", located(.path, .format, .message))]
    Invalid {
        /// `JSON` or `YAML`.
        format: &'static str,
        /// Where, e.g. `network.wireguard.peers[0].publickey`; empty at the top.
        path: String,
        /// What (the parser's message, with line and column).
        message: String,
    },
}

fn located(path: &str, format: &str, message: &str) -> String {
    if path.is_empty() {
        format!("invalid {format}: {message}")
    } else {
        format!("{path}: {message}")
    }
}

impl ParseError {
    fn invalid<E: fmt::Display>(format: &'static str, err: serde_path_to_error::Error<E>) -> Self {
        let path = err.path();
        let path = if path.iter().next().is_none() {
            String::new()
        } else {
            path.to_string()
        };
        let message = if path == "cluster.token" {
            // The parser would quote the offending value: the secret.
            "must be a string (quote it if it looks like a number)".to_owned()
        } else {
            let message = err.inner().to_string();
            strip_path_prefix(&message, &path).to_owned()
        };
        Self::Invalid {
            format,
            path,
            message,
        }
    }
}

/// The YAML parser prefixes its messages with the (less precise) path it
/// tracks itself, some prefix of ours: drop it so the path shows once.
fn strip_path_prefix<'a>(message: &'a str, path: &str) -> &'a str {
    let ends = path
        .char_indices()
        .filter(|(_, c)| matches!(c, '.' | '['))
        .map(|(i, _)| i);
    ends.chain([path.len()])
        .filter_map(|end| message.strip_prefix(&path[..end])?.strip_prefix(": "))
        .min_by_key(|rest| rest.len())
        .unwrap_or(message)
}

impl SpecDocument {
    /// Reads a document written in YAML or JSON (JSON when it starts with
    /// `{`, for JSON's sharper messages). Structural faults (syntax, unknown
    /// fields, wrong types) are reported here with their path; everything
    /// else is left to [`validate`](Self::validate).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(ParseError::TooLarge { size: text.len() });
        }
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if text.trim().is_empty() {
            return Err(ParseError::Empty);
        }
        if text.trim_start().starts_with('{') {
            let mut de = serde_json::Deserializer::from_str(text);
            let doc = serde_path_to_error::deserialize(&mut de)
                .map_err(|e| ParseError::invalid("JSON", e))?;
            de.end().map_err(|e| ParseError::Invalid {
                format: "JSON",
                path: String::new(),
                message: e.to_string(),
            })?;
            Ok(doc)
        } else {
            let de = serde_yaml_ng::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| ParseError::invalid("YAML", e))
        }
    }

    /// The document as YAML.
    pub fn to_yaml(&self) -> Result<String, serde_yaml_ng::Error> {
        serde_yaml_ng::to_string(self)
    }

    /// The document as indented JSON.
    pub fn to_json_pretty(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}
