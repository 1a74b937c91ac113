//! `tfagentctl`: the command line for people on the node. The binary only
//! parses arguments and calls [`run`]; output is rendered in [`render`].

mod certs;
pub mod client;
mod render;
mod vip;
mod wireguard;

use std::{
    fmt, fs,
    io::{self, IsTerminal, Write},
    path::PathBuf,
};

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use tfagent_proto::v1 as pb;
use tonic::Code;

use tfagent_proto::DEFAULT_SOCKET;
use tfagent_spec::{SpecDocument, ValidationContext, limits};

use crate::client::{ClientTlsFiles, bad_request_fields, connect_tls, connect_unix};

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
    /// A remote agent's API (HOST:PORT), over mutual TLS, instead of the
    /// local socket; needs --cert, --key and --ca.
    #[arg(long, global = true, env = "TFAGENT_ENDPOINT", requires_all = ["cert", "key", "ca"])]
    pub endpoint: Option<String>,
    /// The client certificate (its role bounds what may be called).
    #[arg(long, global = true, env = "TFAGENT_CERT")]
    pub cert: Option<PathBuf>,
    /// The client certificate's key.
    #[arg(long, global = true, env = "TFAGENT_KEY")]
    pub key: Option<PathBuf>,
    /// The CA that signed the agent's certificate.
    #[arg(long, global = true, env = "TFAGENT_CA")]
    pub ca: Option<PathBuf>,
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
    // ---- services ----
    /// The output of a supervised service (containerd, k3s, ...).
    Logs {
        service: String,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        /// How many recent lines to print first.
        #[arg(long, default_value_t = 100)]
        tail: u32,
    },
    /// Restart a supervised service now.
    Restart { service: String },
    // ---- storage ----
    /// Block devices, their signatures, and whether volumes may use them.
    Disks,
    /// Exit 0 when the agent serves and has converged to its spec;
    /// otherwise say why and exit 1 (for zinit `test:` and monitoring).
    Health {
        /// Only check that the agent answers (a node still converging, or
        /// with no spec yet, counts as alive).
        #[arg(long)]
        live: bool,
    },
    /// Print a shell completion script (e.g. `tfagentctl completions bash
    /// > /etc/bash_completion.d/tfagentctl`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from this command line.
    Man,
    /// On a server: an admin kubeconfig pointing at the VIP (root/admin
    /// only: it carries the cluster's admin credentials).
    Kubeconfig,
    /// Certificates for the remote API.
    Certs {
        #[command(subcommand)]
        what: CertsCommand,
    },
    // ---- reset ----
    /// Take down what the agent set up (services, WireGuard, add-on files,
    /// mounts) and forget the spec. Never formats or deletes data.
    Reset {
        /// The node name of the stored spec, to confirm.
        #[arg(long = "node-name", value_name = "NAME")]
        node_name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a CA, the node's certificate and one client certificate per
    /// role in DIR (for labs and first setups; keys are 0600).
    Init {
        /// A new or empty directory.
        dir: PathBuf,
        /// The node's DNS names (the first is its certificate's name).
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// The addresses clients dial the node at.
        #[arg(long = "address")]
        addresses: Vec<std::net::IpAddr>,
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
            Code::PermissionDenied if status.message().starts_with("uid ") => {
                " (the socket serves root only)"
            }
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
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(*shell, &mut command, "tfagentctl", out);
            return Ok(());
        }
        Command::Man => {
            return clap_mangen::Man::new(Cli::command())
                .render(out)
                .map_err(CtlError::writing);
        }
        Command::Certs {
            what:
                CertsCommand::Init {
                    dir,
                    names,
                    addresses,
                },
        } => {
            let written = certs::init(dir, names, addresses)?;
            for path in written {
                writeln!(out, "wrote {}", path.display()).map_err(CtlError::writing)?;
            }
            return Ok(());
        }
        _ => None,
    };
    let mut client = match (&cli.endpoint, &cli.cert, &cli.key, &cli.ca) {
        (Some(endpoint), Some(cert), Some(key), Some(ca)) => {
            let files = ClientTlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            };
            connect_tls(endpoint, &files)
                .await
                .map_err(|e| CtlError::new(e.to_string()))?
        }
        _ => connect_unix(&cli.socket)
            .await
            .map_err(|e| CtlError::new(format!("{e} (is tfagent running, and are you root?)")))?,
    };
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
            // ---- storage ----
            if output == Output::Table && !status.volumes.is_empty() {
                render::volumes_table(out, style, &status.volumes).map_err(write_err)?;
            }
        }
        // ---- storage ----
        Command::Disks => {
            let reply = client
                .list_disks(pb::ListDisksRequest {})
                .await?
                .into_inner();
            render::disks(out, output, style, &reply.disks).map_err(write_err)?;
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
        Command::Health { live } => {
            let status = client
                .get_status(pb::GetStatusRequest {})
                .await?
                .into_inner();
            let line = health(&status, live)?;
            writeln!(out, "{line}").map_err(write_err)?;
        }
        Command::Kubeconfig => {
            let reply = client
                .kubeconfig(pb::KubeconfigRequest {})
                .await?
                .into_inner();
            write!(out, "{}", reply.kubeconfig).map_err(write_err)?;
        }
        Command::Completions { .. } | Command::Man | Command::Certs { .. } => {}
        // ---- reset ----
        Command::Reset { node_name } => {
            let reply = client
                .reset(pb::ResetRequest {
                    confirm_node_name: node_name,
                })
                .await?
                .into_inner();
            for action in &reply.actions {
                writeln!(out, "{action}").map_err(write_err)?;
            }
            writeln!(
                out,
                "generation {} reset: no spec is stored",
                reply.generation
            )
            .map_err(write_err)?;
        }
        // ---- services ----
        Command::Logs {
            service,
            follow,
            tail,
        } => {
            let mut stream = client
                .logs(pb::LogsRequest {
                    service,
                    tail: tail.max(1),
                    follow,
                })
                .await?
                .into_inner();
            while let Some(line) = stream.message().await? {
                writeln!(out, "{}", line.line).map_err(write_err)?;
                if follow {
                    out.flush().map_err(write_err)?;
                }
            }
        }
        Command::Restart { service } => {
            client
                .restart_service(pb::RestartServiceRequest {
                    service: service.clone(),
                })
                .await?;
            writeln!(out, "restarting {service}").map_err(write_err)?;
        }
    }
    Ok(())
}

/// Whether a status is healthy: `Ok` with a one-line summary, or an error
/// listing each step that holds convergence up.
fn health(status: &pb::NodeStatus, live_only: bool) -> Result<String, CtlError> {
    let desired = status.desired_generation;
    let converged = status.converged_generation;
    if live_only {
        return Ok(format!(
            "alive: generation {desired}, converged {converged}"
        ));
    }
    if !status.refused_spec.is_empty() {
        return Err(CtlError::new(format!(
            "unhealthy: the stored spec was refused: {}",
            status.refused_spec
        )));
    }
    if desired == 0 {
        return Err(CtlError::new("unhealthy: no spec has been applied yet"));
    }
    if converged >= desired {
        return Ok(format!("healthy: generation {desired} converged"));
    }
    let holding: Vec<String> = status
        .steps
        .iter()
        .filter(|step| step.converged_generation < desired)
        .map(|step| {
            let condition = render::condition_name(step.condition);
            let why = if step.last_error.is_empty() {
                &step.message
            } else {
                &step.last_error
            };
            format!("{}: {condition} {why}", step.step)
                .trim_end()
                .to_owned()
        })
        .collect();
    Err(CtlError {
        details: holding,
        ..CtlError::new(format!(
            "unhealthy: generation {desired} not converged (at {converged})"
        ))
    })
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
    #![allow(clippy::unwrap_used)]
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

    fn status(desired: u64, converged: u64, steps: Vec<pb::StepStatus>) -> pb::NodeStatus {
        pb::NodeStatus {
            desired_generation: desired,
            converged_generation: converged,
            steps,
            ..Default::default()
        }
    }

    #[test]
    fn health_is_convergence_and_lists_what_holds_it_up() {
        assert_eq!(
            health(&status(3, 3, vec![]), false).unwrap(),
            "healthy: generation 3 converged"
        );
        let failed = pb::StepStatus {
            step: "network".into(),
            condition: pb::Condition::Failed.into(),
            converged_generation: 2,
            last_error: "wg0: no such device".into(),
            ..Default::default()
        };
        let done = pb::StepStatus {
            step: "storage".into(),
            condition: pb::Condition::Converged.into(),
            converged_generation: 3,
            ..Default::default()
        };
        let error = health(&status(3, 2, vec![done, failed]), false).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unhealthy: generation 3 not converged (at 2)\n  network: failed wg0: no such device"
        );
        let none = health(&status(0, 0, vec![]), false).unwrap_err();
        assert!(none.message.contains("no spec"), "{none}");
        let refused = pb::NodeStatus {
            refused_spec: "spec.json: not JSON".into(),
            ..status(0, 0, vec![])
        };
        assert!(health(&refused, false).is_err());
    }

    #[test]
    fn live_health_only_needs_an_answer() {
        assert!(health(&status(0, 0, vec![]), true).is_ok());
        assert!(health(&status(4, 1, vec![]), true).is_ok());
    }

    #[test]
    fn completions_and_man_page_come_from_the_cli_definition() {
        for (args, expect) in [
            (vec!["tfagentctl", "completions", "bash"], "tfagentctl"),
            (vec!["tfagentctl", "man"], ".TH tfagentctl"),
        ] {
            let cli = Cli::parse_from(args);
            let mut out = Vec::new();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(run(cli, &mut out)).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains(expect), "{text}");
            assert!(text.contains("health"), "every subcommand is listed");
        }
    }
}
