//! Boots a twin (3 servers and a worker with their specs applied, or one
//! bare server with `TWIN_SHELL=bare`) and runs each line of stdin in it:
//! `N: COMMAND` on node N (0-based; node 0 without a prefix), and
//! `N: zinit: SCRIPT` runs a Rhai script against zinit. A way to look
//! inside twin VMs by hand (`cargo run -p tfagent-twin --example
//! twin-shell`, as root, after `make twin-image`).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::{io::BufRead, time::Duration};

use tfagent_twin::{Images, Twin, cannot_run};

fn main() {
    let images = Images::locate();
    if let Some(why) = cannot_run(&images) {
        eprintln!("twin-shell: {why}");
        std::process::exit(1);
    }
    let mut twin = if std::env::var("TWIN_SHELL").as_deref() == Ok("bare") {
        let mut twin = Twin::power_on_all(&images, 1, 0);
        let booted = twin.nodes[0].vm.wait_booted(Duration::from_secs(240));
        println!("booted: {booted:?}");
        twin
    } else {
        let mut twin = Twin::boot(&images, 3, 1);
        twin.apply_all();
        twin.converged(Duration::from_secs(300));
        println!("converged");
        twin
    };
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let (index, command) = match line.split_once(": ") {
            Some((n, rest)) if n.parse::<usize>().is_ok() => (n.parse().unwrap(), rest),
            _ => (0, line.as_str()),
        };
        let node = &mut twin.nodes[index];
        if let Some(script) = command.strip_prefix("zinit: ") {
            println!("{}", node.zinit(script));
            continue;
        }
        let reply = node.vm.sh_with(command, b"", Duration::from_secs(60));
        println!("[{}]\n{}{}", reply.code, reply.stdout, reply.stderr);
    }
}
