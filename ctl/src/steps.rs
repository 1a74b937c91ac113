//! The steps section of `tfagentctl status`: each reconcile step, its
//! condition and the generation it converged to.

use std::io::{self, Write};

use serde::Serialize;
use tfagent_proto::v1 as pb;

use crate::output::{Style, condition_name, time};

#[derive(Serialize)]
pub(crate) struct StepView {
    step: String,
    condition: String,
    message: String,
    converged_generation: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    last_transition: Option<String>,
    last_run: Option<String>,
}

pub(crate) fn step_view(s: &pb::StepStatus) -> StepView {
    StepView {
        step: s.step.clone(),
        condition: condition_name(s.condition),
        message: s.message.clone(),
        converged_generation: s.converged_generation,
        last_error: Some(s.last_error.clone()).filter(|e| !e.is_empty()),
        last_transition: time(s.last_transition.as_ref()),
        last_run: time(s.last_run.as_ref()),
    }
}

/// The steps table, its condition column as wide as the longest condition
/// (the header shows even when there are no steps).
pub(crate) fn write_table(out: &mut dyn Write, style: Style, steps: &[StepView]) -> io::Result<()> {
    writeln!(out)?;
    let condition_width = steps
        .iter()
        .map(|s| s.condition.len())
        .max()
        .unwrap_or(0)
        .max("CONDITION".len());
    writeln!(
        out,
        "{:<9} {:<condition_width$} {:>4}  MESSAGE",
        "STEP", "CONDITION", "GEN"
    )?;
    for step in steps {
        writeln!(
            out,
            "{:<9} {} {:>4}  {}",
            step.step,
            style.condition(&step.condition, condition_width),
            step.converged_generation,
            step.message
        )?;
        if let Some(error) = &step.last_error
            && error != &step.message
        {
            writeln!(
                out,
                "{:<9} {:<condition_width$} {:>4}  last error: {error}",
                "", "", ""
            )?;
        }
    }
    Ok(())
}
