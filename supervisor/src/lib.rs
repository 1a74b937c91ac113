//! A supervisor for long-running children: each [`ServiceDef`] names an
//! argv, an environment, a readiness probe, dependencies and policies; the
//! [`Supervisor`] starts services in dependency order once their
//! dependencies are ready, restarts them with back-off, keeps their logs,
//! puts each in its own cgroup and stops them in reverse order.
//!
//! When the process that owns a supervisor stops, its children keep running:
//! each start is recorded (pid and start time), and the next supervisor
//! adopts a child that is still the same process (see [`Supervisor::resume`]).
//! Children are stopped only on request.

pub mod backoff;
pub mod cgroup;
mod config;
pub mod def;
pub mod exe;
pub mod logs;
pub mod probe;
pub mod record;
mod runner;
pub mod state;
pub mod supervisor;
mod sys;

pub use config::SupervisorConfig;
pub use def::{ServiceDef, ServiceName};
pub use state::{ExitInfo, ServiceState, ServiceStatus};
pub use supervisor::{Ensured, SuperviseError, Supervisor};
pub use sys::Rlimit;
