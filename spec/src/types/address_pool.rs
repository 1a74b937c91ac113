//! MetalLB address pools.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use super::cidr::{CidrError, parse_network};
use super::text::{serde_as_string, try_from_str};

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

try_from_str!(AddressPool);

serde_as_string!(AddressPool);
