//! Network interface names, as the kernel accepts them.

use std::fmt;
use std::str::FromStr;

use super::text::{serde_as_string, try_from_str};

/// Why an interface name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IfNameError {
    /// Nothing given.
    #[error("required")]
    Empty,
    /// The kernel's limit (IFNAMSIZ - 1).
    #[error("longer than 15 bytes")]
    TooLong,
    /// A character the kernel (or a config file) cannot take.
    #[error("must not contain '/', ':', whitespace or control characters")]
    BadChar,
    /// `.` or `..`.
    #[error("`.` and `..` are not interface names")]
    Dots,
}

/// A network interface name as the kernel accepts it: 1..=15 bytes, no '/',
/// ':', whitespace or control characters, not `.` or `..`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfName(String);

impl IfName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for IfName {
    type Err = IfNameError;
    fn from_str(text: &str) -> Result<Self, IfNameError> {
        if text.is_empty() {
            return Err(IfNameError::Empty);
        }
        if text.len() > 15 {
            return Err(IfNameError::TooLong);
        }
        if text
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(IfNameError::BadChar);
        }
        if text == "." || text == ".." {
            return Err(IfNameError::Dots);
        }
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

try_from_str!(IfName);

serde_as_string!(IfName);
