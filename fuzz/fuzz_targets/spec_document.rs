//! Any bytes a user may hand to `tfagentctl apply -f`: parsing and
//! validation must never panic, and whatever validates must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tfagent_spec::{SpecDocument, ValidationContext};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(document) = SpecDocument::parse(text) else {
        return;
    };
    if let Ok(spec) = document.validate(&ValidationContext::default()) {
        let again = spec
            .to_document()
            .validate(&ValidationContext::default())
            .expect("a normalised spec validates");
        assert_eq!(again, spec);
    }
});
