//! The services section of `tfagentctl status`: each supervised service,
//! its process and its readiness.

use std::io::{self, Write};

use serde::Serialize;
use tfagent_proto::v1 as pb;

use crate::output::{Style, kebab, time};

#[derive(Serialize)]
pub(crate) struct ServiceView {
    name: String,
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<String>,
    restarts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_exit: Option<String>,
    ready: bool,
    message: String,
    adopted: bool,
}

pub(crate) fn service_view(s: &pb::ServiceStatus) -> ServiceView {
    let last_exit = match (s.last_exit_code, s.last_exit_signal) {
        (Some(code), _) => Some(format!("code {code}")),
        (None, Some(signal)) => Some(format!("signal {signal}")),
        (None, None) => None,
    };
    ServiceView {
        name: s.name.clone(),
        state: pb::ServiceState::try_from(s.state).map_or_else(
            |_| format!("unknown({})", s.state),
            |state| kebab(state.as_str_name(), "SERVICE_STATE_"),
        ),
        pid: (s.pid != 0).then_some(s.pid),
        started_at: time(s.started_at.as_ref()),
        restarts: s.restarts,
        last_exit,
        ready: s.ready,
        message: s.probe_message.clone(),
        adopted: s.adopted,
    }
}

/// The services table under `tfagentctl status`; nothing when there are none.
pub(crate) fn write_table(
    out: &mut dyn Write,
    style: Style,
    services: &[ServiceView],
) -> io::Result<()> {
    if services.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<12} {:<14} {:>7} {:>8}  {:<10} MESSAGE",
        "SERVICE", "STATE", "PID", "RESTARTS", "LAST EXIT"
    )?;
    for s in services {
        let code = match s.state.as_str() {
            "ready" => "32",
            "crash-looping" | "failed" | "unready" => "31",
            _ => "33",
        };
        let adopted = if s.adopted { " (adopted)" } else { "" };
        writeln!(
            out,
            "{:<12} {} {:>7} {:>8}  {:<10} {}{adopted}",
            s.name,
            style.paint(&format!("{:<14}", s.state), code),
            s.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            s.restarts,
            s.last_exit.as_deref().unwrap_or("-"),
            s.message
        )?;
    }
    Ok(())
}
