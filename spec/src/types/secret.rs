//! Secrets, and what is shown in their place.

use std::fmt;

/// What `get spec` shows in place of a secret. Validation refuses it as a
/// token, so a redacted spec cannot be re-applied by accident.
pub const REDACTED: &str = "<redacted>";

/// A secret string whose `Debug` and `Display` print [`REDACTED`]; only
/// [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; use it only where it must go (a 0600 file, a
    /// child's config), never in logs or errors.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}
