//! Specs for tests of this crate and of the crates above it (feature
//! `fixtures`, a dev-dependency only): the example specs under `examples/`
//! and small WireGuard models.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::num::NonZeroU16;

use crate::{NodeSpec, Peer, SpecDocument, ValidationContext, WgKey, Wireguard};

/// The example specs under `examples/`, by name.
pub const EXAMPLES: [(&str, &str); 3] = [
    (
        "server-init",
        include_str!("../../examples/server-init.yaml"),
    ),
    (
        "server-join",
        include_str!("../../examples/server-join.yaml"),
    ),
    ("agent", include_str!("../../examples/agent.yaml")),
];

/// The text of an example spec.
pub fn example_text(name: &str) -> &'static str {
    EXAMPLES
        .iter()
        .find(|(example, _)| *example == name)
        .map(|(_, text)| *text)
        .unwrap_or_else(|| panic!("no example {name}"))
}

pub fn example_document(name: &str) -> SpecDocument {
    SpecDocument::parse(example_text(name)).unwrap()
}

pub fn example_spec(name: &str) -> NodeSpec {
    example_document(name)
        .validate(&ValidationContext::default())
        .unwrap()
}

/// A made-up public key, the same for the same `n`.
pub fn key(n: u8) -> WgKey {
    WgKey::from_bytes([n; 32])
}

/// Peer `n`: `node-n` at 192.0.2.(n+1):51820.
pub fn peer(n: u8, allowed_ips: &[&str]) -> Peer {
    Peer {
        name: format!("node-{n}").parse().unwrap(),
        public_key: key(n),
        endpoint: Some(format!("192.0.2.{}:51820", n + 1).parse().unwrap()),
        allowed_ips: allowed_ips.iter().map(|a| a.parse().unwrap()).collect(),
        persistent_keepalive: NonZeroU16::new(25),
    }
}

/// An interface with `n` peers; the first also routes 10.200.0.0/16.
pub fn wireguard(n: u8) -> Wireguard {
    Wireguard {
        interface: "wg-test".parse().unwrap(),
        listen_port: 51820,
        addresses: vec!["10.100.0.1/24".parse().unwrap()],
        mtu: 1420,
        peers: (1..=n)
            .map(|i| {
                let own = format!("10.100.0.{}/32", i + 1);
                if i == 1 {
                    peer(i, &[&own, "10.200.0.0/16"])
                } else {
                    peer(i, &[&own])
                }
            })
            .collect(),
    }
}
