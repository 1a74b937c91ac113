//! The host's end of a VM's command channel: the twin-guest runner on the
//! VM's second serial port, reached through qemu's unix socket.

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader, ErrorKind, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::{Duration, Instant},
};

/// What a command in the VM did.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Its exit code; -1 when the runner killed it at its timeout.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Reply {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

#[derive(Debug)]
pub struct Channel {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
}

fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "-".to_owned();
    }
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

fn unhex(text: &str) -> Option<String> {
    if text == "-" {
        return Some(String::new());
    }
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect();
    Some(String::from_utf8_lossy(&bytes?).into_owned())
}

impl Channel {
    /// Connects to qemu's socket for the VM's command port.
    pub fn connect(socket: &Path, within: Duration) -> std::io::Result<Self> {
        let deadline = Instant::now() + within;
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(stream) => break stream,
                Err(error) if Instant::now() >= deadline => return Err(error),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        Ok(Self {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
            next_id: 0,
        })
    }

    /// Runs `command` under `/bin/sh -c` in the VM, with `stdin`; `None`
    /// when no reply came within `timeout` (plus the channel's slack).
    pub fn call(&mut self, command: &str, stdin: &[u8], timeout: Duration) -> Option<Reply> {
        self.next_id += 1;
        let id = format!("q{}", self.next_id);
        let secs = timeout.as_secs().max(1);
        let request = format!("{id} {secs} {} {}\n", hex(command.as_bytes()), hex(stdin));
        self.writer.write_all(request.as_bytes()).ok()?;
        let deadline = Instant::now() + Duration::from_secs(secs) + Duration::from_secs(5);
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(10))))
                .ok()?;
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    return None;
                }
                Err(_) => return None,
            }
            // Replies are `R ID CODE OUT ERR`; anything else (an echo of a
            // request sent before the runner set the port raw) is noise.
            let fields: Vec<&str> = line.trim().split(' ').collect();
            if let ["R", reply_id, code, out, err] = fields[..]
                && reply_id == id
            {
                return Some(Reply {
                    code: code.parse().ok()?,
                    stdout: unhex(out)?,
                    stderr: unhex(err)?,
                });
            }
        }
    }
}
