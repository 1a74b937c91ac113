//! The node's WireGuard key pair: generated on the node at first start,
//! kept 0600 in the state dir, never sent anywhere.

use std::{
    fs, io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use tfagent_spec::KeyPair;

use crate::state::StagedFile;

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

/// Loads the node's key pair from `state_dir`, generating and storing it
/// (0600, atomically) at first start.
pub fn load_or_generate(state_dir: &Path) -> Result<KeyPair, KeyError> {
    let path = state_dir.join(KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let key = KeyPair::from_private_base64(&text)
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
            Ok(key)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let key = KeyPair::generate();
            let text = format!("{}\n", key.private_base64());
            StagedFile::write(state_dir, KEY_FILE, text.as_bytes())
                .and_then(StagedFile::commit)
                .map_err(|source| KeyError::Write { path, source })?;
            tracing::info!(public_key = %key.public(), "generated the node's WireGuard key");
            Ok(key)
        }
        Err(source) => Err(KeyError::Read { path, source }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn generated_once_stored_0600_and_reloaded() {
        let tmp = tempfile::tempdir().unwrap();
        let first = load_or_generate(tmp.path()).unwrap();
        let path = tmp.path().join(KEY_FILE);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = load_or_generate(tmp.path()).unwrap();
        assert_eq!(first.public(), again.public());
        assert_eq!(first.private_bytes(), again.private_bytes());
        assert_ne!(first.public(), KeyPair::generate().public());
    }

    #[test]
    fn a_readable_key_file_is_tightened_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(KEY_FILE);
        fs::write(&path, "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let key = load_or_generate(tmp.path()).unwrap();
        assert_eq!(
            key.public().to_string(),
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_malformed_key_is_refused_never_replaced_and_never_echoed() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(KEY_FILE), "c2VjcmV0LWlzaA==").unwrap();
        let error = load_or_generate(tmp.path()).unwrap_err().to_string();
        assert!(error.contains("not a base64 32-byte key"), "{error}");
        assert!(!error.contains("c2VjcmV0"), "{error}");
        assert_eq!(
            fs::read_to_string(tmp.path().join(KEY_FILE)).unwrap(),
            "c2VjcmV0LWlzaA=="
        );
    }
}
