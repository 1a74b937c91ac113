//! What an agent decides about the VIP, as a pure state machine: keepalived's
//! state changes, other agents' announcements and the announce timer go in;
//! routing moves and messages to send come out. No I/O, so every rule is
//! unit-tested here; [`super::engine`] carries the actions out.
//!
//! The rules:
//! - keepalived electing this node makes it the holder at a new epoch, one
//!   above the newest it knows; it takes the VIP locally and claims it.
//! - A claim is taken only from a server of the spec, about itself; a newer
//!   epoch (ties: the higher address) moves the VIP to that server's peer
//!   entry; an older one is refused and answered with the newest claim known,
//!   so a holder cut off for a while learns it must claim again.
//! - While keepalived says this node is master, it keeps the VIP locally
//!   whatever others claim, and out-bids a newer claim: VRRP, not the
//!   announcements, decides who holds it.
//! - The holder re-claims every announce period, which heals lost messages.

use std::{
    collections::BTreeMap,
    fmt,
    net::IpAddr,
    time::{Duration, Instant, SystemTime},
};

use super::announce::{Announcement, Kind};
use tfagent_spec::NodeName;

/// keepalived's state of this node's VRRP instance, as its notify FIFO
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum VrrpState {
    /// Nothing heard yet (or this node does not take part).
    Unknown,
    Backup,
    Master,
    /// Out of the election: its tracked apiserver is not ready.
    Fault,
    /// keepalived stopped.
    Stop,
}

impl VrrpState {
    /// Parses one FIFO line: `INSTANCE "name" STATE PRIORITY`.
    pub fn from_fifo_line(line: &str, instance: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        if words.next()? != "INSTANCE" || words.next()?.trim_matches('"') != instance {
            return None;
        }
        match words.next()? {
            "MASTER" => Some(Self::Master),
            "BACKUP" => Some(Self::Backup),
            "FAULT" => Some(Self::Fault),
            "STOP" => Some(Self::Stop),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Backup => "backup",
            Self::Master => "master",
            Self::Fault => "fault",
            Self::Stop => "stopped",
        }
    }
}

impl fmt::Display for VrrpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where this node sends traffic for the VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// The VIP is on this node's own interface.
    Local,
    /// Into the WireGuard peer entry of the server with this address.
    Server(IpAddr),
    /// Nowhere yet: no holder known.
    Nowhere,
}

/// Something the engine must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Route(Route),
    /// To every other agent.
    Broadcast(Announcement),
    /// To one agent.
    Send(IpAddr, Announcement),
}

/// The newest claim this node knows, kept across agent restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ledger {
    pub epoch: u64,
    pub holder: Option<IpAddr>,
}

impl Ledger {
    /// Whether a claim of `holder` at `epoch` is newer than this one.
    fn is_older_than(&self, epoch: u64, holder: IpAddr) -> bool {
        match self.holder {
            None => epoch >= self.epoch,
            Some(known) => epoch > self.epoch || (epoch == self.epoch && holder > known),
        }
    }
}

/// What status shows of the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionStatus {
    pub vrrp: VrrpState,
    pub ledger: Ledger,
    /// The holder's node name, when it is a known server.
    pub holder_name: Option<NodeName>,
    pub transitions: u64,
    pub last_transition: Option<SystemTime>,
    pub last_reason: String,
    /// The last failover: from the holder's loss to the new claim.
    pub last_failover: Option<Duration>,
}

/// The election as one node sees it.
#[derive(Debug, Clone)]
pub struct Election {
    me: IpAddr,
    vip: IpAddr,
    /// The servers that may hold the VIP, by address.
    servers: BTreeMap<IpAddr, NodeName>,
    /// How long keepalived waits without adverts before taking over.
    master_down: Duration,
    vrrp: VrrpState,
    ledger: Ledger,
    route: Option<Route>,
    /// When the current holder said it let go.
    released_at: Option<Instant>,
    /// A newer claim arrived while keepalived says this node is master.
    contested: bool,
    transitions: u64,
    last_transition: Option<SystemTime>,
    last_reason: String,
    last_failover: Option<Duration>,
}

impl Election {
    /// `me` is this node's WireGuard address; `servers` the spec's; `vrrp`
    /// and `ledger` what an earlier agent left (for an adopted keepalived).
    pub fn new(
        me: IpAddr,
        vip: IpAddr,
        servers: BTreeMap<IpAddr, NodeName>,
        master_down: Duration,
        vrrp: VrrpState,
        ledger: Ledger,
    ) -> Self {
        Self {
            me,
            vip,
            servers,
            master_down,
            vrrp,
            ledger,
            route: None,
            released_at: None,
            contested: false,
            transitions: 0,
            last_transition: None,
            last_reason: String::new(),
            last_failover: None,
        }
    }

    pub fn ledger(&self) -> Ledger {
        self.ledger
    }

    pub fn vrrp(&self) -> VrrpState {
        self.vrrp
    }

    pub fn status(&self) -> ElectionStatus {
        ElectionStatus {
            vrrp: self.vrrp,
            ledger: self.ledger,
            holder_name: self
                .ledger
                .holder
                .and_then(|h| self.servers.get(&h).cloned()),
            transitions: self.transitions,
            last_transition: self.last_transition,
            last_reason: self.last_reason.clone(),
            last_failover: self.last_failover,
        }
    }

    fn name(&self, address: IpAddr) -> String {
        self.servers
            .get(&address)
            .map_or_else(|| address.to_string(), ToString::to_string)
    }

    /// Where the VIP goes given what is known; `None` leaves it as it is.
    fn wanted_route(&self) -> Route {
        if self.vrrp == VrrpState::Master {
            return Route::Local;
        }
        match self.ledger.holder {
            Some(holder) if holder == self.me => Route::Nowhere,
            Some(holder) => Route::Server(holder),
            None => Route::Nowhere,
        }
    }

    /// The route action, once per change.
    fn reroute(&mut self, actions: &mut Vec<Action>, reason: String) {
        let route = self.wanted_route();
        if self.route != Some(route) {
            self.route = Some(route);
            self.transitions += 1;
            self.last_transition = Some(SystemTime::now());
            self.last_reason = reason;
            actions.push(Action::Route(route));
        }
    }

    fn message(&self, kind: Kind, failover: Option<Duration>) -> Announcement {
        Announcement {
            kind,
            epoch: self.ledger.epoch,
            holder: self.ledger.holder.unwrap_or(self.me),
            vip: self.vip,
            failover_ms: failover.map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
        }
    }

    /// Makes this node the holder at a new epoch and claims it.
    fn claim(&mut self, now: Instant, actions: &mut Vec<Action>, reason: String) {
        let previous = self.ledger.holder.filter(|h| *h != self.me);
        // The loss is when the old holder let go, when it said so; else
        // when its adverts stopped, which is keepalived's master-down time
        // before it elected this node.
        let failover = previous.map(|_| match self.released_at {
            Some(released) => now.saturating_duration_since(released),
            None => self.master_down,
        });
        self.ledger = Ledger {
            epoch: self.ledger.epoch + 1,
            holder: Some(self.me),
        };
        self.contested = false;
        self.released_at = None;
        if failover.is_some() {
            self.last_failover = failover;
        }
        self.reroute(actions, reason);
        actions.push(Action::Broadcast(self.message(Kind::Claim, failover)));
    }

    /// The release this node sends when it is about to leave the election
    /// while holding the VIP (a stopping agent), before keepalived moves:
    /// the others' failover timers then start at the true moment.
    pub fn release(&self) -> Option<Announcement> {
        (self.vrrp == VrrpState::Master && self.ledger.holder == Some(self.me))
            .then(|| self.message(Kind::Release, None))
    }

    /// Restores the route after an agent start or a new spec.
    /// Not a transition: the VIP stays where it was.
    pub fn start(&mut self) -> Vec<Action> {
        let route = self.wanted_route();
        self.route = Some(route);
        self.last_reason = "agent started".into();
        vec![Action::Route(route)]
    }

    /// keepalived reported `state`.
    pub fn on_vrrp(&mut self, state: VrrpState, now: Instant) -> Vec<Action> {
        let before = self.vrrp;
        self.vrrp = state;
        let mut actions = Vec::new();
        if state == before {
            return actions;
        }
        if state == VrrpState::Master {
            self.claim(now, &mut actions, "keepalived elected this node".into());
            return actions;
        }
        if before == VrrpState::Master && self.ledger.holder == Some(self.me) {
            actions.push(Action::Broadcast(self.message(Kind::Release, None)));
        }
        let reason = match state {
            VrrpState::Fault => "this node left the election: its apiserver is not ready",
            VrrpState::Stop => "keepalived stopped",
            _ => "keepalived made this node a backup",
        };
        self.reroute(&mut actions, reason.into());
        actions
    }

    /// An announcement from the agent at `from` (the WireGuard source
    /// address, which the peer's key proves).
    pub fn on_message(&mut self, from: IpAddr, message: Announcement, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if message.vip != self.vip || from == self.me {
            return actions;
        }
        match message.kind {
            Kind::Claim => {
                if message.holder != from || !self.servers.contains_key(&from) {
                    tracing::warn!(%from, holder = %message.holder, "refused a VIP claim: only a server of the spec may claim, and only for itself");
                    return actions;
                }
                self.take(message, now, &mut actions, Some(from));
            }
            Kind::Current => {
                if self.servers.contains_key(&message.holder) {
                    self.take(message, now, &mut actions, None);
                }
            }
            Kind::Release => {
                // The first release counts: a stopping holder sends one
                // before keepalived moves, and one when it has.
                if Some(from) == self.ledger.holder && message.epoch == self.ledger.epoch {
                    self.released_at.get_or_insert(now);
                }
            }
        }
        actions
    }

    /// A claim (or the answer to a stale one) of `message.holder`.
    fn take(
        &mut self,
        message: Announcement,
        now: Instant,
        actions: &mut Vec<Action>,
        answer_to: Option<IpAddr>,
    ) {
        let same = message.epoch == self.ledger.epoch && Some(message.holder) == self.ledger.holder;
        if same {
            return;
        }
        if !self.ledger.is_older_than(message.epoch, message.holder) {
            // Stale: tell the sender what is newer, when it claimed.
            if let (Some(to), Some(_)) = (answer_to, self.ledger.holder) {
                actions.push(Action::Send(to, self.message(Kind::Current, None)));
            }
            return;
        }
        let moved = Some(message.holder) != self.ledger.holder;
        self.ledger = Ledger {
            epoch: message.epoch,
            holder: Some(message.holder),
        };
        if moved {
            self.released_at = None;
            if message.failover_ms > 0 {
                self.last_failover = Some(Duration::from_millis(message.failover_ms.into()));
            }
        }
        if self.vrrp == VrrpState::Master {
            if answer_to.is_none() {
                // A newer claim answered ours: out-bid it now.
                self.claim(
                    now,
                    actions,
                    "claimed again above a newer claim while elected".into(),
                );
            } else {
                // Another master during a split: VRRP settles it within
                // adverts; out-bid at the next announce if still elected.
                self.contested = true;
            }
            return;
        }
        let reason = format!(
            "{} claimed the VIP (epoch {})",
            self.name(message.holder),
            message.epoch
        );
        self.reroute(actions, reason);
    }

    /// Every announce period: the holder claims again.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.vrrp != VrrpState::Master {
            return actions;
        }
        if self.contested || self.ledger.holder != Some(self.me) {
            self.claim(
                now,
                &mut actions,
                "claimed again above a newer claim while elected".into(),
            );
        } else {
            actions.push(Action::Broadcast(self.message(Kind::Claim, None)));
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 100, 0, n])
    }

    const VIP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 100, 0, 250));
    const MASTER_DOWN: Duration = Duration::from_millis(650);

    fn node(n: u8) -> Election {
        let servers = (1..=3)
            .map(|i| (ip(i), format!("server-{i}").parse().unwrap()))
            .collect();
        let mut election = Election::new(
            ip(n),
            VIP,
            servers,
            MASTER_DOWN,
            VrrpState::Unknown,
            Ledger::default(),
        );
        election.start();
        election
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

    fn broadcasts(actions: &[Action]) -> Vec<Announcement> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Broadcast(m) => Some(*m),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn fifo_lines_are_parsed_for_our_instance_only() {
        assert_eq!(
            VrrpState::from_fifo_line("INSTANCE \"tfagent\" MASTER 150", "tfagent"),
            Some(VrrpState::Master)
        );
        assert_eq!(
            VrrpState::from_fifo_line("INSTANCE \"tfagent\" FAULT 150\n", "tfagent"),
            Some(VrrpState::Fault)
        );
        assert_eq!(
            VrrpState::from_fifo_line("INSTANCE \"other\" MASTER 150", "tfagent"),
            None
        );
        assert_eq!(
            VrrpState::from_fifo_line("GROUP \"g\" MASTER", "tfagent"),
            None
        );
        assert_eq!(VrrpState::from_fifo_line("", "tfagent"), None);
    }

    #[test]
    fn the_elected_node_takes_the_vip_and_claims_the_next_epoch() {
        let mut s1 = node(1);
        let now = Instant::now();
        assert!(s1.on_vrrp(VrrpState::Backup, now).is_empty());
        let actions = s1.on_vrrp(VrrpState::Master, now);
        assert_eq!(actions[0], Action::Route(Route::Local));
        let claimed = broadcasts(&actions);
        assert_eq!(claimed.len(), 1);
        assert_eq!((claimed[0].epoch, claimed[0].holder), (1, ip(1)));
        // Bootstrap: there was no holder, so no failover to report.
        assert_eq!(claimed[0].failover_ms, 0);
        // The others follow it.
        let mut w = node(9);
        let actions = w.on_message(ip(1), claimed[0], now);
        assert_eq!(actions, [Action::Route(Route::Server(ip(1)))]);
        assert_eq!(w.status().holder_name.unwrap().as_str(), "server-1");
        // A re-announce changes nothing.
        assert!(w.on_message(ip(1), claimed[0], now).is_empty());
    }

    #[test]
    fn only_a_server_claiming_for_itself_is_heard() {
        let mut w = node(9);
        let now = Instant::now();
        // From a node that is not a server.
        assert!(w.on_message(ip(7), claim(7, 5), now).is_empty());
        // A server claiming for another.
        assert!(w.on_message(ip(2), claim(3, 5), now).is_empty());
        // About another VIP.
        let mut other = claim(2, 5);
        other.vip = ip(251);
        assert!(w.on_message(ip(2), other, now).is_empty());
        assert_eq!(w.ledger(), Ledger::default());
    }

    #[test]
    fn a_stale_claim_is_refused_and_answered_with_the_newest() {
        let mut w = node(9);
        let now = Instant::now();
        w.on_message(ip(2), claim(2, 6), now);
        let actions = w.on_message(ip(1), claim(1, 5), now);
        assert_eq!(actions.len(), 1);
        let Action::Send(to, current) = actions[0] else {
            panic!("{actions:?}")
        };
        assert_eq!(
            (to, current.kind, current.epoch, current.holder),
            (ip(1), Kind::Current, 6, ip(2))
        );
        assert_eq!(w.ledger().holder, Some(ip(2)));
    }

    #[test]
    fn equal_epochs_are_settled_by_the_higher_address_everywhere() {
        let now = Instant::now();
        for order in [[1, 2], [2, 1]] {
            let mut w = node(9);
            for n in order {
                w.on_message(ip(n), claim(n, 4), now);
            }
            assert_eq!(
                w.ledger(),
                Ledger {
                    epoch: 4,
                    holder: Some(ip(2))
                }
            );
        }
    }

    #[test]
    fn a_healed_partition_converges_on_the_vrrp_master() {
        let now = Instant::now();
        // s1 held epoch 1; cut off, s2 was elected on the other side at 2.
        let mut s1 = node(1);
        s1.on_vrrp(VrrpState::Master, now);
        let mut w = node(9);
        w.on_message(ip(1), claim(1, 1), now);
        w.on_message(ip(2), claim(2, 2), now);
        // Healed; VRRP keeps s1 (higher priority) as master. Its periodic
        // claim is stale for w, which answers with the newest...
        let tick = s1.on_tick(now);
        let stale = broadcasts(&tick)[0];
        assert_eq!(stale.epoch, 1);
        let answer = w.on_message(ip(1), stale, now);
        let Action::Send(_, current) = answer[0] else {
            panic!()
        };
        // ...and s1 out-bids it at once.
        let actions = s1.on_message(ip(9), current, now);
        let reclaim = broadcasts(&actions)[0];
        assert_eq!((reclaim.epoch, reclaim.holder), (3, ip(1)));
        assert_eq!(
            w.on_message(ip(1), reclaim, now),
            [Action::Route(Route::Server(ip(1)))]
        );
    }

    #[test]
    fn a_master_keeps_the_vip_under_a_newer_claim_and_outbids_it_next_period() {
        let now = Instant::now();
        let mut s1 = node(1);
        s1.on_vrrp(VrrpState::Master, now);
        // Dual master: s2's claim is newer, s1 keeps routing locally.
        assert!(s1.on_message(ip(2), claim(2, 2), now).is_empty());
        let actions = s1.on_tick(now);
        let claimed = broadcasts(&actions)[0];
        assert_eq!((claimed.epoch, claimed.holder), (3, ip(1)));
        // Once VRRP makes it a backup it follows whoever claims next.
        let actions = s1.on_vrrp(VrrpState::Backup, now);
        assert_eq!(broadcasts(&actions)[0].kind, Kind::Release);
        assert_eq!(actions.last(), Some(&Action::Route(Route::Nowhere)));
        assert_eq!(
            s1.on_message(ip(2), claim(2, 4), now),
            [Action::Route(Route::Server(ip(2)))]
        );
    }

    #[test]
    fn leaving_the_election_releases_and_the_next_holder_times_the_failover() {
        let t0 = Instant::now();
        let mut s1 = node(1);
        s1.on_vrrp(VrrpState::Master, t0);
        let mut s2 = node(2);
        s2.on_vrrp(VrrpState::Backup, t0);
        s2.on_message(ip(1), claim(1, 1), t0);
        // Graceful: s1's apiserver is not ready; it releases.
        let actions = s1.on_vrrp(VrrpState::Fault, t0);
        let release = broadcasts(&actions)[0];
        assert_eq!(release.kind, Kind::Release);
        assert_eq!(actions.last(), Some(&Action::Route(Route::Nowhere)));
        s2.on_message(ip(1), release, t0);
        let actions = s2.on_vrrp(VrrpState::Master, t0 + Duration::from_millis(80));
        let claimed = broadcasts(&actions)[0];
        assert_eq!(claimed.failover_ms, 80);
        assert_eq!(s2.status().last_failover, Some(Duration::from_millis(80)));
        // Hard loss: no release; the failover is keepalived's master-down.
        let mut s3 = node(3);
        s3.on_message(ip(2), claimed, t0);
        let claimed = broadcasts(&s3.on_vrrp(VrrpState::Master, t0))[0];
        assert_eq!(claimed.failover_ms, 650);
        // Every node reports the failover the new holder measured.
        let mut w = node(9);
        w.on_message(ip(2), claim(2, 2), t0);
        w.on_message(ip(3), claimed, t0);
        assert_eq!(w.status().last_failover, Some(MASTER_DOWN));
        assert_eq!(w.status().transitions, 2);
    }

    #[test]
    fn a_stopping_holder_releases_first_and_the_first_release_counts() {
        let t0 = Instant::now();
        let mut s1 = node(1);
        assert_eq!(s1.release(), None);
        s1.on_vrrp(VrrpState::Master, t0);
        let early = s1.release().unwrap();
        assert_eq!(
            (early.kind, early.epoch, early.holder),
            (Kind::Release, 1, ip(1))
        );
        let mut s2 = node(2);
        s2.on_message(ip(1), claim(1, 1), t0);
        s2.on_message(ip(1), early, t0);
        // keepalived's own move, and the release that follows it, later.
        let late = broadcasts(&s1.on_vrrp(VrrpState::Fault, t0 + Duration::from_millis(30)))[0];
        s2.on_message(ip(1), late, t0 + Duration::from_millis(30));
        let claimed = broadcasts(&s2.on_vrrp(VrrpState::Master, t0 + Duration::from_millis(90)))[0];
        assert_eq!(claimed.failover_ms, 90);
    }

    #[test]
    fn an_adopted_master_restores_its_local_route() {
        let mut s1 = Election::new(
            ip(1),
            VIP,
            BTreeMap::new(),
            MASTER_DOWN,
            VrrpState::Master,
            Ledger {
                epoch: 3,
                holder: Some(ip(1)),
            },
        );
        assert_eq!(s1.start(), [Action::Route(Route::Local)]);
        let mut w = Election::new(
            ip(9),
            VIP,
            BTreeMap::new(),
            MASTER_DOWN,
            VrrpState::Unknown,
            Ledger {
                epoch: 3,
                holder: Some(ip(1)),
            },
        );
        assert_eq!(w.start(), [Action::Route(Route::Server(ip(1)))]);
    }
}
