//! Secrets stay secret: after a full apply with a known cluster token (and
//! the node's own WireGuard private key, which the agent generated), neither
//! appears in the agent's log, in what tfagentctl shows (status, events,
//! `get spec`, info, the services' logs, a refused apply), nor in any file
//! the agent wrote outside its secrets store. The scan is shown to find a
//! planted canary, so a clean result means something.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    fs,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use tfagent_testkit as common;

use common::nsagent::{NsAgent, cannot_run};

/// Known, and nowhere else in the repository's specs.
const TOKEN: &str = "k10-secret-canary-7f3c9a1e5b2d4f60";

/// A stand-in for containerd and k3s that prints what it was given (its
/// arguments and environment) to the output the agent keeps as its log:
/// a secret passed that way would show up there, and in /proc.
const TELL_ALL: &str = "#!/bin/sh\necho \"argv: $0 $*\"\nenv\nexec sleep 600\n";

/// Every form a secret could be written in: as given, the key also in hex
/// (the UAPI form) and in its base64 without padding.
struct Secrets {
    needles: Vec<(String, Vec<u8>)>,
}

impl Secrets {
    fn new(private_key_base64: &str) -> Self {
        let bytes = base64_decode(private_key_base64);
        assert_eq!(bytes.len(), 32, "a 32-byte key");
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            needles: vec![
                ("the cluster token".into(), TOKEN.as_bytes().to_vec()),
                (
                    "the private key (base64)".into(),
                    private_key_base64.trim_end_matches('=').as_bytes().to_vec(),
                ),
                ("the private key (hex)".into(), hex.into_bytes()),
            ],
        }
    }

    /// Which secrets `haystack` holds.
    fn found_in(&self, haystack: &[u8]) -> Vec<&str> {
        self.needles
            .iter()
            .filter(|(_, needle)| {
                haystack
                    .windows(needle.len())
                    .any(|w| w == needle.as_slice())
            })
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Every file under `root` (recursively, not following links) except
    /// `allowed`, that holds a secret: (path, what).
    fn leaks_under(&self, root: &Path, allowed: &[PathBuf]) -> Vec<String> {
        let mut leaks = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let entry = entry.unwrap();
                let path = entry.path();
                let kind = entry.file_type().unwrap();
                if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_file() && !allowed.contains(&path) {
                    if let Ok(bytes) = fs::read(&path) {
                        for what in self.found_in(&bytes) {
                            leaks.push(format!("{}: {what}", path.display()));
                        }
                    }
                } else if !kind.is_file() && !kind.is_symlink() && !kind.is_socket() {
                    leaks.push(format!("{}: unexpected file type", path.display()));
                }
            }
        }
        leaks
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim().bytes().filter(|&c| c != b'=') {
        let value = ALPHABET.iter().position(|&a| a == c).unwrap();
        bits = (bits << 6) | u32::try_from(value).unwrap();
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(u8::try_from((bits >> count) & 0xff).unwrap());
        }
    }
    out
}

fn spec(agent: &NsAgent, binary: &Path) -> Value {
    json!({
        "node_name": "server-1",
        "role": "server-init",
        "cluster": {
            "token": TOKEN,
            "vip": "10.100.0.250",
            "tls_sans": ["k3s.example.com"],
        },
        "services": {
            "containerd": {"binary": binary},
            "k3s": {"binary": binary, "extra_args": ["--disable=traefik"]},
        },
        "network": {"wireguard": {
            "interface": agent.interface,
            "listen_port": 51820,
            "addresses": ["10.100.0.1/24"],
            "peers": [{
                "name": "server-2",
                "public_key": "zz0Gb1q1briV2JILKwhxvCgG0vuXsmMhjzACYmVOln4=",
                "endpoint": "192.0.2.2:51820",
                "allowed_ips": ["10.100.0.2/32"],
                "persistent_keepalive": 25,
            }],
        }},
        "addons": {
            "ingress_nginx": {"enabled": true},
            "cert_manager": {"enabled": true, "email": "ops@example.com", "server": "staging"},
        },
    })
}

/// Waits until the network step converged to `generation` and the
/// services step wrote the token file.
fn wait_for_steps(agent: &NsAgent, generation: u64, token_file: &Path) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = agent.json(&["status"]);
        let network = common::step_status(&status, "network");
        if network["converged_generation"].as_u64() >= Some(generation) && token_file.exists() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence: {status}\n{}",
            agent.log()
        );
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn no_secret_reaches_logs_status_events_spec_or_files() {
    if let Some(why) = cannot_run() {
        println!("skipped: {why}");
        return;
    }
    let agent = NsAgent::start();
    let key_file = agent.state_dir().join("wireguard.key");
    let private_key = fs::read_to_string(&key_file).unwrap();
    let secrets = Secrets::new(private_key.trim());
    let binary = agent.path().join("tell-all");
    let script = agent.path().join("tell-all.txt");
    fs::write(&script, TELL_ALL).unwrap();
    common::copy_executable(script.to_str().unwrap(), &binary);

    // The test's own spec files are kept out of the agent's dirs.
    let ours = tempfile::tempdir().unwrap();
    let file = ours.path().join("spec.json");
    fs::write(&file, serde_json::to_vec(&spec(&agent, &binary)).unwrap()).unwrap();
    let applied = agent.json(&["apply", "-f", file.to_str().unwrap()]);
    let generation = applied["generation"].as_u64().unwrap();
    let token_file = agent.services_dir().join("run/services/k3s-token");
    let status = wait_for_steps(&agent, generation, &token_file);
    // The apply did reach the host: the interface carries the key.
    assert_eq!(agent.link_addresses(), ["10.100.0.1/24"], "{status}");
    // A spec refused for another fault, carrying the token.
    let mut bad = spec(&agent, &binary);
    bad["network"]["wireguard"]["listen_port"] = json!(70_000);
    let bad_file = ours.path().join("bad.json");
    fs::write(&bad_file, serde_json::to_vec(&bad).unwrap()).unwrap();
    let refused = agent.ctl(&["apply", "-f", bad_file.to_str().unwrap()]);
    assert!(!refused.status.success());
    // Let the services run and write their logs.
    thread::sleep(Duration::from_secs(2));

    // What people and the reservation layer see.
    let mut shown: Vec<(String, Vec<u8>)> = Vec::new();
    for args in [
        vec!["status"],
        vec!["status", "-o", "json"],
        vec!["events"],
        vec!["events", "-o", "json"],
        vec!["get", "spec"],
        vec!["get", "spec", "-o", "json"],
        vec!["get", "spec", "-o", "yaml"],
        vec!["info", "-o", "json"],
        vec!["logs", "containerd", "--tail", "1000"],
        vec!["logs", "k3s", "--tail", "1000"],
        vec![
            "wg",
            "access-config",
            "--name",
            "user",
            "--address",
            "10.100.0.100/32",
            "--endpoint",
            "192.0.2.1:51820",
        ],
    ] {
        let output = agent.ctl(&args);
        let mut bytes = output.stdout;
        bytes.extend(output.stderr);
        shown.push((format!("tfagentctl {}", args.join(" ")), bytes));
    }
    shown.push((
        "tfagentctl apply (refused)".into(),
        [refused.stdout, refused.stderr].concat(),
    ));
    shown.push(("the agent's log".into(), agent.log().into_bytes()));
    // The stand-in ran, and what it was given is among what is scanned.
    let containerd_log = String::from_utf8_lossy(&shown[8].1).into_owned();
    assert!(
        containerd_log.contains("argv: ") && containerd_log.contains("PATH="),
        "containerd's log: {containerd_log}"
    );
    let spec_shown = String::from_utf8_lossy(&shown[4].1).into_owned();
    assert!(
        spec_shown.contains("server-1") && spec_shown.contains("redacted"),
        "get spec shows the spec, token redacted: {spec_shown}"
    );
    let mut leaks: Vec<String> = shown
        .iter()
        .flat_map(|(what, bytes)| {
            secrets
                .found_in(bytes)
                .into_iter()
                .map(move |secret| format!("{what}: {secret}"))
        })
        .collect();

    // Every file the agent wrote, but its secrets store: the spec and key
    // in the state dir, and the token file k3s reads (all 0600).
    let allowed = vec![
        agent.state_dir().join("spec.json"),
        key_file.clone(),
        token_file.clone(),
    ];
    for path in &allowed {
        let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    assert_eq!(
        secrets.found_in(&fs::read(&token_file).unwrap()),
        ["the cluster token"],
        "the token file is where k3s finds the token"
    );
    leaks.extend(secrets.leaks_under(agent.path(), &allowed));
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));

    // The scan finds what it is looking for: a canary of each secret,
    // planted deep in the tree and in a log line.
    let canary_dir = agent.services_dir().join("log/deeper");
    fs::create_dir_all(&canary_dir).unwrap();
    fs::write(canary_dir.join("canary.log"), format!("x{TOKEN}x")).unwrap();
    fs::write(
        canary_dir.join("canary.key"),
        format!("private_key={}", secrets_hex(&secrets)),
    )
    .unwrap();
    let found = secrets.leaks_under(agent.path(), &allowed);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        !secrets
            .found_in(format!("line {} end", private_key.trim()).as_bytes())
            .is_empty()
    );
    fs::remove_dir_all(&canary_dir).unwrap();
}

fn secrets_hex(secrets: &Secrets) -> String {
    String::from_utf8(secrets.needles[2].1.clone()).unwrap()
}
