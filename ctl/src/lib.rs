//! `tfagentctl`: the command line for people on the node. The binary only
//! parses arguments ([`Cli`]) and calls [`run`], which asks the agent and
//! hands the answer to the module of its command to print.
//!
//! The modules form layers: `output` (formats, colours) and `error` import
//! nothing of this crate; the sections of `status` (steps, trial,
//! wireguard, vip, services, volumes) and the other commands' views use
//! them; `status` composes its sections; `run` here uses them all.

mod apply;
mod certs;
mod cli;
pub mod client;
mod disks;
mod error;
mod events;
mod health;
mod info;
mod output;
mod services;
mod spec;
mod status;
mod steps;
mod trial;
mod vip;
mod volumes;
mod wireguard;

use std::io::{self, IsTerminal, Write};

use clap::CommandFactory;
use tfagent_proto::v1 as pb;
use tfagent_spec::SpecDocument;

use crate::client::{ClientTlsFiles, connect_tls, connect_unix};

pub use crate::{
    cli::{CertsCommand, Cli, Command, GetWhat, WgCommand},
    error::CtlError,
    output::{Output, Style},
};

/// Runs one command, writing its output to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CtlError> {
    let style = Style::detect(cli.output == Output::Table && io::stdout().is_terminal());
    // Read and parse before connecting: a bad file needs no agent to report.
    let document = match &cli.command {
        Command::Apply { file, .. } => Some(apply::read_spec(file)?),
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
            info::write(out, output, &info).map_err(write_err)?;
        }
        Command::Status => {
            let status = client
                .get_status(pb::GetStatusRequest {})
                .await?
                .into_inner();
            status::write(out, output, style, &status).map_err(write_err)?;
        }
        Command::Disks => {
            let reply = client
                .list_disks(pb::ListDisksRequest {})
                .await?
                .into_inner();
            disks::write(out, output, style, &reply.disks).map_err(write_err)?;
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
            apply::write(out, output, style, dry_run, &reply).map_err(write_err)?;
        }
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
            trial::write_confirmed(out, reply.generation).map_err(write_err)?;
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
            spec::write(out, output, reply.generation, SpecDocument::from(spec))
                .map_err(write_err)?;
        }
        Command::Events { follow } => {
            let mut stream = client
                .watch_events(pb::WatchEventsRequest { follow })
                .await?
                .into_inner();
            while let Some(event) = stream.message().await? {
                events::write(out, output, style, &event).map_err(write_err)?;
                out.flush().map_err(write_err)?;
            }
        }
        Command::Health { live } => {
            let status = client
                .get_status(pb::GetStatusRequest {})
                .await?
                .into_inner();
            let line = health::check(&status, live)?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;

    use super::*;

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
