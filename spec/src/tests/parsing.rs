//! Parsing and serializing documents.

use super::*;

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let yaml = "network:\n  wireguard:\n    peers:\n      - name: a\n        publickey: x\n";
    let err = SpecDocument::parse(yaml).unwrap_err();
    let ParseError::Invalid {
        format,
        path,
        message,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (*format, path.as_str()),
        ("YAML", "network.wireguard.peers[0].publickey")
    );
    assert!(
        message.contains("unknown field `publickey`, expected one of"),
        "{message}"
    );
    assert!(
        err.to_string()
            .starts_with("network.wireguard.peers[0].publickey: unknown field `publickey`"),
        "{err}"
    );

    let json = r#"{"network": {"wireguard": {"peers": [{"name": "a", "publickey": "x"}]}}}"#;
    let err = SpecDocument::parse(json).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("network.wireguard.peers[0].publickey: unknown field `publickey`"),
        "{err}"
    );
    assert!(matches!(err, ParseError::Invalid { format: "JSON", .. }));

    let err = SpecDocument::parse("nodename: x\n").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("nodename: unknown field `nodename`"),
        "{err}"
    );
}

#[test]
fn wrong_types_are_refused_with_their_path() {
    let err = SpecDocument::parse("network:\n  wireguard:\n    listen_port: many\n").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("network.wireguard.listen_port: invalid type"),
        "{err}"
    );
    let err =
        SpecDocument::parse(r#"{"storage": {"volumes": [{"mount_options": "a,b"}]}}"#).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("storage.volumes[0].mount_options: invalid type"),
        "{err}"
    );
    let err = SpecDocument::parse("- a\n- b\n").unwrap_err();
    assert!(err.to_string().starts_with("invalid YAML: "), "{err}");
    let err = SpecDocument::parse("{\"role\": \"agent\"} trailing").unwrap_err();
    assert!(err.to_string().starts_with("invalid JSON: "), "{err}");
    let err = SpecDocument::parse("role: [unclosed\n").unwrap_err();
    assert!(
        matches!(err, ParseError::Invalid { format: "YAML", .. }),
        "{err:?}"
    );
}

#[test]
fn empty_and_oversized_input_is_refused() {
    assert_eq!(SpecDocument::parse(""), Err(ParseError::Empty));
    assert_eq!(SpecDocument::parse(" \n\t\n"), Err(ParseError::Empty));
    let big = format!(
        "node_name: x\n#{}\n",
        "x".repeat(limits::MAX_DOCUMENT_BYTES)
    );
    assert!(matches!(
        SpecDocument::parse(&big),
        Err(ParseError::TooLarge { .. })
    ));
}

#[test]
fn lenient_structure_strict_meaning() {
    // Empty sections, a BOM, and scalars YAML reads as numbers all parse.
    let doc = SpecDocument::parse(
        "\u{feff}node_name: 1234\ncluster:\nnetwork:\n  wireguard:\n    peers:\n",
    )
    .unwrap();
    assert_eq!(doc.node_name, "1234");
    assert_eq!(doc.cluster, ClusterDoc::default());
    let doc = SpecDocument::parse("{}").unwrap();
    assert_eq!(doc, SpecDocument::default());
}

#[test]
fn serialization_omits_empty_fields_and_round_trips() {
    assert_eq!(SpecDocument::default().to_json_pretty().unwrap(), "{}");
    assert_eq!(SpecDocument::default().to_yaml().unwrap().trim(), "{}");
    for (name, text) in EXAMPLES {
        let doc = SpecDocument::parse(text).unwrap();
        assert_eq!(
            SpecDocument::parse(&doc.to_yaml().unwrap()).unwrap(),
            doc,
            "{name}"
        );
        assert_eq!(
            SpecDocument::parse(&doc.to_json_pretty().unwrap()).unwrap(),
            doc,
            "{name}"
        );
        assert!(
            !doc.to_json_pretty().unwrap().contains("\"\""),
            "{name}: empty strings serialized"
        );
    }
}
