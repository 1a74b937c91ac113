//! Fields that take one of a fixed set of words.

use std::fmt;
use std::str::FromStr;

use super::text::{quote, serde_as_string, try_from_str};

/// Why a value of a fixed set of choices was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    /// Nothing given.
    #[error("required")]
    Empty,
    /// Not one of the choices.
    #[error("{} is not one of {}", quote(.value), .expected.join(", "))]
    Unknown {
        /// What was given.
        value: String,
        /// The choices.
        expected: &'static [&'static str],
    },
}

/// An enum written as fixed kebab-case words.
macro_rules! choice_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $( $(#[$vmeta])* $variant, )+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            const TEXTS: &'static [&'static str] = &[$($text),+];

            /// The document's word for this value.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }

        impl FromStr for $name {
            type Err = ChoiceError;
            fn from_str(text: &str) -> Result<Self, ChoiceError> {
                match text {
                    "" => Err(ChoiceError::Empty),
                    $($text => Ok($name::$variant),)+
                    other => Err(ChoiceError::Unknown { value: other.to_owned(), expected: Self::TEXTS }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

choice_enum! {
    /// What the node is in the cluster.
    Role {
        /// The first server: initialises embedded etcd.
        ServerInit => "server-init",
        /// A further server joining through `cluster.join_url`.
        ServerJoin => "server-join",
        /// A worker (k3s agent).
        Agent => "agent",
    }
}

impl Role {
    /// Whether the node runs a k3s server.
    pub fn is_server(self) -> bool {
        matches!(self, Self::ServerInit | Self::ServerJoin)
    }
}

choice_enum! {
    /// When the agent may create a filesystem on a device volume.
    #[derive(Default)]
    FormatPolicy {
        /// Never: the device must already hold the filesystem.
        Never => "never",
        /// Only when the device holds no signature at all (the default).
        #[default]
        IfBlank => "if-blank",
        /// Also over the exact signature named by `wipe_signature`.
        Wipe => "wipe",
    }
}

choice_enum! {
    /// Which Let's Encrypt directory cert-manager uses.
    #[derive(Default)]
    AcmeServer {
        /// The staging directory (untrusted certificates, generous limits; the default).
        #[default]
        Staging => "staging",
        /// The production directory.
        Production => "production",
    }
}

impl AcmeServer {
    /// The ACME directory URL.
    pub fn directory_url(self) -> &'static str {
        match self {
            Self::Staging => "https://acme-staging-v02.api.letsencrypt.org/directory",
            Self::Production => "https://acme-v02.api.letsencrypt.org/directory",
        }
    }
}

choice_enum! {
    /// Filesystems a device volume may carry.
    #[derive(Default)]
    Filesystem {
        /// btrfs (the only one the zOS kernel has; the default).
        #[default]
        Btrfs => "btrfs",
        /// ext4.
        Ext4 => "ext4",
        /// XFS.
        Xfs => "xfs",
    }
}

choice_enum! {
    /// Mount propagation of a persisted path (see mount_namespaces(7)).
    Propagation {
        /// Mounts below it are not shared with other mount namespaces.
        Private => "private",
        /// Mounts below it are shared both ways, recursively (what the
        /// kubelet and Longhorn need for the volumes they mount).
        Rshared => "rshared",
    }
}

try_from_str!(Role, FormatPolicy, AcmeServer, Filesystem, Propagation);

serde_as_string!(Role, FormatPolicy, AcmeServer, Filesystem, Propagation);
