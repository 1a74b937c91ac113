//! Certificates of the remote API: who a client is (its access role, carried
//! in its certificate), when certificates expire, and a small CA for labs and
//! first setups (`tfagentctl certs init`).
//!
//! A client certificate names its role in the subject's Organization as
//! `tfagent:<role>`, as Kubernetes carries groups; exactly one such value.

use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
    str::FromStr,
    time::{Duration, SystemTime},
};

use x509_parser::prelude::{FromDer, X509Certificate};

#[cfg(feature = "issue")]
mod issue;

#[cfg(feature = "issue")]
pub use issue::{Authority, CA_VALIDITY, Issued, LEAF_VALIDITY, write_new};

/// The prefix of the role value in a certificate's Organization.
const ROLE_PREFIX: &str = "tfagent:";

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

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("not a certificate: {0}")]
    Parse(String),
    #[error("the certificate names no tfagent role (subject O=tfagent:admin|operator|reader)")]
    NoRole,
    #[error("the certificate names more than one tfagent role")]
    SeveralRoles,
    #[error("unknown role {0:?}: admin, operator or reader")]
    UnknownRole(String),
    #[cfg(feature = "issue")]
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
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

/// When a certificate stops being valid.
pub fn not_after(der: &[u8]) -> Result<SystemTime, PkiError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| PkiError::Parse(e.to_string()))?;
    let seconds = cert.validity().not_after.timestamp();
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
}

/// The DER blocks of every CERTIFICATE in a PEM file.
pub fn read_pem_certificates(path: &Path) -> Result<Vec<Vec<u8>>, PkiError> {
    let text = fs::read(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })?;
    let blocks = pem::parse_many(&text).map_err(|e| PkiError::Pem {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let certs: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|block| block.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    if certs.is_empty() {
        return Err(PkiError::Pem {
            path: path.to_owned(),
            message: "holds no CERTIFICATE".into(),
        });
    }
    Ok(certs)
}

#[cfg(all(test, feature = "issue"))]
mod tests;
