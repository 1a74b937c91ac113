//! Shared helpers of the unit tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::spec::{NodeSpec, SpecDocument, ValidationContext};

/// The text of an example spec under examples/.
pub fn example_text(name: &str) -> &'static str {
    match name {
        "server-init" => include_str!("../../examples/server-init.yaml"),
        "server-join" => include_str!("../../examples/server-join.yaml"),
        "agent" => include_str!("../../examples/agent.yaml"),
        other => panic!("no example {other}"),
    }
}

pub fn example_document(name: &str) -> SpecDocument {
    SpecDocument::parse(example_text(name)).unwrap()
}

pub fn example_spec(name: &str) -> NodeSpec {
    example_document(name)
        .validate(&ValidationContext::default())
        .unwrap()
}
