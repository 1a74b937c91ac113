//! Any bytes a remote caller may send as an Apply request's spec: decoding,
//! conversion and validation must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tfagent_spec::{SpecDocument, ValidationContext};
use tfagent_proto::v1::NodeSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = NodeSpec::decode(data) else {
        return;
    };
    let _ = SpecDocument::from(message).validate(&ValidationContext::default());
});
