//! A spec on trial (`apply --try`): its section of `tfagentctl status`,
//! and the answer of `tfagentctl confirm`.

use std::io::{self, Write};

use serde::Serialize;
use tfagent_proto::v1 as pb;

use crate::output::time;

#[derive(Serialize)]
pub(crate) struct TrialView {
    generation: u64,
    deadline: Option<String>,
}

pub(crate) fn trial_view(status: &pb::NodeStatus) -> Option<TrialView> {
    status.trial.as_ref().map(|t| TrialView {
        generation: t.generation,
        deadline: time(t.deadline.as_ref()),
    })
}

/// The trial under way, or else what became of the last one; nothing when
/// there was none.
pub(crate) fn write_table(
    out: &mut dyn Write,
    trial: Option<&TrialView>,
    last_trial: Option<&str>,
) -> io::Result<()> {
    if let Some(trial) = trial {
        writeln!(
            out,
            "trial       generation {} is reverted at {} unless confirmed (tfagentctl confirm)",
            trial.generation,
            trial.deadline.as_deref().unwrap_or("?")
        )?;
    } else if let Some(last) = last_trial {
        writeln!(out, "last trial  {last}")?;
    }
    Ok(())
}

/// `tfagentctl confirm`: the generation that is kept.
pub(crate) fn write_confirmed(out: &mut dyn Write, generation: u64) -> io::Result<()> {
    writeln!(out, "generation {generation} confirmed")
}
