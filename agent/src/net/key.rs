//! The node's WireGuard key pair: generated on the node at first start,
//! kept 0600 in the state dir, never sent anywhere. Only the public key is
//! shown.

use std::{
    fmt, fs, io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::{spec::WgKey, state::StagedFile};

/// The private key's file in the state dir.
pub const KEY_FILE: &str = "wireguard.key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading the WireGuard key {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("writing the WireGuard key {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    /// The file is there but holds no key; never overwritten, so a key is
    /// not lost to a mistake.
    #[error(
        "the WireGuard key {path} is not a base64 32-byte key; move it away to generate a new one"
    )]
    Malformed { path: PathBuf },
}

/// The node's key pair. `Debug` shows the public key only.
pub struct NodeKey {
    secret: StaticSecret,
    public: WgKey,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey(public {})", self.public)
    }
}

impl NodeKey {
    fn from_secret(secret: StaticSecret) -> Self {
        let public = WgKey::from_bytes(PublicKey::from(&secret).to_bytes());
        Self { secret, public }
    }

    /// A new random key pair (the OS's random source).
    pub fn generate() -> Self {
        Self::from_secret(StaticSecret::random())
    }

    pub fn public(&self) -> WgKey {
        self.public
    }

    /// The private key's bytes, for the device only.
    pub fn private_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// The private key in base64, for a config the user writes themselves.
    pub fn private_base64(&self) -> String {
        BASE64.encode(self.secret.as_bytes())
    }

    /// Loads the key from `state_dir`, generating and storing it (0600,
    /// atomically) at first start.
    pub fn load_or_generate(state_dir: &Path) -> Result<Self, KeyError> {
        let path = state_dir.join(KEY_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let bytes: [u8; 32] = BASE64
                    .decode(text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| KeyError::Malformed { path: path.clone() })?;
                // Tighten a key someone made readable.
                let mode = fs::metadata(&path)
                    .map_err(|source| KeyError::Read {
                        path: path.clone(),
                        source,
                    })?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(
                        |source| KeyError::Write {
                            path: path.clone(),
                            source,
                        },
                    )?;
                }
                Ok(Self::from_secret(StaticSecret::from(bytes)))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let key = Self::generate();
                let text = format!("{}\n", key.private_base64());
                StagedFile::write(state_dir, KEY_FILE, text.as_bytes())
                    .and_then(StagedFile::commit)
                    .map_err(|source| KeyError::Write { path, source })?;
                tracing::info!(public_key = %key.public, "generated the node's WireGuard key");
                Ok(key)
            }
            Err(source) => Err(KeyError::Read { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn generated_once_stored_0600_and_reloaded() {
        let tmp = tempfile::tempdir().unwrap();
        let first = NodeKey::load_or_generate(tmp.path()).unwrap();
        let path = tmp.path().join(KEY_FILE);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = NodeKey::load_or_generate(tmp.path()).unwrap();
        assert_eq!(first.public(), again.public());
        assert_eq!(first.private_bytes(), again.private_bytes());
        assert_ne!(first.public(), NodeKey::generate().public());
    }

    #[test]
    fn the_public_key_matches_the_reference_derivation() {
        // RFC 7748 section 6.1 test vector (Alice).
        let private = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=";
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(KEY_FILE), private).unwrap();
        let key = NodeKey::load_or_generate(tmp.path()).unwrap();
        assert_eq!(
            key.public().to_string(),
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="
        );
        // A readable key file is tightened.
        let mode = fs::metadata(tmp.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_malformed_key_is_refused_never_replaced_and_never_echoed() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(KEY_FILE), "c2VjcmV0LWlzaA==").unwrap();
        let error = NodeKey::load_or_generate(tmp.path())
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a base64 32-byte key"), "{error}");
        assert!(!error.contains("c2VjcmV0"), "{error}");
        assert_eq!(
            fs::read_to_string(tmp.path().join(KEY_FILE)).unwrap(),
            "c2VjcmV0LWlzaA=="
        );
    }

    #[test]
    fn debug_shows_only_the_public_key() {
        let key = NodeKey::generate();
        let debug = format!("{key:?}");
        assert!(debug.contains(&key.public().to_string()));
        assert!(!debug.contains(&key.private_base64()));
    }
}
