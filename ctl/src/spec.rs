//! `tfagentctl get spec`: the stored desired spec, secrets redacted.

use std::io::{self, Write};

use tfagent_spec::SpecDocument;

use crate::output::Output;

/// `get spec`: the stored spec as JSON, or as YAML under its generation.
pub(crate) fn write(
    out: &mut dyn Write,
    output: Output,
    generation: u64,
    document: SpecDocument,
) -> io::Result<()> {
    match output {
        Output::Json => {
            let text = document.to_json_pretty().map_err(io::Error::other)?;
            writeln!(out, "{text}")
        }
        // A spec is a document: the table form is its YAML.
        Output::Yaml | Output::Table => {
            let text = document.to_yaml().map_err(io::Error::other)?;
            writeln!(out, "# generation {generation}")?;
            out.write_all(text.as_bytes())
        }
    }
}
