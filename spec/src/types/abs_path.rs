//! Absolute paths in canonical form.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use super::text::{serde_as_string, try_from_str};
use crate::limits::MAX_STRING_BYTES;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Nothing given.
    #[error("required")]
    Empty,
    /// Over [`MAX_STRING_BYTES`].
    #[error("longer than {MAX_STRING_BYTES} bytes")]
    TooLong,
    /// Does not start with `/`.
    #[error("must be an absolute path")]
    NotAbsolute,
    /// NUL or another control character.
    #[error("must not contain control characters")]
    BadChar,
    /// A `.` or `..` component.
    #[error("must not contain `.` or `..` components")]
    DotComponent,
    /// `//` inside the path.
    #[error("must not contain `//`")]
    EmptyComponent,
    /// A trailing `/` (other than the root itself).
    #[error("must not end with `/`")]
    TrailingSlash,
}

/// An absolute path in canonical form: starts with `/`, no `.` or `..`
/// components, no `//`, no trailing slash except `/` itself, no control
/// characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AbsPath(String);

impl AbsPath {
    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path as a [`Path`].
    pub fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }

    /// Whether `self` is `dir` or lies below it (component-wise).
    pub fn is_within(&self, dir: &AbsPath) -> bool {
        self.as_path().starts_with(dir.as_path())
    }
}

impl FromStr for AbsPath {
    type Err = PathError;
    fn from_str(text: &str) -> Result<Self, PathError> {
        if text.is_empty() {
            return Err(PathError::Empty);
        }
        if text.len() > MAX_STRING_BYTES {
            return Err(PathError::TooLong);
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(PathError::NotAbsolute);
        };
        if text.chars().any(char::is_control) {
            return Err(PathError::BadChar);
        }
        if rest.is_empty() {
            return Ok(Self(text.to_owned()));
        }
        if rest.ends_with('/') {
            return Err(PathError::TrailingSlash);
        }
        for component in rest.split('/') {
            match component {
                "" => return Err(PathError::EmptyComponent),
                "." | ".." => return Err(PathError::DotComponent),
                _ => {}
            }
        }
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Display for AbsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

try_from_str!(AbsPath);

serde_as_string!(AbsPath);
