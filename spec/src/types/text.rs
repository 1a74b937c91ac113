//! How the newtypes are written: as their text, in serde and in messages.

/// Serializes a type as its `Display` text and deserializes it through `FromStr`.
macro_rules! serde_as_string {
    ($($t:ty),+ $(,)?) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )+};
}

pub(super) use serde_as_string;

/// `TryFrom<&str>` through `FromStr`.
macro_rules! try_from_str {
    ($($t:ty),+ $(,)?) => {$(
        impl TryFrom<&str> for $t {
            type Error = <$t as FromStr>::Err;
            fn try_from(text: &str) -> Result<Self, Self::Error> {
                text.parse()
            }
        }
    )+};
}

pub(super) use try_from_str;

/// Shows a piece of user input inside a message: quoted, escaped and cut short.
pub(super) fn quote(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut shown: String = text
        .chars()
        .take(MAX_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        shown.push('…');
    }
    format!("`{shown}`")
}
