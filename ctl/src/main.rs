//! `tfagentctl`: see the `tfagentctl` library.

use std::{io, process::ExitCode};

use clap::Parser;
use tfagentctl::{Cli, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = io::stdout().lock();
    match run(cli, &mut stdout).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.output_closed => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tfagentctl: {error}");
            ExitCode::FAILURE
        }
    }
}
