//! Cluster control: the members of one test run as real processes, started,
//! killed (SIGKILL), paused (SIGSTOP), resumed (SIGCONT) and restarted by pid,
//! and partitioned through the member's fault hooks (loopback) or inside
//! network namespaces (`--netns`, see [`netns`]).
//!
//! Invariants: only processes this cluster spawned are ever signalled, by
//! their pid; every one is SIGKILLed and reaped on [`Drop`] (also after a
//! panic, and the run turns Ctrl-C into an orderly stop that drops the
//! cluster). A member's log (stderr, appended across restarts) and its data dir
//! live in the run folder, under `members/`.
//!
//! Partitions are *grudges* (Jepsen's word): for each member, the members it
//! must not hear from. The harness's grudges are symmetric and every cut is
//! applied on both sides, so a member that restarts (and so forgets its hook
//! state) stays cut by its peers. Members that are down or paused are skipped
//! (their peers' cuts suffice).
//!
//! Membership changes ([`membership`]): a member removed with MemberRemove is
//! killed and its data dir wiped; it is not restarted until it is added back
//! (MemberAdd), then it starts empty with `--initial-cluster-state existing`
//! and keeps those flags for every later start.
//!
//! Left out: a harness killed by SIGKILL leaves its members running (no
//! parent-death signal without unsafe code).

pub mod http;
mod membership;
pub mod netns;
mod network;
mod process;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::db::{ClusterSpec, Db};
use crate::error::harness;
use crate::Result;
pub use netns::{Netns, Quality};

/// How to lay out a cluster.
#[derive(Debug, Clone)]
pub struct Options {
    pub nodes: usize,
    pub heartbeat_interval: u64,
    pub election_timeout: u64,
    /// Each member in its own network namespace.
    pub netns: bool,
    /// Where `members/` goes.
    pub dir: PathBuf,
}

/// A member's fixed facts.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub client: SocketAddr,
    pub peer: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl Member {
    /// The gRPC endpoint clients use.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.client)
    }
}

#[derive(Default)]
struct Proc {
    child: Option<Child>,
    paused: bool,
    /// Removed from the cluster (MemberRemove) and not yet added back.
    removed: bool,
    /// The initial cluster it joined with after being added back: every later
    /// start uses it with `--initial-cluster-state existing`.
    joined: Option<String>,
}

/// A running cluster.
pub struct Cluster {
    db: Arc<dyn Db>,
    spec: ClusterSpec,
    members: Vec<Member>,
    procs: Mutex<Vec<Proc>>,
    netns: Option<Netns>,
    /// Crashes seen so far (see [`Cluster::crashes`]).
    crashed: Mutex<Vec<String>>,
}

/// Time allowed for a plain HTTP call to a member.
const HTTP_TIMEOUT: Duration = Duration::from_millis(1000);

impl Cluster {
    /// Lays out and starts every member; waits until each one is healthy.
    pub fn start(db: Arc<dyn Db>, opts: &Options) -> Result<Cluster> {
        let members_dir = opts.dir.join("members");
        std::fs::create_dir_all(&members_dir).map_err(harness)?;
        let netns = if opts.netns {
            Some(Netns::setup(opts.nodes)?)
        } else {
            None
        };
        let mut members = Vec::new();
        for i in 0..opts.nodes {
            let name = format!("m{i}");
            let (client, peer) = match &netns {
                Some(n) => {
                    let ip = IpAddr::V4(n.addr(i));
                    (SocketAddr::new(ip, 2379), SocketAddr::new(ip, 2380))
                }
                None => (free_addr()?, free_addr()?),
            };
            members.push(Member {
                data_dir: members_dir.join(format!("{name}.data")),
                log: members_dir.join(format!("{name}.log")),
                name,
                client,
                peer,
            });
        }
        let spec = ClusterSpec {
            initial_cluster: members
                .iter()
                .map(|m| format!("{}=http://{}", m.name, m.peer))
                .collect::<Vec<_>>()
                .join(","),
            token: format!("keel-jepsen-{}", std::process::id()),
            heartbeat_interval: opts.heartbeat_interval,
            election_timeout: opts.election_timeout,
            existing: false,
        };
        let c = Cluster {
            db,
            spec,
            procs: Mutex::new((0..members.len()).map(|_| Proc::default()).collect()),
            members,
            netns,
            crashed: Mutex::new(Vec::new()),
        };
        for i in 0..c.len() {
            c.spawn(i)?;
        }
        for i in 0..c.len() {
            c.wait_healthy(i, Duration::from_secs(30))?;
        }
        Ok(c)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn db(&self) -> &dyn Db {
        &*self.db
    }

    /// Whether partitions are possible (fault hooks or namespaces).
    pub fn can_partition(&self) -> bool {
        self.netns.is_some() || self.db.fault_hooks()
    }

    /// Undoes every fault: resumes paused members, restarts dead ones, heals
    /// the network, clears netem and adds removed members back. Every step is
    /// tried; the first error is returned.
    pub fn heal_all(&self) -> Result<()> {
        let mut first = None;
        for i in 0..self.len() {
            if self.is_paused(i) {
                if let Err(e) = self.resume(i) {
                    first.get_or_insert(e);
                }
            }
            let _ = self.exited(i);
            if let Err(e) = self.spawn(i) {
                first.get_or_insert(e);
            }
        }
        if let Err(e) = self.degrade(None) {
            first.get_or_insert(e);
        }
        // A restarted member needs a moment before its hook answers; its
        // fault state is empty anyway, so only members up now are healed.
        std::thread::sleep(Duration::from_millis(200));
        if let Err(e) = self.heal_network() {
            first.get_or_insert(e);
        }
        for i in 0..self.len() {
            if self.is_removed(i) {
                if let Err(e) = self.rejoin_member(i) {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The last lines of member `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        log_tail(&self.members[i].log, lines)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.len() {
            self.kill(i);
        }
        // self.netns drops after this, deleting the namespaces.
    }
}

/// A free TCP port on 127.0.0.1 (bound and released).
fn free_addr() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(harness)?;
    l.local_addr().map_err(harness)
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
