//! Certificates of the remote API: who a client is (its access role, carried
//! in its certificate), when certificates expire, and a small CA for labs and
//! first setups (`tfagentctl certs init`, feature `issue`).

mod error;
mod expiry;
#[cfg(feature = "issue")]
mod issue;
mod role;

pub use error::PkiError;
pub use expiry::{not_after, read_pem_certificates};
#[cfg(feature = "issue")]
pub use issue::{Authority, CA_VALIDITY, Issued, LEAF_VALIDITY, write_new};
pub use role::{AccessRole, ClientIdentity, client_identity};

#[cfg(all(test, feature = "issue"))]
mod tests;
