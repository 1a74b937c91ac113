//! The node's desired state: the user-facing [`SpecDocument`] and the
//! validated, typed [`NodeSpec`] the rest of the agent works from.
//!
//! A document is parsed permissively (every leaf is a plain string, number,
//! bool or list), so that [`SpecDocument::validate`] can report every semantic
//! fault at once, each with its field path in the document's own terms.
//! Validation fills in the defaults; [`NodeSpec::to_document`] gives them back
//! explicitly.

mod document;
mod keys;
mod model;
#[cfg(feature = "proto")]
pub mod proto;
mod types;
mod validate;
pub mod wgquick;

#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
#[cfg(test)]
mod tests;

pub use document::{
    AddonsDoc, CertManagerDoc, ClusterDoc, IngressNginxDoc, LocalPathDoc, LonghornDoc, MetallbDoc,
    NetworkDoc, ParseError, PeerDoc, PersistDoc, PersistPathDoc, ServiceDoc, ServicesDoc,
    SpecDocument, StorageDoc, VipDoc, VipServerDoc, VolumeDoc, WireguardDoc,
};
pub use keys::KeyPair;
pub use model::{
    Addons, CertManager, Cluster, LocalPath, Longhorn, Metallb, Network, NodeSpec, Peer, Persist,
    PersistPath, Service, Services, Storage, Vip, VipServer, Volume, VolumeSource, Wireguard,
};
pub use types::{
    AbsPath, AcmeServer, AddressPool, ByteSize, ByteSizeError, ChoiceError, CidrError, Endpoint,
    EndpointError, Filesystem, FormatPolicy, Host, HostError, IfName, IfNameError, JoinUrl,
    JoinUrlError, KeyError, Label, NameError, NodeName, PathError, PoolError, Propagation, Role,
    Secret, WgKey, WipeSignature, WipeSignatureError, parse_network,
};
pub use validate::{AddonHost, FieldError, ServiceDirs, ValidationContext, ValidationErrors};

/// What `get spec` shows in place of a secret. Validation refuses it as a
/// token, so a redacted spec cannot be re-applied by accident.
pub const REDACTED: &str = "<redacted>";

/// Upper bounds that keep a spec (and the work it causes) small.
pub mod limits {
    /// Largest document [`super::SpecDocument::parse`] accepts.
    pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
    /// Longest string anywhere in a spec.
    pub const MAX_STRING_BYTES: usize = 4096;
    /// Longest cluster token.
    pub const MAX_TOKEN_BYTES: usize = 512;
    /// WireGuard peers.
    pub const MAX_PEERS: usize = 4096;
    /// Allowed IPs of one peer.
    pub const MAX_ALLOWED_IPS: usize = 64;
    /// Addresses of the node's WireGuard interface.
    pub const MAX_ADDRESSES: usize = 16;
    /// Extra names and addresses of the server certificates.
    pub const MAX_TLS_SANS: usize = 64;
    /// Servers taking part in the VIP election.
    pub const MAX_VIP_SERVERS: usize = 64;
    /// Storage volumes.
    pub const MAX_VOLUMES: usize = 64;
    /// Mount options of one volume.
    pub const MAX_MOUNT_OPTIONS: usize = 64;
    /// Persisted paths.
    pub const MAX_PERSIST_PATHS: usize = 64;
    /// Extra arguments of one service.
    pub const MAX_EXTRA_ARGS: usize = 128;
    /// MetalLB address pools.
    pub const MAX_METALLB_ADDRESSES: usize = 64;
    /// Errors one validation reports; the rest are counted, not listed.
    pub const MAX_ERRORS: usize = 1000;
}

/// The values validation fills in for fields a document leaves empty.
pub mod defaults {
    /// WireGuard interface of the cluster mesh.
    pub const WG_INTERFACE: &str = "tfk3s";
    /// WireGuard UDP listen port.
    pub const WG_LISTEN_PORT: u16 = 51820;
    /// WireGuard interface MTU.
    pub const WG_MTU: u32 = 1420;
    /// Pod network.
    pub const CLUSTER_CIDR: &str = "10.42.0.0/16";
    /// Service network.
    pub const SERVICE_CIDR: &str = "10.43.0.0/16";
    /// VRRP virtual router id.
    pub const VIP_VIRTUAL_ROUTER_ID: u8 = 51;
    /// VRRP priority.
    pub const VIP_PRIORITY: u8 = 100;
    /// VRRP advertisement interval.
    pub const VIP_ADVERT_INTERVAL_MS: u32 = 200;
    /// UDP port of the agents' VIP holder announcements.
    pub const VIP_ANNOUNCE_PORT: u16 = 51822;
    /// containerd binary.
    pub const CONTAINERD_BINARY: &str = "/usr/bin/containerd";
    /// k3s binary.
    pub const K3S_BINARY: &str = "/usr/local/bin/k3s";
    /// Where the local-path provisioner creates volumes.
    pub const LOCAL_PATH_PATH: &str = "/var/lib/rancher/k3s/storage";
    /// Longhorn's data path.
    pub const LONGHORN_DATA_PATH: &str = "/var/lib/longhorn";

    // ---- storage.persist ----
    /// The agent's own state dir when validation is not told another.
    pub const STATE_DIR: &str = "/var/cache/modules/tfagent";
    /// k3s configuration, and the node password it needs to rejoin.
    pub const RANCHER_ETC: &str = "/etc/rancher";
    /// k3s's data dir.
    pub const K3S_DATA_DIR: &str = "/var/lib/rancher/k3s";
    /// The kubelet's dir; needs rshared propagation for volume mounts.
    pub const KUBELET_DIR: &str = "/var/lib/kubelet";
    /// containerd's root.
    /// (Not /var/lib/containerd: a host's own containerd may use that.)
    pub const CONTAINERD_ROOT: &str = "/var/lib/tfagent-containerd";
}
