//! Clusters of real server processes on loopback: keel or etcd, 1 or 3
//! members, started with the same durability and timing flags, data under one
//! directory (the disk being measured). Members are ended by their own pid
//! (SIGTERM, then SIGKILL) when the cluster is stopped or dropped.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Etcd,
    Keel,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Etcd => "etcd",
            Kind::Keel => "keel",
        }
    }
}

/// Flags both servers get with the same values (etcd's defaults, spelled out
/// so that a change of either default cannot skew the comparison). Both fsync
/// their log before acknowledging a write; neither has a flag to turn it off
/// here.
pub const SHARED_FLAGS: &[&str] = &[
    "--heartbeat-interval=100",
    "--election-timeout=1000",
    "--snapshot-count=100000",
    "--quota-backend-bytes=2147483648",
];

/// The binaries and where their data goes.
#[derive(Debug, Clone)]
pub struct Servers {
    pub keel: PathBuf,
    pub etcd: PathBuf,
    pub data: PathBuf,
}

struct Member {
    name: String,
    client_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

/// A running cluster.
pub struct Cluster {
    pub kind: Kind,
    bin: PathBuf,
    members: Vec<Member>,
}

/// `n` distinct loopback ports nobody listens on now: every listener is
/// held until all are chosen (one dropped at once could be handed out
/// again: a run once got the same peer port for two members).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let held = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("bind a loopback port"))
        .collect::<Result<Vec<_>>>()?;
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

impl Cluster {
    /// Starts `n` fresh members of `kind` under `servers.data/tag`, and waits
    /// until every member reports healthy.
    pub fn start(servers: &Servers, kind: Kind, n: usize, tag: &str) -> Result<Cluster> {
        let root = servers.data.join(tag);
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
        let ports: Vec<(u16, u16)> = free_ports(2 * n)?.chunks(2).map(|p| (p[0], p[1])).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect();
        let bin = match kind {
            Kind::Etcd => servers.etcd.clone(),
            Kind::Keel => servers.keel.clone(),
        };
        let mut members = Vec::new();
        for (i, (c, p)) in ports.iter().enumerate() {
            let name = format!("m{i}");
            let data_dir = root.join(&name);
            let mut args = Vec::new();
            if kind == Kind::Keel {
                args.push("store".to_string());
            }
            args.extend(
                [
                    "--name",
                    &name,
                    "--data-dir",
                    &data_dir.display().to_string(),
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{c}"),
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{c}"),
                    "--listen-peer-urls",
                    &format!("http://127.0.0.1:{p}"),
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{p}"),
                    "--initial-cluster",
                    &initial.join(","),
                    "--initial-cluster-token",
                    &format!("compare-{tag}"),
                    "--initial-cluster-state",
                    "new",
                ]
                .map(String::from),
            );
            args.extend(SHARED_FLAGS.iter().map(|s| s.to_string()));
            members.push(Member {
                name,
                client_port: *c,
                log: root.join(format!("m{i}.log")),
                data_dir,
                args,
                child: None,
            });
        }
        let mut cluster = Cluster { kind, bin, members };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        for i in 0..n {
            cluster.wait_ready(i, Duration::from_secs(60))?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)?;
        let child = Command::new(&self.bin)
            .args(&m.args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        m.child = Some(child);
        Ok(())
    }

    /// Waits until member `i` answers `/health` with `"health":"true"` (both
    /// servers answer it only with a leader and a working read path).
    fn wait_ready(&mut self, i: usize, limit: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            if let Some(body) = http_get(self.members[i].client_port, "/health") {
                if body.contains("\"true\"") {
                    return Ok(start.elapsed());
                }
            }
            if let Some(c) = self.members[i].child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    bail!(
                        "{} member {} exited ({st}) before it was ready; its log: {}",
                        self.kind.name(),
                        self.members[i].name,
                        tail(&self.members[i].log)
                    );
                }
            }
            if start.elapsed() > limit {
                bail!(
                    "{} member {} not healthy after {limit:?}; its log: {}",
                    self.kind.name(),
                    self.members[i].name,
                    tail(&self.members[i].log)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The client endpoints, comma separated, the leader last. Which member
    /// leads is up to each cluster's election; with the leader last, a
    /// workload that does not target the leader reads through a follower
    /// from its first connection on both servers (a 1/1 range, or four of
    /// ten connections), instead of from whichever member happened to win.
    pub fn endpoints(&self) -> String {
        let says_leader = |m: &Member| {
            http_get(m.client_port, "/metrics").is_some_and(|text| {
                text.lines()
                    .any(|l| l.split_whitespace().eq(["etcd_server_is_leader", "1"]))
            })
        };
        let mut order: Vec<&Member> = self.members.iter().collect();
        if let Some(l) = order.iter().position(|m| says_leader(m)) {
            let leader = order.remove(l);
            order.push(leader);
        }
        order
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Resident and peak resident memory of member `i`, in bytes.
    pub fn memory(&self, i: usize) -> Result<(u64, u64)> {
        let pid = self.members[i]
            .child
            .as_ref()
            .context("member not running")?
            .id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
            let kb: u64 = line
                .split_whitespace()
                .nth(1)
                .context("malformed status line")?
                .parse()?;
            Ok(kb * 1024)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// Bytes under member `i`'s data directory.
    pub fn data_size(&self, i: usize) -> u64 {
        dir_size(&self.members[i].data_dir)
    }

    /// Stops member `i` cleanly and starts it again; returns how long it took
    /// from the start of the process to its first healthy answer.
    pub fn restart(&mut self, i: usize) -> Result<Duration> {
        self.stop_member(i);
        self.spawn(i)?;
        self.wait_ready(i, Duration::from_secs(600))
    }

    fn stop_member(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops every member.
    pub fn stop(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The last lines of a log file, for error messages.
fn tail(p: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    let lines: Vec<&str> = s.lines().collect();
    let from = lines.len().saturating_sub(15);
    format!("{}\n{}", p.display(), lines[from..].join("\n"))
}

/// A plain HTTP/1.1 GET on a loopback port; the body, if it answered 200.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?;
    if code != "200" {
        return None;
    }
    buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}
