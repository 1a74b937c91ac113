//! `tfagentctl certs init`: a CA, the node's certificate and a client
//! certificate per role, for labs and first setups. Production setups use
//! their own CA; the agent only needs the files.

use std::{
    fs,
    net::IpAddr,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use tfagent_pki::{AccessRole, Authority, Issued, write_new};

use crate::error::CtlError;

fn failed(error: impl std::fmt::Display) -> CtlError {
    CtlError::new(format!("certs init: {error}"))
}

/// Writes the files into `dir` (new or empty, made 0700) and returns their
/// paths. Never overwrites a file.
pub fn init(dir: &Path, names: &[String], addresses: &[IpAddr]) -> Result<Vec<PathBuf>, CtlError> {
    if dir.exists() {
        let mut entries =
            fs::read_dir(dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
        if entries.next().is_some() {
            return Err(failed(format!(
                "{} is not empty; refusing to overwrite certificates",
                dir.display()
            )));
        }
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| failed(format!("{}: {e}", dir.display())))?;

    let ca = Authority::generate("tfagent CA").map_err(failed)?;
    let mut files: Vec<(String, Issued)> = vec![
        ("ca".into(), ca.certificate().clone()),
        ("node".into(), ca.node(names, addresses).map_err(failed)?),
    ];
    for role in AccessRole::ALL {
        files.push((
            role.to_string(),
            ca.client(&format!("tfagent-{role}"), role)
                .map_err(failed)?,
        ));
    }
    let mut written = Vec::new();
    for (name, issued) in files {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}-key.pem"));
        write_new(&cert, &issued.cert_pem, 0o644).map_err(failed)?;
        write_new(&key, &issued.key_pem, 0o600).map_err(failed)?;
        written.extend([cert, key]);
    }
    Ok(written)
}
