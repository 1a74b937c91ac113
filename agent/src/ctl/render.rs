//! How tfagentctl shows things: a readable table (coloured on a terminal),
//! or JSON / YAML of the same views for scripts.

use std::io::{self, Write};

use prost_types::Timestamp;
use serde::Serialize;
use tfagent_proto::v1 as pb;

use super::Output;
use crate::spec::SpecDocument;

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

    fn paint(self, text: &str, code: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Pads before painting so escape codes do not break the columns.
    fn condition(self, condition: &str, width: usize) -> String {
        let code = match condition {
            "converged" => "32",
            "failed" => "31",
            "blocked" | "not-implemented" => "33",
            _ => "36",
        };
        self.paint(&format!("{condition:<width$}"), code)
    }
}

pub(super) fn time(ts: Option<&Timestamp>) -> Option<String> {
    let ts = ts?;
    let secs = u64::try_from(ts.seconds).ok()?;
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    Some(humantime::format_rfc3339_seconds(time).to_string())
}

fn kebab(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', "-")
}

fn role_name(role: i32) -> String {
    pb::Role::try_from(role).map_or_else(
        |_| format!("unknown({role})"),
        |r| kebab(r.as_str_name(), "ROLE_"),
    )
}

fn condition_name(condition: i32) -> String {
    pb::Condition::try_from(condition).map_or_else(
        |_| format!("unknown({condition})"),
        |c| kebab(c.as_str_name(), "CONDITION_"),
    )
}

pub(super) fn structured<T: Serialize>(
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

#[derive(Serialize)]
struct InfoView {
    version: String,
    hostname: String,
    generation: u64,
    started_at: Option<String>,
    kernel_release: String,
    kernel_wireguard: bool,
    wireguard_go: Option<String>,
    cgroup_mode: String,
    filesystems: Vec<String>,
    btrfs_pools: Vec<PoolView>,
    // ---- network ----
    wireguard_public_key: Option<String>,
    wireguard_backend: Option<String>,
}

#[derive(Serialize)]
struct PoolView {
    mount_point: String,
    device: String,
}

pub fn info(out: &mut dyn Write, output: Output, info: &pb::NodeInfo) -> io::Result<()> {
    let caps = info.capabilities.clone().unwrap_or_default();
    let view = InfoView {
        version: info.version.clone(),
        hostname: info.hostname.clone(),
        generation: info.generation,
        started_at: time(info.started_at.as_ref()),
        kernel_release: caps.kernel_release,
        kernel_wireguard: caps.kernel_wireguard,
        wireguard_go: Some(caps.wireguard_go).filter(|p| !p.is_empty()),
        cgroup_mode: pb::CgroupMode::try_from(caps.cgroup_mode)
            .map_or_else(
                |_| "unknown".into(),
                |m| kebab(m.as_str_name(), "CGROUP_MODE_"),
            )
            .replace("unspecified", "none"),
        filesystems: caps.filesystems,
        btrfs_pools: caps
            .btrfs_pools
            .into_iter()
            .map(|p| PoolView {
                mount_point: p.mount_point,
                device: p.device,
            })
            .collect(),
        wireguard_public_key: Some(info.wireguard_public_key.clone()).filter(|k| !k.is_empty()),
        wireguard_backend: Some(info.wireguard_backend.clone()).filter(|b| !b.is_empty()),
    };
    if output != Output::Table {
        return structured(out, output, &view);
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let pools: Vec<String> = view
        .btrfs_pools
        .iter()
        .map(|p| format!("{} ({})", p.mount_point, p.device))
        .collect();
    let rows = [
        ("version", view.version.clone()),
        ("hostname", view.hostname.clone()),
        ("generation", view.generation.to_string()),
        ("started", view.started_at.clone().unwrap_or_default()),
        ("kernel", view.kernel_release.clone()),
        ("kernel wireguard", yes_no(view.kernel_wireguard).to_owned()),
        (
            "wireguard-go",
            view.wireguard_go
                .clone()
                .unwrap_or_else(|| "not found".into()),
        ),
        ("cgroups", view.cgroup_mode.clone()),
        ("filesystems", view.filesystems.join(", ")),
        (
            "btrfs pools",
            if pools.is_empty() {
                "none".into()
            } else {
                pools.join(", ")
            },
        ),
        // ---- network ----
        (
            "wireguard key",
            view.wireguard_public_key.clone().unwrap_or_default(),
        ),
        (
            "wireguard via",
            view.wireguard_backend.clone().unwrap_or_default(),
        ),
    ];
    for (key, value) in rows {
        writeln!(out, "{key:<17} {value}")?;
    }
    Ok(())
}

#[derive(Serialize)]
struct StatusView {
    node: Option<String>,
    role: Option<String>,
    desired_generation: u64,
    converged_generation: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refused_spec: Option<String>,
    steps: Vec<StepView>,
    // ---- network ----
    #[serde(skip_serializing_if = "Option::is_none")]
    trial: Option<super::wireguard::TrialView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_trial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wireguard: Option<super::wireguard::WireguardView>,
}

#[derive(Serialize)]
struct StepView {
    step: String,
    condition: String,
    message: String,
    converged_generation: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    last_transition: Option<String>,
    last_run: Option<String>,
}

pub fn status(
    out: &mut dyn Write,
    output: Output,
    style: Style,
    status: &pb::NodeStatus,
) -> io::Result<()> {
    let view = StatusView {
        node: Some(status.node_name.clone()).filter(|n| !n.is_empty()),
        role: (status.role != 0).then(|| role_name(status.role)),
        desired_generation: status.desired_generation,
        converged_generation: status.converged_generation,
        refused_spec: Some(status.refused_spec.clone()).filter(|r| !r.is_empty()),
        steps: status
            .steps
            .iter()
            .map(|s| StepView {
                step: s.step.clone(),
                condition: condition_name(s.condition),
                message: s.message.clone(),
                converged_generation: s.converged_generation,
                last_error: Some(s.last_error.clone()).filter(|e| !e.is_empty()),
                last_transition: time(s.last_transition.as_ref()),
                last_run: time(s.last_run.as_ref()),
            })
            .collect(),
        trial: super::wireguard::trial_view(status),
        last_trial: Some(status.last_trial.clone()).filter(|t| !t.is_empty()),
        wireguard: super::wireguard::wireguard_view(status),
    };
    if output != Output::Table {
        return structured(out, output, &view);
    }
    match (&view.node, &view.role) {
        (Some(node), Some(role)) => writeln!(out, "node        {node} ({role})")?,
        _ => writeln!(out, "node        no spec applied yet")?,
    }
    let converged = if view.desired_generation == 0 {
        String::new()
    } else if view.converged_generation >= view.desired_generation {
        style.paint("converged", "32")
    } else {
        style.paint("not converged", "33")
    };
    writeln!(
        out,
        "generation  desired {}, converged {}  {converged}",
        view.desired_generation, view.converged_generation
    )?;
    if let Some(refused) = &view.refused_spec {
        let warning = "warning     the spec stored on disk was refused at startup; apply a new one";
        writeln!(out, "{}", style.paint(warning, "31"))?;
        for line in refused.lines() {
            writeln!(out, "            {line}")?;
        }
    }
    writeln!(out)?;
    let condition_width = view
        .steps
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
    for step in &view.steps {
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
    super::wireguard::write_table(
        out,
        view.trial.as_ref(),
        view.last_trial.as_deref(),
        view.wireguard.as_ref(),
    )
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
    implemented: bool,
    actions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn applied(
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
                implemented: p.implemented,
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
        let (tag, lines) = match (&step.error, step.implemented) {
            (Some(error), _) => (style.paint("cannot plan", "31"), vec![error.clone()]),
            (None, false) => (style.paint("not implemented", "33"), step.actions.clone()),
            (None, true) if step.actions.is_empty() => (style.paint("no change", "32"), Vec::new()),
            (None, true) => (
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

pub fn spec(
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

pub fn event(
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
                    let phase_width = "not-implemented".len();
                    let painted = match phase.as_str() {
                        "converged" => style.paint(&format!("{phase:<phase_width$}"), "32"),
                        "failed" => style.paint(&format!("{phase:<phase_width$}"), "31"),
                        "blocked" | "not-implemented" => {
                            style.paint(&format!("{phase:<phase_width$}"), "33")
                        }
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
