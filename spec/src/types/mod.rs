//! Newtypes that validate on construction and print back their canonical text.
//!
//! Their error messages never repeat the input (the caller knows the field it
//! came from), so they are safe to show for any field.

mod abs_path;
mod address_pool;
mod byte_size;
mod choices;
mod cidr;
mod host;
mod if_name;
mod names;
mod secret;
mod text;
mod wg_key;
mod wipe_signature;

pub use abs_path::{AbsPath, PathError};
pub use address_pool::{AddressPool, PoolError};
pub use byte_size::{ByteSize, ByteSizeError};
pub use choices::{AcmeServer, ChoiceError, Filesystem, FormatPolicy, Propagation, Role};
pub use cidr::{CidrError, parse_network};
pub(crate) use cidr::{nets_overlap, zos_reserved};
pub use host::{Endpoint, EndpointError, Host, HostError, JoinUrl, JoinUrlError};
pub use if_name::{IfName, IfNameError};
pub use names::{Label, NameError, NodeName};
pub use secret::{REDACTED, Secret};
pub use wg_key::{KeyError, WgKey};
pub use wipe_signature::{WipeSignature, WipeSignatureError};
