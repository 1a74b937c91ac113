//! The cluster token never shows, and a redacted spec cannot be re-applied.

use super::*;

#[test]
fn redacted_spec_cannot_be_reapplied() {
    let spec = valid(&base());
    let redacted = spec.redacted_document();
    assert_eq!(redacted.cluster.token, REDACTED);
    assert!(!redacted.to_yaml().unwrap().contains(TOKEN));
    let errors = errors(&redacted);
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].to_string(),
        "cluster.token: is the redaction placeholder from `get spec`; supply the real token"
    );
}

#[test]
fn token_never_printed() {
    let spec = valid(&base());
    assert!(!format!("{spec:?}").contains(TOKEN));
    assert!(!format!("{:?}", spec.to_document()).contains(TOKEN));
    assert_eq!(spec.cluster.token.to_string(), REDACTED);

    for token in [
        "hunter2 with spaces",
        "hunter2\u{7}bell",
        &"hunter2".repeat(100),
    ] {
        let mut doc = base();
        doc.cluster.token = token.into();
        doc.node_name = token.into();
        let errors = errors(&doc);
        assert!(
            errors.iter().any(|e| e.path == "cluster.token"),
            "{errors:?}"
        );
        let errs = doc.validate(&ValidationContext::default()).unwrap_err();
        assert!(
            !errs.to_string().contains("hunter2 with")
                && !errs.to_string().contains("hunter2hunter2")
        );
    }
}

#[test]
fn secret_redacts() {
    let secret = Secret::new("s3cr3t");
    assert_eq!(format!("{secret} {secret:?}"), "<redacted> <redacted>");
    assert_eq!(secret.expose(), "s3cr3t");
}

#[test]
fn a_token_of_the_wrong_type_is_not_echoed() {
    let err = SpecDocument::parse(r#"{"cluster": {"token": 99887766554433}}"#)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("cluster.token: must be a string"), "{err}");
    assert!(!err.contains("99887766554433"), "{err}");
    let err = SpecDocument::parse("cluster:\n  token: [99887766554433]\n")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("99887766554433"), "{err}");
}
