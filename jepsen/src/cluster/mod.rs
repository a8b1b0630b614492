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
//! Left out: a harness killed by SIGKILL leaves its members running (no
//! parent-death signal without unsafe code); membership changes.

pub mod http;
pub mod netns;

use std::fs::OpenOptions;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::db::{ClusterSpec, Db, MemberSpec};
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

    /// Whether the network can be degraded so (namespaces only).
    pub fn can_degrade(&self, q: Quality) -> bool {
        self.netns.as_ref().is_some_and(|n| n.can(q))
    }

    fn procs(&self) -> MutexGuard<'_, Vec<Proc>> {
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts member `i` unless it is running.
    pub fn spawn(&self, i: usize) -> Result<()> {
        let mut procs = self.procs();
        if procs[i].child.is_some() {
            return Ok(());
        }
        let m = &self.members[i];
        let spec = MemberSpec {
            name: m.name.clone(),
            client_url: m.endpoint(),
            peer_url: format!("http://{}", m.peer),
            data_dir: m.data_dir.clone(),
        };
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .map_err(harness)?;
        let _ = writeln!(log, "=== keel-jepsen: starting {} ===", m.name);
        let mut argv: Vec<String> = match &self.netns {
            Some(n) => n.exec_prefix(i),
            None => Vec::new(),
        };
        argv.push(self.db.binary().display().to_string());
        argv.extend(self.db.args(&spec, &self.spec));
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .envs(self.db.env())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(harness)?)
            .stderr(log)
            .spawn()
            .map_err(|e| harness(format!("cannot start {}: {e}", argv.join(" "))))?;
        procs[i] = Proc {
            child: Some(child),
            paused: false,
        };
        Ok(())
    }

    /// SIGKILLs member `i` (if running) and reaps it.
    pub fn kill(&self, i: usize) {
        let mut procs = self.procs();
        if let Some(mut c) = procs[i].child.take() {
            if let Ok(Some(status)) = c.try_wait() {
                // It had died on its own: remember the crash.
                self.lost(i, status.to_string());
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        procs[i].paused = false;
    }

    fn lost(&self, i: usize, status: String) {
        let text = format!(
            "{} exited on its own ({status}); log tail:\n{}",
            self.members[i].name,
            self.log_tail(i, 10)
        );
        self.crashed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(text);
    }

    /// SIGSTOPs member `i`.
    pub fn pause(&self, i: usize) -> Result<()> {
        self.signal(i, "STOP", true)
    }

    /// SIGCONTs member `i`.
    pub fn resume(&self, i: usize) -> Result<()> {
        self.signal(i, "CONT", false)
    }

    fn signal(&self, i: usize, sig: &str, paused: bool) -> Result<()> {
        let mut procs = self.procs();
        let Some(child) = procs[i].child.as_ref() else {
            return Ok(());
        };
        let pid = child.id().to_string();
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .map_err(harness)?;
        if !st.success() {
            return Err(harness(format!("kill -{sig} {pid} failed")));
        }
        procs[i].paused = paused;
        Ok(())
    }

    /// Running and not paused.
    pub fn is_up(&self, i: usize) -> bool {
        let p = &self.procs()[i];
        p.child.is_some() && !p.paused
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.procs()[i].child.is_some()
    }

    pub fn is_paused(&self, i: usize) -> bool {
        self.procs()[i].paused
    }

    /// `/health` says true.
    pub fn healthy(&self, i: usize) -> bool {
        http::healthy(self.members[i].client, HTTP_TIMEOUT)
    }

    /// Waits for member `i` to be healthy; on timeout, an error with its log tail.
    pub fn wait_healthy(&self, i: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.healthy(i) {
                return Ok(());
            }
            if let Some(status) = self.exited(i) {
                return Err(harness(format!(
                    "member {} exited ({status}); log:\n{}",
                    self.members[i].name,
                    log_tail(&self.members[i].log, 30)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(harness(format!(
            "member {} not healthy after {timeout:?}; log:\n{}",
            self.members[i].name,
            log_tail(&self.members[i].log, 30)
        )))
    }

    /// If member `i`'s process has exited on its own, how.
    pub fn exited(&self, i: usize) -> Option<String> {
        let mut procs = self.procs();
        let c = procs[i].child.as_mut()?;
        match c.try_wait() {
            Ok(Some(st)) => {
                procs[i].child = None;
                Some(st.to_string())
            }
            _ => None,
        }
    }

    /// Members whose process exited without the harness killing it (a crash),
    /// each with its exit status and log tail; they are reaped, so a later
    /// [`Cluster::heal_all`] restarts them.
    pub fn crashes(&self) -> Vec<String> {
        for i in 0..self.len() {
            if let Some(status) = self.exited(i) {
                self.lost(i, status);
            }
        }
        std::mem::take(&mut *self.crashed.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The member that says it leads, among those up.
    pub fn leader(&self) -> Option<usize> {
        (0..self.len())
            .filter(|&i| self.is_up(i))
            .find(|&i| http::is_leader(self.members[i].client, HTTP_TIMEOUT))
    }

    /// Cuts the links of every member to the members of its grudge (symmetric).
    pub fn partition(&self, grudge: &[Vec<usize>]) -> Result<()> {
        for (i, peers) in grudge.iter().enumerate() {
            if peers.is_empty() {
                continue;
            }
            match &self.netns {
                Some(n) => n.cut(i, peers)?,
                None if self.db.fault_hooks() => {
                    if !self.is_up(i) {
                        continue;
                    }
                    let names: Vec<&str> = peers
                        .iter()
                        .map(|&p| self.members[p].name.as_str())
                        .collect();
                    let path = format!("/debug/fault/cut?peers={}", names.join(","));
                    self.hook(i, &path)?;
                }
                None => return Err(harness("partitions need fault hooks or --netns")),
            }
        }
        Ok(())
    }

    /// Heals every partition.
    pub fn heal_network(&self) -> Result<()> {
        for i in 0..self.len() {
            match &self.netns {
                Some(n) => n.heal(i)?,
                None if self.db.fault_hooks() && self.is_up(i) => {
                    self.hook(i, "/debug/fault/heal")?
                }
                None => {}
            }
        }
        Ok(())
    }

    /// POSTs to member `i`'s fault hook; a member that does not answer (just
    /// restarted, busy) is retried for a few seconds.
    fn hook(&self, i: usize, path: &str) -> Result<()> {
        let mut answer = None;
        for _ in 0..6 {
            answer = http::request(self.members[i].client, "POST", path, HTTP_TIMEOUT);
            if answer.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        match answer {
            Some((200, _)) => Ok(()),
            Some((code, body)) => Err(harness(format!(
                "{} {path}: {code} {body}",
                self.members[i].name
            ))),
            None => Err(harness(format!(
                "{} {path}: no answer",
                self.members[i].name
            ))),
        }
    }

    /// Degrades or restores every member's network (namespaces only).
    pub fn degrade(&self, q: Option<Quality>) -> Result<()> {
        match &self.netns {
            Some(n) => n.degrade(q),
            None if q.is_none() => Ok(()),
            None => Err(harness("delay and loss need --netns")),
        }
    }

    /// Undoes every fault: resumes paused members, restarts dead ones, heals
    /// the network and clears netem. Every step is tried; the first error is
    /// returned.
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
