//! `tfagentctl events`: the agent's recent events, and with `--follow` the
//! new ones as they come.

use std::io::{self, Write};

use serde::Serialize;
use tfagent_proto::v1 as pb;

use crate::output::{Output, Style, kebab, time};

#[derive(Serialize)]
struct EventView {
    sequence: u64,
    time: Option<String>,
    generation: u64,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phase: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
}

/// One event: a line of the table, a line of JSON, or a YAML list item.
pub(crate) fn write(
    out: &mut dyn Write,
    output: Output,
    style: Style,
    event: &pb::Event,
) -> io::Result<()> {
    let mut view = EventView {
        sequence: event.sequence,
        time: time(event.time.as_ref()),
        generation: event.generation,
        kind: "unknown",
        step: None,
        phase: None,
        message: String::new(),
    };
    match &event.kind {
        Some(pb::event::Kind::SpecAccepted(_)) => view.kind = "spec-accepted",
        Some(pb::event::Kind::Step(step)) => {
            view.kind = "step";
            view.step = Some(step.step.clone());
            view.phase = Some(pb::StepPhase::try_from(step.phase).map_or_else(
                |_| format!("unknown({})", step.phase),
                |p| kebab(p.as_str_name(), "STEP_PHASE_"),
            ));
            view.message = step.message.clone();
        }
        None => {}
    }
    match output {
        // One JSON object per line, so `--follow -o json` can be piped.
        Output::Json => {
            serde_json::to_writer(&mut *out, &view).map_err(io::Error::from)?;
            writeln!(out)
        }
        Output::Yaml => {
            let text = serde_yaml_ng::to_string(&[&view]).map_err(io::Error::other)?;
            out.write_all(text.as_bytes())
        }
        Output::Table => {
            let what = match (&view.step, &view.phase) {
                (Some(step), Some(phase)) => {
                    // Wider than any phase, as earlier versions printed it,
                    // so scripts that cut the columns keep working.
                    let phase_width = 15;
                    let painted = match phase.as_str() {
                        "converged" => style.paint(&format!("{phase:<phase_width$}"), "32"),
                        "failed" => style.paint(&format!("{phase:<phase_width$}"), "31"),
                        "blocked" => style.paint(&format!("{phase:<phase_width$}"), "33"),
                        _ => format!("{phase:<phase_width$}"),
                    };
                    format!("{step:<9} {painted} {}", view.message)
                }
                _ => "spec accepted".to_owned(),
            };
            writeln!(
                out,
                "{} #{:<5} gen {:<4} {}",
                view.time.unwrap_or_default(),
                view.sequence,
                view.generation,
                what.trim_end()
            )
        }
    }
}
