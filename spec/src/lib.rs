//! The node's desired state: the user-facing [`SpecDocument`] and the
//! validated, typed [`NodeSpec`] the rest of the agent works from.
//!
//! A document is parsed permissively (every leaf is a plain string, number,
//! bool or list), so that [`SpecDocument::validate`] can report every semantic
//! fault at once, each with its field path in the document's own terms.
//! Validation fills in the defaults; [`NodeSpec::to_document`] gives them back
//! explicitly.

pub mod defaults;
mod document;
mod keys;
pub mod limits;
mod model;
#[cfg(feature = "proto")]
pub mod proto;
mod types;
mod validate;
pub mod wgquick;

#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
#[cfg(test)]
mod tests;

pub use document::{
    AddonsDoc, CertManagerDoc, ClusterDoc, IngressNginxDoc, LocalPathDoc, LonghornDoc, MetallbDoc,
    NetworkDoc, ParseError, PeerDoc, PersistDoc, PersistPathDoc, ServiceDoc, ServicesDoc,
    SpecDocument, StorageDoc, VipDoc, VipServerDoc, VolumeDoc, WireguardDoc,
};
pub use keys::KeyPair;
pub use model::{
    Addons, CertManager, Cluster, LocalPath, Longhorn, Metallb, Network, NodeSpec, Peer, Persist,
    PersistPath, Service, Services, Storage, Vip, VipServer, Volume, VolumeSource, Wireguard,
};
pub use types::{
    AbsPath, AcmeServer, AddressPool, ByteSize, ByteSizeError, ChoiceError, CidrError, Endpoint,
    EndpointError, Filesystem, FormatPolicy, Host, HostError, IfName, IfNameError, JoinUrl,
    JoinUrlError, KeyError, Label, NameError, NodeName, PathError, PoolError, Propagation,
    REDACTED, Role, Secret, WgKey, WipeSignature, WipeSignatureError, parse_network,
};
pub use validate::{
    AddonHost, FieldError, ServiceDirs, ValidationContext, ValidationErrors, host_paths,
};
