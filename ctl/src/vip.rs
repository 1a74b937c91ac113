//! The VIP part of `tfagentctl status`: who holds it, and this node's part.

use std::io::{self, Write};

use serde::Serialize;
use tfagent_proto::v1 as pb;

use crate::output::time;

#[derive(Serialize)]
pub(crate) struct VipView {
    vip: String,
    /// The holder's name (or address when it is not a known server).
    #[serde(skip_serializing_if = "Option::is_none")]
    holder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    holder_address: Option<String>,
    epoch: u64,
    server: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    election_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    apiserver_ready: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    apiserver_message: Option<String>,
    transitions: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_transition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_transition_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_failover_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn non_empty(text: &str) -> Option<String> {
    Some(text.to_owned()).filter(|t| !t.is_empty())
}

pub(crate) fn vip_view(status: &pb::NodeStatus) -> Option<VipView> {
    let vip = status.vip.as_ref()?;
    Some(VipView {
        vip: vip.vip.clone(),
        holder: non_empty(&vip.holder).or_else(|| non_empty(&vip.holder_address)),
        holder_address: non_empty(&vip.holder_address),
        epoch: vip.epoch,
        server: vip.server,
        election_state: non_empty(&vip.election_state),
        apiserver_ready: vip.apiserver_ready,
        apiserver_message: non_empty(&vip.apiserver_message),
        transitions: vip.transitions,
        last_transition: time(vip.last_transition.as_ref()),
        last_transition_reason: non_empty(&vip.last_transition_reason),
        last_failover_ms: vip.last_failover.as_ref().map(|d| {
            u64::try_from(d.seconds).unwrap_or(0) * 1000
                + u64::try_from(d.nanos).unwrap_or(0) / 1_000_000
        }),
        error: non_empty(&vip.error),
    })
}

/// `vip  10.100.0.250 held by server-1 (10.100.0.1), epoch 3` and this
/// node's part on the next lines.
pub(crate) fn write_table(out: &mut dyn Write, view: Option<&VipView>) -> io::Result<()> {
    let Some(view) = view else { return Ok(()) };
    let holder = match (&view.holder, &view.holder_address) {
        (Some(name), Some(address)) if name != address => format!("held by {name} ({address})"),
        (Some(name), _) => format!("held by {name}"),
        _ => "held by no one yet".to_owned(),
    };
    writeln!(out)?;
    writeln!(
        out,
        "vip         {} {holder}, epoch {}",
        view.vip, view.epoch
    )?;
    if view.server {
        let state = view.election_state.as_deref().unwrap_or("unknown");
        let apiserver = match (view.apiserver_ready, &view.apiserver_message) {
            (Some(true), _) => "apiserver ready".to_owned(),
            (Some(false), Some(message)) => format!("apiserver not ready: {message}"),
            (Some(false), None) => "apiserver not ready".to_owned(),
            (None, _) => "apiserver not probed yet".to_owned(),
        };
        writeln!(
            out,
            "            this node: {state} in the election, {apiserver}"
        )?;
    } else {
        writeln!(
            out,
            "            this node routes it to the holder (not a server)"
        )?;
    }
    let mut moves = format!("{} transitions", view.transitions);
    if let (Some(at), Some(reason)) = (&view.last_transition, &view.last_transition_reason) {
        moves.push_str(&format!("; last at {at}: {reason}"));
    }
    if let Some(ms) = view.last_failover_ms {
        moves.push_str(&format!("; last failover {ms} ms"));
    }
    writeln!(out, "            {moves}")?;
    if let Some(error) = &view.error {
        writeln!(out, "            error: {error}")?;
    }
    Ok(())
}
