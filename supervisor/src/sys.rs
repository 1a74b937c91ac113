//! The few raw system calls the supervisor needs that nix does not wrap:
//! pidfds (to watch and signal a process without pid-reuse races, also one
//! the agent did not start), and the hook run in a child between fork and
//! exec that gives it its own session, its rlimits and its cgroups.
#![allow(unsafe_code)]

use std::{
    fs::File,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use crate::exe;
use nix::{
    sys::{
        resource,
        signal::Signal,
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::Pid,
};

/// A resource limit to set in the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: resource::Resource,
    pub soft: u64,
    pub hard: u64,
}

/// A pidfd for `pid` (Linux ≥ 5.3). It refers to that very process for as
/// long as it is open, even after the pid is reused.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new file
    // descriptor or -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Registers a pidfd with the tokio reactor: it turns readable when its
/// process ends.
pub fn watch_pidfd(pidfd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and
    // the same for the AsyncFd's whole life.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
    }
    .map_err(io::Error::from)
}

/// Sends `signal` to the process `pidfd` refers to (never to a reused pid).
pub fn pidfd_send_signal(pidfd: &OwnedFd, signal: Signal) -> io::Result<()> {
    // SAFETY: pidfd_send_signal(2) with a null siginfo behaves like kill(2)
    // on the pidfd's process; the descriptor is valid for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What to run for a service.
#[derive(Debug)]
pub struct Launch<'a> {
    pub argv: &'a [String],
    /// The whole environment.
    pub env: &'a [(String, String)],
    pub cwd: &'a Path,
    pub stdout: File,
    pub stderr: File,
    pub rlimits: &'a [Rlimit],
    /// `cgroup.procs` of each cgroup the child joins.
    pub cgroup_procs: Vec<File>,
    /// Root's own directory for the link the child executes (see
    /// [`launch`]).
    pub exec_dir: &'a Path,
}

/// Starts a service's process (stdin from /dev/null, nothing of the
/// agent's environment) and returns its pid. The caller reaps it ([`reap`]).
///
/// `argv[0]` must be a binary only root may change ([`exe::open_trusted`]),
/// and the file checked is the file run: the child executes the checked
/// descriptor, never the path again. It does so through a symlink in
/// `exec_dir` named as the binary, to `/proc/self/fd/N`: the kernel names
/// the process after the path it executes (`comm`, what `ps` and `pkill`
/// see), and `/proc/self/fd/N` alone would name it `N`. The descriptor
/// stays open across exec, as a script's interpreter reads the script
/// through the link.
pub fn launch(launch: Launch<'_>) -> io::Result<i32> {
    let (program, args) = launch
        .argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty argv"))?;
    let binary = exe::open_trusted(Path::new(program))?;
    let link = exec_link(launch.exec_dir, Path::new(program), &binary)?;
    let mut command = Command::new(link);
    command
        .arg0(program)
        .args(args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .current_dir(launch.cwd)
        .stdin(Stdio::null())
        .stdout(launch.stdout)
        .stderr(launch.stderr);
    let child = spawn(command, launch.rlimits, launch.cgroup_procs, Some(&binary))?;
    // Dropping a std Child neither kills nor reaps it.
    i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))
}

/// `exec_dir/NAME` (made 0700), NAME the binary's file name, a symlink to
/// `/proc/self/fd/N` of `binary`, replaced atomically.
fn exec_link(exec_dir: &Path, program: &Path, binary: &OwnedFd) -> io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(exec_dir)?;
    std::fs::set_permissions(exec_dir, std::fs::Permissions::from_mode(0o700))?;
    let name = program.file_name().unwrap_or("service".as_ref());
    let link = exec_dir.join(name);
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(".tmp");
    let tmp = exec_dir.join(tmp);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("/proc/self/fd/{}", binary.as_raw_fd()), &tmp)?;
    std::fs::rename(&tmp, &link)?;
    Ok(link)
}

/// How a child of ours ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaped {
    Code(i32),
    Signal(i32),
    /// Not ended yet (only without `block`).
    Running,
    /// Not our child, or already reaped.
    Unknown,
}

/// Collects the exit status of our child `pid`.
pub fn reap(pid: i32, block: bool) -> Reaped {
    let flags = (!block).then_some(WaitPidFlag::WNOHANG);
    match waitpid(Pid::from_raw(pid), flags) {
        Ok(WaitStatus::Exited(_, code)) => Reaped::Code(code),
        Ok(WaitStatus::Signaled(_, signal, _)) => Reaped::Signal(signal as i32),
        Ok(WaitStatus::StillAlive) => Reaped::Running,
        _ => Reaped::Unknown,
    }
}

/// Sends `signal` by pid, for processes we hold no pidfd for (what is left
/// in a removed service's cgroup). Errors (already gone) are ignored.
pub fn kill(pid: i32, signal: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
}

/// Spawns `command` in its own session (so the agent's death, or a signal
/// to its process group, does not reach it), with `rlimits`, moved into
/// the cgroups whose `cgroup.procs` files are given before it runs anything.
/// `keep` is a close-on-exec descriptor the child keeps open across exec.
pub fn spawn(
    mut command: Command,
    rlimits: &[Rlimit],
    cgroup_procs: Vec<File>,
    keep: Option<&OwnedFd>,
) -> io::Result<Child> {
    let fds: Vec<RawFd> = cgroup_procs.iter().map(AsRawFd::as_raw_fd).collect();
    let keep = keep.map(AsRawFd::as_raw_fd);
    let rlimits = rlimits.to_vec();
    // SAFETY: the hook runs in the forked child before exec. It only makes
    // async-signal-safe system calls (setsid, setrlimit, write) on memory
    // prepared before the fork, and allocates nothing. `keep` is open in
    // the parent until `spawn` returns, so in the child too.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid()?;
            if let Some(fd) = keep
                && libc::fcntl(fd, libc::F_SETFD, 0) < 0
            {
                return Err(io::Error::last_os_error());
            }
            for limit in &rlimits {
                // Without CAP_SYS_RESOURCE (a container) a limit cannot go
                // above the current hard limit: take as much as allowed.
                if resource::setrlimit(limit.resource, limit.soft, limit.hard).is_err() {
                    let (_, hard) = resource::getrlimit(limit.resource)?;
                    resource::setrlimit(
                        limit.resource,
                        limit.soft.min(hard),
                        limit.hard.min(hard),
                    )?;
                }
            }
            // Writing 0 to cgroup.procs moves the writer itself, on v1 and v2.
            for fd in &fds {
                if libc::write(*fd, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = command.spawn();
    drop(cgroup_procs);
    child
}

/// The start time of a process in clock ticks since boot: field 22 of
/// `/proc/PID/stat`. With the pid it names one process for the whole uptime.
/// `None` for a process that has ended (a zombie, state Z or X).
pub fn parse_start_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: the fields
    // after it start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    if matches!(fields.next()?, "Z" | "X" | "x") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// The start time of a running process, `None` when it is gone or a zombie.
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_ticks(&stat)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn start_ticks_is_field_22_even_with_odd_command_names() {
        let stat = "4242 (we) ird (name)) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 100 ...";
        assert_eq!(parse_start_ticks(stat), Some(987_654));
        assert_eq!(parse_start_ticks("garbage"), None);
        let zombie = stat.replacen(") S ", ") Z ", 1);
        assert_eq!(parse_start_ticks(&zombie), None);
        assert_eq!(parse_start_ticks("1 (x) S 1"), None);
    }

    #[test]
    fn a_child_runs_the_checked_file_under_its_own_name() {
        let dir = tempfile::tempdir().unwrap();
        let null = || File::options().write(true).open("/dev/null").unwrap();
        let argv = ["/bin/sleep".to_owned(), "30".to_owned()];
        let pid = launch(Launch {
            argv: &argv,
            env: &[],
            cwd: Path::new("/"),
            stdout: null(),
            stderr: null(),
            rlimits: &[],
            cgroup_procs: Vec::new(),
            exec_dir: &dir.path().join("exec"),
        })
        .unwrap();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        kill(pid, Signal::SIGKILL);
        reap(pid, true);
        // ps and pkill see `sleep`, not the descriptor's number; argv is
        // the service's own.
        assert_eq!(comm.trim_end(), "sleep");
        assert_eq!(cmdline, b"/bin/sleep\x0030\x00");

        let refused = launch(Launch {
            argv: &["sleep".to_owned()],
            env: &[],
            cwd: Path::new("/"),
            stdout: null(),
            stderr: null(),
            rlimits: &[],
            cgroup_procs: Vec::new(),
            exec_dir: &dir.path().join("exec"),
        })
        .unwrap_err();
        assert!(refused.to_string().contains("absolute path"), "{refused}");
    }

    #[test]
    fn our_own_start_time_is_readable_and_stable() {
        let pid = i32::try_from(std::process::id()).unwrap();
        let first = start_ticks(pid).unwrap();
        assert_eq!(start_ticks(pid), Some(first));
        let _fd = pidfd_open(pid).unwrap();
    }
}
