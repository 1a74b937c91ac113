//! The values validation fills in for fields a document leaves empty.

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

// Directories the storage.persist checks and defaults refer to.
/// The agent's own state dir when validation is not told another.
pub const STATE_DIR: &str = "/var/cache/modules/tfagent";
/// The agent's run dir (sockets, services' runtime files) when validation
/// is not told another.
pub const RUN_DIR: &str = "/run/tfagent";
/// k3s configuration, and the node password it needs to rejoin.
pub const RANCHER_ETC: &str = "/etc/rancher";
/// k3s's data dir.
pub const K3S_DATA_DIR: &str = "/var/lib/rancher/k3s";
/// The kubelet's dir; needs rshared propagation for volume mounts.
pub const KUBELET_DIR: &str = "/var/lib/kubelet";
/// containerd's root.
/// (Not /var/lib/containerd: a host's own containerd may use that.)
pub const CONTAINERD_ROOT: &str = "/var/lib/tfagent-containerd";
