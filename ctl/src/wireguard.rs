//! tfagentctl's WireGuard parts: the interface and peers in `status`, and
//! `wg access-config`.

use std::io::{self, Write};

use ipnet::IpNet;
use serde::Serialize;
use tfagent_proto::v1 as pb;
use tfagent_spec::{KeyPair, wgquick as access};

use crate::{
    error::CtlError,
    output::{Output, structured, time},
};

#[derive(Serialize)]
pub(crate) struct WireguardView {
    interface: String,
    backend: String,
    up: bool,
    listen_port: u32,
    public_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    peers: Vec<PeerView>,
}

#[derive(Serialize)]
struct PeerView {
    name: String,
    public_key: String,
    endpoint: Option<String>,
    latest_handshake: Option<String>,
    rx_bytes: u64,
    tx_bytes: u64,
    allowed_ips: Vec<String>,
}

pub(crate) fn wireguard_view(status: &pb::NodeStatus) -> Option<WireguardView> {
    let wg = status.wireguard.as_ref()?;
    Some(WireguardView {
        interface: wg.interface.clone(),
        backend: wg.backend.clone(),
        up: wg.up,
        listen_port: wg.listen_port,
        public_key: wg.public_key.clone(),
        error: Some(wg.error.clone()).filter(|e| !e.is_empty()),
        peers: wg
            .peers
            .iter()
            .map(|p| PeerView {
                name: p.name.clone(),
                public_key: p.public_key.clone(),
                endpoint: Some(p.endpoint.clone()).filter(|e| !e.is_empty()),
                latest_handshake: time(p.latest_handshake.as_ref()),
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
                allowed_ips: p.allowed_ips.clone(),
            })
            .collect(),
    })
}

/// The interface's line and a row per peer; nothing before any spec.
pub(crate) fn write_table(out: &mut dyn Write, wg: Option<&WireguardView>) -> io::Result<()> {
    let Some(wg) = wg else {
        return Ok(());
    };
    writeln!(out)?;
    writeln!(
        out,
        "wireguard   {} ({}), {}, port {}, key {}",
        wg.interface,
        wg.backend,
        if wg.up { "up" } else { "down" },
        wg.listen_port,
        wg.public_key
    )?;
    if let Some(error) = &wg.error {
        writeln!(out, "            {error}")?;
    }
    if wg.peers.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "{:<16} {:<44} {:<22} {:<20} {:>12} {:>12}  ALLOWED IPS",
        "PEER", "PUBLIC KEY", "ENDPOINT", "HANDSHAKE", "RX", "TX"
    )?;
    for peer in &wg.peers {
        writeln!(
            out,
            "{:<16} {:<44} {:<22} {:<20} {:>12} {:>12}  {}",
            if peer.name.is_empty() {
                "?"
            } else {
                &peer.name
            },
            peer.public_key,
            peer.endpoint.as_deref().unwrap_or("-"),
            peer.latest_handshake.as_deref().unwrap_or("never"),
            peer.rx_bytes,
            peer.tx_bytes,
            peer.allowed_ips.join(", ")
        )?;
    }
    Ok(())
}

#[derive(Serialize)]
struct AccessView {
    name: String,
    /// The person's public key (new, or the spec's).
    public_key: String,
    /// Their wg-quick config.
    config: String,
    /// The entry to add under network.wireguard.peers; absent when the spec
    /// has the peer already.
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_entry: Option<String>,
}

/// Builds a person's config from the hub's answer. A new person gets a key
/// pair made here, shown once; a person already in the spec fills in their
/// own private key.
pub(crate) fn access_config(
    out: &mut dyn Write,
    output: Output,
    name: &str,
    address: Option<&str>,
    endpoint: &str,
    reply: pb::WireguardAccessConfigResponse,
) -> Result<(), CtlError> {
    let bad = |what: String| CtlError::new(format!("the agent's answer: {what}"));
    let nets = |texts: &[String]| -> Result<Vec<IpNet>, CtlError> {
        texts
            .iter()
            .map(|t| t.parse().map_err(|_| bad(format!("`{t}` is not a CIDR"))))
            .collect()
    };
    let hub = access::HubInfo {
        public_key: reply
            .public_key
            .parse()
            .map_err(|_| bad("a malformed public key".into()))?,
        listen_port: u16::try_from(reply.listen_port).map_err(|_| bad("a bad port".into()))?,
        mtu: reply.mtu,
        allowed_ips: nets(&reply.allowed_ips)?,
        existing_peer: None,
    };
    // host:port, or a host alone which gets the node's listen port.
    let endpoint = if endpoint.parse::<tfagent_spec::Endpoint>().is_ok() {
        endpoint.to_owned()
    } else if endpoint.contains(':') && !endpoint.starts_with('[') {
        format!("[{endpoint}]:{}", hub.listen_port)
    } else {
        format!("{endpoint}:{}", hub.listen_port)
    };
    if endpoint.parse::<tfagent_spec::Endpoint>().is_err() {
        return Err(CtlError::new(format!(
            "--endpoint: `{endpoint}` is not host:port or [v6]:port"
        )));
    }
    let view = match reply.existing_peer {
        Some(peer) => {
            let allowed = nets(&peer.allowed_ips)?;
            AccessView {
                name: name.to_owned(),
                public_key: peer.public_key,
                config: access::render_config(&hub, &endpoint, &allowed, None),
                peer_entry: None,
            }
        }
        None => {
            let address: IpNet = address
                .ok_or_else(|| {
                    CtlError::new(format!(
                        "--address: required, as the spec has no peer `{name}` yet (e.g. 10.100.0.200/32)"
                    ))
                })?
                .parse()
                .map_err(|_| CtlError::new("--address: not a CIDR such as 10.100.0.200/32"))?;
            let key = KeyPair::generate();
            let private = key.private_base64();
            AccessView {
                name: name.to_owned(),
                public_key: key.public().to_string(),
                config: access::render_config(&hub, &endpoint, &[address], Some(&private)),
                peer_entry: Some(access::render_peer_entry(name, key.public(), &[address])),
            }
        }
    };
    let write = |out: &mut dyn Write| -> io::Result<()> {
        if output != Output::Table {
            return structured(out, output, &view);
        }
        match &view.peer_entry {
            Some(entry) => {
                writeln!(
                    out,
                    "# wg-quick config for {}: it holds their new private key, shown only this once.",
                    view.name
                )?;
                out.write_all(view.config.as_bytes())?;
                writeln!(out)?;
                writeln!(
                    out,
                    "# Add this peer under network.wireguard.peers in the node's spec, then apply it:"
                )?;
                out.write_all(entry.as_bytes())
            }
            None => {
                writeln!(
                    out,
                    "# wg-quick config for {} (already a peer in the spec).",
                    view.name
                )?;
                out.write_all(view.config.as_bytes())
            }
        }
    };
    write(out).map_err(CtlError::writing)
}
