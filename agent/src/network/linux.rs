//! The Linux implementations of the network ports: rtnetlink for the link,
//! generic netlink (kernel) or the UAPI socket (wireguard-go) for the
//! device. wireguard-go itself runs under the supervisor
//! (`linux/wireguard_go.rs`).

mod wireguard_go;

use std::{
    error::Error,
    io,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use async_trait::async_trait;
use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::{
    Handle, LinkUnspec, LinkWireguard, RouteMessageBuilder,
    packet_route::{
        address::AddressAttribute,
        link::{LinkAttribute, LinkFlags},
        route::{RouteAddress, RouteAttribute, RouteProtocol},
    },
};
use tokio::io::{AsyncBufReadExt, BufReader};
use wireguard_uapi::{get, xplatform};

use super::{
    backend::Backend,
    ports::{
        DeviceState, DeviceUpdate, LinkOps, LinkState, NetHost, NetHostCause, NetHostError,
        PeerState, PeerUpdate, UserspaceWg, WgOps,
    },
};
use tfagent_spec::{IfName, KeyPair, WgKey};
pub use wireguard_go::{SupervisedWireguardGo, service_name};

/// Where wireguard-go puts its control sockets (host-wide).
pub const WIREGUARD_SOCKET_DIR: &str = "/var/run/wireguard";

/// The main routing table.
const RT_TABLE_MAIN: u8 = 254;

/// True for IPv6 link-local addresses, which the kernel manages.
fn is_link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// The real host for `backend`; `userspace` runs wireguard-go.
pub fn host(backend: Backend, userspace: Arc<dyn UserspaceWg>) -> NetHost {
    let wg: Arc<dyn WgOps> = match backend {
        Backend::Kernel => Arc::new(KernelWg),
        Backend::Userspace => Arc::new(UapiWg {
            socket_dir: PathBuf::from(WIREGUARD_SOCKET_DIR),
        }),
    };
    NetHost {
        wg,
        links: Arc::new(Rtnetlink),
        userspace,
    }
}

/// Link, addresses and routes over rtnetlink.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rtnetlink;

fn connect(interface: &IfName) -> Result<Handle, NetHostError> {
    let (connection, handle, _) = rtnetlink::new_connection()
        .map_err(|e| NetHostError::host(interface, "opening rtnetlink", e))?;
    tokio::spawn(connection);
    Ok(handle)
}

fn is_errno(error: &rtnetlink::Error, errno: i32) -> bool {
    matches!(error, rtnetlink::Error::NetlinkError(message) if message.raw_code() == -errno)
}

/// The link's index, or `None` when it does not exist.
async fn link_index(
    handle: &Handle,
    interface: &IfName,
) -> Result<Option<(u32, LinkState)>, NetHostError> {
    let mut links = handle
        .link()
        .get()
        .match_name(interface.to_string())
        .execute();
    let message = match links.try_next().await {
        Ok(Some(message)) => message,
        Ok(None) => return Ok(None),
        Err(error) if is_errno(&error, libc::ENODEV) => return Ok(None),
        Err(error) => return Err(NetHostError::host(interface, "reading the link", error)),
    };
    let mtu = message
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Mtu(mtu) => Some(*mtu),
            _ => None,
        })
        .unwrap_or(0);
    let state = LinkState {
        index: message.header.index,
        up: message.header.flags.contains(LinkFlags::Up),
        mtu,
        ..LinkState::default()
    };
    Ok(Some((message.header.index, state)))
}

/// The link's index by name (one ioctl, no netlink dump).
fn index_of(interface: &IfName) -> Result<Option<u32>, NetHostError> {
    match nix::net::if_::if_nametoindex(interface.as_str()) {
        Ok(index) => Ok(Some(index)),
        Err(nix::errno::Errno::ENODEV) => Ok(None),
        Err(error) => Err(NetHostError::host(interface, "finding the link", error)),
    }
}

fn require_index(interface: &IfName) -> Result<u32, NetHostError> {
    index_of(interface)?.ok_or_else(|| {
        NetHostError::new(interface, "finding the link", NetHostCause::NoSuchInterface)
    })
}

/// The device a main-table route to exactly `destination` goes through.
async fn route_device(
    handle: &Handle,
    destination: IpNet,
) -> Result<Option<u32>, rtnetlink::Error> {
    let family = match destination {
        IpNet::V4(_) => RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
        IpNet::V6(_) => RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
    };
    let mut routes = handle.route().get(family).execute();
    while let Some(message) = routes.try_next().await? {
        if message.header.table != RT_TABLE_MAIN
            || message.header.destination_prefix_length != destination.prefix_len()
        {
            continue;
        }
        let mut oif = None;
        let mut to = None;
        for attribute in &message.attributes {
            match attribute {
                RouteAttribute::Oif(index) => oif = Some(*index),
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => to = Some(IpAddr::V4(*ip)),
                RouteAttribute::Destination(RouteAddress::Inet6(ip)) => to = Some(IpAddr::V6(*ip)),
                _ => {}
            }
        }
        if to == Some(destination.addr()) && oif.is_some() {
            return Ok(oif);
        }
    }
    Ok(None)
}

fn route_message(
    index: u32,
    destination: IpNet,
) -> Result<rtnetlink::packet_route::route::RouteMessage, NetHostCause> {
    Ok(RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(destination.addr(), destination.prefix_len())
        .map_err(refused)?
        .output_interface(index)
        .protocol(RouteProtocol::Static)
        .build())
}

#[async_trait]
impl LinkOps for Rtnetlink {
    async fn link(&self, interface: &IfName) -> Result<Option<LinkState>, NetHostError> {
        let handle = connect(interface)?;
        let Some((index, mut state)) = link_index(&handle, interface).await? else {
            return Ok(None);
        };
        let mut addresses = handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(message) = addresses
            .try_next()
            .await
            .map_err(|e| NetHostError::host(interface, "reading addresses", e))?
        {
            let local = message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let address = message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = local.or(address).filter(|ip| !is_link_local(*ip))
                && let Ok(net) = IpNet::new(ip, message.header.prefix_len)
            {
                state.addresses.insert(net);
            }
        }
        for family in [
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ] {
            let mut routes = handle.route().get(family).execute();
            while let Some(message) = routes
                .try_next()
                .await
                .map_err(|e| NetHostError::host(interface, "reading routes", e))?
            {
                let header = &message.header;
                if header.table != RT_TABLE_MAIN || header.protocol != RouteProtocol::Static {
                    continue;
                }
                let mut oif = None;
                let mut destination = None;
                for attribute in &message.attributes {
                    match attribute {
                        RouteAttribute::Oif(index) => oif = Some(*index),
                        RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                            destination = Some(IpAddr::V4(*ip));
                        }
                        RouteAttribute::Destination(RouteAddress::Inet6(ip)) => {
                            destination = Some(IpAddr::V6(*ip));
                        }
                        _ => {}
                    }
                }
                if oif == Some(index)
                    && let Some(ip) = destination
                    && let Ok(net) = IpNet::new(ip, header.destination_prefix_length)
                {
                    state.routes.insert(net);
                }
            }
        }
        Ok(Some(state))
    }

    async fn index(&self, interface: &IfName) -> Result<Option<u32>, NetHostError> {
        index_of(interface)
    }

    async fn create_wireguard(&self, interface: &IfName) -> Result<(), NetHostError> {
        let handle = connect(interface)?;
        handle
            .link()
            .add(LinkWireguard::new(interface.as_str()).build())
            .execute()
            .await
            .map_err(|e| NetHostError::host(interface, "creating the WireGuard link", e))
    }

    async fn set_mtu(&self, interface: &IfName, mtu: u32) -> Result<(), NetHostError> {
        let handle = connect(interface)?;
        let index = require_index(interface)?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
            .execute()
            .await
            .map_err(|e| NetHostError::host(interface, "setting the MTU", e))
    }

    async fn set_up(&self, interface: &IfName) -> Result<(), NetHostError> {
        let handle = connect(interface)?;
        let index = require_index(interface)?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| NetHostError::host(interface, "bringing the link up", e))
    }

    async fn add_address(&self, interface: &IfName, address: IpNet) -> Result<(), NetHostError> {
        let handle = connect(interface)?;
        let index = require_index(interface)?;
        match handle
            .address()
            .add(index, address.addr(), address.prefix_len())
            .execute()
            .await
        {
            Err(error) if is_errno(&error, libc::EEXIST) => Ok(()),
            result => result.map_err(|e| NetHostError::host(interface, "adding an address", e)),
        }
    }

    async fn remove_address(&self, interface: &IfName, address: IpNet) -> Result<(), NetHostError> {
        let handle = connect(interface)?;
        let index = require_index(interface)?;
        let mut found = handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(address.addr())
            .set_prefix_length_filter(address.prefix_len())
            .execute();
        while let Some(message) = found
            .try_next()
            .await
            .map_err(|e| NetHostError::host(interface, "finding an address", e))?
        {
            handle
                .address()
                .del(message)
                .execute()
                .await
                .map_err(|e| NetHostError::host(interface, "removing an address", e))?;
        }
        Ok(())
    }

    async fn add_route(&self, interface: &IfName, destination: IpNet) -> Result<(), NetHostError> {
        let handle = connect(interface)?;
        let index = require_index(interface)?;
        let what = "adding a route";
        let message = route_message(index, destination)
            .map_err(|cause| NetHostError::new(interface, what, cause))?;
        let failed = |e: rtnetlink::Error| NetHostError::host(interface, what, e);
        match handle.route().add(message.clone()).execute().await {
            Err(error) if is_errno(&error, libc::EEXIST) => {
                // Not one of ours (those are observed and never re-added):
                // through this link, take it over; through another, the
                // peer's traffic would leave by that one, so say so.
                match route_device(&handle, destination).await.map_err(failed)? {
                    Some(oif) if oif == index => handle
                        .route()
                        .add(message)
                        .replace()
                        .execute()
                        .await
                        .map_err(failed),
                    Some(oif) => {
                        let device = nix::net::if_::if_indextoname(oif)
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_else(|_| format!("index {oif}"));
                        Err(NetHostError::new(
                            interface,
                            what,
                            NetHostCause::RouteTaken {
                                destination,
                                device,
                            },
                        ))
                    }
                    None => Ok(()),
                }
            }
            result => result.map_err(failed),
        }
    }

    async fn remove_route(
        &self,
        interface: &IfName,
        destination: IpNet,
    ) -> Result<(), NetHostError> {
        let handle = connect(interface)?;
        let index = require_index(interface)?;
        let what = "removing a route";
        let message = route_message(index, destination)
            .map_err(|cause| NetHostError::new(interface, what, cause))?;
        match handle.route().del(message).execute().await {
            Err(error) if is_errno(&error, libc::ESRCH) => Ok(()),
            result => result.map_err(|e| NetHostError::host(interface, what, e)),
        }
    }
}

fn public_of(private: [u8; 32]) -> Option<WgKey> {
    // An all-zero key is "no key".
    (private != [0; 32]).then(|| KeyPair::from_private_bytes(private).public())
}

/// The device as the shared `get` types show it.
fn device_state(device: get::Device) -> DeviceState {
    let public_key = device
        .public_key
        .and_then(|k| (k != [0; 32]).then(|| WgKey::from_bytes(k)))
        .or_else(|| device.private_key.and_then(public_of));
    let peers = device
        .peers
        .into_iter()
        .map(|peer| {
            let allowed_ips = peer
                .allowed_ips
                .iter()
                .filter_map(|a| IpNet::new(a.ipaddr, a.cidr_mask).ok())
                .collect();
            let last_handshake = (peer.last_handshake_time != Duration::ZERO)
                .then(|| UNIX_EPOCH + peer.last_handshake_time);
            (
                WgKey::from_bytes(peer.public_key),
                PeerState {
                    endpoint: peer.endpoint,
                    allowed_ips,
                    persistent_keepalive: peer.persistent_keepalive_interval,
                    last_handshake,
                    rx_bytes: peer.rx_bytes,
                    tx_bytes: peer.tx_bytes,
                },
            )
        })
        .collect();
    DeviceState {
        public_key,
        listen_port: device.listen_port,
        peers,
    }
}

/// An error of the host, as the cause of a failed operation.
fn refused(error: impl Error + Send + Sync + 'static) -> NetHostCause {
    NetHostCause::Host(Box::new(error))
}

async fn blocking<T: Send + 'static>(
    interface: &IfName,
    what: &'static str,
    work: impl FnOnce() -> Result<T, NetHostCause> + Send + 'static,
) -> Result<T, NetHostError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| NetHostError::host(interface, what, e))?
        .map_err(|cause| NetHostError::new(interface, what, cause))
}

/// wireguard-go's UAPI socket (the cross-platform protocol).
#[derive(Debug, Clone)]
pub struct UapiWg {
    pub socket_dir: PathBuf,
}

impl UapiWg {
    pub fn socket(&self, interface: &IfName) -> PathBuf {
        self.socket_dir.join(format!("{interface}.sock"))
    }
}

fn uapi_update(update: &DeviceUpdate) -> xplatform::set::Device {
    let peers = update
        .peers
        .iter()
        .map(|peer| match peer {
            PeerUpdate::Remove { key } => {
                xplatform::set::Peer::from_public_key(*key.as_bytes()).remove(true)
            }
            PeerUpdate::Set {
                key,
                update_only,
                endpoint,
                persistent_keepalive,
                allowed_ips,
            } => {
                let mut set = xplatform::set::Peer::from_public_key(*key.as_bytes())
                    .update_only(*update_only);
                set.endpoint = *endpoint;
                set.persistent_keepalive_interval = *persistent_keepalive;
                if let Some(allowed_ips) = allowed_ips {
                    set = set.replace_allowed_ips(true).allowed_ips(
                        allowed_ips
                            .iter()
                            .map(|net| xplatform::set::AllowedIp {
                                ipaddr: net.addr(),
                                cidr_mask: net.prefix_len(),
                            })
                            .collect(),
                    );
                }
                set
            }
        })
        .collect();
    xplatform::set::Device {
        private_key: update.private_key.as_ref().map(|k| k.private_bytes()),
        listen_port: update.listen_port,
        fwmark: None,
        replace_peers: None,
        peers,
    }
}

/// Sends one `set` in a single write. (The crate's client writes the
/// message line by line, one syscall and one wake-up of wireguard-go per
/// line: a 1000-peer update became thousands of them.) The message holds
/// the private key: it is never logged, and errors quote only the answer.
async fn uapi_set(socket: &Path, message: &xplatform::set::Device) -> Result<(), NetHostCause> {
    use std::fmt::Write as _;

    use tokio::io::AsyncWriteExt;
    let mut text = String::with_capacity(64 + message.peers.len() * 160);
    text.push_str("set=1\n");
    let _ = write!(text, "{message}");
    text.push('\n');
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(refused)?;
    stream.write_all(text.as_bytes()).await.map_err(refused)?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .await
        .map_err(refused)?;
    match answer.trim() {
        "errno=0" => Ok(()),
        "" => Err(NetHostCause::NoAnswer),
        other => Err(NetHostCause::Refused {
            answer: other.to_owned(),
        }),
    }
}

#[async_trait]
impl WgOps for UapiWg {
    async fn device(&self, interface: &IfName) -> Result<Option<DeviceState>, NetHostError> {
        let socket = self.socket(interface);
        blocking(interface, "reading the device", move || {
            match xplatform::Client::create(&socket).get() {
                Ok(device) => Ok(Some(device_state(device))),
                // No socket, or a stale one nobody listens on: no device.
                Err(xplatform::error::GetDeviceError::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                    ) =>
                {
                    Ok(None)
                }
                Err(e) => Err(refused(e)),
            }
        })
        .await
    }

    async fn configure(
        &self,
        interface: &IfName,
        update: DeviceUpdate,
    ) -> Result<(), NetHostError> {
        let socket = self.socket(interface);
        let message = uapi_update(&update);
        drop(update);
        uapi_set(&socket, &message)
            .await
            .map_err(|cause| NetHostError::new(interface, "configuring the device", cause))
    }
}

/// The kernel module over generic netlink.
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelWg;

#[async_trait]
impl WgOps for KernelWg {
    async fn device(&self, interface: &IfName) -> Result<Option<DeviceState>, NetHostError> {
        let name = interface.to_string();
        blocking(interface, "reading the device", move || {
            let mut socket = wireguard_uapi::WgSocket::connect().map_err(refused)?;
            match socket.get_device(wireguard_uapi::DeviceInterface::from_name(name)) {
                Ok(device) => Ok(Some(device_state(device))),
                // No such device (or not a WireGuard one).
                Err(wireguard_uapi::err::GetDeviceError::NlError(_)) => Ok(None),
                Err(e) => Err(refused(e)),
            }
        })
        .await
    }

    async fn configure(
        &self,
        interface: &IfName,
        update: DeviceUpdate,
    ) -> Result<(), NetHostError> {
        let name = interface.to_string();
        blocking(interface, "configuring the device", move || {
            use wireguard_uapi::set;
            let private_key = update.private_key.as_ref().map(|k| k.private_bytes());
            // The netlink types borrow: keep the owned values alive here.
            let peers_owned: Vec<(WgKey, &PeerUpdate, Vec<IpAddr>)> = update
                .peers
                .iter()
                .map(|p| match p {
                    PeerUpdate::Remove { key } => (*key, p, Vec::new()),
                    PeerUpdate::Set {
                        key, allowed_ips, ..
                    } => (
                        *key,
                        p,
                        allowed_ips.iter().flatten().map(IpNet::addr).collect(),
                    ),
                })
                .collect();
            let endpoints: Vec<Option<SocketAddr>> = update
                .peers
                .iter()
                .map(|p| match p {
                    PeerUpdate::Set { endpoint, .. } => *endpoint,
                    PeerUpdate::Remove { .. } => None,
                })
                .collect();
            let keys: Vec<[u8; 32]> = peers_owned.iter().map(|(k, _, _)| *k.as_bytes()).collect();
            let mut peers = Vec::with_capacity(peers_owned.len());
            for (((_, peer, addrs), key), endpoint) in peers_owned.iter().zip(&keys).zip(&endpoints)
            {
                let mut set_peer = set::Peer::from_public_key(key);
                match peer {
                    PeerUpdate::Remove { .. } => {
                        set_peer.flags.push(set::WgPeerF::RemoveMe);
                    }
                    PeerUpdate::Set {
                        update_only,
                        persistent_keepalive,
                        allowed_ips,
                        ..
                    } => {
                        if *update_only {
                            set_peer.flags.push(set::WgPeerF::UpdateOnly);
                        }
                        if let Some(endpoint) = endpoint {
                            set_peer.endpoint = Some(endpoint);
                        }
                        set_peer.persistent_keepalive_interval = *persistent_keepalive;
                        if let Some(nets) = allowed_ips {
                            set_peer.flags.push(set::WgPeerF::ReplaceAllowedIps);
                            set_peer.allowed_ips = addrs
                                .iter()
                                .zip(nets)
                                .map(|(addr, net)| set::AllowedIp {
                                    ipaddr: addr,
                                    cidr_mask: Some(net.prefix_len()),
                                })
                                .collect();
                        }
                    }
                }
                peers.push(set_peer);
            }
            let mut device = set::Device::from_ifname(name);
            device.private_key = private_key.as_ref();
            device.listen_port = update.listen_port;
            device.peers = peers;
            let mut socket = wireguard_uapi::WgSocket::connect().map_err(refused)?;
            socket.set_device(device).map_err(refused)
        })
        .await
    }
}
