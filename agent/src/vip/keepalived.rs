//! keepalived as the VIP's election engine: its rendered configuration and
//! its service definition under the agent's supervisor.
//!
//! One VRRPv3 instance over the WireGuard interface with unicast peers (a
//! WireGuard link has no multicast), starting as a backup without
//! preemption, so a server coming back never takes the VIP from a healthy
//! holder. A `track_file` the agent writes gates it on the local apiserver:
//! keepalived watches the file with inotify, so a "not ready" takes effect at
//! once and, on the holder, sends the priority-0 advert that hands the VIP
//! over within the backups' skew time. State changes reach the agent, in
//! order, through a notify FIFO.

use std::{
    fmt::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use tfagent_spec::{IfName, NodeName, Vip};
use tfagent_supervisor::{ServiceDef, ServiceName, def::Fnv64};

/// The VRRP instance's name, as the FIFO lines quote it.
pub const INSTANCE: &str = "tfagent_vip";
/// The service's name under the supervisor.
pub const SERVICE: &str = "keepalived";

/// [`SERVICE`] as a service name.
pub fn service_name() -> ServiceName {
    SERVICE
        .parse()
        .unwrap_or_else(|_| unreachable!("a valid service name"))
}

/// keepalived's files, all under the agent's run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub dir: PathBuf,
}

impl Files {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("keepalived.conf")
    }
    pub fn fifo(&self) -> PathBuf {
        self.dir.join("notify.fifo")
    }
    /// "0": the apiserver is ready; "1": keep out of the election.
    pub fn track(&self) -> PathBuf {
        self.dir.join("apiserver-not-ready")
    }
    pub fn pid(&self) -> PathBuf {
        self.dir.join("keepalived.pid")
    }
    pub fn vrrp_pid(&self) -> PathBuf {
        self.dir.join("vrrp.pid")
    }
    /// The agent's election memory (epoch, holder, keepalived's state).
    pub fn ledger(&self) -> PathBuf {
        self.dir.join("election.json")
    }
}

/// What the configuration is rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance<'a> {
    pub node_name: &'a NodeName,
    pub interface: &'a IfName,
    /// This server's WireGuard address (the VRRP source).
    pub address: IpAddr,
    pub vip: IpAddr,
    pub election: &'a Vip,
}

impl Instance<'_> {
    /// The other servers of the same address family, the unicast peers.
    pub fn peers(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.election
            .servers
            .iter()
            .map(|s| s.address)
            .filter(|a| *a != self.address && a.is_ipv4() == self.address.is_ipv4())
    }
}

/// How long a backup waits without adverts before it takes over: VRRPv3's
/// three intervals plus the skew of its priority.
pub fn master_down(advert_interval_ms: u32, priority: u8) -> Duration {
    let advert = Duration::from_millis(advert_interval_ms.into());
    let skew = advert * (256 - u32::from(priority)) / 256;
    advert * 3 + skew
}

/// keepalived.conf for `instance`.
pub fn render(instance: &Instance<'_>, files: &Files) -> String {
    let e = instance.election;
    let prefix = if instance.vip.is_ipv4() { 32 } else { 128 };
    let mut peers = String::new();
    for peer in instance.peers() {
        let _ = writeln!(peers, "        {peer}");
    }
    // VRRPv3 counts centiseconds; the spec keeps to multiples of 10 ms.
    let advert = format!(
        "{}.{:02}",
        e.advert_interval_ms / 1000,
        e.advert_interval_ms % 1000 / 10
    );
    format!(
        "# Written by tfagent from the node spec; edits are overwritten.\n\
         global_defs {{\n    \
             router_id {node}\n    \
             vrrp_notify_fifo {fifo}\n\
         }}\n\
         \n\
         track_file apiserver_not_ready {{\n    \
             file {track}\n    \
             weight 0\n\
         }}\n\
         \n\
         vrrp_instance {INSTANCE} {{\n    \
             state BACKUP\n    \
             nopreempt\n    \
             version 3\n    \
             interface {interface}\n    \
             virtual_router_id {vrid}\n    \
             priority {priority}\n    \
             advert_int {advert}\n    \
             unicast_src_ip {address}\n    \
             unicast_peer {{\n{peers}    }}\n    \
             virtual_ipaddress {{\n        \
                 {vip}/{prefix} dev {interface}\n    \
             }}\n    \
             track_file {{\n        \
                 apiserver_not_ready\n    \
             }}\n\
         }}\n",
        node = instance.node_name,
        fifo = files.fifo().display(),
        track = files.track().display(),
        interface = instance.interface,
        vrid = e.virtual_router_id,
        priority = e.priority,
        address = instance.address,
        vip = instance.vip,
    )
}

/// The supervised keepalived: VRRP only, in the foreground, logging to
/// stdout (the supervisor's log file), with its pid files beside its config.
pub fn service(binary: &Path, files: &Files, config: &str) -> ServiceDef {
    let name = service_name();
    let path = |p: PathBuf| p.display().to_string();
    let mut def = ServiceDef::new(
        name,
        vec![
            binary.display().to_string(),
            "--dont-fork".into(),
            "--log-console".into(),
            "--log-detail".into(),
            "--no-syslog".into(),
            "--vrrp".into(),
            format!("--use-file={}", path(files.config())),
            format!("--pid={}", path(files.pid())),
            format!("--vrrp_pid={}", path(files.vrrp_pid())),
        ],
    );
    let mut digest = Fnv64::default();
    digest.write(config.as_bytes());
    def.config_digest = format!("{:016x}", digest.0);
    // SIGTERM makes a master send its priority-0 advert: the VIP moves on
    // at once instead of after the master-down time.
    def.stop_timeout = Duration::from_secs(5);
    def
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tfagent_spec::VipServer;

    fn election() -> Vip {
        Vip {
            virtual_router_id: 51,
            priority: 150,
            advert_interval_ms: 100,
            servers: (1..=3)
                .map(|i| VipServer {
                    name: format!("server-{i}").parse().unwrap(),
                    address: format!("10.100.0.{i}").parse().unwrap(),
                })
                .collect(),
            announce_port: 51822,
        }
    }

    #[test]
    fn the_config_matches_its_golden_file() {
        let election = election();
        let name = "server-1".parse().unwrap();
        let interface = "tfk3s".parse().unwrap();
        let instance = Instance {
            node_name: &name,
            interface: &interface,
            address: "10.100.0.1".parse().unwrap(),
            vip: "10.100.0.250".parse().unwrap(),
            election: &election,
        };
        let rendered = render(&instance, &Files::new(Path::new("/run/tfagent/vip")));
        assert_eq!(rendered, include_str!("golden/keepalived.conf"));
    }

    #[test]
    fn peers_leave_out_this_node_and_the_other_family() {
        let mut election = election();
        election.servers.push(VipServer {
            name: "server-6".parse().unwrap(),
            address: "fd00::6".parse().unwrap(),
        });
        let name = "server-2".parse().unwrap();
        let interface = "tfk3s".parse().unwrap();
        let instance = Instance {
            node_name: &name,
            interface: &interface,
            address: "10.100.0.2".parse().unwrap(),
            vip: "10.100.0.250".parse().unwrap(),
            election: &election,
        };
        let peers: Vec<String> = instance.peers().map(|p| p.to_string()).collect();
        assert_eq!(peers, ["10.100.0.1", "10.100.0.3"]);
    }

    #[test]
    fn master_down_is_three_adverts_and_the_skew() {
        assert_eq!(master_down(100, 150), Duration::from_nanos(341_406_250));
        assert_eq!(master_down(1000, 254), Duration::from_nanos(3_007_812_500));
    }

    #[test]
    fn a_changed_config_changes_the_fingerprint() {
        let files = Files::new(Path::new("/run/x"));
        let a = service(Path::new("/usr/sbin/keepalived"), &files, "a");
        let b = service(Path::new("/usr/sbin/keepalived"), &files, "b");
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert!(a.argv.contains(&"--vrrp".to_owned()));
    }
}
