//! Reading certificates: when they expire, and the certificates of a PEM
//! file.

use std::{
    fs,
    path::Path,
    time::{Duration, SystemTime},
};

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::PkiError;

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
