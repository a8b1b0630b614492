//! The Raft lane: Raft messages between plain-text peers over one TCP
//! connection per direction, written by the Raft thread itself and read by
//! a thread of its own.
//!
//! Why: on the gRPC stream ([`crate::transport`]) a message crossed four
//! hand-offs between threads or tasks before the peer's Raft thread saw it
//! (Raft thread → sending task → HTTP/2 connection task → socket → the peer's
//! connection task → its service task → its Raft thread), and each one that
//! found its thread asleep cost a wake-up: 130 µs one way on the 2-core
//! machine keel is measured on, a quarter of put 1/1's latency on three
//! members (docs/benchmarks.md, "The Raft lane"). On the lane the Raft
//! thread writes the frames into the socket without blocking, and a reader
//! thread blocked in `read` on the other side steps them into Raft: two
//! wake-ups, both unavoidable.
//!
//! The wire: the dialling side opens with a handshake, [`MAGIC`] then its
//! cluster id, its member id and the member id it means to reach (u64s, big
//! endian). The accepting side answers with [`MAGIC`], one status byte (`0`
//! accepted, else refused), a u16 length and a message: a member of another cluster is
//! refused with etcd's "request cluster ID mismatch", a removed member with
//! "the member has been permanently removed from the cluster" (and its
//! sender marks itself removed, as etcd's rafthttp does). Then the dialler
//! only writes: frames of a u32 length and a `raftpb.Message` in protobuf.
//! The lane shares the peer port with gRPC: the listener sends a connection
//! that opens with [`MAGIC`] here and the rest to tonic (see
//! [`crate::tls::serve`]). Snapshots still stream over gRPC
//! (`keel.peer.Peer/Snapshot`), and peers reached over `https://` use the
//! gRPC stream, which runs inside TLS.
//!
//! Sending never blocks the Raft thread: the socket is non-blocking, and what
//! it does not take goes to the link's backlog, which the link's own thread
//! writes out (keeping the order). Messages for a peer that is not connected,
//! or whose backlog is over [`MAX_BACKLOG`], are dropped and the peer is
//! reported unreachable, as on the gRPC stream: Raft resends what matters.
//! The link's thread (re)connects with backoff, and records in [`Activity`]
//! since when the link has been up.
//!
//! The test hooks of [`LinkFilter`] hold here as on the gRPC stream: cut
//! links drop traffic both ways, lost messages are dropped, and delayed ones
//! are written later from a tokio task.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::Message;

use crate::consensus::Node;
use crate::error::Error;
use crate::membership::Membership;
use crate::transport::{cluster_mismatch, deliver, refuse_removed, Activity, LinkFilter};

/// How a lane connection opens.
pub const MAGIC: &[u8; 8] = b"KEELRL01";

/// Bytes a link may hold for a peer that does not read fast enough.
const MAX_BACKLOG: usize = 64 * 1024 * 1024;

/// Longest accepted frame.
const MAX_FRAME: usize = 512 * 1024 * 1024;

/// How long a peer may leave data unacknowledged (or an idle connection's
/// probes unanswered) before the connection counts as dead.
const DEAD_PEER: Duration = Duration::from_secs(5);

/// How long each side waits for the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

const ACCEPTED: u8 = 0;
const REFUSED_CLUSTER: u8 = 1;
const REFUSED_REMOVED: u8 = 2;
const REFUSED_OTHER: u8 = 3;

/// Appends `m` as one frame to `out`.
pub fn frame(m: &Message, out: &mut Vec<u8>) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    if m.write_to_vec(out).is_err() {
        // rust-protobuf fails only on missing required fields; raftpb has none.
        out.truncate(at);
        return;
    }
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Who a link connects, and what it tells when it goes up or down.
pub struct LinkContext<O> {
    pub cluster_id: u64,
    pub me: u64,
    pub peer: u64,
    pub node: Node<O>,
    pub activity: Arc<Activity>,
    pub membership: Arc<Membership>,
}

/// The sending side of one peer's lane; dropping it closes the connection
/// and ends its thread.
pub struct LaneLink {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// The peer does not answer as a lane (an older keel): the link gave up.
    unsupported: AtomicBool,
}

#[derive(Default)]
struct State {
    conn: Option<TcpStream>,
    /// Frames the socket did not take yet, in order.
    backlog: Vec<u8>,
    /// The link's thread is writing a taken backlog: new frames queue behind.
    flushing: bool,
    stop: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl LaneLink {
    /// Starts the link's thread, which connects to the first of `urls` that
    /// answers.
    pub fn start<O: Send + 'static>(
        ctx: LinkContext<O>,
        urls: Vec<String>,
    ) -> io::Result<LaneLink> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            unsupported: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name(format!("raft-lane-{:x}", ctx.peer))
            .spawn(move || run_link(ctx, urls, s))?;
        Ok(LaneLink { shared })
    }

    /// Whether the peer turned out not to speak the lane (an older keel,
    /// whose peer port is gRPC only): the transport then uses the gRPC
    /// stream for it.
    pub fn unsupported(&self) -> bool {
        self.shared.unsupported.load(Ordering::Relaxed)
    }

    /// Writes `frames` (whole frames) without blocking; false when the peer
    /// is down or too far behind, and they were dropped.
    pub fn send(&self, frames: &[u8]) -> bool {
        let mut st = self.shared.lock();
        if st.conn.is_none() {
            return false;
        }
        if st.flushing || !st.backlog.is_empty() {
            if st.backlog.len() + frames.len() > MAX_BACKLOG {
                return false;
            }
            st.backlog.extend_from_slice(frames);
            self.shared.wake.notify_one();
            return true;
        }
        let mut off = 0;
        while off < frames.len() {
            let Some(conn) = st.conn.as_mut() else {
                return false;
            };
            match conn.write(&frames[off..]) {
                Ok(0) => {
                    st.conn = None;
                    self.shared.wake.notify_one();
                    return false;
                }
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    st.backlog.extend_from_slice(&frames[off..]);
                    self.shared.wake.notify_one();
                    return true;
                }
                Err(_) => {
                    st.conn = None;
                    self.shared.wake.notify_one();
                    return false;
                }
            }
        }
        true
    }
}

impl Drop for LaneLink {
    fn drop(&mut self) {
        {
            let mut st = self.shared.lock();
            st.stop = true;
            if let Some(c) = st.conn.take() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
        // The thread sees `stop` and ends on its own (it may be dialling:
        // the Raft thread does not wait for that).
        self.shared.wake.notify_all();
    }
}

/// The link's thread: connects, writes backlogs out, reconnects.
fn run_link<O: Send + 'static>(ctx: LinkContext<O>, urls: Vec<String>, shared: Arc<Shared>) {
    let peer = format!("{:x}", ctx.peer);
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 0usize;
    let mut was_up = false;
    loop {
        let mut st = shared.lock();
        if st.stop {
            break;
        }
        if st.conn.is_none() {
            if was_up {
                was_up = false;
                ctx.activity.set(ctx.peer, false);
                ctx.node.report_unreachable(ctx.peer);
                tracing::debug!(%peer, "raft lane down");
            }
            st.backlog.clear();
            drop(st);
            if ctx.membership.local_removed() {
                wait(&shared, Duration::from_secs(1));
                continue;
            }
            let url = &urls[attempt % urls.len()];
            attempt += 1;
            match dial(&ctx, url) {
                Ok(conn) => {
                    let mut st = shared.lock();
                    if st.stop {
                        let _ = conn.shutdown(Shutdown::Both);
                        break;
                    }
                    st.conn = Some(conn);
                    backoff = Duration::from_millis(50);
                    was_up = true;
                    ctx.activity.set(ctx.peer, true);
                    tracing::info!(%peer, %url, "raft lane connected");
                }
                Err(Refusal::NotLane(why)) => {
                    tracing::info!(%peer, %url, answer = %why, "peer does not speak the raft lane (an older keel?): using the gRPC stream");
                    shared.unsupported.store(true, Ordering::Relaxed);
                    break;
                }
                Err(Refusal::Removed(why)) => {
                    tracing::error!(%peer, error = %why, "peer says this member was removed");
                    ctx.membership.mark_removed();
                }
                Err(Refusal::Refused(why)) => {
                    tracing::error!(%peer, error = %why, "peer refused us");
                    ctx.node.report_unreachable(ctx.peer);
                    wait(&shared, Duration::from_secs(1));
                }
                Err(Refusal::Down(why)) => {
                    tracing::debug!(%peer, %url, error = %why, "peer unreachable");
                    ctx.node.report_unreachable(ctx.peer);
                    wait(&shared, backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
            continue;
        }
        if st.backlog.is_empty() {
            let _unused = shared
                .wake
                .wait_timeout(st, Duration::from_secs(1))
                .unwrap_or_else(|e| e.into_inner());
            continue;
        }
        let data = std::mem::take(&mut st.backlog);
        let conn = st.conn.as_ref().and_then(|c| c.try_clone().ok());
        st.flushing = true;
        drop(st);
        let written = match conn {
            Some(mut c) => write_out(&mut c, &data, &shared),
            None => false,
        };
        let mut st = shared.lock();
        st.flushing = false;
        if !written {
            st.conn = None;
        }
    }
    if was_up {
        ctx.activity.set(ctx.peer, false);
    }
}

/// Sleeps up to `d`, or until the link is stopped.
fn wait(shared: &Shared, d: Duration) {
    let st = shared.lock();
    if !st.stop {
        let _unused = shared
            .wake
            .wait_timeout(st, d)
            .unwrap_or_else(|e| e.into_inner());
    }
}

/// Writes all of `data` to `conn`, blocking (the Raft thread does not write
/// while a backlog is being written); false on an error or when the link
/// stops. The socket is non-blocking again afterwards.
fn write_out(conn: &mut TcpStream, data: &[u8], shared: &Shared) -> bool {
    if conn.set_nonblocking(false).is_err() || conn.set_write_timeout(Some(DEAD_PEER)).is_err() {
        return false;
    }
    let mut off = 0;
    let mut ok = true;
    while off < data.len() {
        match conn.write(&data[off..]) {
            Ok(0) => {
                ok = false;
                break;
            }
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The write timeout: the peer reads nothing; unless stopped, go on
            // (TCP_USER_TIMEOUT ends a connection whose peer is gone).
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if shared.lock().stop {
                    ok = false;
                    break;
                }
            }
            Err(_) => {
                ok = false;
                break;
            }
        }
    }
    ok && conn.set_nonblocking(true).is_ok()
}

enum Refusal {
    /// Not reachable, or no answer: retry with backoff.
    Down(String),
    /// Answered, but not as a lane.
    NotLane(String),
    /// The peer refused this member (another cluster, or not the member meant).
    Refused(String),
    /// The peer says this member was removed.
    Removed(String),
}

/// Both ends: no Nagle delay, and a connection to a peer that vanished
/// (its host down or cut off by a firewall) fails within seconds instead of
/// TCP's minutes: keep-alive probes on an idle connection, and
/// `TCP_USER_TIMEOUT` on one whose data goes unacknowledged.
fn tune(conn: &TcpStream) -> io::Result<()> {
    conn.set_nodelay(true)?;
    let sock = socket2::SockRef::from(conn);
    sock.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(DEAD_PEER / 2)
            .with_interval(Duration::from_secs(1))
            .with_retries(3),
    )?;
    sock.set_tcp_user_timeout(Some(DEAD_PEER))
}

/// Connects to `url`, shakes hands, and returns the socket, non-blocking.
fn dial<O>(ctx: &LinkContext<O>, url: &str) -> Result<TcpStream, Refusal> {
    let addr = resolve(url).map_err(Refusal::Down)?;
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| Refusal::Down(e.to_string()))?;
    let down = |e: io::Error| Refusal::Down(e.to_string());
    conn.set_nodelay(true).map_err(down)?;
    conn.set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(down)?;
    let mut hello = Vec::with_capacity(32);
    hello.extend_from_slice(MAGIC);
    hello.extend_from_slice(&ctx.cluster_id.to_be_bytes());
    hello.extend_from_slice(&ctx.me.to_be_bytes());
    hello.extend_from_slice(&ctx.peer.to_be_bytes());
    conn.write_all(&hello).map_err(down)?;
    let mut head = [0u8; 11];
    let mut got = 0;
    while got < head.len() {
        match conn.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(down(e)),
        }
    }
    if got == 0 {
        return Err(Refusal::Down("closed without an answer".into()));
    }
    let known = got.min(MAGIC.len());
    if head[..known] != MAGIC[..known] {
        return Err(Refusal::NotLane(format!(
            "{:?}",
            String::from_utf8_lossy(&head[..got])
        )));
    }
    if got < head.len() {
        return Err(Refusal::Down("closed in the middle of its answer".into()));
    }
    let len = u16::from_be_bytes([head[9], head[10]]) as usize;
    let mut why = vec![0u8; len];
    conn.read_exact(&mut why).map_err(down)?;
    let why = String::from_utf8_lossy(&why).into_owned();
    match head[8] {
        ACCEPTED => {}
        REFUSED_REMOVED => return Err(Refusal::Removed(why)),
        REFUSED_CLUSTER | REFUSED_OTHER => return Err(Refusal::Refused(why)),
        other => return Err(Refusal::Down(format!("unknown lane answer {other}"))),
    }
    conn.set_read_timeout(None).map_err(down)?;
    conn.set_nonblocking(true).map_err(down)?;
    Ok(conn)
}

/// The socket address of a peer URL (`http://host:port`).
fn resolve(url: &str) -> Result<SocketAddr, String> {
    let uri: tonic::codegen::http::Uri = url
        .parse()
        .map_err(|e| format!("bad peer URL {url}: {e}"))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("peer URL {url} has no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url} resolves to no address"))
}

/// What the accepting side needs.
pub struct LaneReceiver<O> {
    cluster_id: u64,
    me: u64,
    node: Node<O>,
    filter: Arc<LinkFilter>,
    membership: Arc<Membership>,
    open: Mutex<Open>,
}

/// The accepted connections, shut down when the member stops.
#[derive(Default)]
struct Open {
    next: u64,
    /// By serial number: the socket, and the member it comes from once its
    /// handshake was accepted.
    conns: HashMap<u64, (TcpStream, Option<u64>)>,
    closed: bool,
}

impl<O: Send + 'static> LaneReceiver<O> {
    pub fn new(
        cluster_id: u64,
        me: u64,
        node: Node<O>,
        filter: Arc<LinkFilter>,
        membership: Arc<Membership>,
    ) -> Arc<Self> {
        Arc::new(LaneReceiver {
            cluster_id,
            me,
            node,
            filter,
            membership,
            open: Mutex::default(),
        })
    }

    fn open(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves a connection that opened with [`MAGIC`] (not yet read) on a
    /// thread of its own.
    pub fn accept(self: &Arc<Self>, conn: TcpStream) {
        let serial = {
            let mut open = self.open();
            let Ok(clone) = conn.try_clone() else { return };
            if open.closed {
                let _ = conn.shutdown(Shutdown::Both);
                return;
            }
            open.next += 1;
            let serial = open.next;
            open.conns.insert(serial, (clone, None));
            serial
        };
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("raft-lane-in".into())
            .spawn(move || {
                let remote = conn.peer_addr().ok();
                match me.serve(conn, serial) {
                    // Not a lane's handshake, a frame too long or not a
                    // Raft message: the peer is broken, not just gone.
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        tracing::warn!(?remote, error = %e, "raft lane closed: bad data")
                    }
                    Err(e) => tracing::debug!(?remote, error = %e, "raft lane closed"),
                    Ok(()) => {}
                }
                me.open().conns.remove(&serial);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a raft lane reader");
            self.open().conns.remove(&serial);
        }
    }

    /// Records that connection `serial` comes from member `from`, and closes
    /// any older one from it: its sender has given up on that one.
    fn claim(&self, serial: u64, from: u64) {
        let mut open = self.open();
        for (s, (c, f)) in open.conns.iter_mut() {
            if *s == serial {
                *f = Some(from);
            } else if *f == Some(from) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }

    /// Closes every accepted connection, and any accepted later (the member
    /// is stopping).
    pub fn close_all(&self) {
        let mut open = self.open();
        open.closed = true;
        for (_, (c, _)) in open.conns.drain() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    fn serve(&self, mut conn: TcpStream, serial: u64) -> io::Result<()> {
        conn.set_nonblocking(false)?;
        tune(&conn)?;
        conn.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        let mut hello = [0u8; 32];
        conn.read_exact(&mut hello)?;
        if &hello[..8] != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a raft lane",
            ));
        }
        let word = |i: usize| u64::from_be_bytes(hello[i..i + 8].try_into().unwrap_or_default());
        let (cluster_id, from, to) = (word(8), word(16), word(24));
        let (code, why) = if let Some(why) = cluster_mismatch(self.cluster_id, cluster_id, from) {
            (REFUSED_CLUSTER, why)
        } else if refuse_removed(&self.membership, from) {
            (REFUSED_REMOVED, Error::Removed.to_string())
        } else if to != self.me {
            (
                REFUSED_OTHER,
                format!("this is member {:x}, not {to:x}", self.me),
            )
        } else {
            (ACCEPTED, String::new())
        };
        let mut answer = MAGIC.to_vec();
        answer.push(code);
        answer.extend_from_slice(&(why.len() as u16).to_be_bytes());
        answer.extend_from_slice(why.as_bytes());
        conn.write_all(&answer)?;
        if code != ACCEPTED {
            return Ok(());
        }
        self.claim(serial, from);
        conn.set_read_timeout(None)?;
        let mut r = BufReader::with_capacity(64 * 1024, conn);
        let mut buf = Vec::new();
        loop {
            let mut len = [0u8; 4];
            r.read_exact(&mut len)?;
            let len = u32::from_be_bytes(len) as usize;
            if len > MAX_FRAME {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "frame too large",
                ));
            }
            buf.resize(len, 0);
            r.read_exact(&mut buf)?;
            if self.filter.is_blocked(from) {
                continue;
            }
            if refuse_removed(&self.membership, from) {
                return Ok(());
            }
            let msg = Message::parse_from_bytes(&buf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            if deliver(&self.node, self.me, msg).is_err() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests;
