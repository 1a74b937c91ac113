//! Issued certificates read back: roles, names, expiry.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use crate::*;

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
