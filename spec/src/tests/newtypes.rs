//! The newtypes: what each accepts and refuses, and how it is written.

use super::*;

#[test]
fn newtype_tables() {
    for ok in ["a", "node-1", "a.b-c.d", "0abc", &"a".repeat(63)] {
        assert!(ok.parse::<NodeName>().is_ok(), "{ok}");
    }
    for bad in ["", "A", "a_b", "a.", ".a", "a-", &"a".repeat(64)] {
        assert!(bad.parse::<NodeName>().is_err(), "{bad}");
    }
    for ok in ["eth0", "tfk3s", "wg.mesh-1", "a", "123456789012345"] {
        assert!(IfName::try_from(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "1234567890123456",
        "a b",
        "a:b",
        "a/b",
        ".",
        "..",
        "a\0",
    ] {
        assert!(IfName::try_from(bad).is_err(), "{bad:?}");
    }
    for (text, shown) in [
        ("50GiB", "50GiB"),
        ("10G", "10GB"),
        ("10gb", "10GB"),
        ("512MiB", "512MiB"),
        ("1073741824", "1GiB"),
        ("1000", "1KB"),
        ("1001", "1001"),
        ("0", "0"),
        ("2Ti", "2TiB"),
        ("3k", "3KB"),
        ("1b", "1"),
    ] {
        assert_eq!(
            text.parse::<ByteSize>().unwrap().to_string(),
            shown,
            "{text}"
        );
    }
    assert_eq!("50GiB".parse::<ByteSize>().unwrap().bytes(), 50 * (1 << 30));
    assert_eq!("10G".parse::<ByteSize>().unwrap().bytes(), 10_000_000_000);
    for bad in [
        "",
        "G",
        "1.5G",
        "-1",
        "1 G",
        "1PB",
        "1iB",
        "18446744073709551616",
        "17179869184GiB",
    ] {
        assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
    }
    for (text, shown) in [
        ("10.0.0.1:51820", "10.0.0.1:51820"),
        ("[2001:db8::1]:51820", "[2001:db8::1]:51820"),
        ("Node.Example.COM:1", "node.example.com:1"),
        ("h:0080", "h:80"),
    ] {
        assert_eq!(
            text.parse::<Endpoint>().unwrap().to_string(),
            shown,
            "{text}"
        );
    }
    for bad in [
        "",
        "host",
        ":80",
        "host:",
        "host:65536",
        "2001:db8::1:80",
        "[2001:db8::1]",
        "[10.0.0.1]:80",
        "a b:1",
        "1.2.3:80",
    ] {
        assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
    }
    for ok in [
        "/",
        "/a",
        "/a/b.c",
        "/dev/disk/by-id/nvme-x_y",
        "/a/..b",
        "/a/.b",
    ] {
        assert!(AbsPath::try_from(ok).is_ok(), "{ok}");
    }
    for bad in [
        "", "a", "./a", "/a/", "//", "/a//b", "/a/./b", "/..", "/a\nb",
    ] {
        assert!(AbsPath::try_from(bad).is_err(), "{bad:?}");
    }
    let dir: AbsPath = "/var/lib".parse().unwrap();
    assert!(AbsPath::try_from("/var/lib/k3s").unwrap().is_within(&dir));
    assert!(!AbsPath::try_from("/var/libx").unwrap().is_within(&dir));
    assert_eq!("blank".parse::<WipeSignature>(), Ok(WipeSignature::Blank));
    for bad in [
        "",
        "Blank",
        "e46b2aff95514548b36396d2ac90bb41",
        "e46b2aff-9551-4548-b363-96d2ac90bb4g",
    ] {
        assert!(bad.parse::<WipeSignature>().is_err(), "{bad}");
    }
    assert!(
        Role::ServerInit.is_server() && Role::ServerJoin.is_server() && !Role::Agent.is_server()
    );
    assert_eq!(
        Role::ALL
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["server-init", "server-join", "agent"]
    );
    assert_eq!(FormatPolicy::default(), FormatPolicy::IfBlank);
    assert_eq!(AcmeServer::default(), AcmeServer::Staging);
    assert!(
        AcmeServer::Production
            .directory_url()
            .starts_with("https://acme-v02.")
    );
}

#[test]
fn newtypes_serialize_as_strings() {
    let key = WgKey::from_bytes([1; 32]);
    let json = serde_json::to_string(&key).unwrap();
    assert_eq!(json, format!("\"{key}\""));
    assert_eq!(serde_json::from_str::<WgKey>(&json).unwrap(), key);
    assert!(serde_json::from_str::<IfName>("\"a/b\"").is_err());
    assert_eq!(
        serde_json::from_str::<Role>("\"agent\"").unwrap(),
        Role::Agent
    );
}
