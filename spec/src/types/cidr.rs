//! Network CIDRs, and the networks zOS keeps for itself.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

/// Why a network CIDR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Nothing given.
    #[error("required")]
    Empty,
    /// An address without a prefix length.
    #[error("not a CIDR, did you mean {suggestion}")]
    BareAddress {
        /// The address as a host route.
        suggestion: IpNet,
    },
    /// Not a CIDR at all.
    #[error("not a CIDR (e.g. 10.42.0.0/16)")]
    Invalid,
    /// Host bits set.
    #[error("not a network address, did you mean {suggestion}")]
    HostBits {
        /// The same prefix with the host bits cleared.
        suggestion: IpNet,
    },
}

/// Parses a network CIDR: host bits must be zero (`10.42.0.0/16`, not
/// `10.42.0.1/16`).
pub fn parse_network(text: &str) -> Result<IpNet, CidrError> {
    if text.is_empty() {
        return Err(CidrError::Empty);
    }
    let net: IpNet = match text.parse() {
        Ok(net) => net,
        Err(_) => {
            return Err(match text.parse::<IpAddr>() {
                Ok(ip) => CidrError::BareAddress {
                    suggestion: IpNet::from(ip),
                },
                Err(_) => CidrError::Invalid,
            });
        }
    };
    if net.trunc() != net {
        return Err(CidrError::HostBits {
            suggestion: net.trunc(),
        });
    }
    Ok(net)
}

/// Whether two networks share any address.
pub(crate) fn nets_overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The zOS networks the agent must never route or overlap.
pub(crate) fn zos_reserved() -> [IpNet; 2] {
    [
        IpNet::from(ipnet::Ipv4Net::new_assert(Ipv4Addr::new(100, 64, 0, 0), 16)),
        IpNet::from(ipnet::Ipv4Net::new_assert(
            Ipv4Addr::new(100, 127, 0, 0),
            16,
        )),
    ]
}
