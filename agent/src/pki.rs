//! Certificates of the remote API: who a client is (its access role, carried
//! in its certificate), when certificates expire, and a small CA for labs and
//! first setups (`tfagentctl certs init`).
//!
//! A client certificate names its role in the subject's Organization as
//! `tfagent:<role>`, as Kubernetes carries groups; exactly one such value.

use std::{
    fmt, fs, io,
    net::IpAddr,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    str::FromStr,
    time::{Duration, SystemTime},
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The prefix of the role value in a certificate's Organization.
const ROLE_PREFIX: &str = "tfagent:";
/// How long `certs init` makes certificates valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

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

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &crate::spec::REDACTED)
            .finish()
    }
}

/// A certificate authority that signs the node's and the clients'
/// certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    issued: Issued,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

fn validity(params: &mut CertificateParams, valid_for: Duration) {
    let now = time::OffsetDateTime::now_utc();
    // A little slack for clocks that disagree.
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + valid_for;
}

impl Authority {
    /// A new CA named `name`.
    pub fn generate(name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, CA_VALIDITY);
        let cert = params.self_signed(&key)?;
        let issued = Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(Self {
            issuer: Issuer::new(params, key),
            issued,
        })
    }

    pub fn certificate(&self) -> &Issued {
        &self.issued
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, LEAF_VALIDITY);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The node's server certificate, valid for its names and addresses.
    pub fn node(&self, names: &[String], addresses: &[IpAddr]) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map_or("tfagent", String::as_str),
        );
        for name in names {
            params
                .subject_alt_names
                .push(SanType::DnsName(name.clone().try_into()?));
        }
        params
            .subject_alt_names
            .extend(addresses.iter().copied().map(SanType::IpAddress));
        self.sign(params, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate for `name` with `role`.
    pub fn client(&self, name: &str, role: AccessRole) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, format!("{ROLE_PREFIX}{role}"));
        self.sign(params, ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// Writes `contents` to a new file (never over an existing one), with
/// `mode`.
pub fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let err = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    io::Write::write_all(&mut file, contents.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn der(pem_text: &str) -> Vec<u8> {
        pem::parse(pem_text).unwrap().into_contents()
    }

    #[test]
    fn a_client_certificate_carries_its_role_and_name() {
        let ca = Authority::generate("test CA").unwrap();
        for role in AccessRole::ALL {
            let issued = ca.client(&format!("{role}-client"), role).unwrap();
            let identity = client_identity(&der(&issued.cert_pem)).unwrap();
            assert_eq!(identity.role, role);
            assert_eq!(identity.name, format!("{role}-client"));
        }
    }

    #[test]
    fn certificates_without_one_known_role_are_refused() {
        let ca = Authority::generate("test CA").unwrap();
        let node = ca.node(&["node-1".into()], &[]).unwrap();
        assert!(matches!(
            client_identity(&der(&node.cert_pem)),
            Err(PkiError::NoRole)
        ));
        assert!(matches!(
            client_identity(b"not a certificate"),
            Err(PkiError::Parse(_))
        ));
        assert!("root".parse::<AccessRole>().is_err());
    }

    #[test]
    fn roles_are_ordered_by_what_they_may_do() {
        assert!(AccessRole::Admin > AccessRole::Operator);
        assert!(AccessRole::Operator > AccessRole::Reader);
    }

    #[test]
    fn expiry_is_read_from_the_certificate() {
        let ca = Authority::generate("test CA").unwrap();
        let issued = ca.client("c", AccessRole::Reader).unwrap();
        let expires = not_after(&der(&issued.cert_pem)).unwrap();
        let left = expires.duration_since(SystemTime::now()).unwrap();
        assert!(left > LEAF_VALIDITY - Duration::from_secs(60));
        assert!(left <= LEAF_VALIDITY);
    }
}
