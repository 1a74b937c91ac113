//! What a device must hold for `format: wipe` to overwrite it.

use std::fmt;
use std::str::FromStr;

use super::text::{serde_as_string, try_from_str};

/// Why a wipe signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be `blank` or a filesystem UUID (8-4-4-4-12 hex digits)")]
pub struct WipeSignatureError;

/// What a device must hold right now for `format: wipe` to overwrite it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WipeSignature {
    /// No signature at all.
    Blank,
    /// The filesystem with this UUID (lower case).
    Uuid(String),
}

impl FromStr for WipeSignature {
    type Err = WipeSignatureError;
    fn from_str(text: &str) -> Result<Self, WipeSignatureError> {
        if text == "blank" {
            return Ok(Self::Blank);
        }
        let groups: Vec<&str> = text.split('-').collect();
        let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lengths != [8, 4, 4, 4, 12]
            || !groups
                .iter()
                .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(WipeSignatureError);
        }
        Ok(Self::Uuid(text.to_ascii_lowercase()))
    }
}

impl fmt::Display for WipeSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Blank => f.write_str("blank"),
            Self::Uuid(uuid) => f.write_str(uuid),
        }
    }
}

try_from_str!(WipeSignature);

serde_as_string!(WipeSignature);
