//! Service logs. The agent opens each service's log file and hands it to
//! the child as stdout and stderr, so the child never depends on the
//! agent's pipes (it keeps writing while the agent restarts). The agent
//! follows the file: it keeps the recent lines in memory for `Logs`,
//! passes new ones to followers, and rotates the file when it grows past
//! its cap (copy, then truncate: the child's O_APPEND descriptor goes on
//! writing at the new end).

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, Read, Seek, SeekFrom},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::Mutex,
    time::Duration,
};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::def::LogPolicy;

/// How often the file is checked for new output.
const POLL: Duration = Duration::from_millis(250);
/// History read back when the agent starts following an existing file.
const BACKFILL: u64 = 64 << 10;
/// Longest line kept; longer ones are cut.
const MAX_LINE: usize = 16 << 10;

#[derive(Debug)]
pub struct LogSink {
    path: PathBuf,
    policy: LogPolicy,
    recent: Mutex<VecDeque<String>>,
    live: broadcast::Sender<String>,
}

impl LogSink {
    pub fn new(path: PathBuf, policy: LogPolicy) -> Self {
        Self {
            path,
            policy,
            recent: Mutex::new(VecDeque::new()),
            live: broadcast::Sender::new(1024),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file for the child's stdout and stderr (append-only, 0640).
    pub fn open_for_child(&self) -> io::Result<(File, File)> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&self.path)?;
        let copy = file.try_clone()?;
        Ok((file, copy))
    }

    /// The last `lines` lines, oldest first, and a receiver of what comes next.
    pub fn tail(&self, lines: usize) -> (Vec<String>, broadcast::Receiver<String>) {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let skip = recent.len().saturating_sub(lines);
        let lines = recent.iter().skip(skip).cloned().collect();
        // Subscribed under the lock: no line is both in `lines` and sent.
        (lines, self.live.subscribe())
    }

    fn push(&self, line: String) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= self.policy.memory_lines {
            recent.pop_front();
        }
        recent.push_back(line.clone());
        // No follower is not an error.
        let _ = self.live.send(line);
    }

    /// Follows the file until `cancel`.
    pub async fn follow(self: std::sync::Arc<Self>, cancel: CancellationToken) {
        let mut reader = Reader::default();
        loop {
            let sink = std::sync::Arc::clone(&self);
            let state = reader;
            let step = tokio::task::spawn_blocking(move || {
                let mut state = state;
                let lines = state.poll(&sink.path, &sink.policy);
                (state, lines)
            })
            .await;
            let Ok((state, lines)) = step else { return };
            reader = state;
            for line in lines {
                self.push(line);
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

/// Where the follower is in the file.
#[derive(Debug, Default)]
struct Reader {
    offset: Option<u64>,
    partial: Vec<u8>,
}

impl Reader {
    /// Reads what was appended since the last call, and rotates the file
    /// when it is over its cap. Errors (no file yet) read nothing.
    fn poll(&mut self, path: &Path, policy: &LogPolicy) -> Vec<String> {
        let Ok(mut file) = File::open(path) else {
            return Vec::new();
        };
        let Ok(len) = file.metadata().map(|m| m.len()) else {
            return Vec::new();
        };
        let mut skip_first = false;
        let offset = match self.offset {
            Some(offset) if offset <= len => offset,
            // Truncated under us: start over.
            Some(_) => {
                self.partial.clear();
                0
            }
            None => {
                let start = len.saturating_sub(BACKFILL);
                skip_first = start > 0;
                start
            }
        };
        let mut data = Vec::new();
        if file.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = (&mut file).take(len - offset).read_to_end(&mut data);
        }
        self.offset = Some(offset + data.len() as u64);
        let mut lines = self.split(&data);
        if skip_first && !lines.is_empty() {
            lines.remove(0);
        }
        if len > policy.max_bytes && rotate(path, policy.keep).is_ok() {
            self.offset = Some(0);
        }
        lines
    }

    fn split(&mut self, data: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for byte in data {
            if *byte == b'\n' {
                let line = std::mem::take(&mut self.partial);
                lines.push(text(&line));
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(*byte);
            }
        }
        lines
    }
}

fn text(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

/// `NAME.log.(k-1)` → `NAME.log.k`, then the live file is copied to
/// `NAME.log.1` and truncated in place.
pub fn rotate(path: &Path, keep: usize) -> io::Result<()> {
    let numbered = |n: usize| PathBuf::from(format!("{}.{n}", path.display()));
    if keep == 0 {
        return OpenOptions::new().write(true).open(path)?.set_len(0);
    }
    for n in (1..keep).rev() {
        let from = numbered(n);
        if from.exists() {
            fs::rename(&from, numbered(n + 1))?;
        }
    }
    fs::copy(path, numbered(1))?;
    OpenOptions::new().write(true).open(path)?.set_len(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Write;

    use super::*;

    #[test]
    fn lines_are_read_as_they_come_and_partial_lines_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.log");
        let policy = LogPolicy {
            max_bytes: 1 << 20,
            keep: 2,
            memory_lines: 10,
        };
        let sink = LogSink::new(path.clone(), policy);
        let (mut out, _) = sink.open_for_child().unwrap();
        let mut reader = Reader::default();
        out.write_all(b"one\ntw").unwrap();
        assert_eq!(reader.poll(&path, &policy), ["one"]);
        out.write_all(b"o\r\nthree\n").unwrap();
        assert_eq!(reader.poll(&path, &policy), ["two", "three"]);
        assert!(reader.poll(&path, &policy).is_empty());
    }

    #[test]
    fn a_full_file_is_rotated_and_writing_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.log");
        let policy = LogPolicy {
            max_bytes: 100,
            keep: 2,
            memory_lines: 10,
        };
        let sink = LogSink::new(path.clone(), policy);
        let (mut out, _) = sink.open_for_child().unwrap();
        let mut reader = Reader::default();
        for round in 0..3 {
            out.write_all(format!("{round}{}\n", "x".repeat(150)).as_bytes())
                .unwrap();
            assert_eq!(reader.poll(&path, &policy).len(), 1);
            // Rotated: the live file is empty, the child's fd appends at 0.
            assert_eq!(fs::metadata(&path).unwrap().len(), 0);
        }
        out.write_all(b"after\n").unwrap();
        assert_eq!(reader.poll(&path, &policy), ["after"]);
        assert!(
            fs::read_to_string(format!("{}.1", path.display()))
                .unwrap()
                .starts_with('2')
        );
        assert!(
            fs::read_to_string(format!("{}.2", path.display()))
                .unwrap()
                .starts_with('1')
        );
        assert!(!Path::new(&format!("{}.3", path.display())).exists());
    }

    #[test]
    fn memory_keeps_the_last_lines() {
        let policy = LogPolicy {
            max_bytes: 100,
            keep: 1,
            memory_lines: 3,
        };
        let sink = LogSink::new("/nonexistent/x.log".into(), policy);
        for i in 0..5 {
            sink.push(i.to_string());
        }
        assert_eq!(sink.tail(10).0, ["2", "3", "4"]);
        assert_eq!(sink.tail(1).0, ["4"]);
    }
}
