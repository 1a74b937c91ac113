//! `tfagentctl status`: the node and its generations, then a section each
//! for the steps, the trial, WireGuard, the VIP, the services and the
//! volumes. The sections are their own modules; this one puts them in
//! order, for the table and for JSON / YAML alike.

use std::io::{self, Write};

use serde::Serialize;
use tfagent_proto::v1 as pb;

use crate::{
    output::{Output, Style, kebab, structured},
    services::{self, ServiceView},
    steps::{self, StepView},
    trial::{self, TrialView},
    vip::{self, VipView},
    volumes::{self, VolumeView},
    wireguard::{self, WireguardView},
};

/// The field order is the order of the JSON and YAML output.
#[derive(Serialize)]
struct StatusView {
    node: Option<String>,
    role: Option<String>,
    desired_generation: u64,
    converged_generation: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refused_spec: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    host_adjustments: Vec<String>,
    steps: Vec<StepView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<VolumeView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    services: Vec<ServiceView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trial: Option<TrialView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_trial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wireguard: Option<WireguardView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vip: Option<VipView>,
}

fn role_name(role: i32) -> String {
    pb::Role::try_from(role).map_or_else(
        |_| format!("unknown({role})"),
        |r| kebab(r.as_str_name(), "ROLE_"),
    )
}

/// The status as one view: JSON / YAML of it, or the table with a section
/// each.
pub(crate) fn write(
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
        host_adjustments: status.host_adjustments.clone(),
        steps: status.steps.iter().map(steps::step_view).collect(),
        volumes: status.volumes.iter().map(volumes::volume_view).collect(),
        services: status.services.iter().map(services::service_view).collect(),
        trial: trial::trial_view(status),
        last_trial: Some(status.last_trial.clone()).filter(|t| !t.is_empty()),
        wireguard: wireguard::wireguard_view(status),
        vip: vip::vip_view(status),
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
    for adjustment in &view.host_adjustments {
        writeln!(out, "host        {adjustment}")?;
    }
    steps::write_table(out, style, &view.steps)?;
    trial::write_table(out, view.trial.as_ref(), view.last_trial.as_deref())?;
    wireguard::write_table(out, view.wireguard.as_ref())?;
    vip::write_table(out, view.vip.as_ref())?;
    services::write_table(out, style, &view.services)?;
    volumes::write_table(out, style, &status.volumes)
}

#[cfg(test)]
mod tests {
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
        write(&mut out, Output::Table, Style::detect(false), &status).unwrap();
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
        write(&mut out, Output::Json, Style::detect(false), &status).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["services"][1]["state"], "crash-looping");
        assert_eq!(json["services"][0]["pid"], 4242);
    }

    #[test]
    fn status_says_what_differs_for_this_host() {
        let note = "cgroup v1 host: the kubelet runs with fail-cgroupv1=false";
        let status = pb::NodeStatus {
            host_adjustments: vec![note.into()],
            ..Default::default()
        };
        let mut out = Vec::new();
        write(&mut out, Output::Table, Style::detect(false), &status).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(&format!("host        {note}")), "{text}");
        let mut out = Vec::new();
        write(&mut out, Output::Json, Style::detect(false), &status).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["host_adjustments"][0], note);
        // A plain host shows nothing.
        let mut out = Vec::new();
        write(
            &mut out,
            Output::Json,
            Style::detect(false),
            &pb::NodeStatus::default(),
        )
        .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(json.get("host_adjustments").is_none());
    }
}
