//! What goes wrong with certificates.

use std::{io, path::PathBuf};

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
