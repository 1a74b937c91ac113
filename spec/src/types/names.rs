//! DNS-style names: node names and short labels.

use std::fmt;
use std::str::FromStr;

use super::text::{serde_as_string, try_from_str};

/// Why a DNS-style name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing given.
    #[error("required")]
    Empty,
    /// Over the length limit.
    #[error("longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// Upper-case letters.
    #[error("must be lower case")]
    UpperCase,
    /// A character outside the allowed set.
    #[error("may contain only {allowed}")]
    BadChar {
        /// The allowed set, in words.
        allowed: &'static str,
    },
    /// Two dots in a row, or a dot at either end.
    #[error("has an empty label (`..` or a leading or trailing dot)")]
    EmptyLabel,
    /// A label over 63 bytes.
    #[error("has a label longer than 63 bytes")]
    LabelTooLong,
    /// A label starting or ending with `-`.
    #[error("labels must start and end with a letter or digit")]
    LabelEdge,
}

fn check_label(label: &str, allowed: &'static str) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::EmptyLabel);
    }
    if label.len() > 63 {
        return Err(NameError::LabelTooLong);
    }
    for c in label.chars() {
        if c.is_ascii_uppercase() {
            return Err(NameError::UpperCase);
        }
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(NameError::BadChar { allowed });
        }
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(NameError::LabelEdge);
    }
    Ok(())
}

pub(super) fn check_subdomain(text: &str) -> Result<(), NameError> {
    const ALLOWED: &str = "a-z, 0-9, '-' and '.'";
    if text.is_empty() {
        return Err(NameError::Empty);
    }
    if text.len() > 253 {
        return Err(NameError::TooLong { max: 253 });
    }
    text.split('.')
        .try_for_each(|label| check_label(label, ALLOWED))
}

/// A Kubernetes node name (also used for peers): an RFC 1123 DNS subdomain,
/// lower case, at most 253 bytes, labels at most 63.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName(String);

impl NodeName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodeName {
    type Err = NameError;
    fn from_str(text: &str) -> Result<Self, NameError> {
        check_subdomain(text)?;
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A short name: an RFC 1123 DNS label (lower case, at most 63 bytes).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label(String);

impl Label {
    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Label {
    type Err = NameError;
    fn from_str(text: &str) -> Result<Self, NameError> {
        if text.is_empty() {
            return Err(NameError::Empty);
        }
        if text.len() > 63 {
            return Err(NameError::TooLong { max: 63 });
        }
        check_label(text, "a-z, 0-9 and '-'")?;
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

try_from_str!(NodeName, Label);

serde_as_string!(NodeName, Label);
