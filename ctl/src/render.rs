//! How tfagentctl shows things: a readable table (coloured on a terminal),
//! or JSON / YAML of the same views for scripts.

use std::io::{self, Write};

use prost_types::Timestamp;
use serde::Serialize;
use tfagent_proto::v1 as pb;

use super::Output;
use tfagent_spec::SpecDocument;

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

pub(super) fn condition_name(condition: i32) -> String {
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
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_api: Option<RemoteApiView>,
    addons: Vec<AddonView>,
    // ---- network ----
    wireguard_public_key: Option<String>,
    wireguard_backend: Option<String>,
}

#[derive(Serialize)]
struct AddonView {
    addon: String,
    possible: bool,
    has: Vec<String>,
    lacks: Vec<String>,
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
        remote_api: info.remote_api.as_ref().map(|remote| RemoteApiView {
            address: remote.address.clone(),
            cert_not_after: time(remote.cert_not_after.as_ref()),
            client_ca_not_after: time(remote.client_ca_not_after.as_ref()),
        }),
        addons: info
            .addons
            .iter()
            .map(|p| AddonView {
                addon: p.addon.clone(),
                possible: p.lacks.is_empty(),
                has: p.has.clone(),
                lacks: p.lacks.clone(),
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
    let remote = view.remote_api.as_ref().map_or_else(
        || "off".to_owned(),
        |r| {
            format!(
                "{} (mutual TLS; certificate expires {}, client CA {})",
                r.address,
                r.cert_not_after.as_deref().unwrap_or("?"),
                r.client_ca_not_after.as_deref().unwrap_or("?")
            )
        },
    );
    writeln!(out, "{:<17} {remote}", "remote api")?;
    for addon in &view.addons {
        let verdict = if addon.possible {
            format!("possible ({})", addon.has.join("; "))
        } else {
            format!("not possible: lacks {}", addon.lacks.join("; "))
        };
        writeln!(out, "{:<17} {verdict}", format!("add-on {}", addon.addon))?;
    }
    Ok(())
}

#[derive(Serialize)]
struct RemoteApiView {
    address: String,
    cert_not_after: Option<String>,
    client_ca_not_after: Option<String>,
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
    // ---- storage ----
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<VolumeView>,
    // ---- services ----
    #[serde(skip_serializing_if = "Vec::is_empty")]
    services: Vec<ServiceView>,
    // ---- network ----
    #[serde(skip_serializing_if = "Option::is_none")]
    trial: Option<super::wireguard::TrialView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_trial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wireguard: Option<super::wireguard::WireguardView>,
    // ---- vip ----
    #[serde(skip_serializing_if = "Option::is_none")]
    vip: Option<super::vip::VipView>,
}

// ---- services ----

#[derive(Serialize)]
struct ServiceView {
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

fn service_view(s: &pb::ServiceStatus) -> ServiceView {
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

fn services_table(out: &mut dyn Write, style: Style, services: &[ServiceView]) -> io::Result<()> {
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
        volumes: status.volumes.iter().map(volume_view).collect(),
        services: status.services.iter().map(service_view).collect(),
        trial: super::wireguard::trial_view(status),
        last_trial: Some(status.last_trial.clone()).filter(|t| !t.is_empty()),
        wireguard: super::wireguard::wireguard_view(status),
        vip: super::vip::vip_view(status),
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
    )?;
    super::vip::write_table(out, view.vip.as_ref())?;
    services_table(out, style, &view.services)
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

// ---- storage ----

#[derive(Serialize)]
struct VolumeView {
    name: String,
    source: String,
    filesystem: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    uuid: Option<String>,
    mount_point: String,
    size_bytes: u64,
    used_bytes: u64,
    free_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    quota_bytes: Option<u64>,
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
}

fn volume_view(v: &pb::VolumeStatus) -> VolumeView {
    VolumeView {
        name: v.name.clone(),
        source: v.source.clone(),
        filesystem: v.filesystem.clone(),
        uuid: Some(v.uuid.clone()).filter(|u| !u.is_empty()),
        mount_point: v.mount_point.clone(),
        size_bytes: v.size_bytes,
        used_bytes: v.used_bytes,
        free_bytes: v.free_bytes,
        quota_bytes: (v.quota_bytes != 0).then_some(v.quota_bytes),
        state: v.state.clone(),
        last_error: Some(v.last_error.clone()).filter(|e| !e.is_empty()),
    }
}

/// Bytes in binary units with one decimal: 1.5GiB.
fn human_bytes(bytes: u64) -> String {
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

/// The volumes table under `tfagentctl status`.
pub fn volumes_table(
    out: &mut dyn Write,
    style: Style,
    volumes: &[pb::VolumeStatus],
) -> io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{:<12} {:<8} {:<28} {:>9} {:>9} {:>9} {:>9}  SOURCE",
        "VOLUME", "STATE", "MOUNT POINT", "SIZE", "USED", "FREE", "QUOTA"
    )?;
    for v in volumes {
        let state = match v.state.as_str() {
            "mounted" => style.paint(&format!("{:<8}", v.state), "32"),
            "refused" | "failed" => style.paint(&format!("{:<8}", v.state), "31"),
            _ => style.paint(&format!("{:<8}", v.state), "33"),
        };
        let amount = |bytes: u64| {
            if bytes == 0 {
                "-".to_owned()
            } else {
                human_bytes(bytes)
            }
        };
        let mut source = format!("{} ({})", v.source, v.filesystem);
        if !v.uuid.is_empty() {
            source.push_str(&format!(" UUID {}", v.uuid));
        }
        writeln!(
            out,
            "{:<12} {state} {:<28} {:>9} {:>9} {:>9} {:>9}  {source}",
            v.name,
            v.mount_point,
            amount(v.size_bytes),
            amount(v.used_bytes),
            amount(v.free_bytes),
            amount(v.quota_bytes),
        )?;
        if !v.last_error.is_empty() {
            writeln!(out, "{:<12} last error: {}", "", v.last_error)?;
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct DiskView {
    path: String,
    size_bytes: u64,
    signatures: Vec<String>,
    mount_points: Vec<String>,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<String>,
}

/// `tfagentctl disks`.
pub fn disks(
    out: &mut dyn Write,
    output: Output,
    style: Style,
    disks: &[pb::Disk],
) -> io::Result<()> {
    let views: Vec<DiskView> = disks
        .iter()
        .map(|d| DiskView {
            path: d.path.clone(),
            size_bytes: d.size_bytes,
            signatures: d.signatures.clone(),
            mount_points: d.mount_points.clone(),
            allowed: d.allowed,
            refusal: Some(d.refusal.clone()).filter(|r| !r.is_empty()),
        })
        .collect();
    if output != Output::Table {
        return structured(out, output, &views);
    }
    writeln!(
        out,
        "{:<16} {:>9} {:<8} {:<24} SIGNATURES",
        "DEVICE", "SIZE", "ALLOWED", "MOUNTED AT"
    )?;
    for d in &views {
        let allowed = if d.allowed {
            style.paint(&format!("{:<8}", "yes"), "32")
        } else {
            style.paint(&format!("{:<8}", "no"), "31")
        };
        let signatures = if d.signatures.is_empty() {
            "blank".to_owned()
        } else {
            d.signatures.join(", ")
        };
        let mounted = if d.mount_points.is_empty() {
            "-".to_owned()
        } else {
            d.mount_points.join(",")
        };
        writeln!(
            out,
            "{:<16} {:>9} {allowed} {:<24} {signatures}",
            d.path,
            human_bytes(d.size_bytes),
            mounted
        )?;
        if let Some(refusal) = &d.refusal {
            writeln!(out, "{:<16} {:>9} {:<8} {refusal}", "", "", "")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod storage_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn volumes_and_disks_render_one_line_each_with_errors_below() {
        let volumes = [
            pb::VolumeStatus {
                name: "k3s".into(),
                source: "/mnt/ssd-1/tfagent-k3s".into(),
                filesystem: "btrfs".into(),
                mount_point: "/var/lib/rancher/k3s".into(),
                size_bytes: 50 << 30,
                used_bytes: 3 << 29,
                free_bytes: (50 << 30) - (3 << 29),
                quota_bytes: 50 << 30,
                state: "mounted".into(),
                ..Default::default()
            },
            pb::VolumeStatus {
                name: "local-path".into(),
                source: "/dev/sdb".into(),
                filesystem: "btrfs".into(),
                mount_point: "/var/lib/rancher/k3s/storage".into(),
                state: "refused".into(),
                last_error: "/dev/sdb holds ext4 filesystem (UUID x)".into(),
                ..Default::default()
            },
        ];
        let mut out = Vec::new();
        volumes_table(&mut out, Style::detect(false), &volumes).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("VOLUME"), "{text}");
        assert!(lines[2].starts_with("k3s          mounted"), "{text}");
        assert!(
            lines[2].contains("50.0GiB") && lines[2].contains("1.5GiB"),
            "{text}"
        );
        assert!(
            lines[3].contains("refused") && lines[3].contains("-"),
            "{text}"
        );
        assert!(
            lines[4]
                .trim_start()
                .starts_with("last error: /dev/sdb holds ext4"),
            "{text}"
        );

        let disks = [pb::Disk {
            path: "/dev/sda".into(),
            size_bytes: 1 << 40,
            signatures: vec!["gpt partition table (UUID y)".into()],
            mount_points: vec!["/".into()],
            allowed: false,
            refusal: "/dev/sda is on the disk that holds /; the system disk is never used".into(),
        }];
        let mut out = Vec::new();
        super::disks(&mut out, Output::Table, Style::detect(false), &disks).unwrap();
        let text = String::from_utf8(out).unwrap();
        let row = text.lines().nth(1).unwrap();
        assert!(
            row.starts_with("/dev/sda ") && row.contains("1.0TiB no ") && row.contains("gpt"),
            "{text}"
        );
        assert!(
            text.lines().nth(2).unwrap().contains("system disk"),
            "{text}"
        );
        let mut out = Vec::new();
        super::disks(&mut out, Output::Json, Style::detect(false), &disks).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json[0]["allowed"], false);
    }
}

// ---- services ----
#[cfg(test)]
mod services_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn status_lists_each_service() {
        let status = pb::NodeStatus {
            services: vec![
                pb::ServiceStatus {
                    name: "containerd".into(),
                    state: pb::ServiceState::Ready.into(),
                    pid: 4242,
                    restarts: 1,
                    last_exit_signal: Some(9),
                    ready: true,
                    probe_message: "containerd 1.6.20 answers".into(),
                    adopted: true,
                    ..Default::default()
                },
                pb::ServiceStatus {
                    name: "k3s".into(),
                    state: pb::ServiceState::CrashLooping.into(),
                    restarts: 6,
                    last_exit_code: Some(1),
                    probe_message: "exit code 1; next start in 30s".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let mut out = Vec::new();
        super::status(&mut out, Output::Table, Style::detect(false), &status).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().position(|l| l.starts_with("SERVICE")).unwrap();
        assert!(
            lines[header + 1].starts_with("containerd   ready"),
            "{text}"
        );
        assert!(lines[header + 1].contains("4242"), "{text}");
        assert!(lines[header + 1].contains("signal 9"), "{text}");
        assert!(lines[header + 1].ends_with("answers (adopted)"), "{text}");
        assert!(
            lines[header + 2].starts_with("k3s          crash-looping"),
            "{text}"
        );
        assert!(lines[header + 2].contains("code 1"), "{text}");

        let mut out = Vec::new();
        super::status(&mut out, Output::Json, Style::detect(false), &status).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["services"][1]["state"], "crash-looping");
        assert_eq!(json["services"][0]["pid"], 4242);
    }
}
