//! The command line: every flag and subcommand of `tfagentctl`. The
//! completions and the man page are generated from these definitions.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tfagent_proto::DEFAULT_SOCKET;

use crate::output::Output;

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
