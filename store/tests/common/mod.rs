//! Test harness: real `keel` processes on free loopback ports, each in its own
//! data dir under one temp dir; every process is killed (by its own pid) when the
//! cluster is dropped. Also finds the Debian tools (etcd, etcdctl) the interop
//! tests need, with the skip rule of the project: a missing tool prints one line
//! saying how to install it and skips, unless KEEL_REQUIRE_TOOLS=1, where it fails.
//!
//! Membership: each member keeps the `--initial-cluster` and
//! `--initial-cluster-state` it was created with; [`Cluster::join`] prepares a
//! member that joins the running cluster (`existing`, the members not
//! [`Cluster::forget`]-ten plus itself), as `etcdctl member add` prints it.
//!
//! TLS ([`tls`]): [`Cluster::with_tls`] makes the members' client and/or peer
//! URLs `https` and gives the harness the credentials its own checks
//! (`/health`, `/metrics`, [`Cluster::client`]) use on the client port.

#![allow(dead_code)]

pub mod tls;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1, never the same one twice in a test process.
///
/// Ports come from 20000..32000, below Linux's ephemeral range (32768+), so an
/// outgoing connection cannot take one between the pick and the server's bind;
/// and a port handed out once is not handed out again, so two servers started
/// by one test (say etcd, then keel) never get the same port, as the kernel's
/// `bind(0)` may give after the first one was released.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Each process starts somewhere else, so test binaries run one after
    // another do not walk the same ports.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id().wrapping_mul(7919)) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 in {LOW}..{}", LOW + SPAN);
}

/// The `keel` binary: cargo's path for keel-store's own tests; for other
/// packages' tests (keelctl's) the one built beside the test executable
/// (`cargo build --release -p keel-store --bin keel` first).
pub fn keel_bin() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_keel") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let keel = dir.join("keel");
    assert!(
        keel.is_file(),
        "{} not found: build it first (cargo build --release -p keel-store --bin keel)",
        keel.display()
    );
    keel
}

pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
    /// `--initial-cluster` for this member, fixed when it was created.
    pub initial: String,
    /// `--initial-cluster-state`: "new" or "existing".
    pub state: String,
    /// Removed from the cluster (left out of later joiners' --initial-cluster).
    pub removed: bool,
    /// "http" or "https", of the client and the peer URLs.
    pub client_scheme: &'static str,
    pub peer_scheme: &'static str,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.client_scheme, self.client_port)
    }
    pub fn peer_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.peer_scheme, self.peer_port)
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
    pub token: String,
    /// Credentials for `https` client ports (see [`Cluster::with_tls`]).
    pub creds: Option<tls::Creds>,
}

impl Cluster {
    /// Starts `n` members and waits until every one is healthy.
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, &[])
    }

    /// Starts `n` members with extra flags for each.
    pub fn start_with(n: usize, extra: &[&str]) -> Cluster {
        let c = Self::plan(n, extra);
        c.start_all()
    }

    /// Starts one member per name, with extra flags for each.
    pub fn start_named(names: &[&str], extra: &[&str]) -> Cluster {
        Self::plan_named(names, extra).start_all()
    }

    /// Starts every planned member and waits until each is healthy.
    pub fn start_all(mut self) -> Cluster {
        let n = self.members.len();
        for i in 0..n {
            self.spawn(i);
        }
        for i in 0..n {
            self.wait_healthy(i, Duration::from_secs(20));
        }
        self
    }

    /// Chooses names, ports and data dirs for `n` members, starting none.
    pub fn plan(n: usize, extra: &[&str]) -> Cluster {
        let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Self::plan_named(&names, extra)
    }

    /// Like [`Cluster::plan`], with the members' names.
    pub fn plan_named(names: &[&str], extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut members: Vec<Member> = names
            .iter()
            .map(|name| new_member(dir.path(), name, extra))
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.initial = initial.clone();
        }
        Cluster {
            dir,
            members,
            token: format!("test-{}", std::process::id()),
            creds: None,
        }
    }

    /// Makes the planned members' client URLs `https` (when `client`) and
    /// their peer URLs `https` (when `peer`); the harness reaches the
    /// client ports with `creds`. The TLS flags themselves are the extra
    /// flags'.
    pub fn with_tls(mut self, client: bool, peer: bool, creds: tls::Creds) -> Cluster {
        for m in &mut self.members {
            m.client_scheme = if client { "https" } else { "http" };
            m.peer_scheme = if peer { "https" } else { "http" };
        }
        let initial = self.initial_cluster();
        for m in &mut self.members {
            m.initial = initial.clone();
        }
        self.creds = Some(creds);
        self
    }

    /// A GET on member `i`'s client port, over TLS when it is `https`.
    pub fn get(&self, i: usize, path: &str) -> Option<(u16, String)> {
        let m = &self.members[i];
        match (&self.creds, m.client_scheme) {
            (Some(creds), "https") => tls::https(m.client_port, "GET", path, creds),
            _ => http_get(m.client_port, path),
        }
    }

    /// `name=peer-url` of every member not removed.
    pub fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .filter(|m| !m.removed)
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Prepares (does not start) a member `name` joining the running
    /// cluster with an empty data dir; returns its index. Add it with
    /// MemberAdd first, with `members[i].peer_url()`.
    pub fn join(&mut self, name: &str, extra: &[&str]) -> usize {
        let mut m = new_member(self.dir.path(), name, extra);
        if let Some(first) = self.members.first() {
            m.client_scheme = first.client_scheme;
            m.peer_scheme = first.peer_scheme;
        }
        let mut initial = self.initial_cluster();
        initial.push_str(&format!(",{name}={}", m.peer_url()));
        m.initial = initial;
        m.state = "existing".into();
        self.members.push(m);
        self.members.len() - 1
    }

    /// Marks member `i` as removed from the cluster.
    pub fn forget(&mut self, i: usize) {
        self.members[i].removed = true;
    }

    /// Gives member `i` a new peer port (for MemberUpdate), used from its next
    /// start, which is then with `--initial-cluster-state existing`.
    pub fn change_peer_port(&mut self, i: usize) -> String {
        let old = self.members[i].peer_url();
        self.members[i].peer_port = free_port();
        let new = self.members[i].peer_url();
        let m = &mut self.members[i];
        m.initial = m
            .initial
            .replace(&format!("{}={old}", m.name), &format!("{}={new}", m.name));
        m.state = "existing".into();
        new
    }

    pub fn args(&self, i: usize) -> Vec<String> {
        let m = &self.members[i];
        let mut a = vec![
            "store".to_string(),
            "--name".into(),
            m.name.clone(),
            "--data-dir".into(),
            m.data_dir.display().to_string(),
            "--listen-client-urls".into(),
            m.url(),
            "--advertise-client-urls".into(),
            m.url(),
            "--listen-peer-urls".into(),
            m.peer_url(),
            "--initial-advertise-peer-urls".into(),
            m.peer_url(),
            "--initial-cluster".into(),
            m.initial.clone(),
            "--initial-cluster-state".into(),
            m.state.clone(),
            "--initial-cluster-token".into(),
            self.token.clone(),
            "--unsafe-fault-hooks".into(),
        ];
        a.extend(m.extra.iter().cloned());
        a
    }

    /// Starts member `i` (again).
    pub fn spawn(&mut self, i: usize) {
        assert!(
            self.members[i].child.is_none(),
            "member {i} already running"
        );
        let args = self.args(i);
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("log file");
        let child = Command::new(keel_bin())
            .args(&args)
            .env("RUST_LOG", "info,raft=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start keel");
        m.child = Some(child);
    }

    /// SIGKILL member `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM member `i` and wait for it to exit.
    pub fn stop(&mut self, i: usize) -> std::process::ExitStatus {
        let mut c = self.members[i].child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return c.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_healthy(i, Duration::from_secs(20));
    }

    /// Client endpoints of the members not removed.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| !m.removed)
            .map(|m| m.endpoint())
            .collect()
    }

    pub fn client(&self) -> keel_client::Client {
        keel_client::Client::new(self.endpoints(), self.client_options()).unwrap()
    }

    /// A client of member `i` only.
    pub fn member_client(&self, i: usize) -> keel_client::Client {
        keel_client::Client::new([self.members[i].endpoint()], self.client_options()).unwrap()
    }

    /// keel-client's options: TLS with the harness's credentials when the
    /// client URLs are `https`.
    pub fn client_options(&self) -> keel_client::Options {
        let https = self.members.first().map(|m| m.client_scheme) == Some("https");
        keel_client::Options {
            tls: self.creds.as_ref().filter(|_| https).map(|c| c.options()),
            ..Default::default()
        }
    }

    /// Waits for `/health` to say true on member `i`.
    pub fn wait_healthy(&self, i: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((200, body)) = self.get(i, "/health") {
                if body.contains("\"true\"") {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "member {} not healthy after {timeout:?}; log:\n{}",
                    self.members[i].name,
                    self.log_tail(i)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The index of the current leader (asked through /metrics), if any member says so.
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| {
            self.members[i].is_running()
                && !self.members[i].removed
                && self
                    .get(i, "/metrics")
                    .map(|(_, b)| b.lines().any(|l| l == "etcd_server_is_leader 1"))
                    .unwrap_or(false)
        })
    }

    pub fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader() {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader after {timeout:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Replaces member `i`'s extra flags (used at its next start).
    pub fn set_extra(&mut self, i: usize, extra: &[&str]) {
        self.members[i].extra = extra.iter().map(|s| s.to_string()).collect();
    }

    /// Waits for member `i`'s process to exit by itself, and reaps it.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        let c = self.members[i].child.as_mut().expect("running");
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                self.members[i].child = None;
                return st;
            }
            if Instant::now() > deadline {
                panic!(
                    "member {i} still running after {timeout:?}; log:\n{}",
                    self.log_tail(i)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The value of a counter or gauge on member `i`'s /metrics, if exported.
    pub fn metric(&self, i: usize, name: &str) -> Option<f64> {
        let (_, body) = self.get(i, "/metrics")?;
        body.lines().find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse().ok())?
        })
    }

    /// Waits until member `i`'s Raft log was truncated at least once (it is
    /// truncated once a background flush of sled covers the entries);
    /// panics after `timeout`.
    pub fn wait_log_truncated(&self, i: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self
            .metric(i, "keel_raft_log_truncations_total")
            .unwrap_or(0.0)
            < 1.0
        {
            assert!(
                Instant::now() < deadline,
                "member {i} never truncated its Raft log"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Cuts member `i` off from every peer (both directions) through its fault hook.
    pub fn isolate(&self, i: usize) {
        let (code, body) = http_post(self.members[i].client_port, "/debug/fault/cut?peers=all")
            .expect("fault hook");
        assert_eq!(code, 200, "{body}");
    }

    pub fn heal(&self, i: usize) {
        let (code, body) =
            http_post(self.members[i].client_port, "/debug/fault/heal").expect("fault hook");
        assert_eq!(code, 200, "{body}");
    }
}

fn new_member(dir: &Path, name: &str, extra: &[&str]) -> Member {
    Member {
        data_dir: dir.join(format!("{name}.keel")),
        log: dir.join(format!("{name}.log")),
        name: name.to_string(),
        client_port: free_port(),
        peer_port: free_port(),
        child: None,
        extra: extra.iter().map(|s| s.to_string()).collect(),
        initial: String::new(),
        state: "new".into(),
        removed: false,
        client_scheme: "http",
        peer_scheme: "http",
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// A minimal HTTP/1.1 request; returns (status, body).
pub fn http(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code: u16 = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http(port, "GET", path)
}

pub fn http_post(port: u16, path: &str) -> Option<(u16, String)> {
    http(port, "POST", path)
}

/// Finds a Debian tool on PATH. Missing: prints how to install it and returns
/// None, or panics when KEEL_REQUIRE_TOOLS=1.
pub fn require_tool(tool: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("KEEL_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!(
                "{tool} is required (KEEL_REQUIRE_TOOLS=1) but missing: apt-get install {package}"
            );
        }
        eprintln!(
            "SKIP: {tool} not found; install it with `apt-get install {package}` to run this test"
        );
    }
    found
}

/// A real etcd 3.4 member on free ports in `dir`; killed on drop.
pub struct Etcd {
    pub client_port: u16,
    child: Child,
}

impl Etcd {
    pub fn start(etcd: &Path, dir: &Path) -> Etcd {
        Etcd::start_with(etcd, dir, &[])
    }

    /// Starts etcd with extra flags.
    pub fn start_with(etcd: &Path, dir: &Path, extra: &[&str]) -> Etcd {
        Etcd::start_tls(etcd, dir, extra, None)
    }

    /// Starts etcd on the given ports (a fresh etcd on the same ports has
    /// the same member and cluster IDs).
    pub fn start_on(
        etcd: &Path,
        dir: &Path,
        extra: &[&str],
        client_port: u16,
        peer_port: u16,
    ) -> Etcd {
        Etcd::start_tls_on(etcd, dir, extra, None, client_port, peer_port)
    }

    /// Starts etcd with extra flags; with `creds`, its client URL is
    /// `https` (the TLS flags are the extra flags') and its health is
    /// checked with those credentials.
    pub fn start_tls(etcd: &Path, dir: &Path, extra: &[&str], creds: Option<&tls::Creds>) -> Etcd {
        Etcd::start_tls_on(etcd, dir, extra, creds, free_port(), free_port())
    }

    /// [`Etcd::start_tls`] on the given ports.
    pub fn start_tls_on(
        etcd: &Path,
        dir: &Path,
        extra: &[&str],
        creds: Option<&tls::Creds>,
        client_port: u16,
        peer_port: u16,
    ) -> Etcd {
        let scheme = if creds.is_some() { "https" } else { "http" };
        let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
        let child = Command::new(etcd)
            .args([
                "--name",
                "etcd0",
                "--data-dir",
                &dir.join("etcd0.etcd").display().to_string(),
                "--listen-client-urls",
                &format!("{scheme}://127.0.0.1:{client_port}"),
                "--advertise-client-urls",
                &format!("{scheme}://127.0.0.1:{client_port}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
                "--initial-cluster",
                &format!("etcd0=http://127.0.0.1:{peer_port}"),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        let e = Etcd { client_port, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let health = match creds {
                Some(c) => tls::https(client_port, "GET", "/health", c),
                None => http_get(client_port, "/health"),
            };
            if let Some((200, b)) = health {
                if b.contains("\"true\"") {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "etcd did not become healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
        e
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the same etcdctl transcript against a fresh real etcd 3.4 and a fresh
/// keel member and asserts that every entry matches; returns keel's transcript.
/// `None` (after `require_tool`'s skip line) when etcdctl or etcd is missing.
pub fn same_on_etcd_and_keel(
    what: &str,
    run: impl Fn(&Path, &str) -> Vec<String>,
) -> Option<Vec<String>> {
    same_on_etcd_and_keel_with(what, &[], run)
}

/// [`same_on_etcd_and_keel`] with extra flags given to both servers (flags
/// both take, e.g. `--quota-backend-bytes`).
pub fn same_on_etcd_and_keel_with(
    what: &str,
    flags: &[&str],
    run: impl Fn(&Path, &str) -> Vec<String>,
) -> Option<Vec<String>> {
    let etcdctl = require_tool("etcdctl", "etcd-client")?;
    let etcd_bin = require_tool("etcd", "etcd-server")?;
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start_with(&etcd_bin, dir.path(), flags);
    let expected = run(&etcdctl, &etcd.endpoint());
    drop(etcd);
    let keel = Cluster::start_with(1, flags);
    let got = run(&etcdctl, &keel.members[0].endpoint());
    assert_same_transcripts(what, &expected, &got);
    Some(got)
}

/// Asserts that the transcript steps etcd gave (`expected`) and keel gave
/// (`got`) are the same, step by step, printing every step that differs.
pub fn assert_same_transcripts(what: &str, expected: &[String], got: &[String]) {
    let mismatches: Vec<String> = expected
        .iter()
        .zip(got.iter())
        .filter(|(e, g)| e != g)
        .map(|(e, g)| format!("=== etcd:\n{e}=== keel:\n{g}"))
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} {what} differ:\n{}",
        mismatches.len(),
        expected.len(),
        mismatches.join("\n")
    );
}
