//! The agents' holder announcements: a small authenticated datagram, sent
//! over the WireGuard mesh to every other agent.
//!
//! Two layers keep strangers out. The socket only takes packets that came in
//! through the WireGuard interface, where the source address is proven by
//! the peer's key; and every message carries an HMAC keyed from the cluster
//! token, which only cluster members know (the user's peer does not).

use std::net::{IpAddr, Ipv6Addr};

use ring::hmac;

use tfagent_spec::Secret;

/// Wire format version tag; a changed layout gets a new one.
const MAGIC: &[u8; 6] = b"TFVIP1";
const TAG_LEN: usize = 32;
/// magic, kind, reserved, epoch, failover, holder, vip, tag.
pub const MESSAGE_LEN: usize = 6 + 1 + 1 + 8 + 4 + 16 + 16 + TAG_LEN;

/// What an announcement says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// "`holder` holds the VIP as of `epoch`": sent by the holder when it
    /// takes the VIP and again every announce period.
    Claim,
    /// "The newest claim I know is `epoch` by `holder`": the answer to a
    /// stale claim, so a holder that missed a newer claim learns of it.
    Current,
    /// "`holder` let the VIP go at `epoch`": sent by a holder that leaves
    /// the election alive (stopped, or its apiserver is not ready); starts
    /// the others' failover timers.
    Release,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Claim => 1,
            Kind::Current => 2,
            Kind::Release => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Kind::Claim),
            2 => Some(Kind::Current),
            3 => Some(Kind::Release),
            _ => None,
        }
    }
}

/// One announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement {
    pub kind: Kind,
    pub epoch: u64,
    /// The holder's WireGuard address.
    pub holder: IpAddr,
    /// The VIP it is about; a message about another VIP is ignored.
    pub vip: IpAddr,
    /// In a claim: how long the VIP had no holder before it, as the new
    /// holder measured it; 0 when there was no holder before.
    pub failover_ms: u32,
}

/// Why a datagram was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0} bytes, not {MESSAGE_LEN}")]
    Length(usize),
    #[error("not a tfagent VIP announcement")]
    Magic,
    #[error("unknown kind {0}")]
    Kind(u8),
    #[error("bad HMAC: the sender does not know the cluster token")]
    Tag,
}

/// The HMAC key of one cluster, derived from its token so the token itself
/// never keys anything else.
#[derive(Clone)]
pub struct ClusterKey(hmac::Key);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

impl ClusterKey {
    pub fn new(token: &Secret) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, token.expose().as_bytes());
        let derived = hmac::sign(&root, b"tfagent vip announcements v1");
        Self(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
    }
}

fn address_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn address_from(bytes: &[u8]) -> IpAddr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(bytes);
    let v6 = Ipv6Addr::from(octets);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

impl Announcement {
    pub fn encode(&self, key: &ClusterKey) -> [u8; MESSAGE_LEN] {
        let mut out = [0u8; MESSAGE_LEN];
        out[..6].copy_from_slice(MAGIC);
        out[6] = self.kind.code();
        out[8..16].copy_from_slice(&self.epoch.to_be_bytes());
        out[16..20].copy_from_slice(&self.failover_ms.to_be_bytes());
        out[20..36].copy_from_slice(&address_bytes(self.holder));
        out[36..52].copy_from_slice(&address_bytes(self.vip));
        let tag = hmac::sign(&key.0, &out[..MESSAGE_LEN - TAG_LEN]);
        out[MESSAGE_LEN - TAG_LEN..].copy_from_slice(tag.as_ref());
        out
    }

    pub fn decode(bytes: &[u8], key: &ClusterKey) -> Result<Self, DecodeError> {
        if bytes.len() != MESSAGE_LEN {
            return Err(DecodeError::Length(bytes.len()));
        }
        if &bytes[..6] != MAGIC {
            return Err(DecodeError::Magic);
        }
        let (body, tag) = bytes.split_at(MESSAGE_LEN - TAG_LEN);
        hmac::verify(&key.0, body, tag).map_err(|_| DecodeError::Tag)?;
        let kind = Kind::from_code(bytes[6]).ok_or(DecodeError::Kind(bytes[6]))?;
        let mut epoch = [0u8; 8];
        epoch.copy_from_slice(&bytes[8..16]);
        let mut failover = [0u8; 4];
        failover.copy_from_slice(&bytes[16..20]);
        Ok(Self {
            kind,
            epoch: u64::from_be_bytes(epoch),
            failover_ms: u32::from_be_bytes(failover),
            holder: address_from(&bytes[20..36]),
            vip: address_from(&bytes[36..52]),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(token: &str) -> ClusterKey {
        ClusterKey::new(&Secret::new(token))
    }

    fn claim() -> Announcement {
        Announcement {
            kind: Kind::Claim,
            epoch: 7,
            holder: "10.100.0.2".parse().unwrap(),
            vip: "10.100.0.250".parse().unwrap(),
            failover_ms: 412,
        }
    }

    #[test]
    fn round_trips_for_both_families() {
        let key = key("a-cluster-token-of-enough-length");
        let mut six = claim();
        six.holder = "fd00::2".parse().unwrap();
        six.vip = "fd00::fa".parse().unwrap();
        for message in [claim(), six] {
            assert_eq!(
                Announcement::decode(&message.encode(&key), &key),
                Ok(message)
            );
        }
    }

    #[test]
    fn another_token_a_flipped_bit_or_a_short_datagram_is_refused() {
        let ours = key("a-cluster-token-of-enough-length");
        let theirs = key("another-token-of-enough-length!!");
        let bytes = claim().encode(&theirs);
        assert_eq!(Announcement::decode(&bytes, &ours), Err(DecodeError::Tag));
        for i in 0..MESSAGE_LEN {
            let mut bytes = claim().encode(&ours);
            bytes[i] ^= 0x01;
            assert!(
                Announcement::decode(&bytes, &ours).is_err(),
                "bit in byte {i}"
            );
        }
        let bytes = claim().encode(&ours);
        assert_eq!(
            Announcement::decode(&bytes[..10], &ours),
            Err(DecodeError::Length(10))
        );
        assert_eq!(
            Announcement::decode(&[0u8; MESSAGE_LEN], &ours),
            Err(DecodeError::Magic)
        );
    }

    #[test]
    fn the_key_never_shows() {
        assert_eq!(
            format!("{:?}", key("a-cluster-token-of-enough-length")),
            "ClusterKey(<redacted>)"
        );
    }
}
