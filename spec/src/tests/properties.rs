//! Property tests over any text, any document and valid specs.

use super::*;

/// `parse(display(x)) == x` whenever `text` parses.
fn display_round_trips<T>(text: &str) -> Result<(), TestCaseError>
where
    T: std::str::FromStr + std::fmt::Display + std::fmt::Debug + PartialEq,
{
    if let Ok(value) = text.parse::<T>() {
        let shown = value.to_string();
        prop_assert_eq!(
            shown.parse::<T>().ok(),
            Some(value),
            "{:?} shown as {:?}",
            text,
            shown
        );
    }
    Ok(())
}

fn all_display_round_trips(text: &str) -> Result<(), TestCaseError> {
    display_round_trips::<NodeName>(text)?;
    display_round_trips::<Label>(text)?;
    display_round_trips::<IfName>(text)?;
    display_round_trips::<WgKey>(text)?;
    display_round_trips::<AbsPath>(text)?;
    display_round_trips::<Host>(text)?;
    display_round_trips::<Endpoint>(text)?;
    display_round_trips::<JoinUrl>(text)?;
    display_round_trips::<ByteSize>(text)?;
    display_round_trips::<Role>(text)?;
    display_round_trips::<FormatPolicy>(text)?;
    display_round_trips::<AcmeServer>(text)?;
    display_round_trips::<Filesystem>(text)?;
    display_round_trips::<WipeSignature>(text)?;
    display_round_trips::<AddressPool>(text)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_never_panics(text in any::<String>()) {
        if let Ok(doc) = SpecDocument::parse(&text) {
            let _ = doc.validate(&ValidationContext::default());
        }
    }

    #[test]
    fn parse_never_panics_on_yaml_like_text(text in "[a-z_:\\-\\[\\]{}, \n\"0-9./]{0,200}") {
        if let Ok(doc) = SpecDocument::parse(&text) {
            let _ = doc.validate(&ValidationContext::default());
        }
    }

    #[test]
    fn validate_never_panics_and_never_leaks_the_token(mut doc in arb_doc(), own in any::<[u8; 32]>()) {
        doc.cluster.token = format!("{}zz-secret-zz", doc.cluster.token);
        let ctx = ValidationContext {
            own_public_key: Some(WgKey::from_bytes(own)),
            kernel_filesystems: Some(BTreeSet::from(["btrfs".to_owned()])),
            ..ValidationContext::default()
        };
        if let Err(errors) = doc.validate(&ctx) {
            prop_assert!(!errors.is_empty());
            prop_assert!(!errors.to_string().contains("zz-secret-zz"));
        }
    }

    #[test]
    fn newtypes_round_trip_through_display_from_any_text(text in any::<String>()) {
        all_display_round_trips(&text)?;
    }

    #[test]
    fn newtypes_round_trip_through_display_from_likely_text(
        text in "[a-zA-Z0-9.:/\\-\\[\\]=+@]{0,48}",
    ) {
        all_display_round_trips(&text)?;
    }

    #[test]
    fn generated_values_round_trip(endpoint in arb_endpoint(), size in any::<u64>(), host in arb_host()) {
        prop_assert_eq!(endpoint.to_string().parse::<Endpoint>(), Ok(endpoint.clone()));
        let url = JoinUrl::new(endpoint);
        prop_assert_eq!(url.to_string().parse::<JoinUrl>(), Ok(url));
        let size = ByteSize::from_bytes(size);
        prop_assert_eq!(size.to_string().parse::<ByteSize>(), Ok(size));
        prop_assert_eq!(host.to_string().parse::<Host>(), Ok(host));
    }

    #[test]
    fn valid_specs_validate_and_round_trip(spec in arb_spec()) {
        let doc = spec.to_document();
        prop_assert_eq!(doc.validate(&ValidationContext::default()), Ok(spec.clone()));
        let yaml = doc.to_yaml().unwrap();
        prop_assert_eq!(SpecDocument::parse(&yaml).map_err(|e| e.to_string()), Ok(doc.clone()));
        let json = doc.to_json_pretty().unwrap();
        prop_assert_eq!(SpecDocument::parse(&json).map_err(|e| e.to_string()), Ok(doc));
    }

    #[test]
    fn keys_of_32_random_bytes_are_accepted(bytes in any::<[u8; 32]>()) {
        let text = BASE64.encode(bytes);
        let key: WgKey = text.parse().unwrap();
        prop_assert_eq!(key.as_bytes(), &bytes);
        prop_assert_eq!(key.to_string(), text);
    }

    #[test]
    fn keys_of_other_lengths_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        prop_assume!(bytes.len() != 32);
        let text = BASE64.encode(&bytes);
        prop_assert_eq!(text.parse::<WgKey>().err(), Some(if bytes.is_empty() {
            KeyError::Empty
        } else {
            KeyError::Length { len: bytes.len() }
        }));
    }

    #[test]
    fn cidrs_with_host_bits_are_refused(v4 in any::<[u8; 4]>(), p4 in 0u8..=32, v6 in any::<[u16; 8]>(), p6 in 0u8..=128) {
        for (addr, prefix) in [(IpAddr::from(v4), p4), (IpAddr::from(v6), p6)] {
            let given = IpNet::new(addr, prefix).unwrap();
            let result = parse_network(&given.to_string());
            if given.trunc() == given {
                prop_assert_eq!(result, Ok(given));
            } else {
                prop_assert_eq!(result, Err(CidrError::HostBits { suggestion: given.trunc() }));
                let message = parse_network(&given.to_string()).unwrap_err().to_string();
                prop_assert!(message.contains("not a network address, did you mean"));
            }
        }
    }
}
