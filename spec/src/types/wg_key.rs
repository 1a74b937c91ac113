//! WireGuard public keys.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::text::{serde_as_string, try_from_str};

/// Why a WireGuard key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Nothing given.
    #[error("required")]
    Empty,
    /// Not (canonical, padded) base64.
    #[error("not a 32-byte base64 key (invalid base64)")]
    Base64,
    /// Valid base64 of the wrong length.
    #[error("not a 32-byte base64 key (it decodes to {len} bytes)")]
    Length {
        /// The decoded length.
        len: usize,
    },
}

/// A WireGuard (Curve25519) public key: 32 bytes, written in base64.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WgKey([u8; 32]);

impl WgKey {
    /// The key with these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for WgKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, KeyError> {
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        let bytes = BASE64.decode(text).map_err(|_| KeyError::Base64)?;
        let len = bytes.len();
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| KeyError::Length { len })
    }
}

impl fmt::Display for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE64.encode(self.0))
    }
}

// A public key is not secret; show it the way `wg` does.
impl fmt::Debug for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WgKey({self})")
    }
}

try_from_str!(WgKey);

serde_as_string!(WgKey);
