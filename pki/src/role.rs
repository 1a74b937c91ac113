//! Who a client is: its access role, carried in its certificate's subject
//! Organization as `tfagent:<role>` (as Kubernetes carries groups), exactly
//! one such value.

use std::{fmt, str::FromStr};

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::PkiError;

/// The prefix of the role value in a certificate's Organization.
pub(crate) const ROLE_PREFIX: &str = "tfagent:";

/// What a caller may do. Ordered: each role may do what the ones below it
/// may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccessRole {
    /// Get, status, events, logs, info.
    Reader,
    /// A reader that may also apply, confirm and restart services.
    Operator,
    /// Everything.
    Admin,
}

impl AccessRole {
    pub const ALL: [AccessRole; 3] = [AccessRole::Admin, AccessRole::Operator, AccessRole::Reader];

    pub fn as_str(self) -> &'static str {
        match self {
            AccessRole::Reader => "reader",
            AccessRole::Operator => "operator",
            AccessRole::Admin => "admin",
        }
    }
}

impl fmt::Display for AccessRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccessRole {
    type Err = PkiError;

    fn from_str(text: &str) -> Result<Self, PkiError> {
        AccessRole::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| PkiError::UnknownRole(text.to_owned()))
    }
}

/// A client, as its certificate names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject's common name.
    pub name: String,
    pub role: AccessRole,
}

/// Reads the client identity from a DER certificate (already verified by
/// the TLS handshake against the client CA).
pub fn client_identity(der: &[u8]) -> Result<ClientIdentity, PkiError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| PkiError::Parse(e.to_string()))?;
    let subject = cert.subject();
    let mut roles = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .filter_map(|o| o.strip_prefix(ROLE_PREFIX));
    let role = roles.next().ok_or(PkiError::NoRole)?;
    if roles.next().is_some() {
        return Err(PkiError::SeveralRoles);
    }
    let name = subject
        .iter_common_name()
        .find_map(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok(ClientIdentity {
        name,
        role: role.parse()?,
    })
}
