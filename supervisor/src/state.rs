//! The life cycle of a supervised service: its states, the transitions
//! between them (an explicit table), and the status it reports.

use std::{fmt, time::SystemTime};

use super::def::ServiceName;

/// Where a service is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceState {
    /// Waiting for its dependencies to be ready.
    Waiting,
    /// Started (or adopted); its readiness probe has not passed yet.
    Starting,
    /// Running and ready.
    Ready,
    /// Running, but its readiness probe fails now.
    Unready,
    /// Exited; started again after a back-off delay.
    BackingOff,
    /// Exited too often in a short time; started again only at the longest
    /// back-off delay until it stays up.
    CrashLooping,
    /// SIGTERM sent, SIGKILL after the stop timeout.
    Stopping,
    /// Stopped on request, or exited and its restart policy says no.
    Stopped,
    /// Could not be started (e.g. its binary is missing); retried with back-off.
    Failed,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Waiting => "waiting",
            ServiceState::Starting => "starting",
            ServiceState::Ready => "ready",
            ServiceState::Unready => "unready",
            ServiceState::BackingOff => "backing-off",
            ServiceState::CrashLooping => "crash-looping",
            ServiceState::Stopping => "stopping",
            ServiceState::Stopped => "stopped",
            ServiceState::Failed => "failed",
        }
    }

    /// Whether a process of the service runs in this state.
    pub fn is_running(self) -> bool {
        matches!(
            self,
            ServiceState::Starting
                | ServiceState::Ready
                | ServiceState::Unready
                | ServiceState::Stopping
        )
    }

    /// The transitions the supervisor makes; any other is a bug.
    pub fn can_become(self, next: ServiceState) -> bool {
        use ServiceState::*;
        if self == next {
            // A new message in the same state (a probe's answer, say).
            return true;
        }
        match (self, next) {
            // A new supervisor starts Waiting: it may adopt a running
            // process (→ Starting) or wait for its dependencies.
            (Waiting, Starting | Failed | Stopped) => true,
            (Starting, Ready) | (Ready | Unready, Unready | Ready) => true,
            // The process ended by itself.
            (Starting | Ready | Unready, BackingOff | CrashLooping | Stopped) => true,
            // A restart, a changed definition, a removal.
            (Starting | Ready | Unready, Stopping) => true,
            (Stopping, Stopped | Waiting | Starting) => true,
            (BackingOff | CrashLooping | Failed, Waiting | Starting | Failed | Stopped) => true,
            (Stopped, Waiting | Starting | Failed) => true,
            _ => false,
        }
    }
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitInfo {
    Code(i32),
    Signal(i32),
    /// An adopted process (not the agent's child): its status went to init.
    Unknown,
}

impl ExitInfo {
    /// The exit code, when it exited by itself.
    pub fn code(self) -> Option<i32> {
        match self {
            ExitInfo::Code(code) => Some(code),
            _ => None,
        }
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitInfo::Code(code) => write!(f, "exit code {code}"),
            ExitInfo::Signal(signal) => {
                let name = nix::sys::signal::Signal::try_from(*signal)
                    .map_or_else(|_| signal.to_string(), |s| s.as_str().to_owned());
                write!(f, "killed by {name}")
            }
            ExitInfo::Unknown => f.write_str("exited (status unknown: adopted process)"),
        }
    }
}

/// What the supervisor reports about one service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceStatus {
    pub name: ServiceName,
    pub state: ServiceState,
    pub pid: Option<u32>,
    pub started_at: Option<SystemTime>,
    /// Starts after the first one (crash restarts and requested restarts).
    pub restarts: u32,
    pub last_exit: Option<ExitInfo>,
    pub ready: bool,
    /// The readiness probe's last message, or why the service waits.
    pub message: String,
    /// The process was started by an earlier run of the agent.
    pub adopted: bool,
    pub depends_on: Vec<ServiceName>,
}

impl ServiceStatus {
    pub fn new(name: ServiceName, depends_on: Vec<ServiceName>) -> Self {
        Self {
            name,
            state: ServiceState::Waiting,
            pid: None,
            started_at: None,
            restarts: 0,
            last_exit: None,
            ready: false,
            message: String::new(),
            adopted: false,
            depends_on,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ServiceState::{self, *};

    const ALL: [ServiceState; 9] = [
        Waiting,
        Starting,
        Ready,
        Unready,
        BackingOff,
        CrashLooping,
        Stopping,
        Stopped,
        Failed,
    ];

    #[test]
    fn the_transition_table() {
        let allowed: Vec<(ServiceState, ServiceState)> = ALL
            .iter()
            .flat_map(|a| ALL.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a.can_become(*b))
            .collect();
        // Only a probe makes a service ready, and only a running one.
        for from in ALL {
            assert_eq!(
                from.can_become(Ready),
                matches!(from, Starting | Unready | Ready)
            );
        }
        // Nothing running is dropped without stopping or exiting first.
        for (from, to) in &allowed {
            if from.is_running() && !to.is_running() {
                assert!(
                    matches!(to, BackingOff | CrashLooping | Stopped | Waiting),
                    "{from} -> {to}"
                );
            }
        }
        // A crash-looping service can be restarted on request or stopped.
        assert!(CrashLooping.can_become(Starting));
        assert!(CrashLooping.can_become(Stopped));
        assert!(!Stopped.can_become(Ready));
        assert!(!Failed.can_become(Ready));
        assert!(!Stopping.can_become(Ready));
        assert!(!BackingOff.can_become(CrashLooping));
        assert_eq!(allowed.len(), 44, "{allowed:?}");
    }

    #[test]
    fn names_are_kebab_case() {
        assert_eq!(CrashLooping.to_string(), "crash-looping");
        assert_eq!(BackingOff.to_string(), "backing-off");
    }
}
