//! `twin-guest`: what the zOS twin runs inside its VMs besides the flist.
//! zOS has no Python, so the twin's helpers are one small static binary:
//!
//! - `runner DEVICE`: the test's command channel over a serial port. Each
//!   request line is `ID TIMEOUT_SECS HEX(COMMAND) HEX(STDIN)`; the command
//!   runs under `/bin/sh -c` and the reply line is
//!   `R ID EXIT_CODE HEX(STDOUT) HEX(STDERR)` (exit code -1: killed at the
//!   timeout). Hex keeps any output on one line.
//! - `apiserver NAME PORT READY_FILE`: a stand-in for k3s's apiserver.
//!   `/readyz` answers 200 while READY_FILE exists, else 503; every other
//!   path answers NAME, so a client can tell which server served it.
//! - `watch HOST:PORT INTERVAL_MS`: asks HOST:PORT who serves it every
//!   INTERVAL_MS and prints `MILLIS NAME` (or `MILLIS -` when nobody
//!   answered) each time the answer changes, MILLIS on the guest's
//!   monotonic clock.
//! - `ask HOST:PORT`: prints who serves HOST:PORT once (busybox's static
//!   wget crashes on a glibc-static lookup), or fails.
#![allow(clippy::print_stdout)]

use std::{
    env,
    fs::OpenOptions,
    io::{self, BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Command, ExitCode, Stdio},
    thread,
    time::{Duration, Instant},
};

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["runner", device] => runner(device),
        ["apiserver", name, port, ready_file] => apiserver(name, port, ready_file),
        ["watch", target, interval_ms] => watch(target, interval_ms),
        ["ask", target] => ask_once(target),
        _ => Err(io::Error::other(
            "usage: twin-guest runner DEVICE | apiserver NAME PORT READY_FILE | watch HOST:PORT INTERVAL_MS | ask HOST:PORT",
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("twin-guest: {error}");
            ExitCode::FAILURE
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2 + 1);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    if out.is_empty() {
        out.push('-');
    }
    out
}

fn unhex(text: &str) -> io::Result<Vec<u8>> {
    if text == "-" {
        return Ok(Vec::new());
    }
    if !text.len().is_multiple_of(2) {
        return Err(io::Error::other("odd hex length"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(io::Error::other))
        .collect()
}

fn runner(device: &str) -> io::Result<()> {
    let port = OpenOptions::new().read(true).write(true).open(device)?;
    let mut replies = port.try_clone()?;
    // The host may have written half a line before we opened the port (or
    // noise from an earlier boot): a line that does not parse is dropped.
    for line in BufReader::new(port).lines() {
        let line = line?;
        let fields: Vec<&str> = line.trim().split(' ').collect();
        let [id, timeout, command, stdin] = fields[..] else {
            continue;
        };
        let (Ok(timeout), Ok(command), Ok(stdin)) =
            (timeout.parse::<u64>(), unhex(command), unhex(stdin))
        else {
            continue;
        };
        let command = String::from_utf8_lossy(&command).into_owned();
        let (code, stdout, stderr) = match run(&command, &stdin, Duration::from_secs(timeout)) {
            Ok(done) => done,
            Err(error) => (127, Vec::new(), error.to_string().into_bytes()),
        };
        let reply = format!("R {id} {code} {} {}\n", hex(&stdout), hex(&stderr));
        replies.write_all(reply.as_bytes())?;
        replies.flush()?;
    }
    Ok(())
}

fn run(command: &str, stdin: &[u8], timeout: Duration) -> io::Result<(i32, Vec<u8>, Vec<u8>)> {
    let mut child = Command::new("/bin/sh")
        .args(["-c", command])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut input = child.stdin.take();
    let payload = stdin.to_vec();
    let feeder = thread::spawn(move || {
        if let Some(input) = input.as_mut() {
            let _ = input.write_all(&payload);
        }
    });
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let out_reader = thread::spawn(move || {
        let mut buffer = Vec::new();
        if let Some(out) = out.as_mut() {
            let _ = out.read_to_end(&mut buffer);
        }
        buffer
    });
    let err_reader = thread::spawn(move || {
        let mut buffer = Vec::new();
        if let Some(err) = err.as_mut() {
            let _ = err.read_to_end(&mut buffer);
        }
        buffer
    });
    let deadline = Instant::now() + timeout;
    let code = loop {
        if let Some(status) = child.try_wait()? {
            break status.code().unwrap_or(-1);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break -1;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let _ = feeder.join();
    // A command that left a background child holding the pipes open must not
    // hang the channel: its output is whatever arrived.
    let stdout = join_within(out_reader, Duration::from_secs(2));
    let stderr = join_within(err_reader, Duration::from_secs(2));
    Ok((code, stdout, stderr))
}

fn join_within(reader: thread::JoinHandle<Vec<u8>>, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    while !reader.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    if reader.is_finished() {
        reader.join().unwrap_or_default()
    } else {
        b"(output still held open by a background process)".to_vec()
    }
}

fn apiserver(name: &str, port: &str, ready_file: &str) -> io::Result<()> {
    let port: u16 = port.parse().map_err(io::Error::other)?;
    let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))?;
    let ready_file = PathBuf::from(ready_file);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let name = name.to_owned();
        let ready_file = ready_file.clone();
        thread::spawn(move || {
            let _ = answer(stream, &name, &ready_file);
        });
    }
    Ok(())
}

fn answer(mut stream: TcpStream, name: &str, ready_file: &std::path::Path) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request_line = String::new();
    let mut reader = BufReader::new(stream.try_clone()?);
    reader.read_line(&mut request_line)?;
    // Drain the headers.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("/");
    let (status, body) = if path.split('?').next() == Some("/readyz") {
        if ready_file.exists() {
            ("200 OK", "ok".to_owned())
        } else {
            ("503 Service Unavailable", "not ready".to_owned())
        }
    } else {
        ("200 OK", name.to_owned())
    };
    let body = format!("{body}\n");
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn watch(target: &str, interval_ms: &str) -> io::Result<()> {
    let target: SocketAddr = target.parse().map_err(io::Error::other)?;
    let interval = Duration::from_millis(interval_ms.parse().map_err(io::Error::other)?);
    let start = Instant::now();
    let mut last: Option<String> = None;
    let stdout = io::stdout();
    loop {
        let began = Instant::now();
        let answer =
            ask(target, interval.max(Duration::from_millis(100))).unwrap_or_else(|| "-".to_owned());
        if last.as_deref() != Some(answer.as_str()) {
            let mut out = stdout.lock();
            writeln!(out, "{} {answer}", began.duration_since(start).as_millis())?;
            out.flush()?;
            last = Some(answer);
        }
        if let Some(rest) = interval.checked_sub(began.elapsed()) {
            thread::sleep(rest);
        }
    }
}

fn ask_once(target: &str) -> io::Result<()> {
    let target: SocketAddr = target.parse().map_err(io::Error::other)?;
    let answer = ask(target, Duration::from_secs(2))
        .ok_or_else(|| io::Error::other(format!("{target} did not answer")))?;
    println!("{answer}");
    Ok(())
}

/// Who serves `target` (the body of `GET /`), if anyone answers in time.
fn ask(target: SocketAddr, timeout: Duration) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&target, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: twin\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.trim().to_owned())
}
