//! Atomic file replacement: write a temp file beside the target, fsync it,
//! rename it over the target, fsync the directory.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_prefix(name: &str) -> String {
    format!(".{name}.tmp-")
}

/// A fully written and fsynced temp file waiting to replace its target.
/// Dropped without [`commit`](Self::commit), it is removed and the target is
/// left as it was.
#[derive(Debug)]
pub struct StagedFile {
    temp: PathBuf,
    target: PathBuf,
    dir: PathBuf,
    committed: bool,
}

impl StagedFile {
    /// Writes `bytes` to a new 0600 temp file in `dir` and fsyncs it.
    pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<Self> {
        let temp = dir.join(format!(
            "{}{}-{}",
            temp_prefix(name),
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let staged = Self {
            temp,
            target: dir.join(name),
            dir: dir.to_owned(),
            committed: false,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staged.temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        Ok(staged)
    }

    /// Path of the temp file (for tests that simulate a crash).
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Renames the temp file over the target and fsyncs the directory so the
    /// rename itself survives a power loss. Once the rename is done the new
    /// file is current: a failed directory fsync is only warned about, since
    /// reporting failure then would contradict what is on disk.
    pub fn commit(mut self) -> io::Result<()> {
        fs::rename(&self.temp, &self.target)?;
        self.committed = true;
        if let Err(error) = File::open(&self.dir).and_then(|dir| dir.sync_all()) {
            tracing::warn!(dir = %self.dir.display(), %error, "cannot fsync the state dir after a rename");
        }
        Ok(())
    }

    /// Leaves the temp file on disk as a crash between write and rename
    /// would, and forgets it.
    pub fn abandon(mut self) {
        self.committed = true;
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a leftover is also removed at the next open.
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Removes temp files of `name` that a crash left in `dir`.
pub fn remove_stale_temp_files(dir: &Path, name: &str) -> io::Result<()> {
    let prefix = temp_prefix(name);
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}
