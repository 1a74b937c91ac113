//! What tfagent did to the host, kept in the state dir so that only its own
//! mounts are ever unmounted and only filesystems it created are reused by
//! `if-blank` volumes. Written atomically (temp file, fsync, rename).

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::state::StagedFile;

/// File name in the state dir.
pub const RECORDS_FILE: &str = "storage.json";

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// A mount tfagent made, identified as mountinfo shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnedMount {
    pub target: String,
    /// mountinfo's source (the device).
    pub source: String,
    /// mountinfo's root (the path inside the filesystem).
    pub root: String,
}

/// A filesystem tfagent created for a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Formatted {
    pub volume: String,
    pub uuid: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Records {
    pub mounts: Vec<OwnedMount>,
    pub formatted: Vec<Formatted>,
}

impl Records {
    /// Reads the records; none yet is an empty set.
    pub fn load(dir: &Path) -> Result<Self, RecordsError> {
        let path = dir.join(RECORDS_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| RecordsError::Corrupt { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(RecordsError::Read { path, source }),
        }
    }

    /// Replaces the file atomically.
    pub fn save(&self, dir: &Path) -> Result<(), RecordsError> {
        let path = dir.join(RECORDS_FILE);
        let write_err = |source| RecordsError::Write {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(write_err)?;
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| write_err(io::Error::other(e)))?;
        StagedFile::write(dir, RECORDS_FILE, &bytes)
            .and_then(StagedFile::commit)
            .map_err(write_err)
    }

    pub fn owned(&self, target: &str) -> Option<&OwnedMount> {
        self.mounts.iter().find(|m| m.target == target)
    }

    pub fn record_mount(&mut self, mount: OwnedMount) {
        self.mounts.retain(|m| m.target != mount.target);
        self.mounts.push(mount);
    }

    pub fn forget_mount(&mut self, target: &str) {
        self.mounts.retain(|m| m.target != target);
    }

    /// The UUID of the filesystem tfagent created for `volume`, if any.
    pub fn formatted(&self, volume: &str) -> Option<&str> {
        self.formatted
            .iter()
            .find(|f| f.volume == volume)
            .map(|f| f.uuid.as_str())
    }

    pub fn record_formatted(&mut self, volume: &str, uuid: String) {
        self.formatted.retain(|f| f.volume != volume);
        self.formatted.push(Formatted {
            volume: volume.to_owned(),
            uuid,
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_round_trip_and_replace_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Records::load(dir.path()).unwrap(), Records::default());
        let mut records = Records::default();
        records.record_mount(OwnedMount {
            target: "/a".into(),
            source: "/dev/loop1".into(),
            root: "/".into(),
        });
        records.record_formatted("data", "u1".into());
        records.record_formatted("data", "u2".into());
        records.save(dir.path()).unwrap();
        let loaded = Records::load(dir.path()).unwrap();
        assert_eq!(loaded, records);
        assert_eq!(loaded.formatted("data"), Some("u2"));
        assert!(loaded.owned("/a").is_some());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![RECORDS_FILE], "no temp file is left");

        fs::write(dir.path().join(RECORDS_FILE), "{").unwrap();
        assert!(matches!(
            Records::load(dir.path()),
            Err(RecordsError::Corrupt { .. })
        ));
    }
}
