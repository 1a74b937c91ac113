//! The volumes section of `tfagentctl status`: where each volume of the
//! spec is mounted, how full it is, and the last error of one that is not.

use std::io::{self, Write};

use serde::Serialize;
use tfagent_proto::v1 as pb;

use crate::output::{Style, human_bytes};

#[derive(Serialize)]
pub(crate) struct VolumeView {
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

pub(crate) fn volume_view(v: &pb::VolumeStatus) -> VolumeView {
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

/// The volumes table under `tfagentctl status`; nothing when there are none.
pub(crate) fn write_table(
    out: &mut dyn Write,
    style: Style,
    volumes: &[pb::VolumeStatus],
) -> io::Result<()> {
    if volumes.is_empty() {
        return Ok(());
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn volumes_render_one_line_each_with_errors_below() {
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
        write_table(&mut out, Style::detect(false), &volumes).unwrap();
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
    }
}
