//! `tfagentctl apply`: reading the spec to send, and the plan the agent
//! answers with.

use std::{
    fs,
    io::{self, Write},
    path::Path,
};

use serde::Serialize;
use tfagent_proto::v1 as pb;
use tfagent_spec::{SpecDocument, ValidationContext, limits};

use crate::{
    error::CtlError,
    output::{Output, Style, structured},
};

/// Reads and parses the spec of `apply -f FILE` (`-` is stdin), before any
/// connection: a bad file needs no agent to report.
pub(crate) fn read_spec(file: &Path) -> Result<SpecDocument, CtlError> {
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        io::Read::read_to_string(
            &mut io::Read::take(io::stdin(), limits::MAX_DOCUMENT_BYTES as u64 + 1),
            &mut text,
        )
        .map_err(|e| CtlError::new(format!("reading the spec from stdin: {e}")))?;
        text
    } else {
        let meta =
            fs::metadata(file).map_err(|e| CtlError::new(format!("{}: {e}", file.display())))?;
        if meta.len() > limits::MAX_DOCUMENT_BYTES as u64 {
            return Err(CtlError::new(format!(
                "{}: larger than a spec may be ({} bytes)",
                file.display(),
                limits::MAX_DOCUMENT_BYTES
            )));
        }
        fs::read_to_string(file).map_err(|e| CtlError::new(format!("{}: {e}", file.display())))?
    };
    let document = SpecDocument::parse(&text)
        .map_err(|e| CtlError::new(format!("{}: {e}", file.display())))?;
    // The wire form cannot carry some faults (e.g. a misspelled role): those
    // are reported from here with their precise message. Everything else is
    // the agent's to judge, with what it knows of the host.
    let lossless = SpecDocument::from(pb::NodeSpec::from(document.clone())) == document;
    if !lossless && let Err(errors) = document.validate(&ValidationContext::default()) {
        return Err(CtlError {
            details: errors.iter().map(ToString::to_string).collect(),
            ..CtlError::new(format!(
                "{}: the spec is invalid: {} invalid field(s)",
                file.display(),
                errors.len()
            ))
        });
    }
    Ok(document)
}

#[derive(Serialize)]
struct ApplyView {
    dry_run: bool,
    generation: u64,
    changed: bool,
    plan: Vec<PlanView>,
}

#[derive(Serialize)]
struct PlanView {
    step: String,
    actions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The plan of `apply`, headed by what became of the spec.
pub(crate) fn write(
    out: &mut dyn Write,
    output: Output,
    style: Style,
    dry_run: bool,
    reply: &pb::ApplyResponse,
) -> io::Result<()> {
    let view = ApplyView {
        dry_run,
        generation: reply.generation,
        changed: reply.changed,
        plan: reply
            .plan
            .iter()
            .map(|p| PlanView {
                step: p.step.clone(),
                actions: p.actions.clone(),
                error: Some(p.error.clone()).filter(|e| !e.is_empty()),
            })
            .collect(),
    };
    if output != Output::Table {
        return structured(out, output, &view);
    }
    let headline = match (dry_run, reply.changed) {
        (true, true) => format!(
            "dry run: the spec differs from generation {}; nothing was stored",
            reply.generation
        ),
        (true, false) => format!(
            "dry run: the spec equals generation {}; nothing to do",
            reply.generation
        ),
        (false, true) => format!("applied: generation {}", reply.generation),
        (false, false) => format!("unchanged: generation {}", reply.generation),
    };
    writeln!(out, "{headline}")?;
    if !dry_run && !reply.changed {
        return Ok(());
    }
    writeln!(out, "plan:")?;
    for step in &view.plan {
        let (tag, lines) = match &step.error {
            Some(error) => (style.paint("cannot plan", "31"), vec![error.clone()]),
            None if step.actions.is_empty() => (style.paint("no change", "32"), Vec::new()),
            None => (
                style.paint(&format!("{} change(s)", step.actions.len()), "36"),
                step.actions.clone(),
            ),
        };
        writeln!(out, "  {:<9} {tag}", step.step)?;
        for line in lines {
            writeln!(out, "  {:<9}   {line}", "")?;
        }
    }
    Ok(())
}
