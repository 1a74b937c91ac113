//! WireGuard key pairs (Curve25519). A node generates its own and keeps the
//! private half to itself; a user's pair for `wg access-config` is made the
//! same way. `Debug` shows the public key only.

use std::fmt;

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::WgKey;

/// A private key and the public key derived from it.
pub struct KeyPair {
    secret: StaticSecret,
    public: WgKey,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair(public {})", self.public)
    }
}

impl KeyPair {
    /// The pair of a private key's 32 bytes.
    pub fn from_private_bytes(bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = WgKey::from_bytes(PublicKey::from(&secret).to_bytes());
        Self { secret, public }
    }

    /// The pair of a base64 private key (as `wg genkey` prints it); `None`
    /// when the text is not a base64 32-byte key.
    pub fn from_private_base64(text: &str) -> Option<Self> {
        let bytes: [u8; 32] = BASE64.decode(text.trim()).ok()?.try_into().ok()?;
        Some(Self::from_private_bytes(bytes))
    }

    /// A new random pair (the OS's random source).
    pub fn generate() -> Self {
        Self::from_private_bytes(StaticSecret::random().to_bytes())
    }

    pub fn public(&self) -> WgKey {
        self.public
    }

    /// The private key's bytes, for the device only.
    pub fn private_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// The private key in base64, for a file or a config the user keeps.
    pub fn private_base64(&self) -> String {
        BASE64.encode(self.secret.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_public_key_matches_the_reference_derivation() {
        // RFC 7748 section 6.1 test vector (Alice).
        let key =
            KeyPair::from_private_base64("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=").unwrap();
        assert_eq!(
            key.public().to_string(),
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="
        );
        let again = KeyPair::from_private_base64(&key.private_base64()).unwrap();
        assert_eq!(again.private_bytes(), key.private_bytes());
    }

    #[test]
    fn only_32_byte_keys_are_taken() {
        assert!(KeyPair::from_private_base64("c2VjcmV0LWlzaA==").is_none());
        assert!(KeyPair::from_private_base64("not base64").is_none());
        assert_ne!(KeyPair::generate().public(), KeyPair::generate().public());
    }

    #[test]
    fn debug_shows_only_the_public_key() {
        let key = KeyPair::generate();
        let debug = format!("{key:?}");
        assert!(debug.contains(&key.public().to_string()));
        assert!(!debug.contains(&key.private_base64()));
    }
}
