//! Sizes in bytes, with decimal and binary units.

use std::fmt;
use std::str::FromStr;

use super::text::{serde_as_string, try_from_str};

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ByteSizeError {
    /// Nothing given.
    #[error("required")]
    Empty,
    /// Not a number with an optional unit.
    #[error("not a size (e.g. 50GiB, 10G, 512MiB or a number of bytes)")]
    Invalid,
    /// Beyond 2^64 - 1 bytes.
    #[error("too large")]
    TooLarge,
}

/// A number of bytes, written "50GiB", "10G", "512MiB" or "1073741824":
/// K/M/G/T are decimal, Ki/Mi/Gi/Ti binary, a trailing B optional.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ByteSize(u64);

impl ByteSize {
    /// A size of `bytes` bytes.
    pub fn from_bytes(bytes: u64) -> Self {
        Self(bytes)
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

const KI: u64 = 1 << 10;
const KB: u64 = 1000;
const SIZE_UNITS: [(u64, &str); 8] = [
    (KI * KI * KI * KI, "TiB"),
    (KI * KI * KI, "GiB"),
    (KI * KI, "MiB"),
    (KI, "KiB"),
    (KB * KB * KB * KB, "TB"),
    (KB * KB * KB, "GB"),
    (KB * KB, "MB"),
    (KB, "KB"),
];

impl FromStr for ByteSize {
    type Err = ByteSizeError;
    fn from_str(text: &str) -> Result<Self, ByteSizeError> {
        if text.is_empty() {
            return Err(ByteSizeError::Empty);
        }
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        if digits.is_empty() {
            return Err(ByteSizeError::Invalid);
        }
        let unit = unit.to_ascii_lowercase();
        let unit = unit.strip_suffix('b').unwrap_or(&unit);
        let multiplier = match unit {
            "" => 1,
            "k" => KB,
            "m" => KB * KB,
            "g" => KB * KB * KB,
            "t" => KB * KB * KB * KB,
            "ki" => KI,
            "mi" => KI * KI,
            "gi" => KI * KI * KI,
            "ti" => KI * KI * KI * KI,
            _ => return Err(ByteSizeError::Invalid),
        };
        let number: u64 = digits.parse().map_err(|_| ByteSizeError::TooLarge)?;
        number
            .checked_mul(multiplier)
            .map(Self)
            .ok_or(ByteSizeError::TooLarge)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The exact unit giving the smallest number: 10G rather than 9765625KiB.
        let best = SIZE_UNITS
            .iter()
            .filter(|(size, _)| self.0 != 0 && self.0.is_multiple_of(*size))
            .min_by_key(|(size, _)| self.0 / size);
        match best {
            Some((size, unit)) => write!(f, "{}{unit}", self.0 / size),
            None => write!(f, "{}", self.0),
        }
    }
}

try_from_str!(ByteSize);

serde_as_string!(ByteSize);
