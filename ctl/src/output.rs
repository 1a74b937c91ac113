//! What every view of tfagentctl shares: the output format, the colours of
//! the table form, and the small formatting helpers. It imports nothing of
//! this crate, so any view may use it.

use std::io::{self, Write};

use clap::ValueEnum;
use prost_types::Timestamp;
use serde::Serialize;
use tfagent_proto::v1 as pb;

/// How a command prints its answer: a table for people, JSON or YAML of
/// the same view for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

/// Whether to colour the table output.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    colour: bool,
}

impl Style {
    /// Colour only on a terminal, and never when NO_COLOR is set.
    pub fn detect(on_terminal: bool) -> Self {
        Self {
            colour: on_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    pub(crate) fn paint(self, text: &str, code: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Pads before painting so escape codes do not break the columns.
    pub(crate) fn condition(self, condition: &str, width: usize) -> String {
        let code = match condition {
            "converged" => "32",
            "failed" => "31",
            "blocked" => "33",
            _ => "36",
        };
        self.paint(&format!("{condition:<width$}"), code)
    }
}

/// Writes a view as pretty JSON, or as YAML; the table form is each
/// view's own.
pub(crate) fn structured<T: Serialize>(
    out: &mut dyn Write,
    output: Output,
    view: &T,
) -> io::Result<()> {
    match output {
        Output::Yaml => {
            let text = serde_yaml_ng::to_string(view).map_err(io::Error::other)?;
            out.write_all(text.as_bytes())
        }
        _ => {
            // io::Error::from keeps the io kind (e.g. a closed pipe).
            serde_json::to_writer_pretty(&mut *out, view).map_err(io::Error::from)?;
            writeln!(out)
        }
    }
}

/// RFC 3339 to the second; `None` when unset or before 1970.
pub(crate) fn time(ts: Option<&Timestamp>) -> Option<String> {
    let ts = ts?;
    let secs = u64::try_from(ts.seconds).ok()?;
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    Some(humantime::format_rfc3339_seconds(time).to_string())
}

/// A proto enum value's name as the command line shows it:
/// `CONDITION_CONVERGED` -> `converged`.
pub(crate) fn kebab(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', "-")
}

/// A step's condition by name (`status` and `health` both show it).
pub(crate) fn condition_name(condition: i32) -> String {
    pb::Condition::try_from(condition).map_or_else(
        |_| format!("unknown({condition})"),
        |c| kebab(c.as_str_name(), "CONDITION_"),
    )
}

/// Bytes in binary units with one decimal: 1.5GiB.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}
