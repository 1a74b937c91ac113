//! One task per service: starts it once its dependencies are ready, probes
//! its readiness, restarts it with back-off, stops it (SIGTERM, then
//! SIGKILL), and adopts the process an earlier run started.

use std::{
    fs::File,
    io,
    os::fd::OwnedFd,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures::future::select_all;
use nix::sys::signal::Signal;
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, oneshot, watch},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    backoff::{Backoff, StartRate},
    cgroup,
    config::SupervisorConfig,
    def::ServiceDef,
    logs::LogSink,
    probe,
    record::{self, Record},
    state::{ExitInfo, ServiceState, ServiceStatus},
    sys,
};

#[derive(Debug)]
pub(crate) enum Request {
    Restart,
    Stop(oneshot::Sender<()>),
    Update(Arc<ServiceDef>),
}

/// A running process of a service.
struct Running {
    pid: i32,
    pidfd: AsyncFd<OwnedFd>,
    /// Our child (its status is ours to reap) or adopted (it is not).
    own: bool,
    since: Instant,
}

impl Running {
    /// Waits for the process to end and reaps it when it is our child.
    async fn exited(&self) -> ExitInfo {
        loop {
            match self.pidfd.readable().await {
                // A pidfd is readable once its process has ended.
                Ok(_) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        if !self.own {
            return ExitInfo::Unknown;
        }
        let pid = self.pid;
        let reaped = match sys::reap(pid, false) {
            // Readable as the leader exits, with other threads still ending:
            // wait for them off the async threads.
            sys::Reaped::Running => tokio::task::spawn_blocking(move || sys::reap(pid, true))
                .await
                .unwrap_or(sys::Reaped::Unknown),
            other => other,
        };
        match reaped {
            sys::Reaped::Code(code) => ExitInfo::Code(code),
            sys::Reaped::Signal(signal) => ExitInfo::Signal(signal),
            sys::Reaped::Running | sys::Reaped::Unknown => ExitInfo::Unknown,
        }
    }

    fn signal(&self, signal: Signal) {
        if let Err(error) = sys::pidfd_send_signal(self.pidfd.get_ref(), signal) {
            debug!(pid = self.pid, %error, "signal not delivered");
        }
    }
}

/// Why the running phase ended.
enum Ended {
    Exited(ExitInfo),
    Restart,
    Stop(oneshot::Sender<()>),
    Update(Arc<ServiceDef>),
    Shutdown,
}

/// Why a process could not be started; its status says so.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("opening log {}: {source}", path.display())]
    Log { path: PathBuf, source: io::Error },
    #[error("preparing its cgroups: {0}")]
    Cgroups(#[source] io::Error),
    #[error("starting {program}: {source}")]
    Launch { program: String, source: io::Error },
    #[error("watching pid {pid}: {source}")]
    Watch { pid: i32, source: io::Error },
}

/// One service's task.
pub(crate) struct Runner {
    def: Arc<ServiceDef>,
    config: SupervisorConfig,
    status: watch::Sender<ServiceStatus>,
    requests: mpsc::UnboundedReceiver<Request>,
    deps: Vec<watch::Receiver<ServiceStatus>>,
    logs: Arc<LogSink>,
    backoff: Backoff,
    rate: StartRate,
    shutdown: CancellationToken,
    /// No process was started by this task yet (the first is no restart).
    first_start: bool,
    /// The adopted process runs an older definition: restart it.
    stale: bool,
}

impl Runner {
    pub(crate) fn new(
        def: Arc<ServiceDef>,
        config: SupervisorConfig,
        status: watch::Sender<ServiceStatus>,
        requests: mpsc::UnboundedReceiver<Request>,
        deps: Vec<watch::Receiver<ServiceStatus>>,
        logs: Arc<LogSink>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            def,
            config,
            status,
            requests,
            deps,
            logs,
            backoff: Backoff::default(),
            rate: StartRate::default(),
            shutdown,
            first_start: true,
            stale: false,
        }
    }

    fn name(&self) -> &str {
        self.def.name.as_str()
    }

    fn set(&self, state: ServiceState, message: impl Into<String>) {
        let message = message.into();
        self.status.send_modify(|status| {
            if !status.state.can_become(state) {
                warn!(from = %status.state, to = %state, "unexpected service state transition");
            }
            if status.state != state {
                info!(from = %status.state, to = %state, %message, "service state");
            }
            status.state = state;
            status.ready = state == ServiceState::Ready;
            status.message = message;
            if !state.is_running() {
                status.pid = None;
            }
        });
    }

    pub(crate) async fn run(mut self) {
        let mut running = self.adopt();
        // After an exit: how long to wait before starting again.
        let mut delay: Option<Duration> = None;
        let mut stopped = false;
        loop {
            let Some(process) = running.take() else {
                if stopped {
                    match self.idle().await {
                        Some(()) => stopped = false,
                        None => return,
                    }
                }
                if let Some(wait) = delay.take() {
                    match self.sleep(wait).await {
                        Wake::Elapsed | Wake::Restart => {}
                        Wake::Stop(done) => {
                            self.set(ServiceState::Stopped, "stopped on request");
                            let _ = done.send(());
                            stopped = true;
                            continue;
                        }
                        Wake::Shutdown => return,
                    }
                }
                match self.wait_for_dependencies().await {
                    Wake::Elapsed | Wake::Restart => {}
                    Wake::Stop(done) => {
                        self.set(ServiceState::Stopped, "stopped on request");
                        let _ = done.send(());
                        stopped = true;
                        continue;
                    }
                    Wake::Shutdown => return,
                }
                match self.start() {
                    Ok(process) => running = Some(process),
                    Err(error) => {
                        self.set(ServiceState::Failed, error.to_string());
                        delay = Some(self.backoff.after_failed_start(&self.def.backoff));
                    }
                }
                continue;
            };
            match self.supervise(&process).await {
                Ended::Exited(exit) => {
                    let ran_for = process.since.elapsed();
                    self.status.send_modify(|s| s.last_exit = Some(exit));
                    let _ = record::remove(&self.config.record_dir, self.name());
                    if !self.def.restart.restarts(exit.code()) {
                        self.set(ServiceState::Stopped, format!("{exit}; not restarted"));
                        stopped = true;
                        continue;
                    }
                    let mut wait = self.backoff.after_exit(&self.def.backoff, ran_for);
                    if self
                        .rate
                        .is_crash_looping(&self.def.crash_loop, Instant::now())
                    {
                        wait = wait.max(self.def.backoff.max);
                        let message = format!(
                            "{exit}; more than {} starts in {}; next start in {}",
                            self.def.crash_loop.max_starts,
                            humantime::format_duration(self.def.crash_loop.window),
                            humantime::format_duration(round(wait))
                        );
                        warn!(%message, "crash-looping");
                        self.set(ServiceState::CrashLooping, message);
                    } else {
                        let message = format!(
                            "{exit}; next start in {}",
                            humantime::format_duration(round(wait))
                        );
                        self.set(ServiceState::BackingOff, message);
                    }
                    delay = Some(wait);
                }
                Ended::Restart => {
                    self.stop_process(&process).await;
                    self.backoff.reset();
                    self.rate.reset();
                }
                Ended::Update(def) => {
                    let restart = def.fingerprint() != self.def.fingerprint();
                    self.def = def;
                    if restart {
                        info!("definition changed; restarting");
                        self.stop_process(&process).await;
                        self.backoff.reset();
                        self.rate.reset();
                    } else {
                        running = Some(process);
                    }
                }
                Ended::Stop(done) => {
                    self.stop_process(&process).await;
                    let _ = record::remove(&self.config.record_dir, self.name());
                    self.set(ServiceState::Stopped, "stopped on request");
                    let _ = done.send(());
                    stopped = true;
                }
                Ended::Shutdown => return,
            }
        }
    }

    /// Adopts the process an earlier agent started, if it still runs: the
    /// same pid with the same start time, held by a pidfd from then on.
    fn adopt(&mut self) -> Option<Running> {
        let record = record::load(&self.config.record_dir, self.name())?;
        let adopted = sys::pidfd_open(record.pid).ok().and_then(|pidfd| {
            // Opened first, then checked: if the pid was reused in between,
            // the start time differs.
            (sys::start_ticks(record.pid) == Some(record.start_ticks)).then_some(pidfd)
        });
        let Some(pidfd) = adopted.and_then(|fd| sys::watch_pidfd(fd).ok()) else {
            info!(
                pid = record.pid,
                "the recorded process is gone; starting afresh"
            );
            let _ = record::remove(&self.config.record_dir, self.name());
            // It died while no agent watched: the next start is a restart.
            self.first_start = false;
            self.status.send_modify(|s| s.restarts = record.restarts);
            return None;
        };
        let started_at = UNIX_EPOCH + Duration::from_millis(record.started_at_ms);
        info!(pid = record.pid, "adopted the running process");
        self.first_start = false;
        self.rate.record(&self.def.crash_loop, Instant::now());
        self.status.send_modify(|s| {
            s.pid = u32::try_from(record.pid).ok();
            s.started_at = Some(started_at);
            s.restarts = record.restarts;
            s.adopted = true;
        });
        self.set(ServiceState::Starting, "adopted; probing readiness");
        let since = Instant::now()
            .checked_sub(
                SystemTime::now()
                    .duration_since(started_at)
                    .unwrap_or_default(),
            )
            .unwrap_or_else(Instant::now);
        let process = Running {
            pid: record.pid,
            pidfd,
            own: false,
            since,
        };
        if record.fingerprint != self.def.fingerprint() {
            // Started from another definition while no agent watched.
            info!("the adopted process runs an older definition; restarting it");
            self.stale = true;
        }
        Some(process)
    }

    /// Waits, stopped, for a restart or an update.
    async fn idle(&mut self) -> Option<()> {
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return None,
                request = self.requests.recv() => match request {
                    None => return None,
                    Some(Request::Restart) => {
                        self.backoff.reset();
                        self.rate.reset();
                        return Some(());
                    }
                    Some(Request::Update(def)) => {
                        self.def = def;
                    }
                    Some(Request::Stop(done)) => {
                        let _ = done.send(());
                    }
                },
            }
        }
    }

    /// Sleeps a back-off delay; a request cuts it short.
    async fn sleep(&mut self, wait: Duration) -> Wake {
        tokio::select! {
            () = self.shutdown.cancelled() => Wake::Shutdown,
            () = tokio::time::sleep(wait) => Wake::Elapsed,
            request = self.requests.recv() => match request {
                None => Wake::Shutdown,
                Some(Request::Restart) => {
                    self.backoff.reset();
                    self.rate.reset();
                    Wake::Restart
                }
                Some(Request::Update(def)) => {
                    self.def = def;
                    self.backoff.reset();
                    self.rate.reset();
                    Wake::Restart
                }
                Some(Request::Stop(done)) => Wake::Stop(done),
            },
        }
    }

    /// Waits until every dependency is ready.
    async fn wait_for_dependencies(&mut self) -> Wake {
        loop {
            let waiting: Vec<String> = self
                .deps
                .iter()
                .map(|d| d.borrow().clone())
                .filter(|s| !s.ready)
                .map(|s| s.name.to_string())
                .collect();
            if waiting.is_empty() {
                return Wake::Elapsed;
            }
            let message = format!("waiting for {}", waiting.join(", "));
            if self.status.borrow().message != message {
                self.set(ServiceState::Waiting, message);
            }
            let dependency_gone = {
                let changed = select_all(self.deps.iter_mut().map(|d| Box::pin(d.changed())));
                tokio::select! {
                    () = self.shutdown.cancelled() => return Wake::Shutdown,
                    (result, _, _) = changed => result.is_err(),
                    request = self.requests.recv() => match request {
                        None => return Wake::Shutdown,
                        Some(Request::Restart) => false,
                        Some(Request::Update(def)) => {
                            self.def = def;
                            false
                        }
                        Some(Request::Stop(done)) => return Wake::Stop(done),
                    },
                }
            };
            if dependency_gone {
                // A dependency was removed: only a request or shutdown
                // moves this service now.
                self.deps.retain(|d| d.has_changed().is_ok());
            }
        }
    }

    /// Starts a new process: its log file, cgroups, session and rlimits,
    /// then records it for adoption.
    fn start(&mut self) -> Result<Running, StartError> {
        let def = Arc::clone(&self.def);
        let (stdout, stderr) = self
            .logs
            .open_for_child()
            .map_err(|source| StartError::Log {
                path: self.logs.path().to_owned(),
                source,
            })?;
        let dirs = self
            .config
            .cgroups
            .service_dirs(&self.config.cgroup_parent, self.name());
        let procs: Vec<File> = cgroup::prepare(&dirs).map_err(StartError::Cgroups)?;
        let program = def.argv.first().map_or("", String::as_str);
        let exec_dir = self.config.record_dir.join(".exec").join(self.name());
        let pid = sys::launch(sys::Launch {
            argv: &def.argv,
            env: &def.env,
            cwd: def.cwd.as_deref().unwrap_or("/".as_ref()),
            stdout,
            stderr,
            rlimits: &def.rlimits,
            cgroup_procs: procs,
            exec_dir: &exec_dir,
        })
        .map_err(|source| StartError::Launch {
            program: program.to_owned(),
            source,
        })?;
        let pidfd = match sys::pidfd_open(pid).and_then(sys::watch_pidfd) {
            Ok(pidfd) => pidfd,
            Err(e) => {
                // A process the agent cannot watch must not run unsupervised.
                sys::kill(pid, Signal::SIGKILL);
                sys::reap(pid, true);
                return Err(StartError::Watch { pid, source: e });
            }
        };
        let now = SystemTime::now();
        let restarts = {
            let mut restarts = 0;
            let first = std::mem::replace(&mut self.first_start, false);
            self.status.send_modify(|s| {
                if !first {
                    s.restarts += 1;
                }
                s.pid = u32::try_from(pid).ok();
                s.started_at = Some(now);
                s.adopted = false;
                restarts = s.restarts;
            });
            restarts
        };
        self.rate.record(&def.crash_loop, Instant::now());
        let started_at_ms = now
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or_default();
        let record = Record {
            pid,
            start_ticks: sys::start_ticks(pid).unwrap_or_default(),
            started_at_ms,
            fingerprint: def.fingerprint(),
            restarts,
        };
        if let Err(error) = record::save(&self.config.record_dir, self.name(), &record) {
            warn!(%error, "cannot record the process; it will not be adopted after an agent restart");
        }
        info!(pid, restarts, "started");
        let message = if def.readiness.is_some() {
            "started; probing readiness"
        } else {
            "started"
        };
        self.set(ServiceState::Starting, message);
        if def.readiness.is_none() {
            self.set(ServiceState::Ready, "running (no readiness probe)");
        }
        Ok(Running {
            pid,
            pidfd,
            own: true,
            since: Instant::now(),
        })
    }

    /// Watches a running process: its exit, its readiness, requests.
    async fn supervise(&mut self, process: &Running) -> Ended {
        if std::mem::take(&mut self.stale) {
            return Ended::Restart;
        }
        if self.def.readiness.is_none() && self.status.borrow().state == ServiceState::Starting {
            self.set(ServiceState::Ready, "running (no readiness probe)");
        }
        let mut failures = 0u32;
        let mut next_probe = tokio::time::Instant::now();
        loop {
            let probing = self.def.readiness.clone();
            let probe_due = async {
                match &probing {
                    Some(_) => tokio::time::sleep_until(next_probe).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.shutdown.cancelled() => return Ended::Shutdown,
                exit = process.exited() => {
                    info!(pid = process.pid, %exit, "exited");
                    return Ended::Exited(exit);
                }
                request = self.requests.recv() => match request {
                    None => return Ended::Shutdown,
                    Some(Request::Restart) => return Ended::Restart,
                    Some(Request::Stop(done)) => return Ended::Stop(done),
                    Some(Request::Update(def)) => return Ended::Update(def),
                },
                () = probe_due => {
                    let Some(policy) = probing else { continue };
                    // The exit is watched while the probe runs.
                    let result = tokio::select! {
                        result = probe::check(&policy.probe, policy.timeout) => result,
                        exit = process.exited() => {
                            info!(pid = process.pid, %exit, "exited");
                            return Ended::Exited(exit);
                        }
                    };
                    let state = self.status.borrow().state;
                    match result {
                        Ok(message) => {
                            failures = 0;
                            if state != ServiceState::Ready || self.status.borrow().message != message {
                                self.set(ServiceState::Ready, message);
                            }
                        }
                        Err(error) => {
                            let message = error.to_string();
                            failures += 1;
                            let next = match state {
                                ServiceState::Starting => ServiceState::Starting,
                                _ if failures >= policy.failure_threshold => ServiceState::Unready,
                                other => other,
                            };
                            if next == ServiceState::Unready && state != ServiceState::Unready {
                                warn!(%message, "readiness probe failing");
                            }
                            self.set(next, message);
                        }
                    }
                    let period = if self.status.borrow().state == ServiceState::Starting {
                        policy.starting_period
                    } else {
                        policy.period
                    };
                    next_probe = tokio::time::Instant::now() + period;
                }
            }
        }
    }

    /// SIGTERM, then SIGKILL after the stop timeout; waits for the exit.
    async fn stop_process(&mut self, process: &Running) {
        self.set(ServiceState::Stopping, "sent SIGTERM");
        process.signal(Signal::SIGTERM);
        let exit = match tokio::time::timeout(self.def.stop_timeout, process.exited()).await {
            Ok(exit) => exit,
            Err(_) => {
                warn!(
                    pid = process.pid,
                    timeout = %humantime::format_duration(self.def.stop_timeout),
                    "did not stop after SIGTERM; sending SIGKILL"
                );
                self.set(
                    ServiceState::Stopping,
                    "sent SIGKILL after the stop timeout",
                );
                process.signal(Signal::SIGKILL);
                process.exited().await
            }
        };
        info!(pid = process.pid, %exit, "stopped");
        self.status.send_modify(|s| s.last_exit = Some(exit));
        let _ = record::remove(&self.config.record_dir, self.name());
    }
}

/// How a wait ended.
enum Wake {
    Elapsed,
    Restart,
    Stop(oneshot::Sender<()>),
    Shutdown,
}

/// Rounds a delay to milliseconds for messages.
fn round(delay: Duration) -> Duration {
    Duration::from_millis(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX))
}
