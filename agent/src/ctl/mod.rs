//! `tfagentctl`: the command line for people on the node. The binary only
//! parses arguments and calls [`run`]; output is rendered in [`render`].

mod render;
// ---- network ----
mod wireguard;

use std::{
    fmt, fs,
    io::{self, IsTerminal, Write},
    path::PathBuf,
};

use clap::{Parser, Subcommand, ValueEnum};
use tfagent_proto::v1 as pb;
use tonic::Code;

use crate::{
    api::{bad_request_fields, connect_unix},
    config::DEFAULT_SOCKET,
    spec::{SpecDocument, ValidationContext, limits},
};

pub use render::Style;

#[derive(Debug, Parser)]
#[command(
    name = "tfagentctl",
    version,
    about = "Talk to the tfagent node agent",
    long_about = "Talk to the tfagent node agent on this node over its local socket."
)]
pub struct Cli {
    /// The agent's socket.
    #[arg(long, global = true, env = "TFAGENT_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Identity, version and what the host can do.
    Info,
    /// Desired and converged generation, and each reconcile step.
    Status,
    /// Validate a spec (YAML or JSON) and hand it to the agent.
    Apply {
        /// The spec file; `-` reads standard input.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Show the plan only; nothing is stored or changed.
        #[arg(long)]
        dry_run: bool,
        /// Apply on trial: the previous spec comes back unless `tfagentctl
        /// confirm` follows within this time (e.g. 60s, 5m).
        #[arg(long = "try", value_name = "TIMEOUT", value_parser = humantime::parse_duration, conflicts_with = "dry_run")]
        try_timeout: Option<std::time::Duration>,
    },
    /// Keep the spec applied with `apply --try`.
    Confirm {
        /// The generation on trial (default: the one status shows).
        #[arg(long)]
        generation: Option<u64>,
    },
    /// WireGuard helpers.
    Wg {
        #[command(subcommand)]
        what: WgCommand,
    },
    /// Show stored state.
    Get {
        #[command(subcommand)]
        what: GetWhat,
    },
    /// Recent events; with --follow, keep printing new ones.
    Events {
        #[arg(short, long)]
        follow: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WgCommand {
    /// A wg-quick config for a person who reaches the mesh through this
    /// node; a new person gets a key pair made here (never sent to the
    /// agent) and the peer entry to add to the spec.
    AccessConfig {
        /// The person's peer name.
        #[arg(long, alias = "peer", default_value = "user")]
        name: String,
        /// Their address on the mesh, e.g. 10.100.0.200/32 (for a new peer).
        #[arg(long)]
        address: Option<String>,
        /// This node as the person reaches it: HOST[:PORT].
        #[arg(long)]
        endpoint: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GetWhat {
    /// The stored desired spec, secrets redacted.
    Spec,
}

/// A failure to report on stderr; the process then exits non-zero.
#[derive(Debug)]
pub struct CtlError {
    pub message: String,
    /// One line each under the message (e.g. every invalid field).
    pub details: Vec<String>,
    /// Whoever read our output went away (`tfagentctl events | head`): not
    /// worth a message.
    pub output_closed: bool,
}

impl CtlError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            details: Vec::new(),
            output_closed: false,
        }
    }

    fn writing(error: io::Error) -> Self {
        Self {
            output_closed: error.kind() == io::ErrorKind::BrokenPipe,
            ..Self::new(format!("writing output: {error}"))
        }
    }

    fn from_status(status: &tonic::Status) -> Self {
        let fields = bad_request_fields(status);
        if status.code() == Code::InvalidArgument && !fields.is_empty() {
            let message = format!(
                "the agent refused the spec: {} invalid field(s)",
                fields.len()
            );
            return Self {
                details: fields
                    .into_iter()
                    .map(|(field, message)| format!("{field}: {message}"))
                    .collect(),
                ..Self::new(message)
            };
        }
        let hint = match status.code() {
            Code::PermissionDenied => " (the socket serves root only)",
            Code::Unavailable if !status.message().contains("shutting down") => {
                " (is tfagent running?)"
            }
            _ => "",
        };
        Self::new(format!("{}{hint}", status.message()))
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for detail in &self.details {
            write!(f, "\n  {detail}")?;
        }
        Ok(())
    }
}

impl From<tonic::Status> for CtlError {
    fn from(status: tonic::Status) -> Self {
        Self::from_status(&status)
    }
}

/// Runs one command, writing its output to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CtlError> {
    let style = Style::detect(cli.output == Output::Table && io::stdout().is_terminal());
    // Read and parse before connecting: a bad file needs no agent to report.
    let document = match &cli.command {
        Command::Apply { file, .. } => Some(read_spec(file)?),
        _ => None,
    };
    let mut client = connect_unix(&cli.socket)
        .await
        .map_err(|e| CtlError::new(format!("{e} (is tfagent running, and are you root?)")))?;
    let output = cli.output;
    let write_err = CtlError::writing;
    match cli.command {
        Command::Info => {
            let info = client.get_info(pb::GetInfoRequest {}).await?.into_inner();
            render::info(out, output, &info).map_err(write_err)?;
        }
        Command::Status => {
            let status = client
                .get_status(pb::GetStatusRequest {})
                .await?
                .into_inner();
            render::status(out, output, style, &status).map_err(write_err)?;
        }
        Command::Apply {
            dry_run,
            try_timeout,
            ..
        } => {
            let Some(document) = document else {
                return Err(CtlError::new("no spec was read"));
            };
            let mode = if dry_run {
                pb::ApplyMode::DryRun
            } else if try_timeout.is_some() {
                pb::ApplyMode::Try
            } else {
                pb::ApplyMode::Apply
            };
            let try_timeout = match try_timeout.map(prost_types::Duration::try_from) {
                None => None,
                Some(Ok(timeout)) => Some(timeout),
                Some(Err(_)) => return Err(CtlError::new("--try: too long")),
            };
            let reply = client
                .apply(pb::ApplyRequest {
                    spec: Some(document.into()),
                    mode: mode.into(),
                    try_timeout,
                })
                .await?
                .into_inner();
            render::applied(out, output, style, dry_run, &reply).map_err(write_err)?;
        }
        // ---- network ----
        Command::Confirm { generation } => {
            let generation = match generation {
                Some(generation) => generation,
                None => client
                    .get_status(pb::GetStatusRequest {})
                    .await?
                    .into_inner()
                    .trial
                    .map(|t| t.generation)
                    .ok_or_else(|| CtlError::new("no spec is on trial"))?,
            };
            let reply = client
                .confirm(pb::ConfirmRequest { generation })
                .await?
                .into_inner();
            writeln!(out, "generation {} confirmed", reply.generation).map_err(write_err)?;
        }
        Command::Wg {
            what:
                WgCommand::AccessConfig {
                    name,
                    address,
                    endpoint,
                },
        } => {
            let reply = client
                .wireguard_access_config(pb::WireguardAccessConfigRequest { name: name.clone() })
                .await?
                .into_inner();
            wireguard::access_config(out, output, &name, address.as_deref(), &endpoint, reply)?;
        }
        Command::Get {
            what: GetWhat::Spec,
        } => {
            let reply = client.get_spec(pb::GetSpecRequest {}).await?.into_inner();
            let Some(spec) = reply.spec else {
                return Err(CtlError::new("no spec has been applied to this node yet"));
            };
            render::spec(out, output, reply.generation, SpecDocument::from(spec))
                .map_err(write_err)?;
        }
        Command::Events { follow } => {
            let mut stream = client
                .watch_events(pb::WatchEventsRequest { follow })
                .await?
                .into_inner();
            while let Some(event) = stream.message().await? {
                render::event(out, output, style, &event).map_err(write_err)?;
                out.flush().map_err(write_err)?;
            }
        }
    }
    Ok(())
}

fn read_spec(file: &PathBuf) -> Result<SpecDocument, CtlError> {
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        io::Read::read_to_string(
            &mut io::Read::take(io::stdin(), limits::MAX_DOCUMENT_BYTES as u64 + 1),
            &mut text,
        )
        .map_err(|e| CtlError::new(format!("reading the spec from stdin: {e}")))?;
        text
    } else {
        let meta =
            fs::metadata(file).map_err(|e| CtlError::new(format!("{}: {e}", file.display())))?;
        if meta.len() > limits::MAX_DOCUMENT_BYTES as u64 {
            return Err(CtlError::new(format!(
                "{}: larger than a spec may be ({} bytes)",
                file.display(),
                limits::MAX_DOCUMENT_BYTES
            )));
        }
        fs::read_to_string(file).map_err(|e| CtlError::new(format!("{}: {e}", file.display())))?
    };
    let document = SpecDocument::parse(&text)
        .map_err(|e| CtlError::new(format!("{}: {e}", file.display())))?;
    // The wire form cannot carry some faults (e.g. a misspelled role): those
    // are reported from here with their precise message. Everything else is
    // the agent's to judge, with what it knows of the host.
    let lossless = SpecDocument::from(pb::NodeSpec::from(document.clone())) == document;
    if !lossless && let Err(errors) = document.validate(&ValidationContext::default()) {
        return Err(CtlError {
            details: errors.iter().map(ToString::to_string).collect(),
            ..CtlError::new(format!(
                "{}: the spec is invalid: {} invalid field(s)",
                file.display(),
                errors.len()
            ))
        });
    }
    Ok(document)
}

#[cfg(test)]
mod tests {
    use tonic_types::{ErrorDetails, StatusExt};

    use super::*;

    #[test]
    fn a_refused_spec_lists_each_field_on_its_own_line() {
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("node_name", "required");
        details.add_bad_request_violation("network.wireguard.mtu", "must be 1280..=9000");
        let status = tonic::Status::with_error_details(Code::InvalidArgument, "invalid", details);
        let shown = CtlError::from(status).to_string();
        assert_eq!(
            shown,
            "the agent refused the spec: 2 invalid field(s)\n  node_name: required\n  network.wireguard.mtu: must be 1280..=9000"
        );
    }

    #[test]
    fn other_errors_are_one_line_with_a_hint() {
        let shown = CtlError::from(tonic::Status::permission_denied("uid 7 may not")).to_string();
        assert_eq!(shown, "uid 7 may not (the socket serves root only)");
        let shown =
            CtlError::from(tonic::Status::unavailable("tfagent is shutting down")).to_string();
        assert_eq!(shown, "tfagent is shutting down");
    }
}
