//! `tfagentctl disks`: the block devices, their signatures, and whether
//! volumes may use them.

use std::io::{self, Write};

use serde::Serialize;
use tfagent_proto::v1 as pb;

use crate::output::{Output, Style, human_bytes, structured};

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
pub(crate) fn write(
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
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn disks_render_one_line_each_with_errors_below() {
        let disks = [pb::Disk {
            path: "/dev/sda".into(),
            size_bytes: 1 << 40,
            signatures: vec!["gpt partition table (UUID y)".into()],
            mount_points: vec!["/".into()],
            allowed: false,
            refusal: "/dev/sda is on the disk that holds /; the system disk is never used".into(),
        }];
        let mut out = Vec::new();
        write(&mut out, Output::Table, Style::detect(false), &disks).unwrap();
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
        write(&mut out, Output::Json, Style::detect(false), &disks).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json[0]["allowed"], false);
    }
}
