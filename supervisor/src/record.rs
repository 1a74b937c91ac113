//! Adoption records: what the agent writes when it starts a process, so
//! that after an agent restart it can tell whether the process still
//! running under that pid is the very one it started.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub pid: i32,
    /// Field 22 of /proc/PID/stat: with the pid, one process per boot.
    pub start_ticks: u64,
    /// Wall-clock start, milliseconds since the epoch.
    pub started_at_ms: u64,
    /// The definition's fingerprint when it was started.
    pub fingerprint: String,
    pub restarts: u32,
}

fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

/// Writes the record atomically (temp file, fsync, rename).
pub fn save(dir: &Path, name: &str, record: &Record) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let text = serde_json::to_vec(record).map_err(io::Error::other)?;
    let final_path = path(dir, name);
    let tmp = dir.join(format!(".{name}.json.tmp"));
    {
        let mut file = fs::File::create(&tmp)?;
        io::Write::write_all(&mut file, &text)?;
        file.sync_all()?;
    }
    fs::rename(tmp, final_path)
}

/// The record, `None` when there is none or it cannot be read (a record
/// that cannot be trusted adopts nothing).
pub fn load(dir: &Path, name: &str) -> Option<Record> {
    let text = fs::read(path(dir, name)).ok()?;
    serde_json::from_slice(&text).ok()
}

pub fn remove(dir: &Path, name: &str) -> io::Result<()> {
    match fs::remove_file(path(dir, name)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), "x"), None);
        let record = Record {
            pid: 42,
            start_ticks: 7,
            started_at_ms: 1_700_000_000_000,
            fingerprint: "abc".into(),
            restarts: 3,
        };
        save(dir.path(), "x", &record).unwrap();
        assert_eq!(load(dir.path(), "x"), Some(record));
        fs::write(dir.path().join("x.json"), "{not json").unwrap();
        assert_eq!(load(dir.path(), "x"), None);
        remove(dir.path(), "x").unwrap();
        remove(dir.path(), "x").unwrap();
    }
}
