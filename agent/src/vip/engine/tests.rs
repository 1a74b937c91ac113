//! The engine over the fakes: keepalived, the apiserver and the mesh are
//! scripted, and time is tokio's paused clock, so every wait is exact.
#![allow(clippy::unwrap_used)]

use std::{net::IpAddr, sync::Arc, time::Duration};

use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::vip::{
    announce::{Announcement, ClusterKey, Kind},
    election::Ledger,
    fake::{Datagram, FakeMesh, FakeParts},
    ports::{Memory, Placement},
};
use tfagent_spec::{Secret, Wireguard, fixtures};

const VIP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 100, 0, 250));
const PORT: u16 = 51822;
const TOKEN: &str = "a-cluster-token-of-enough-length";

fn ip(n: u8) -> IpAddr {
    IpAddr::from([10, 100, 0, n])
}

fn key() -> ClusterKey {
    ClusterKey::new(&Secret::new(TOKEN))
}

/// Node `n` of a mesh of servers 1–3, member 7 and worker 9, each peer
/// routing its own address.
fn config(n: u8, server: bool) -> EngineConfig {
    let wireguard = Wireguard {
        interface: "wg-test".parse().unwrap(),
        listen_port: 51820,
        addresses: vec![format!("10.100.0.{n}/24").parse().unwrap()],
        mtu: 1420,
        peers: [1, 2, 3, 7, 9]
            .into_iter()
            .filter(|m| *m != n)
            .map(|m| fixtures::peer(m, &[&format!("10.100.0.{m}/32")]))
            .collect(),
    };
    EngineConfig {
        node_name: format!("node-{n}").parse().unwrap(),
        address: ip(n),
        vip: VIP,
        server,
        servers: (1..=3)
            .map(|i| (ip(i), format!("server-{i}").parse().unwrap()))
            .collect(),
        wireguard,
        announce_port: PORT,
        token: Secret::new(TOKEN),
        master_down: Duration::from_millis(650),
    }
}

struct Node {
    engine: VipEngine,
    fakes: FakeParts,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Node {
    fn placements(&self) -> Vec<Placement> {
        self.fakes.router.placements()
    }

    fn ledger(&self) -> Ledger {
        self.engine.status().election.unwrap().ledger
    }
}

/// Runs node `n` over `fakes` until it is listening.
async fn run(mesh: &FakeMesh, fakes: FakeParts, n: u8, server: bool) -> Node {
    let shutdown = CancellationToken::new();
    let (engine, task) = VipEngine::new(fakes.engine_parts(), shutdown.clone());
    let task = tokio::spawn(task);
    engine.configure(Some(Arc::new(config(n, server))));
    until("the node listens", || mesh.is_bound(ip(n))).await;
    Node {
        engine,
        fakes,
        shutdown,
        task,
    }
}

async fn start(mesh: &FakeMesh, n: u8, server: bool) -> Node {
    run(mesh, FakeParts::new(mesh), n, server).await
}

/// Lets the engines run until `done` holds, for at most a minute of the
/// paused clock.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

fn claim(holder: u8, epoch: u64) -> Announcement {
    Announcement {
        kind: Kind::Claim,
        epoch,
        holder: ip(holder),
        vip: VIP,
        failover_ms: 0,
    }
}

/// `bytes` from node `from`'s announcement port to node `to`'s.
fn deliver(mesh: &FakeMesh, from: u8, to: u8, bytes: &[u8]) {
    let (from, to) = (
        SocketAddr::new(ip(from), PORT),
        SocketAddr::new(ip(to), PORT),
    );
    assert!(mesh.deliver(from, to, bytes), "{to} does not listen");
}

fn send(mesh: &FakeMesh, from: u8, to: u8, message: &Announcement) {
    deliver(mesh, from, to, &message.encode(&key()));
}

fn decoded(sent: &[Datagram]) -> Vec<(IpAddr, Announcement)> {
    sent.iter()
        .map(|d| (d.to.ip(), Announcement::decode(&d.bytes, &key()).unwrap()))
        .collect()
}

/// The other agents, each once: peers' own addresses and the servers.
const TARGETS: [u8; 4] = [2, 3, 7, 9];

#[tokio::test(start_paused = true)]
async fn an_elected_server_with_a_ready_apiserver_takes_the_vip_and_claims_it() {
    let mesh = FakeMesh::default();
    let s1 = start(&mesh, 1, true).await;
    until("the gate opens", || {
        s1.fakes.files.files().track == Some(true)
    })
    .await;
    until("status shows it", || {
        s1.engine.status().apiserver_ready == Some(true)
    })
    .await;
    // Restored at the start: nobody holds the VIP yet.
    assert_eq!(s1.placements(), [Placement::Nowhere]);
    assert!(mesh.take_sent().is_empty());

    s1.fakes.notify.say("MASTER");
    until("the VIP is local", || {
        s1.fakes.router.last() == Some(Placement::Local)
    })
    .await;
    let sent = decoded(&mesh.take_sent());
    let expected: Vec<_> = TARGETS.iter().map(|t| (ip(*t), claim(1, 1))).collect();
    assert_eq!(sent, expected);
    let status = s1.engine.status();
    let election = status.election.unwrap();
    assert_eq!(election.vrrp, VrrpState::Master);
    assert_eq!(
        election.ledger,
        Ledger {
            epoch: 1,
            holder: Some(ip(1))
        }
    );
    assert_eq!(status.error, None);
    // Remembered for an agent restart that adopts this keepalived.
    assert_eq!(
        s1.fakes.files.files().memory,
        Some(Memory {
            vip: VIP,
            ledger: election.ledger,
            vrrp: VrrpState::Master,
            keepalived_pid: Some(100),
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_peers_valid_claim_moves_the_route_to_that_peer() {
    let mesh = FakeMesh::default();
    let s1 = start(&mesh, 1, true).await;
    let w = start(&mesh, 9, false).await;
    s1.fakes.notify.say("MASTER");
    until("the worker follows", || {
        w.fakes.router.last() == Some(Placement::Peer(fixtures::key(1)))
    })
    .await;
    assert_eq!(
        w.placements(),
        [Placement::Nowhere, Placement::Peer(fixtures::key(1))]
    );
    let election = w.engine.status().election.unwrap();
    assert_eq!(election.holder_name.unwrap().as_str(), "server-1");
    assert_eq!(election.ledger.epoch, 1);
    // A worker takes no part: it hears no keepalived, checks no apiserver.
    assert_eq!(
        w.fakes
            .notify
            .opens
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert_eq!(w.fakes.apiserver.checks(), 0);
    assert_eq!(w.fakes.files.files().track, None);
}

#[tokio::test(start_paused = true)]
async fn a_release_and_the_next_claim_move_the_route_and_time_the_failover() {
    let mesh = FakeMesh::default();
    let s1 = start(&mesh, 1, true).await;
    let s2 = start(&mesh, 2, true).await;
    let w = start(&mesh, 9, false).await;
    s2.fakes.notify.say("BACKUP");
    s1.fakes.notify.say("MASTER");
    until("s2 follows s1", || {
        s2.fakes.router.last() == Some(Placement::Peer(fixtures::key(1)))
    })
    .await;
    // s1's apiserver went away: keepalived puts it in the fault state; it
    // releases the VIP, which starts the others' failover clocks.
    s1.fakes.notify.say("FAULT");
    until("s1 lets go", || {
        s1.fakes.router.last() == Some(Placement::Nowhere)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(70)).await;
    s2.fakes.notify.say("MASTER");
    until("the worker follows s2", || {
        w.fakes.router.last() == Some(Placement::Peer(fixtures::key(2)))
    })
    .await;
    until("s1 follows s2", || {
        s1.fakes.router.last() == Some(Placement::Peer(fixtures::key(2)))
    })
    .await;
    assert_eq!(s2.fakes.router.last(), Some(Placement::Local));
    let status = w.engine.status().election.unwrap();
    assert_eq!(status.ledger.epoch, 2);
    assert_eq!(status.last_failover, Some(Duration::from_millis(80)));
}

#[tokio::test(start_paused = true)]
async fn a_stale_epoch_is_refused_and_answered_with_the_newest_claim() {
    let mesh = FakeMesh::default();
    let w = start(&mesh, 9, false).await;
    send(&mesh, 2, 9, &claim(2, 6));
    until("the VIP goes to s2", || {
        w.fakes.router.last() == Some(Placement::Peer(fixtures::key(2)))
    })
    .await;
    assert!(mesh.take_sent().is_empty());

    send(&mesh, 1, 9, &claim(1, 5));
    until("an answer", || !mesh.sent().is_empty()).await;
    let answer = Announcement {
        kind: Kind::Current,
        ..claim(2, 6)
    };
    assert_eq!(decoded(&mesh.take_sent()), [(ip(1), answer)]);
    assert_eq!(
        w.placements(),
        [Placement::Nowhere, Placement::Peer(fixtures::key(2))]
    );
    assert_eq!(
        w.ledger(),
        Ledger {
            epoch: 6,
            holder: Some(ip(2))
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_forged_or_non_server_claim_is_ignored() {
    let mesh = FakeMesh::default();
    let w = start(&mesh, 9, false).await;
    let theirs = ClusterKey::new(&Secret::new("another-token-of-enough-length!!"));
    deliver(&mesh, 2, 9, &claim(2, 5).encode(&theirs));
    // Member 7 knows the token but is no server.
    send(&mesh, 7, 9, &claim(7, 5));
    // A server claiming for another.
    send(&mesh, 2, 9, &claim(3, 5));
    // Another VIP.
    send(
        &mesh,
        2,
        9,
        &Announcement {
            vip: ip(251),
            ..claim(2, 5)
        },
    );
    let genuine = claim(2, 5).encode(&key());
    deliver(&mesh, 2, 9, &genuine[..10]);
    // A valid message with a byte more is not a message.
    let mut longer = genuine.to_vec();
    longer.push(0);
    deliver(&mesh, 2, 9, &longer);
    tokio::time::sleep(ANNOUNCE_PERIOD * 2).await;
    assert_eq!(w.placements(), [Placement::Nowhere]);
    assert_eq!(w.ledger(), Ledger::default());
    assert!(mesh.sent().is_empty());
    // Still listening: the genuine claim moves the VIP.
    deliver(&mesh, 2, 9, &genuine);
    until("the genuine claim is taken", || {
        w.fakes.router.last() == Some(Placement::Peer(fixtures::key(2)))
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_health_gate_writes_the_track_file_and_flips_after_the_threshold() {
    let mesh = FakeMesh::default();
    let fakes = FakeParts::new(&mesh);
    fakes.apiserver.set_ready(false);
    let s1 = run(&mesh, fakes, 1, true).await;
    let apiserver = &s1.fakes.apiserver;
    let writes = || s1.fakes.files.files().track_writes;
    // The first result counts at once: out of the election.
    until("gated out", || writes() == [false]).await;
    until("status shows it", || {
        s1.engine.status().apiserver_ready == Some(false)
    })
    .await;
    assert_eq!(s1.engine.status().apiserver_message, "not ready");

    // Two ready results in a row let it in; one is not enough.
    apiserver.set_ready(true);
    let checks = apiserver.checks();
    until("a check", || apiserver.checks() == checks + 1).await;
    assert_eq!(writes(), [false]);
    until("a second check", || apiserver.checks() == checks + 2).await;
    assert_eq!(writes(), [false, true]);
    until("status shows it", || {
        s1.engine.status().apiserver_ready == Some(true)
    })
    .await;
    assert_eq!(s1.engine.status().apiserver_message, "ok");

    // A result that breaks the streak starts it over.
    let checks = apiserver.checks();
    apiserver.set_ready(false);
    until("a failed check", || apiserver.checks() == checks + 1).await;
    apiserver.set_ready(true);
    until("a good check", || apiserver.checks() == checks + 2).await;
    apiserver.set_ready(false);
    until("a failed check", || apiserver.checks() == checks + 3).await;
    assert_eq!(writes(), [false, true]);
    until("a second failed check", || apiserver.checks() == checks + 4).await;
    assert_eq!(writes(), [false, true, false]);
    until("status shows it", || {
        s1.engine.status().apiserver_ready == Some(false)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_stopping_holder_sends_its_release_and_waits_for_keepalived() {
    let mesh = FakeMesh::default();
    let s1 = start(&mesh, 1, true).await;
    s1.fakes.notify.say("MASTER");
    until("s1 holds", || {
        s1.fakes.router.last() == Some(Placement::Local)
    })
    .await;
    mesh.take_sent();

    s1.shutdown.cancel();
    until("the release", || !mesh.sent().is_empty()).await;
    let release = Announcement {
        kind: Kind::Release,
        ..claim(1, 1)
    };
    let expected: Vec<_> = TARGETS.iter().map(|t| (ip(*t), release)).collect();
    assert_eq!(decoded(&mesh.take_sent()), expected);
    // Out of the election, so keepalived hands the VIP over.
    assert_eq!(s1.fakes.files.files().track, Some(false));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!s1.task.is_finished(), "left before keepalived moved");

    s1.fakes.notify.say("BACKUP");
    until("the engine ends", || s1.task.is_finished()).await;
    // keepalived's own move releases again; the first one counted.
    assert_eq!(decoded(&mesh.take_sent()), expected);
    assert_eq!(s1.fakes.router.last(), Some(Placement::Nowhere));
}

#[tokio::test(start_paused = true)]
async fn a_stopping_holder_waits_for_keepalived_two_seconds_at_most() {
    let mesh = FakeMesh::default();
    let s1 = start(&mesh, 1, true).await;
    s1.fakes.notify.say("MASTER");
    until("s1 holds", || {
        s1.fakes.router.last() == Some(Placement::Local)
    })
    .await;
    let stopped = Instant::now();
    s1.shutdown.cancel();
    until("the engine ends", || s1.task.is_finished()).await;
    let waited = stopped.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2100),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stopping_backup_leaves_the_election_without_a_word() {
    let mesh = FakeMesh::default();
    let s2 = start(&mesh, 2, true).await;
    s2.fakes.notify.say("BACKUP");
    until("gate open", || s2.fakes.files.files().track == Some(true)).await;
    s2.shutdown.cancel();
    until("the engine ends", || s2.task.is_finished()).await;
    assert!(mesh.sent().is_empty());
    assert_eq!(s2.fakes.files.files().track, Some(false));
}

#[tokio::test(start_paused = true)]
async fn the_holder_claims_again_every_announce_period() {
    let mesh = FakeMesh::default();
    let s1 = start(&mesh, 1, true).await;
    let s2 = start(&mesh, 2, true).await;
    s2.fakes.notify.say("BACKUP");
    s1.fakes.notify.say("MASTER");
    until("s1 holds", || {
        s1.fakes.router.last() == Some(Placement::Local)
    })
    .await;
    tokio::time::sleep(ANNOUNCE_PERIOD * 5).await;
    let sent = mesh.sent();
    // Only the holder speaks; a backup that agrees has nothing to say.
    assert!(sent.iter().all(|d| d.from.ip() == ip(1)), "{sent:?}");
    let to_s2: Vec<&Datagram> = sent.iter().filter(|d| d.to.ip() == ip(2)).collect();
    // The claim when elected, then one each period.
    assert_eq!(to_s2.len(), 6, "{to_s2:?}");
    for pair in to_s2[1..].windows(2) {
        assert_eq!(pair[1].at - pair[0].at, ANNOUNCE_PERIOD);
    }
    assert!(
        decoded(&sent)
            .iter()
            .all(|(_, message)| *message == claim(1, 1))
    );
    assert_eq!(s2.ledger().epoch, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_move_is_tried_again_at_the_next_tick() {
    let mesh = FakeMesh::default();
    let w = start(&mesh, 9, false).await;
    until("the start route", || w.placements().len() == 1).await;
    w.fakes.router.fail_next("netlink said no");
    send(&mesh, 2, 9, &claim(2, 1));
    until("the error shows", || w.engine.status().error.is_some()).await;
    let error = w.engine.status().error.unwrap();
    assert!(
        error.contains("10.100.0.250") && error.contains("netlink said no"),
        "{error}"
    );
    until("the retry", || w.placements().len() == 3).await;
    assert_eq!(
        w.fakes.router.last(),
        Some(Placement::Peer(fixtures::key(2)))
    );
    assert_eq!(w.engine.status().error, None);
}

#[tokio::test(start_paused = true)]
async fn an_adopted_master_keeps_the_vip_and_a_new_keepalived_starts_over() {
    let memory = Memory {
        vip: VIP,
        ledger: Ledger {
            epoch: 3,
            holder: Some(ip(1)),
        },
        vrrp: VrrpState::Master,
        keepalived_pid: Some(100),
    };
    let mesh = FakeMesh::default();
    let fakes = FakeParts::new(&mesh);
    fakes.files.set_memory(memory);
    let adopted = run(&mesh, fakes, 1, true).await;
    until("the start route", || !adopted.placements().is_empty()).await;
    assert_eq!(adopted.placements(), [Placement::Local]);
    // Its next claim keeps the epoch: nothing moved.
    until("a claim", || !mesh.sent().is_empty()).await;
    assert_eq!(decoded(&mesh.sent())[0].1, claim(1, 3));

    // Another keepalived process starts as a backup: only the ledger stays.
    let mesh = FakeMesh::default();
    let fakes = FakeParts::new(&mesh);
    fakes.files.set_memory(memory);
    *fakes.keepalived_pid.lock().unwrap() = Some(200);
    let restarted = run(&mesh, fakes, 1, true).await;
    until("the start route", || !restarted.placements().is_empty()).await;
    assert_eq!(restarted.placements(), [Placement::Nowhere]);
    assert_eq!(restarted.ledger(), memory.ledger);
    tokio::time::sleep(ANNOUNCE_PERIOD * 2).await;
    assert!(mesh.sent().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_spec_without_the_vip_takes_it_out_of_the_mesh() {
    let mesh = FakeMesh::default();
    let w = start(&mesh, 9, false).await;
    send(&mesh, 2, 9, &claim(2, 1));
    until("the VIP goes to s2", || {
        w.fakes.router.last() == Some(Placement::Peer(fixtures::key(2)))
    })
    .await;
    w.engine.configure(None);
    until("the VIP leaves", || {
        w.fakes.router.last() == Some(Placement::Nowhere)
    })
    .await;
    until("status is cleared", || {
        w.engine.status() == VipStatus::default()
    })
    .await;
    until("the socket closes", || !mesh.is_bound(ip(9))).await;
}

#[tokio::test(start_paused = true)]
async fn a_recreated_interface_gets_a_new_socket() {
    let mesh = FakeMesh::default();
    let w = start(&mesh, 9, false).await;
    // wireguard-go restarted: the old socket hears nothing any more.
    w.fakes.net.recreate_interface();
    tokio::time::sleep(ANNOUNCE_PERIOD * 2).await;
    assert_eq!(w.engine.status().error, None);
    send(&mesh, 2, 9, &claim(2, 1));
    until("the claim is heard", || {
        w.fakes.router.last() == Some(Placement::Peer(fixtures::key(2)))
    })
    .await;
}
