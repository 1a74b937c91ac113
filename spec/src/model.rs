//! The validated, typed spec the agent works from. Built only by
//! [`SpecDocument::validate`](crate::SpecDocument::validate), so every
//! value here has passed every rule and every default is filled in.

use std::net::IpAddr;
use std::num::NonZeroU16;

use ipnet::IpNet;

use crate::document::{
    AddonsDoc, CertManagerDoc, ClusterDoc, IngressNginxDoc, LocalPathDoc, LonghornDoc, MetallbDoc,
    NetworkDoc, PeerDoc, PersistDoc, PersistPathDoc, ServiceDoc, ServicesDoc, SpecDocument,
    StorageDoc, VipDoc, VipServerDoc, VolumeDoc, WireguardDoc,
};
use crate::types::{
    AbsPath, AcmeServer, AddressPool, ByteSize, Endpoint, Filesystem, FormatPolicy, Host, IfName,
    JoinUrl, Label, NodeName, Propagation, REDACTED, Role, Secret, WgKey, WipeSignature,
};

/// The whole desired state of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// Kubernetes node name.
    pub node_name: NodeName,
    /// What the node is in the cluster.
    pub role: Role,
    /// Cluster membership.
    pub cluster: Cluster,
    /// WireGuard mesh and VIP election.
    pub network: Network,
    /// Volumes.
    pub storage: Storage,
    /// containerd and k3s.
    pub services: Services,
    /// Cluster add-ons.
    pub addons: Addons,
}

/// Cluster membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// The cluster's shared secret (k3s `--token`).
    pub token: Secret,
    /// The API to join through; `None` exactly for `server-init`.
    pub join_url: Option<JoinUrl>,
    /// The servers' floating address.
    pub vip: Option<IpAddr>,
    /// Extra certificate names and addresses, no duplicates.
    pub tls_sans: Vec<Host>,
    /// Pod network.
    pub cluster_cidr: IpNet,
    /// Service network.
    pub service_cidr: IpNet,
}

/// WireGuard mesh and VIP election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    /// The mesh interface.
    pub wireguard: Wireguard,
    /// The VIP election; `None` when the document has no such section.
    pub vip: Option<Vip>,
}

/// The node's WireGuard interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wireguard {
    /// Interface name.
    pub interface: IfName,
    /// UDP listen port.
    pub listen_port: u16,
    /// The node's interface addresses (host bits allowed), at least one.
    pub addresses: Vec<IpNet>,
    /// MTU, 1280..=9000.
    pub mtu: u32,
    /// The other members of the mesh.
    pub peers: Vec<Peer>,
}

/// One WireGuard peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Unique name (a node name, or e.g. `user`).
    pub name: NodeName,
    /// Its public key, unique.
    pub public_key: WgKey,
    /// Where to reach it; `None` when it dials us.
    pub endpoint: Option<Endpoint>,
    /// Networks routed to it (host bits zero), none shared with another peer.
    pub allowed_ips: Vec<IpNet>,
    /// Keepalive interval in seconds.
    pub persistent_keepalive: Option<NonZeroU16>,
}

/// The VRRP election of `cluster.vip` among the servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vip {
    /// VRRP virtual router id.
    pub virtual_router_id: u8,
    /// This node's priority, 1..=254.
    pub priority: u8,
    /// Advertisement interval, 10..=40950 ms in steps of 10.
    pub advert_interval_ms: u32,
    /// The servers that may hold the VIP (unique names and addresses).
    pub servers: Vec<VipServer>,
    /// UDP port of the agents' holder announcements, on the mesh.
    pub announce_port: u16,
}

/// A server taking part in the VIP election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipServer {
    /// This node's name or a peer name.
    pub name: NodeName,
    /// Its WireGuard address.
    pub address: IpAddr,
}

/// Volumes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Storage {
    /// Unique names and mount points.
    pub volumes: Vec<Volume>,
    /// Paths kept on a volume; `None` exactly when there are no volumes.
    pub persist: Option<Persist>,
}

/// Host paths bind-mounted from subdirectories of one volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Persist {
    /// The volume holding them; one of `Storage::volumes`, not mounted
    /// below any of the paths.
    pub volume: Label,
    /// Unique, none within another, none within a volume's mount point.
    pub paths: Vec<PersistPath>,
}

/// One persisted path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistPath {
    /// The host path.
    pub path: AbsPath,
    /// Its mount propagation.
    pub propagation: Propagation,
}

impl PersistPath {
    /// Where the data lives, relative to the volume's top:
    /// `.tfagent-persist/etc/rancher` for `/etc/rancher`.
    pub fn subdir(&self) -> String {
        format!(".tfagent-persist{}", self.path)
    }
}

/// A volume to create (if allowed) and mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    /// Short name.
    pub name: Label,
    /// Where it comes from.
    pub source: VolumeSource,
    /// Its filesystem (always btrfs for a pool volume).
    pub filesystem: Filesystem,
    /// Where it is mounted: absolute, not `/` nor a system directory.
    pub mount_point: AbsPath,
    /// Mount options.
    pub mount_options: Vec<String>,
    /// When a device may be formatted.
    pub format: FormatPolicy,
    /// Set exactly when `format` is `Wipe`.
    pub wipe_signature: Option<WipeSignature>,
}

/// Where a volume comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeSource {
    /// A whole block device under /dev.
    Device(AbsPath),
    /// A btrfs subvolume of a mounted pool, with a quota.
    Pool {
        /// The pool's mount point.
        pool: AbsPath,
        /// The quota, more than zero.
        size: ByteSize,
    },
}

/// containerd and k3s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Services {
    /// containerd.
    pub containerd: Service,
    /// k3s.
    pub k3s: Service,
}

/// One supervised service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// The binary.
    pub binary: AbsPath,
    /// Extra flags, each on the allow-list of its service, one per entry.
    pub extra_args: Vec<String>,
}

/// Cluster add-ons; `None`/`false` when disabled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Addons {
    /// MetalLB.
    pub metallb: Option<Metallb>,
    /// ingress-nginx.
    pub ingress_nginx: bool,
    /// cert-manager with Let's Encrypt.
    pub cert_manager: Option<CertManager>,
    /// local-path provisioner.
    pub local_path: Option<LocalPath>,
    /// Longhorn.
    pub longhorn: Option<Longhorn>,
}

/// MetalLB in L2 mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metallb {
    /// Address pools, at least one.
    pub addresses: Vec<AddressPool>,
    /// The broadcast-capable interface announcements go out on.
    pub interface: IfName,
}

/// cert-manager with a Let's Encrypt issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertManager {
    /// ACME account e-mail.
    pub email: String,
    /// Which directory.
    pub server: AcmeServer,
}

/// The local-path provisioner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPath {
    /// Where volumes are created.
    pub path: AbsPath,
}

/// Longhorn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Longhorn {
    /// Its data path.
    pub data_path: AbsPath,
}

impl Services {
    /// The fields that decide what runs as root, each with its path in the
    /// document, here and in `other`, that differ between the two. Changing
    /// one of them takes the admin role.
    pub fn root_fields_changed(&self, other: &Services) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.containerd.binary != other.containerd.binary {
            changed.push("services.containerd.binary");
        }
        if self.k3s.binary != other.k3s.binary {
            changed.push("services.k3s.binary");
        }
        changed
    }

    /// The services of a document that leaves them out: every field at its
    /// default.
    pub fn defaults() -> Self {
        let path = |text: &str| text.parse().unwrap_or_else(|_| unreachable!());
        let service = |binary| Service {
            binary: path(binary),
            extra_args: Vec::new(),
        };
        Self {
            containerd: service(crate::defaults::CONTAINERD_BINARY),
            k3s: service(crate::defaults::K3S_BINARY),
        }
    }
}

fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

impl NodeSpec {
    /// The normalized document: every default written out, so that
    /// validating it gives back `self`.
    pub fn to_document(&self) -> SpecDocument {
        SpecDocument {
            node_name: self.node_name.to_string(),
            role: self.role.to_string(),
            cluster: self.cluster.to_document(),
            network: NetworkDoc {
                wireguard: self.network.wireguard.to_document(),
                vip: self
                    .network
                    .vip
                    .as_ref()
                    .map(Vip::to_document)
                    .unwrap_or_default(),
            },
            storage: StorageDoc {
                volumes: self
                    .storage
                    .volumes
                    .iter()
                    .map(Volume::to_document)
                    .collect(),
                persist: self
                    .storage
                    .persist
                    .as_ref()
                    .map(Persist::to_document)
                    .unwrap_or_default(),
            },
            services: ServicesDoc {
                containerd: self.services.containerd.to_document(),
                k3s: self.services.k3s.to_document(),
            },
            addons: self.addons.to_document(),
        }
    }

    /// [`to_document`](Self::to_document) with secrets replaced by
    /// [`REDACTED`], for showing the spec (`get spec`).
    pub fn redacted_document(&self) -> SpecDocument {
        let mut doc = self.to_document();
        doc.cluster.token = REDACTED.to_owned();
        doc
    }
}

impl Cluster {
    fn to_document(&self) -> ClusterDoc {
        ClusterDoc {
            token: self.token.expose().to_owned(),
            join_url: self
                .join_url
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            vip: self
                .vip
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            tls_sans: strings(&self.tls_sans),
            cluster_cidr: self.cluster_cidr.to_string(),
            service_cidr: self.service_cidr.to_string(),
        }
    }
}

impl Wireguard {
    fn to_document(&self) -> WireguardDoc {
        WireguardDoc {
            interface: self.interface.to_string(),
            listen_port: u32::from(self.listen_port),
            addresses: strings(&self.addresses),
            mtu: self.mtu,
            peers: self.peers.iter().map(Peer::to_document).collect(),
        }
    }
}

impl Peer {
    fn to_document(&self) -> PeerDoc {
        PeerDoc {
            name: self.name.to_string(),
            public_key: self.public_key.to_string(),
            endpoint: self
                .endpoint
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            allowed_ips: strings(&self.allowed_ips),
            persistent_keepalive: self.persistent_keepalive.map_or(0, |k| u32::from(k.get())),
        }
    }
}

impl Vip {
    fn to_document(&self) -> VipDoc {
        VipDoc {
            virtual_router_id: u32::from(self.virtual_router_id),
            priority: u32::from(self.priority),
            advert_interval_ms: self.advert_interval_ms,
            servers: self
                .servers
                .iter()
                .map(|s| VipServerDoc {
                    name: s.name.to_string(),
                    address: s.address.to_string(),
                })
                .collect(),
            announce_port: u32::from(self.announce_port),
        }
    }
}

impl Volume {
    fn to_document(&self) -> VolumeDoc {
        let (device, pool, size) = match &self.source {
            VolumeSource::Device(device) => (Some(device.to_string()), None, String::new()),
            VolumeSource::Pool { pool, size } => (None, Some(pool.to_string()), size.to_string()),
        };
        VolumeDoc {
            name: self.name.to_string(),
            device,
            pool,
            filesystem: self.filesystem.to_string(),
            mount_point: self.mount_point.to_string(),
            mount_options: self.mount_options.clone(),
            format: self.format.to_string(),
            wipe_signature: self
                .wipe_signature
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            size,
        }
    }
}

impl Persist {
    fn to_document(&self) -> PersistDoc {
        PersistDoc {
            volume: self.volume.to_string(),
            paths: self
                .paths
                .iter()
                .map(|p| PersistPathDoc {
                    path: p.path.to_string(),
                    propagation: p.propagation.to_string(),
                })
                .collect(),
        }
    }
}

impl Service {
    fn to_document(&self) -> ServiceDoc {
        ServiceDoc {
            binary: self.binary.to_string(),
            extra_args: self.extra_args.clone(),
        }
    }
}

impl Addons {
    fn to_document(&self) -> AddonsDoc {
        AddonsDoc {
            metallb: self
                .metallb
                .as_ref()
                .map(|m| MetallbDoc {
                    enabled: true,
                    addresses: strings(&m.addresses),
                    interface: m.interface.to_string(),
                })
                .unwrap_or_default(),
            ingress_nginx: IngressNginxDoc {
                enabled: self.ingress_nginx,
            },
            cert_manager: self
                .cert_manager
                .as_ref()
                .map(|c| CertManagerDoc {
                    enabled: true,
                    email: c.email.clone(),
                    server: c.server.to_string(),
                })
                .unwrap_or_default(),
            local_path: self
                .local_path
                .as_ref()
                .map(|l| LocalPathDoc {
                    enabled: true,
                    path: l.path.to_string(),
                })
                .unwrap_or_default(),
            longhorn: self
                .longhorn
                .as_ref()
                .map(|l| LonghornDoc {
                    enabled: true,
                    data_path: l.data_path.to_string(),
                })
                .unwrap_or_default(),
        }
    }
}
