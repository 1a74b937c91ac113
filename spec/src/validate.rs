//! [`SpecDocument::validate`]: every rule, every error at once, each with its
//! field path in the document's terms.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU16;
use std::str::FromStr;

use ipnet::IpNet;

use super::document::{
    AddonsDoc, ClusterDoc, PeerDoc, PersistDoc, ServiceDoc, ServicesDoc, SpecDocument, StorageDoc,
    VipDoc, VipServerDoc, VolumeDoc, WireguardDoc,
};
use super::limits::{
    MAX_ADDRESSES, MAX_ALLOWED_IPS, MAX_ERRORS, MAX_EXTRA_ARGS, MAX_METALLB_ADDRESSES,
    MAX_MOUNT_OPTIONS, MAX_PEERS, MAX_PERSIST_PATHS, MAX_STRING_BYTES, MAX_TLS_SANS,
    MAX_TOKEN_BYTES, MAX_VIP_SERVERS, MAX_VOLUMES,
};
use super::model::{
    Addons, CertManager, Cluster, LocalPath, Longhorn, Metallb, Network, NodeSpec, Peer, Persist,
    PersistPath, Service, Services, Storage, Vip, VipServer, Volume, VolumeSource, Wireguard,
};
use super::types::{
    AbsPath, AcmeServer, AddressPool, ByteSize, Endpoint, Filesystem, FormatPolicy, Host, IfName,
    JoinUrl, Label, NodeName, Propagation, Role, Secret, WgKey, WipeSignature, nets_overlap,
    parse_network, zos_reserved,
};
use super::{REDACTED, defaults};

/// What validation knows about the host; `None` means unknown, and the
/// checks that need it are skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValidationContext {
    /// The node's own WireGuard public key: no peer may use it.
    pub own_public_key: Option<WgKey>,
    /// Filesystems the kernel supports: device volumes must use one of them.
    pub kernel_filesystems: Option<BTreeSet<String>>,
    // ---- storage ----
    /// The agent's own state dir, persisted by default
    /// (`defaults::STATE_DIR` when unknown).
    pub state_dir: Option<AbsPath>,
    /// Devices the agent must not use, as written in the document, each
    /// with why (outside the allow-list, holds / or the state dir).
    pub refused_devices: BTreeMap<String, String>,
    /// Which add-ons the node can run.
    pub addon_host: Option<AddonHost>,
    /// Where this node's services keep their data, persisted by default
    /// (`defaults` when unknown).
    pub service_dirs: Option<ServiceDirs>,
}

/// The directories of the supervised services that must survive a reboot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceDirs {
    /// k3s's data dir.
    pub k3s_data_dir: AbsPath,
    /// The kubelet's root dir (rshared).
    pub kubelet_dir: AbsPath,
    /// containerd's root.
    pub containerd_root: AbsPath,
}

impl Default for ServiceDirs {
    fn default() -> Self {
        let path = |text: &str| AbsPath::from_str(text).unwrap_or_else(|_| unreachable!());
        Self {
            k3s_data_dir: path(defaults::K3S_DATA_DIR),
            kubelet_dir: path(defaults::KUBELET_DIR),
            containerd_root: path(defaults::CONTAINERD_ROOT),
        }
    }
}

/// What the node can run of the add-ons, from their prerequisites.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddonHost {
    /// Add-ons (by their name in the spec) the node cannot run, with what
    /// it lacks.
    pub unavailable: BTreeMap<String, Vec<String>>,
    /// Interfaces MetalLB may announce on.
    pub broadcast_interfaces: BTreeSet<String>,
}

/// One fault, at a field path of the document (`storage.volumes[0].size`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", if .path.is_empty() { .message.clone() } else { format!("{}: {}", .path, .message) })]
pub struct FieldError {
    /// Where, in the document's terms; empty for a note about the whole list.
    pub path: String,
    /// What is wrong (never a secret).
    pub message: String,
}

/// Every fault of a document, in document order; displayed one per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.errors))]
pub struct ValidationErrors {
    errors: Vec<FieldError>,
}

fn lines(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ValidationErrors {
    /// The faults.
    pub fn iter(&self) -> std::slice::Iter<'_, FieldError> {
        self.errors.iter()
    }

    /// How many faults are listed.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Never true for an error returned by validation.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The faults, by value.
    pub fn into_vec(self) -> Vec<FieldError> {
        self.errors
    }
}

impl<'a> IntoIterator for &'a ValidationErrors {
    type Item = &'a FieldError;
    type IntoIter = std::slice::Iter<'a, FieldError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

impl SpecDocument {
    /// Checks every rule and returns the typed spec, defaults filled in, or
    /// every fault found.
    pub fn validate(&self, ctx: &ValidationContext) -> Result<NodeSpec, ValidationErrors> {
        let mut c = Checker {
            ctx,
            errors: Vec::new(),
            dropped: 0,
        };
        let node_name = c.parse::<NodeName>("node_name", &self.node_name);
        let role = c.parse::<Role>("role", &self.role);
        let cluster = c.cluster(&self.cluster, role);
        let wireguard = c.wireguard(&self.network.wireguard, node_name.as_ref());
        let vip = c.vip(
            &self.network.vip,
            &self.cluster,
            node_name.as_ref(),
            role,
            &wireguard,
        );
        c.cluster_vs_mesh(&cluster, &wireguard);
        let volumes = c.storage(&self.storage);
        let services = c.services(&self.services);
        let addons = c.addons(&self.addons, &cluster, wireguard.interface.as_ref());
        let persist = c.persist(&self.storage.persist, volumes.as_deref(), &self.addons);

        let spec = (|| {
            Some(NodeSpec {
                node_name: node_name?,
                role: role?,
                cluster: cluster.build()?,
                network: Network {
                    wireguard: wireguard.build()?,
                    vip: vip?,
                },
                storage: Storage {
                    volumes: volumes?,
                    persist: persist?,
                },
                services: services?,
                addons: addons?,
            })
        })();
        match spec {
            Some(spec) if c.errors.is_empty() => Ok(spec),
            _ => Err(c.finish()),
        }
    }
}

// ---------------------------------------------------------------- machinery

/// Collects faults while the sections are checked.
struct Checker<'a> {
    ctx: &'a ValidationContext,
    errors: Vec<FieldError>,
    dropped: usize,
}

/// Items of a list, `None` where an item was refused; `complete` is false
/// when the list as a whole was refused.
struct Items<T> {
    items: Vec<Option<T>>,
    complete: bool,
}

impl<T> Items<T> {
    fn refused() -> Self {
        Self {
            items: Vec::new(),
            complete: false,
        }
    }

    /// The accepted items with their indices.
    fn valid(&self) -> impl Iterator<Item = (usize, &T)> {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| item.as_ref().map(|item| (i, item)))
    }

    fn all_valid(&self) -> bool {
        self.complete && self.items.iter().all(Option::is_some)
    }

    fn build(self) -> Option<Vec<T>> {
        if self.complete {
            self.items.into_iter().collect()
        } else {
            None
        }
    }
}

/// Records `key` as seen at `index`; returns where it was seen first if it
/// is a duplicate.
fn first_seen<K: Hash + Eq>(seen: &mut HashMap<K, usize>, key: K, index: usize) -> Option<usize> {
    match seen.entry(key) {
        Entry::Occupied(entry) => Some(*entry.get()),
        Entry::Vacant(entry) => {
            entry.insert(index);
            None
        }
    }
}

impl Checker<'_> {
    fn fail(&mut self, path: impl Into<String>, message: impl fmt::Display) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(FieldError {
                path: path.into(),
                message: message.to_string(),
            });
        } else {
            self.dropped += 1;
        }
    }

    fn finish(mut self) -> ValidationErrors {
        if self.dropped > 0 {
            self.errors.push(FieldError {
                path: String::new(),
                message: format!("… and {} more errors", self.dropped),
            });
        }
        if self.errors.is_empty() {
            // Unreachable by construction: a part is missing only after a fault.
            self.errors.push(FieldError {
                path: String::new(),
                message: "invalid spec".to_owned(),
            });
        }
        ValidationErrors {
            errors: self.errors,
        }
    }

    fn fits(&mut self, path: &str, text: &str) -> bool {
        if text.len() > MAX_STRING_BYTES {
            self.fail(path, format!("longer than {MAX_STRING_BYTES} bytes"));
            return false;
        }
        true
    }

    /// A list's length against its limit.
    fn list_fits(&mut self, path: &str, len: usize, max: usize) -> bool {
        if len > max {
            self.fail(path, format!("at most {max} entries, not {len}"));
            return false;
        }
        true
    }

    fn parse<T>(&mut self, path: &str, text: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        if !self.fits(path, text) {
            return None;
        }
        match text.parse() {
            Ok(value) => Some(value),
            Err(err) => {
                self.fail(path, err);
                None
            }
        }
    }

    /// Like [`parse`](Self::parse), with `default` standing in for an empty value.
    fn parse_or<T>(&mut self, path: &str, text: &str, default: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.parse(path, if text.is_empty() { default } else { text })
    }

    fn ip(&mut self, path: &str, text: &str) -> Option<IpAddr> {
        if text.is_empty() {
            self.fail(path, "required");
            return None;
        }
        if !self.fits(path, text) {
            return None;
        }
        match text.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                let hint = if text.contains('/') {
                    " (without a prefix length)"
                } else {
                    ""
                };
                self.fail(path, format!("not an IP address{hint}"));
                None
            }
        }
    }

    fn network(&mut self, path: &str, text: &str) -> Option<IpNet> {
        if !self.fits(path, text) {
            return None;
        }
        match parse_network(text) {
            Ok(net) => Some(net),
            Err(err) => {
                self.fail(path, err);
                None
            }
        }
    }

    fn not_reserved(&mut self, path: &str, net: &IpNet) -> bool {
        let mut ok = true;
        for reserved in zos_reserved() {
            if nets_overlap(net, &reserved) {
                self.fail(
                    path,
                    format!("overlaps {reserved}, which zOS uses for its own networks"),
                );
                ok = false;
            }
        }
        ok
    }

    /// A directory the agent mounts or hands to an add-on.
    fn data_dir(&mut self, path: &str, text: &str, default: &str) -> Option<AbsPath> {
        let dir: AbsPath = self.parse_or(path, text, default)?;
        if dir.as_str() == "/" {
            self.fail(path, "must not be `/`");
            return None;
        }
        if SYSTEM_DIRS.contains(&dir.as_str()) {
            self.fail(path, format!("must not be {dir}, a system directory"));
            return None;
        }
        Some(dir)
    }
}

/// Mount options that are per-mount flags, not filesystem options.
pub const PER_MOUNT_FLAGS: &[&str] = &[
    "ro",
    "rw",
    "defaults",
    "noatime",
    "nodiratime",
    "relatime",
    "strictatime",
    "lazytime",
    "nosuid",
    "nodev",
    "noexec",
    "sync",
    "dirsync",
];

/// Mount points (and data directories) that would hide the system.
const SYSTEM_DIRS: &[&str] = &[
    "/proc", "/sys", "/dev", "/boot", "/usr", "/bin", "/sbin", "/lib", "/etc",
];

// ---------------------------------------------------------------- cluster

struct ClusterParts {
    token: Option<Secret>,
    join_url: Option<Option<JoinUrl>>,
    vip: Option<Option<IpAddr>>,
    tls_sans: Option<Vec<Host>>,
    cluster_cidr: Option<IpNet>,
    service_cidr: Option<IpNet>,
}

impl ClusterParts {
    fn build(self) -> Option<Cluster> {
        Some(Cluster {
            token: self.token?,
            join_url: self.join_url?,
            vip: self.vip?,
            tls_sans: self.tls_sans?,
            cluster_cidr: self.cluster_cidr?,
            service_cidr: self.service_cidr?,
        })
    }

    fn cidrs(&self) -> impl Iterator<Item = (&'static str, IpNet)> {
        [
            ("cluster.cluster_cidr", self.cluster_cidr),
            ("cluster.service_cidr", self.service_cidr),
        ]
        .into_iter()
        .filter_map(|(path, net)| net.map(|net| (path, net)))
    }
}

impl Checker<'_> {
    fn cluster(&mut self, doc: &ClusterDoc, role: Option<Role>) -> ClusterParts {
        let token = self.token(&doc.token);
        let join_url = match (role, doc.join_url.is_empty()) {
            (Some(Role::ServerInit), true) => Some(None),
            (Some(Role::ServerInit), false) => {
                self.fail(
                    "cluster.join_url",
                    "must be empty for role server-init, which starts the cluster",
                );
                None
            }
            (Some(role), true) => {
                self.fail(
                    "cluster.join_url",
                    format!("required for role {role}: the https://HOST:PORT API to join through (normally the VIP)"),
                );
                None
            }
            // The role's own fault is reported already.
            (None, true) => None,
            (_, false) => self
                .parse::<JoinUrl>("cluster.join_url", &doc.join_url)
                .map(Some),
        };
        let vip = if doc.vip.is_empty() {
            Some(None)
        } else {
            self.ip("cluster.vip", &doc.vip).map(Some)
        };
        let tls_sans = self.tls_sans(&doc.tls_sans);

        let cluster_cidr = self.cidr(
            "cluster.cluster_cidr",
            &doc.cluster_cidr,
            defaults::CLUSTER_CIDR,
        );
        let mut service_cidr = self.cidr(
            "cluster.service_cidr",
            &doc.service_cidr,
            defaults::SERVICE_CIDR,
        );
        if let (Some(cluster), Some(service)) = (cluster_cidr, service_cidr)
            && nets_overlap(&cluster, &service)
        {
            self.fail(
                "cluster.service_cidr",
                format!("overlaps cluster.cluster_cidr ({cluster})"),
            );
            service_cidr = None;
        }
        ClusterParts {
            token,
            join_url,
            vip,
            tls_sans,
            cluster_cidr,
            service_cidr,
        }
    }

    fn token(&mut self, text: &str) -> Option<Secret> {
        const PATH: &str = "cluster.token";
        // Never quote the value: it is the cluster's secret.
        let problem = if text.is_empty() {
            "required".to_owned()
        } else if text == REDACTED {
            "is the redaction placeholder from `get spec`; supply the real token".to_owned()
        } else if text.len() > MAX_TOKEN_BYTES {
            format!("longer than {MAX_TOKEN_BYTES} bytes")
        } else if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            "must not contain whitespace or control characters".to_owned()
        } else {
            return Some(Secret::new(text));
        };
        self.fail(PATH, problem);
        None
    }

    fn tls_sans(&mut self, sans: &[String]) -> Option<Vec<Host>> {
        if !self.list_fits("cluster.tls_sans", sans.len(), MAX_TLS_SANS) {
            return None;
        }
        let mut seen = HashMap::new();
        let mut items = Vec::with_capacity(sans.len());
        for (i, text) in sans.iter().enumerate() {
            let path = format!("cluster.tls_sans[{i}]");
            let host = self.parse::<Host>(&path, text);
            let host = match host {
                Some(host) => match first_seen(&mut seen, host.clone(), i) {
                    Some(first) => {
                        self.fail(path, format!("duplicate of tls_sans[{first}]"));
                        None
                    }
                    None => Some(host),
                },
                None => None,
            };
            items.push(host);
        }
        items.into_iter().collect()
    }

    fn cidr(&mut self, path: &str, text: &str, default: &str) -> Option<IpNet> {
        let net = self.network(path, if text.is_empty() { default } else { text })?;
        self.not_reserved(path, &net).then_some(net)
    }
}

// ---------------------------------------------------------------- wireguard

struct WireguardParts {
    interface: Option<IfName>,
    listen_port: Option<u16>,
    addresses: Items<IpNet>,
    mtu: Option<u32>,
    peers: Items<PeerParts>,
}

struct PeerParts {
    name: Option<NodeName>,
    public_key: Option<WgKey>,
    endpoint: Option<Option<Endpoint>>,
    allowed_ips: Items<IpNet>,
    persistent_keepalive: Option<Option<NonZeroU16>>,
}

impl WireguardParts {
    fn build(self) -> Option<Wireguard> {
        let peers = self
            .peers
            .build()?
            .into_iter()
            .map(PeerParts::build)
            .collect::<Option<Vec<_>>>()?;
        Some(Wireguard {
            interface: self.interface?,
            listen_port: self.listen_port?,
            addresses: self.addresses.build()?,
            mtu: self.mtu?,
            peers,
        })
    }

    /// The index and parts of the peer called `name`.
    fn peer(&self, name: &NodeName) -> Option<(usize, &PeerParts)> {
        self.peers
            .valid()
            .find(|(_, peer)| peer.name.as_ref() == Some(name))
    }
}

impl PeerParts {
    fn build(self) -> Option<Peer> {
        Some(Peer {
            name: self.name?,
            public_key: self.public_key?,
            endpoint: self.endpoint?,
            allowed_ips: self.allowed_ips.build()?,
            persistent_keepalive: self.persistent_keepalive?,
        })
    }
}

/// Interface names zOS gives its own networks.
fn zos_owned_interface(name: &str) -> bool {
    ["w-", "n-", "b-"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || name == "br-ndmz"
        || name == "br-pub"
}

impl Checker<'_> {
    fn wireguard(&mut self, doc: &WireguardDoc, node_name: Option<&NodeName>) -> WireguardParts {
        const BASE: &str = "network.wireguard";
        let mut interface = self.parse_or::<IfName>(
            "network.wireguard.interface",
            &doc.interface,
            defaults::WG_INTERFACE,
        );
        if let Some(name) = &interface
            && zos_owned_interface(name.as_str())
        {
            self.fail(
                "network.wireguard.interface",
                "names starting with w-, n- or b- and br-ndmz and br-pub belong to zOS's own networks",
            );
            interface = None;
        }
        let listen_port = match doc.listen_port {
            0 => Some(defaults::WG_LISTEN_PORT),
            port => {
                let port = u16::try_from(port).ok();
                if port.is_none() {
                    self.fail(format!("{BASE}.listen_port"), "must be 1..=65535");
                }
                port
            }
        };
        let addresses = self.wg_addresses(&doc.addresses);
        let mtu = match doc.mtu {
            0 => Some(defaults::WG_MTU),
            mtu if (1280..=9000).contains(&mtu) => Some(mtu),
            _ => {
                self.fail(format!("{BASE}.mtu"), "must be 1280..=9000");
                None
            }
        };
        let peers = self.peers(&doc.peers, node_name);
        WireguardParts {
            interface,
            listen_port,
            addresses,
            mtu,
            peers,
        }
    }

    fn wg_addresses(&mut self, addresses: &[String]) -> Items<IpNet> {
        const PATH: &str = "network.wireguard.addresses";
        if addresses.is_empty() {
            self.fail(
                PATH,
                "required: this node's address on the mesh, e.g. 10.100.0.1/24",
            );
            return Items::refused();
        }
        if !self.list_fits(PATH, addresses.len(), MAX_ADDRESSES) {
            return Items::refused();
        }
        let mut seen = HashMap::new();
        let items = addresses
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let path = format!("{PATH}[{i}]");
                let net = self.interface_address(&path, text)?;
                if let Some(first) = first_seen(&mut seen, net.addr(), i) {
                    self.fail(path, format!("same address as addresses[{first}]"));
                    return None;
                }
                Some(net)
            })
            .collect();
        Items {
            items,
            complete: true,
        }
    }

    /// An address with its prefix length, host bits allowed (`10.100.0.2/24`).
    fn interface_address(&mut self, path: &str, text: &str) -> Option<IpNet> {
        if text.is_empty() {
            self.fail(path, "required");
            return None;
        }
        if !self.fits(path, text) {
            return None;
        }
        let Ok(net) = text.parse::<IpNet>() else {
            let message = match text.parse::<IpAddr>() {
                Ok(ip) => format!("needs a prefix length, e.g. {ip}/24"),
                Err(_) => "not an address with a prefix length (e.g. 10.100.0.1/24)".to_owned(),
            };
            self.fail(path, message);
            return None;
        };
        if let IpNet::V4(v4) = net
            && v4.prefix_len() <= 30
        {
            if v4.addr() == v4.network() {
                self.fail(path, format!("is the network address of {}", v4.trunc()));
                return None;
            }
            if v4.addr() == v4.broadcast() {
                self.fail(path, format!("is the broadcast address of {}", v4.trunc()));
                return None;
            }
        }
        self.not_reserved(path, &net.trunc()).then_some(net)
    }

    fn peers(&mut self, peers: &[PeerDoc], node_name: Option<&NodeName>) -> Items<PeerParts> {
        if !self.list_fits("network.wireguard.peers", peers.len(), MAX_PEERS) {
            return Items::refused();
        }
        let mut names = HashMap::new();
        let mut keys = HashMap::new();
        let mut claimed = HashMap::new();
        let items = peers
            .iter()
            .enumerate()
            .map(|(i, doc)| Some(self.peer(i, doc, node_name, &mut names, &mut keys, &mut claimed)))
            .collect();
        Items {
            items,
            complete: true,
        }
    }

    fn peer(
        &mut self,
        i: usize,
        doc: &PeerDoc,
        node_name: Option<&NodeName>,
        names: &mut HashMap<NodeName, usize>,
        keys: &mut HashMap<WgKey, usize>,
        claimed: &mut HashMap<IpNet, usize>,
    ) -> PeerParts {
        let base = format!("network.wireguard.peers[{i}]");

        let path = format!("{base}.name");
        let mut name = self.parse::<NodeName>(&path, &doc.name);
        if let Some(n) = &name {
            if let Some(first) = first_seen(names, n.clone(), i) {
                self.fail(&path, format!("duplicate peer name, also peers[{first}]"));
                name = None;
            } else if Some(n) == node_name {
                self.fail(&path, "is this node's own name (node_name)");
                name = None;
            }
        }

        let path = format!("{base}.public_key");
        let mut public_key = self.parse::<WgKey>(&path, &doc.public_key);
        if let Some(key) = public_key {
            if let Some(first) = first_seen(keys, key, i) {
                self.fail(&path, format!("same key as peers[{first}]"));
                public_key = None;
            } else if self.ctx.own_public_key == Some(key) {
                self.fail(&path, "is this node's own public key");
                public_key = None;
            }
        }

        let endpoint = if doc.endpoint.is_empty() {
            Some(None)
        } else {
            self.parse::<Endpoint>(&format!("{base}.endpoint"), &doc.endpoint)
                .map(Some)
        };

        let allowed_ips = self.allowed_ips(&base, i, &doc.allowed_ips, claimed);

        let persistent_keepalive = match u16::try_from(doc.persistent_keepalive) {
            Ok(seconds) => Some(NonZeroU16::new(seconds)),
            Err(_) => {
                self.fail(
                    format!("{base}.persistent_keepalive"),
                    "must be at most 65535 seconds (0 disables it)",
                );
                None
            }
        };
        PeerParts {
            name,
            public_key,
            endpoint,
            allowed_ips,
            persistent_keepalive,
        }
    }

    fn allowed_ips(
        &mut self,
        base: &str,
        peer: usize,
        texts: &[String],
        claimed: &mut HashMap<IpNet, usize>,
    ) -> Items<IpNet> {
        let list = format!("{base}.allowed_ips");
        if !self.list_fits(&list, texts.len(), MAX_ALLOWED_IPS) {
            return Items::refused();
        }
        let items = texts
            .iter()
            .enumerate()
            .map(|(k, text)| {
                let path = format!("{list}[{k}]");
                let net = self.network(&path, text)?;
                match first_seen(claimed, net, peer) {
                    Some(owner) if owner == peer => {
                        self.fail(path, "listed twice");
                        None
                    }
                    // WireGuard would silently move it to whichever peer came last.
                    Some(owner) => {
                        self.fail(path, format!("also claimed by peers[{owner}]"));
                        None
                    }
                    None => Some(net),
                }
            })
            .collect();
        Items {
            items,
            complete: true,
        }
    }
}

// ---------------------------------------------------------------- vip

impl Checker<'_> {
    fn vip(
        &mut self,
        doc: &VipDoc,
        cluster: &ClusterDoc,
        node_name: Option<&NodeName>,
        role: Option<Role>,
        wg: &WireguardParts,
    ) -> Option<Option<Vip>> {
        const BASE: &str = "network.vip";
        if *doc == VipDoc::default() {
            return Some(None);
        }
        let mut complete = true;
        if cluster.vip.is_empty() {
            self.fail(BASE, "needs cluster.vip, the address the servers share");
            complete = false;
        }
        let virtual_router_id = match doc.virtual_router_id {
            0 => Some(defaults::VIP_VIRTUAL_ROUTER_ID),
            id => u8::try_from(id).ok(),
        };
        if virtual_router_id.is_none() {
            self.fail(format!("{BASE}.virtual_router_id"), "must be 1..=255");
        }
        let priority = match doc.priority {
            0 => Some(defaults::VIP_PRIORITY),
            p if p <= 254 => u8::try_from(p).ok(),
            _ => None,
        };
        if priority.is_none() {
            self.fail(
                format!("{BASE}.priority"),
                "must be 1..=254 (VRRP keeps 255 for the address owner)",
            );
        }
        let advert_interval_ms = match doc.advert_interval_ms {
            0 => Some(defaults::VIP_ADVERT_INTERVAL_MS),
            ms if (10..=40950).contains(&ms) && ms.is_multiple_of(10) => Some(ms),
            _ => {
                self.fail(
                    format!("{BASE}.advert_interval_ms"),
                    "must be 10..=40950 and a multiple of 10 (VRRPv3 counts centiseconds)",
                );
                None
            }
        };
        let announce_port = match doc.announce_port {
            0 => Some(defaults::VIP_ANNOUNCE_PORT),
            port => u16::try_from(port).ok(),
        };
        if announce_port.is_none() {
            self.fail(format!("{BASE}.announce_port"), "must be 1..=65535");
        }
        let servers = self.vip_servers(&doc.servers, node_name, role, wg);
        // VRRP runs one address family per instance.
        if let (Some(servers), Ok(vip)) = (&servers, cluster.vip.parse::<IpAddr>()) {
            for (i, server) in servers.iter().enumerate() {
                if server.address.is_ipv4() != vip.is_ipv4() {
                    self.fail(
                        format!("{BASE}.servers[{i}].address"),
                        format!("not the address family of cluster.vip ({vip})"),
                    );
                    complete = false;
                }
            }
        }
        if !complete {
            return None;
        }
        Some(Some(Vip {
            virtual_router_id: virtual_router_id?,
            priority: priority?,
            advert_interval_ms: advert_interval_ms?,
            servers: servers?,
            announce_port: announce_port?,
        }))
    }

    fn vip_servers(
        &mut self,
        servers: &[VipServerDoc],
        node_name: Option<&NodeName>,
        role: Option<Role>,
        wg: &WireguardParts,
    ) -> Option<Vec<VipServer>> {
        const PATH: &str = "network.vip.servers";
        if servers.is_empty() {
            self.fail(
                PATH,
                "required: the servers that may hold the VIP, this node included if it is a server",
            );
            return None;
        }
        if !self.list_fits(PATH, servers.len(), MAX_VIP_SERVERS) {
            return None;
        }
        // Only claim "no such peer" when every peer name could be read.
        let peer_names_known =
            wg.peers.all_valid() && wg.peers.valid().all(|(_, p)| p.name.is_some());
        let mut names = HashMap::new();
        let mut addresses = HashMap::new();
        let mut own_listed = false;
        let mut items = Vec::with_capacity(servers.len());
        for (i, doc) in servers.iter().enumerate() {
            let name_path = format!("{PATH}[{i}].name");
            let address_path = format!("{PATH}[{i}].address");
            let mut name = self.parse::<NodeName>(&name_path, &doc.name);
            let mut address = self.ip(&address_path, &doc.address);
            if let Some(n) = &name
                && let Some(first) = first_seen(&mut names, n.clone(), i)
            {
                self.fail(&name_path, format!("duplicate, also servers[{first}]"));
                name = None;
            }
            if let Some(ip) = address
                && let Some(first) = first_seen(&mut addresses, ip, i)
            {
                self.fail(&address_path, format!("same address as servers[{first}]"));
                address = None;
            }
            if let Some(n) = &name {
                if Some(n) == node_name {
                    own_listed = true;
                    if role == Some(Role::Agent) {
                        self.fail(
                            &name_path,
                            "is this node, an agent; only servers may hold the VIP",
                        );
                        name = None;
                    }
                    if let Some(ip) = address
                        && wg.addresses.all_valid()
                        && !wg.addresses.valid().any(|(_, net)| net.addr() == ip)
                    {
                        self.fail(
                            &address_path,
                            "not one of this node's network.wireguard.addresses",
                        );
                        address = None;
                    }
                } else if let Some((j, peer)) = wg.peer(n) {
                    if let Some(ip) = address
                        && peer.allowed_ips.all_valid()
                        && !peer.allowed_ips.valid().any(|(_, net)| net.contains(&ip))
                    {
                        self.fail(
                            &address_path,
                            format!(
                                "not inside the allowed_ips of network.wireguard.peers[{j}] ({n})"
                            ),
                        );
                        address = None;
                    }
                } else if node_name.is_some() && peer_names_known {
                    self.fail(
                        &name_path,
                        "neither this node (node_name) nor a peer in network.wireguard.peers",
                    );
                    name = None;
                }
            }
            items.push(
                name.zip(address)
                    .map(|(name, address)| VipServer { name, address }),
            );
        }
        if let (Some(own), Some(role)) = (node_name, role)
            && role.is_server()
            && !own_listed
        {
            self.fail(
                PATH,
                format!("must include this node ({own}): it is a server"),
            );
            return None;
        }
        items.into_iter().collect()
    }

    /// Rules that tie `cluster` to the mesh.
    fn cluster_vs_mesh(&mut self, cluster: &ClusterParts, wg: &WireguardParts) {
        for (i, address) in wg.addresses.valid() {
            let mesh = address.trunc();
            for (path, net) in cluster.cidrs() {
                if nets_overlap(&net, &mesh) {
                    self.fail(
                        path,
                        format!(
                            "overlaps the mesh network {mesh} (network.wireguard.addresses[{i}])"
                        ),
                    );
                }
            }
        }
        let Some(Some(vip)) = cluster.vip else { return };
        for (i, address) in wg.addresses.valid() {
            if address.addr() == vip {
                self.fail(
                    "cluster.vip",
                    format!("is this node's own address (network.wireguard.addresses[{i}])"),
                );
            }
        }
        for (j, peer) in wg.peers.valid() {
            for (k, net) in peer.allowed_ips.valid() {
                if net.contains(&vip) {
                    self.fail(
                        "cluster.vip",
                        format!(
                            "lies inside network.wireguard.peers[{j}].allowed_ips[{k}] ({net}); \
                             the agent routes the VIP itself, leave it out of allowed_ips"
                        ),
                    );
                }
            }
        }
        for (path, net) in cluster.cidrs() {
            if net.contains(&vip) {
                self.fail("cluster.vip", format!("lies inside {path} ({net})"));
            }
        }
    }
}

// ---------------------------------------------------------------- storage

impl Checker<'_> {
    fn storage(&mut self, doc: &StorageDoc) -> Option<Vec<Volume>> {
        if !self.list_fits("storage.volumes", doc.volumes.len(), MAX_VOLUMES) {
            return None;
        }
        let mut names = HashMap::new();
        let mut mounts = HashMap::new();
        let mut devices = HashMap::new();
        let volumes: Vec<Option<Volume>> = doc
            .volumes
            .iter()
            .enumerate()
            .map(|(i, volume)| self.volume(i, volume, &mut names, &mut mounts, &mut devices))
            .collect();
        let nested_ok = self.volume_nesting(&volumes);
        let volumes: Vec<Volume> = volumes.into_iter().collect::<Option<_>>()?;
        nested_ok.then_some(volumes)
    }

    /// A volume mounted over a pool (or a pool inside a volume's mount
    /// point) would hide the pool the subvolumes live in.
    fn volume_nesting(&mut self, volumes: &[Option<Volume>]) -> bool {
        let mut ok = true;
        let valid = || {
            volumes
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Some((i, v.as_ref()?)))
        };
        for (i, volume) in valid() {
            for (j, other) in valid() {
                let VolumeSource::Pool { pool, .. } = &other.source else {
                    continue;
                };
                if volume.mount_point.is_within(pool) {
                    self.fail(
                        format!("storage.volumes[{i}].mount_point"),
                        format!(
                            "lies in pool {pool} of volumes[{j}]; mount volumes outside the pools"
                        ),
                    );
                    ok = false;
                } else if pool.is_within(&volume.mount_point) {
                    self.fail(
                        format!("storage.volumes[{i}].mount_point"),
                        format!("would hide pool {pool} of volumes[{j}], which lies inside it"),
                    );
                    ok = false;
                }
            }
        }
        ok
    }

    // ---- storage.persist ----

    /// The persisted paths: as written, or the defaults every role needs,
    /// less those a volume already covers.
    fn persist(
        &mut self,
        doc: &PersistDoc,
        volumes: Option<&[Volume]>,
        addons: &AddonsDoc,
    ) -> Option<Option<Persist>> {
        let base = "storage.persist";
        if !self.list_fits(&format!("{base}.paths"), doc.paths.len(), MAX_PERSIST_PATHS) {
            return None;
        }
        // Where Longhorn keeps its data; its directory needs rshared.
        let longhorn: AbsPath = if addons.longhorn.data_path.is_empty() {
            defaults::LONGHORN_DATA_PATH.parse().ok()?
        } else {
            addons
                .longhorn
                .data_path
                .parse()
                .unwrap_or(defaults::LONGHORN_DATA_PATH.parse().ok()?)
        };
        let dirs = self.ctx.service_dirs.clone().unwrap_or_default();
        let rshared_by_default = |path: &AbsPath| *path == dirs.kubelet_dir || *path == longhorn;
        if volumes.is_some_and(<[Volume]>::is_empty)
            || (volumes.is_none() && doc == &PersistDoc::default())
        {
            if doc != &PersistDoc::default() {
                self.fail(
                    base,
                    "needs a volume to keep the paths on; add one to storage.volumes",
                );
                return None;
            }
            return Some(None);
        }
        let volume_path = format!("{base}.volume");
        let volume = if doc.volume.is_empty() {
            volumes.and_then(|v| v.first()).map(|v| v.name.clone())
        } else {
            let name = self.parse::<Label>(&volume_path, &doc.volume)?;
            if let Some(volumes) = volumes
                && !volumes.iter().any(|v| v.name == name)
            {
                self.fail(&volume_path, format!("no volume is named {name}"));
                return None;
            }
            Some(name)
        };
        let volumes = volumes?;
        let volume = volume?;
        let holder = volumes.iter().find(|v| v.name == volume)?;
        let covering = |path: &AbsPath| volumes.iter().find(|v| path.is_within(&v.mount_point));

        // The agent's own state dir is never bind-mounted: the agent holds
        // it open from its start, before storage runs, so a mount over it
        // would hide the spec it booted from. It belongs on persistent
        // storage by the boot config (zOS keeps /var/cache/modules).
        let state_dir = self
            .ctx
            .state_dir
            .clone()
            .or_else(|| defaults::STATE_DIR.parse().ok());
        let mut paths: Vec<PersistPath> = Vec::new();
        if doc.paths.is_empty() {
            let local_path = if addons.local_path.path.is_empty() {
                defaults::LOCAL_PATH_PATH.parse().ok()
            } else {
                addons.local_path.path.parse().ok()
            };
            let wanted = [
                defaults::RANCHER_ETC.parse().ok(),
                Some(dirs.k3s_data_dir.clone()),
                Some(dirs.kubelet_dir.clone()),
                Some(longhorn.clone()),
                Some(dirs.containerd_root.clone()),
                local_path,
            ];
            for path in wanted.into_iter().flatten() {
                let nested = paths.iter().any(|p: &PersistPath| path.is_within(&p.path));
                if covering(&path).is_some() || nested || holder.mount_point.is_within(&path) {
                    continue;
                }
                let propagation = if rshared_by_default(&path) {
                    Propagation::Rshared
                } else {
                    Propagation::Private
                };
                paths.push(PersistPath { path, propagation });
            }
            return Some(Some(Persist { volume, paths }));
        }

        let mut ok = true;
        let mut seen = HashMap::new();
        for (k, entry) in doc.paths.iter().enumerate() {
            let path_field = format!("{base}.paths[{k}].path");
            let Some(path) = self.data_dir(&path_field, &entry.path, "") else {
                ok = false;
                continue;
            };
            if let Some(first) = first_seen(&mut seen, path.clone(), k) {
                self.fail(&path_field, format!("also paths[{first}]"));
                ok = false;
                continue;
            }
            if let Some(v) = covering(&path) {
                self.fail(
                    &path_field,
                    format!(
                        "already on volume {} (mounted at {})",
                        v.name, v.mount_point
                    ),
                );
                ok = false;
            }
            if holder.mount_point.is_within(&path) {
                self.fail(
                    &path_field,
                    format!(
                        "would hide volume {} at {}, which holds the persisted paths",
                        holder.name, holder.mount_point
                    ),
                );
                ok = false;
            }
            if let Some(state) = &state_dir
                && (state.is_within(&path) || path.is_within(state))
            {
                self.fail(
                    &path_field,
                    format!(
                        "holds the agent's own state dir {state}, which the agent keeps open: \
                         point the boot config's state_dir at persistent storage instead"
                    ),
                );
                ok = false;
            }
            let propagation = if entry.propagation.is_empty() {
                Some(if rshared_by_default(&path) {
                    Propagation::Rshared
                } else {
                    Propagation::Private
                })
            } else {
                self.parse::<Propagation>(
                    &format!("{base}.paths[{k}].propagation"),
                    &entry.propagation,
                )
            };
            match propagation {
                Some(propagation) => paths.push(PersistPath { path, propagation }),
                None => ok = false,
            }
        }
        for (k, entry) in paths.iter().enumerate() {
            if let Some((j, outer)) = paths
                .iter()
                .enumerate()
                .find(|(j, other)| *j != k && entry.path.is_within(&other.path))
            {
                self.fail(
                    format!("{base}.paths[{k}].path"),
                    format!(
                        "lies inside paths[{j}] ({}); persist one or the other",
                        outer.path
                    ),
                );
                ok = false;
            }
        }
        ok.then_some(Some(Persist { volume, paths }))
    }

    fn volume(
        &mut self,
        i: usize,
        doc: &VolumeDoc,
        names: &mut HashMap<Label, usize>,
        mounts: &mut HashMap<AbsPath, usize>,
        devices: &mut HashMap<String, usize>,
    ) -> Option<Volume> {
        let base = format!("storage.volumes[{i}]");
        let mut name = self.parse::<Label>(&format!("{base}.name"), &doc.name);
        if let Some(n) = &name
            && let Some(first) = first_seen(names, n.clone(), i)
        {
            self.fail(
                format!("{base}.name"),
                format!("duplicate volume name, also volumes[{first}]"),
            );
            name = None;
        }
        let format =
            self.parse_or::<FormatPolicy>(&format!("{base}.format"), &doc.format, "if-blank");
        let filesystem =
            self.parse_or::<Filesystem>(&format!("{base}.filesystem"), &doc.filesystem, "btrfs");
        let mut source = self.volume_source(&base, doc, filesystem, format);
        if let Some(VolumeSource::Device(device)) = &source
            && let Some(first) = first_seen(devices, device.to_string(), i)
        {
            self.fail(
                format!("{base}.device"),
                format!("also the device of volumes[{first}]"),
            );
            source = None;
        }
        let mount_point = self.mount_point(&base, &doc.mount_point, mounts, i);
        let mut mount_options = self.mount_options(&base, &doc.mount_options);
        if let (Some(VolumeSource::Pool { .. }), Some(options)) = (&source, &mount_options)
            && let Some(k) = options
                .iter()
                .position(|o| !PER_MOUNT_FLAGS.contains(&o.as_str()))
        {
            self.fail(
                format!("{base}.mount_options[{k}]"),
                format!(
                    "a pool volume shares its pool's filesystem, so only per-mount flags apply ({})",
                    PER_MOUNT_FLAGS.join(", ")
                ),
            );
            mount_options = None;
        }

        let path = format!("{base}.wipe_signature");
        let wipe_signature = if doc.wipe_signature.is_empty() {
            if format == Some(FormatPolicy::Wipe) {
                self.fail(
                    &path,
                    "required with format wipe: `blank` or the filesystem UUID now on the device, \
                     so a stale spec can never wipe a reused disk",
                );
                None
            } else {
                Some(None)
            }
        } else {
            let signature = self.parse::<WipeSignature>(&path, &doc.wipe_signature);
            if signature.is_some() && format.is_some_and(|f| f != FormatPolicy::Wipe) {
                self.fail(&path, "only allowed with format: wipe");
                None
            } else {
                signature.map(Some)
            }
        };
        Some(Volume {
            name: name?,
            source: source?,
            filesystem: filesystem?,
            mount_point: mount_point?,
            mount_options: mount_options?,
            format: format?,
            wipe_signature: wipe_signature?,
        })
    }

    fn volume_source(
        &mut self,
        base: &str,
        doc: &VolumeDoc,
        filesystem: Option<Filesystem>,
        format: Option<FormatPolicy>,
    ) -> Option<VolumeSource> {
        match (&doc.device, &doc.pool) {
            (Some(_), Some(_)) => {
                self.fail(base, "has both device and pool; give exactly one");
                None
            }
            (None, None) => {
                self.fail(base, "needs a device or a pool");
                None
            }
            (Some(device), None) => {
                let path = format!("{base}.device");
                let mut device = self.parse::<AbsPath>(&path, device);
                if let Some(dev) = &device
                    && !(dev.as_str().starts_with("/dev/"))
                {
                    self.fail(&path, "must be a block device under /dev/");
                    device = None;
                }
                if let Some(dev) = &device
                    && let Some(reason) = self.ctx.refused_devices.get(dev.as_str())
                {
                    self.fail(&path, reason);
                    device = None;
                }
                let mut ok = true;
                if !doc.size.is_empty() {
                    self.fail(
                        format!("{base}.size"),
                        "only a pool volume takes a size; a device volume is the whole device",
                    );
                    ok = false;
                }
                if let (Some(fs), Some(supported)) = (filesystem, &self.ctx.kernel_filesystems)
                    && !supported.contains(fs.as_str())
                {
                    let list = supported.iter().cloned().collect::<Vec<_>>().join(", ");
                    self.fail(
                        format!("{base}.filesystem"),
                        format!("the kernel does not support {fs} (it has: {list})"),
                    );
                    ok = false;
                }
                device.filter(|_| ok).map(VolumeSource::Device)
            }
            (None, Some(pool)) => {
                let pool = self.parse::<AbsPath>(&format!("{base}.pool"), pool);
                let path = format!("{base}.size");
                let size = if doc.size.is_empty() {
                    self.fail(&path, "required for a pool volume: its quota, e.g. 50GiB");
                    None
                } else {
                    self.parse::<ByteSize>(&path, &doc.size)
                };
                let size = match size {
                    Some(size) if size.bytes() == 0 => {
                        self.fail(&path, "must be more than zero");
                        None
                    }
                    size => size,
                };
                let mut ok = true;
                if filesystem.is_some_and(|fs| fs != Filesystem::Btrfs) {
                    self.fail(
                        format!("{base}.filesystem"),
                        "a pool volume is a btrfs subvolume; leave filesystem empty or btrfs",
                    );
                    ok = false;
                }
                if format == Some(FormatPolicy::Wipe) {
                    self.fail(
                        format!("{base}.format"),
                        "a pool volume is never formatted; wipe is for devices",
                    );
                    ok = false;
                }
                let (pool, size) = (pool?, size?);
                ok.then_some(VolumeSource::Pool { pool, size })
            }
        }
    }

    fn mount_point(
        &mut self,
        base: &str,
        text: &str,
        mounts: &mut HashMap<AbsPath, usize>,
        i: usize,
    ) -> Option<AbsPath> {
        let path = format!("{base}.mount_point");
        if text.is_empty() {
            self.fail(&path, "required");
            return None;
        }
        let mount_point = self.data_dir(&path, text, "")?;
        if let Some(first) = first_seen(mounts, mount_point.clone(), i) {
            self.fail(&path, format!("also the mount point of volumes[{first}]"));
            return None;
        }
        Some(mount_point)
    }

    fn mount_options(&mut self, base: &str, options: &[String]) -> Option<Vec<String>> {
        let list = format!("{base}.mount_options");
        if !self.list_fits(&list, options.len(), MAX_MOUNT_OPTIONS) {
            return None;
        }
        let mut ok = true;
        for (k, option) in options.iter().enumerate() {
            let path = format!("{list}[{k}]");
            if !self.fits(&path, option) {
                ok = false;
            } else if option.is_empty() {
                self.fail(path, "empty option");
                ok = false;
            } else if option
                .chars()
                .any(|c| c == ',' || c.is_whitespace() || c.is_control())
            {
                self.fail(
                    path,
                    "one option per entry, without commas, whitespace or control characters",
                );
                ok = false;
            }
        }
        ok.then(|| options.to_vec())
    }
}

// ---------------------------------------------------------------- services

/// A flag the agent sets itself, and what governs it instead.
struct ManagedFlag {
    /// Long name, then any short aliases.
    names: &'static [&'static str],
    instead: &'static str,
}

const K3S_MANAGED: &[ManagedFlag] = &[
    ManagedFlag {
        names: &["token", "t"],
        instead: "set cluster.token instead",
    },
    ManagedFlag {
        names: &["token-file"],
        instead: "set cluster.token instead",
    },
    ManagedFlag {
        names: &["server", "s"],
        instead: "set cluster.join_url instead",
    },
    ManagedFlag {
        names: &["cluster-init"],
        instead: "it follows role",
    },
    ManagedFlag {
        names: &["node-ip", "i"],
        instead: "it follows network.wireguard.addresses",
    },
    ManagedFlag {
        names: &["node-name"],
        instead: "it follows node_name",
    },
    ManagedFlag {
        names: &["flannel-iface"],
        instead: "it follows network.wireguard.interface",
    },
    ManagedFlag {
        names: &["data-dir", "d"],
        instead: "put k3s's data on disk through storage.volumes",
    },
    ManagedFlag {
        names: &["tls-san"],
        instead: "set cluster.tls_sans instead",
    },
    ManagedFlag {
        names: &["cluster-cidr"],
        instead: "set cluster.cluster_cidr instead",
    },
    ManagedFlag {
        names: &["service-cidr"],
        instead: "set cluster.service_cidr instead",
    },
    ManagedFlag {
        names: &["container-runtime-endpoint"],
        instead: "k3s uses the containerd of services.containerd",
    },
    ManagedFlag {
        names: &["config", "c"],
        instead: "the agent renders k3s's config from this spec",
    },
    // Flags whose values are secrets: extra_args are stored and shown in
    // clear, so a secret must never travel in them.
    ManagedFlag {
        names: &["agent-token"],
        instead: SECRET_FLAG,
    },
    ManagedFlag {
        names: &["agent-token-file"],
        instead: SECRET_FLAG,
    },
    ManagedFlag {
        names: &["datastore-endpoint"],
        instead: "the cluster uses embedded etcd, and the endpoint may hold a password",
    },
    ManagedFlag {
        names: &["etcd-s3-access-key"],
        instead: SECRET_FLAG,
    },
    ManagedFlag {
        names: &["etcd-s3-secret-key"],
        instead: SECRET_FLAG,
    },
    ManagedFlag {
        names: &["etcd-s3-session-token"],
        instead: SECRET_FLAG,
    },
    ManagedFlag {
        names: &["vpn-auth"],
        instead: SECRET_FLAG,
    },
    ManagedFlag {
        names: &["vpn-auth-file"],
        instead: SECRET_FLAG,
    },
];

const SECRET_FLAG: &str =
    "its value is a secret, and extra_args are stored and shown in clear; not supported";

const CONTAINERD_MANAGED: &[ManagedFlag] = &[
    ManagedFlag {
        names: &["config", "c"],
        instead: "the agent renders containerd's config from this spec",
    },
    ManagedFlag {
        names: &["address", "a"],
        instead: "the agent chooses the socket (zOS's own containerd holds /run/containerd)",
    },
    ManagedFlag {
        names: &["root"],
        instead: "put containerd's data on disk through storage.volumes",
    },
    ManagedFlag {
        names: &["state"],
        instead: "the agent chooses it",
    },
];

/// The managed flag `arg` sets, if any. Go's flag parsing (k3s, containerd)
/// takes `-flag` and `--flag`, each alone or as `=value`.
fn managed_flag<'a>(arg: &str, managed: &'a [ManagedFlag]) -> Option<&'a ManagedFlag> {
    let name = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    let name = name.split_once('=').map_or(name, |(name, _)| name);
    managed.iter().find(|flag| flag.names.contains(&name))
}

impl Checker<'_> {
    fn services(&mut self, doc: &ServicesDoc) -> Option<Services> {
        let containerd = self.service(
            "services.containerd",
            &doc.containerd,
            defaults::CONTAINERD_BINARY,
            CONTAINERD_MANAGED,
        );
        let k3s = self.service("services.k3s", &doc.k3s, defaults::K3S_BINARY, K3S_MANAGED);
        Some(Services {
            containerd: containerd?,
            k3s: k3s?,
        })
    }

    fn service(
        &mut self,
        base: &str,
        doc: &ServiceDoc,
        binary: &str,
        managed: &[ManagedFlag],
    ) -> Option<Service> {
        let binary = self.parse_or::<AbsPath>(&format!("{base}.binary"), &doc.binary, binary);
        let list = format!("{base}.extra_args");
        if !self.list_fits(&list, doc.extra_args.len(), MAX_EXTRA_ARGS) {
            return None;
        }
        let mut ok = true;
        for (k, arg) in doc.extra_args.iter().enumerate() {
            let path = format!("{list}[{k}]");
            if !self.fits(&path, arg) {
                ok = false;
            } else if arg.contains(['\0', '\n', '\r']) {
                self.fail(path, "must not contain NUL or line breaks");
                ok = false;
            } else if let Some(flag) = managed_flag(arg, managed) {
                self.fail(
                    path,
                    format!(
                        "`--{}` is managed by the agent: {}",
                        flag.names[0], flag.instead
                    ),
                );
                ok = false;
            }
        }
        Some(Service {
            binary: binary?,
            extra_args: ok.then(|| doc.extra_args.clone())?,
        })
    }
}

// ---------------------------------------------------------------- addons

/// Good enough to catch a typo or a missing field, not RFC 5322.
fn plausible_email(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    text.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| c.is_ascii_graphic() && !"@<>()[]\\,;:\"".contains(c))
        && domain.contains('.')
        && matches!(domain.parse::<Host>(), Ok(Host::Name(_)))
}

impl Checker<'_> {
    fn addons(
        &mut self,
        doc: &AddonsDoc,
        cluster: &ClusterParts,
        wg_interface: Option<&IfName>,
    ) -> Option<Addons> {
        let metallb = if doc.metallb.enabled {
            self.metallb(
                &doc.metallb.addresses,
                &doc.metallb.interface,
                cluster,
                wg_interface,
            )
            .map(Some)
        } else {
            Some(None)
        };
        let cert_manager = if doc.cert_manager.enabled {
            let path = "addons.cert_manager.email";
            let email = &doc.cert_manager.email;
            let email = if email.is_empty() {
                self.fail(
                    path,
                    "required when cert_manager is enabled: the ACME account e-mail",
                );
                None
            } else if !plausible_email(email) {
                self.fail(path, "not a plausible e-mail address");
                None
            } else {
                Some(email.clone())
            };
            let server = self.parse_or::<AcmeServer>(
                "addons.cert_manager.server",
                &doc.cert_manager.server,
                "staging",
            );
            email
                .zip(server)
                .map(|(email, server)| Some(CertManager { email, server }))
        } else {
            Some(None)
        };
        let local_path = if doc.local_path.enabled {
            self.data_dir(
                "addons.local_path.path",
                &doc.local_path.path,
                defaults::LOCAL_PATH_PATH,
            )
            .map(|path| Some(LocalPath { path }))
        } else {
            Some(None)
        };
        let longhorn = if doc.longhorn.enabled {
            self.data_dir(
                "addons.longhorn.data_path",
                &doc.longhorn.data_path,
                defaults::LONGHORN_DATA_PATH,
            )
            .map(|data_path| Some(Longhorn { data_path }))
        } else {
            Some(None)
        };
        if doc.cert_manager.enabled && !doc.ingress_nginx.enabled {
            self.fail(
                "addons.cert_manager.enabled",
                "needs ingress_nginx: Let's Encrypt's HTTP-01 challenges are answered through its ingress class",
            );
        }
        if let Some(host) = &self.ctx.addon_host {
            let enabled = [
                ("metallb", doc.metallb.enabled),
                ("ingress_nginx", doc.ingress_nginx.enabled),
                ("cert_manager", doc.cert_manager.enabled),
                ("local_path", doc.local_path.enabled),
                ("longhorn", doc.longhorn.enabled),
            ];
            for (addon, on) in enabled {
                if let (true, Some(lacks)) = (on, host.unavailable.get(addon)) {
                    self.fail(
                        format!("addons.{addon}.enabled"),
                        format!("not possible on this node: it lacks {}", lacks.join("; ")),
                    );
                }
            }
        }
        Some(Addons {
            metallb: metallb?,
            ingress_nginx: doc.ingress_nginx.enabled,
            cert_manager: cert_manager?,
            local_path: local_path?,
            longhorn: longhorn?,
        })
    }

    fn metallb(
        &mut self,
        addresses: &[String],
        interface: &str,
        cluster: &ClusterParts,
        wg_interface: Option<&IfName>,
    ) -> Option<Metallb> {
        const LIST: &str = "addons.metallb.addresses";
        let mut pools = Items {
            items: Vec::new(),
            complete: true,
        };
        if addresses.is_empty() {
            self.fail(
                LIST,
                "required when metallb is enabled: CIDRs or first-last ranges",
            );
            pools.complete = false;
        } else if !self.list_fits(LIST, addresses.len(), MAX_METALLB_ADDRESSES) {
            pools.complete = false;
        } else {
            for (k, text) in addresses.iter().enumerate() {
                let path = format!("{LIST}[{k}]");
                let mut pool = self.parse::<AddressPool>(&path, text);
                let clashes: Vec<_> = match &pool {
                    Some(p) => cluster
                        .cidrs()
                        .filter(|(_, net)| p.overlaps_net(net))
                        .collect(),
                    None => Vec::new(),
                };
                for (cidr_path, net) in clashes {
                    self.fail(&path, format!("overlaps {cidr_path} ({net})"));
                    pool = None;
                }
                if let Some(p) = &pool
                    && let Some((j, _)) = pools.valid().find(|(_, other)| p.overlaps(other))
                {
                    self.fail(&path, format!("overlaps addresses[{j}]"));
                    pool = None;
                }
                pools.items.push(pool);
            }
        }

        let path = "addons.metallb.interface";
        let interface = if interface.is_empty() {
            self.fail(
                path,
                "required when metallb is enabled: the broadcast-capable interface, e.g. eth0",
            );
            None
        } else {
            self.parse::<IfName>(path, interface)
        };
        let interface = match interface {
            Some(name) if Some(&name) == wg_interface => {
                self.fail(
                    path,
                    "is the WireGuard interface, which has no ARP: MetalLB's L2 announcements cannot work there",
                );
                None
            }
            Some(name)
                if self.ctx.addon_host.as_ref().is_some_and(|host| {
                    !host.broadcast_interfaces.is_empty()
                        && !host.broadcast_interfaces.contains(name.as_str())
                }) =>
            {
                let known: Vec<&str> = self
                    .ctx
                    .addon_host
                    .iter()
                    .flat_map(|host| host.broadcast_interfaces.iter().map(String::as_str))
                    .collect();
                self.fail(
                    path,
                    format!(
                        "{name} is not a broadcast-capable interface of this node (those are: {})",
                        known.join(", ")
                    ),
                );
                None
            }
            other => other,
        };
        Some(Metallb {
            addresses: pools.build()?,
            interface: interface?,
        })
    }
}
