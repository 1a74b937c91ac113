//! `tfagentctl info`: the agent's identity and version, and what the host
//! can do.

use std::io::{self, Write};

use serde::Serialize;
use tfagent_proto::v1 as pb;

use crate::output::{Output, kebab, structured, time};

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

#[derive(Serialize)]
struct RemoteApiView {
    address: String,
    cert_not_after: Option<String>,
    client_ca_not_after: Option<String>,
}

/// A line per fact in the table, or the whole view as JSON / YAML.
pub(crate) fn write(out: &mut dyn Write, output: Output, info: &pb::NodeInfo) -> io::Result<()> {
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
