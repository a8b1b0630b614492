//! Peer transport: Raft messages between members, on the Raft lane or over
//! tonic streams.
//!
//! Routes: a peer reached over `http://` gets the Raft lane
//! ([`crate::lane`]: a plain TCP connection the Raft thread writes itself),
//! unless `--raft-lane=false`; a peer reached over `https://`, or one that
//! does not answer as a lane (a keel from before it), gets the gRPC stream
//! below. Snapshots take gRPC either way.
//!
//! The gRPC stream's sending side: one task per peer holds a
//! client-streaming `keel.peer.Peer/Raft` call open and writes every queued
//! message into it, several per batch. When the call fails the task reports
//! the peer unreachable to Raft, backs off, and reconnects; messages queued
//! meanwhile are dropped (Raft resends what matters). The driver never
//! blocks on the network: it only `try_send`s into the per-peer queue.
//!
//! Receiving: [`PeerService`] checks each batch's cluster id (a member of another
//! cluster is refused with a clear status) and hands the messages to the node.
//! A member removed from the cluster is refused with "the member has been
//! permanently removed from the cluster"; its sender, told so, marks itself
//! removed (and stops), as etcd's rafthttp does.
//!
//! Peers follow the member list: the sender side compares the
//! [`Membership`]'s version on every send and starts a route for each new
//! peer, restarts it when its peer URLs changed, and drops it when the peer
//! left. [`Activity`] records since when each peer's stream has been up
//! (etcd's `ActiveSince`), for the strict reconfiguration checks.
//!
//! Faults for tests: a [`LinkFilter`] shared by both directions drops traffic to
//! and from blocked peers, and can delay or drop outgoing Raft messages
//! ([`Quality`], netem's faults without a kernel qdisc). The binary exposes it only with the hidden
//! `--unsafe-fault-hooks` flag (see `http.rs`).
//!
//! Snapshots: a `MsgSnapshot` from Raft is not put in the message stream. The
//! peer's task starts a `keel.peer.Peer/Snapshot` call on the same connection
//! and streams the Raft message (first chunk) and then an image of the store
//! (`mvcc::Store::write_image`, produced on a blocking thread into a bounded
//! channel of 1 MiB chunks), and reports the outcome to Raft, which retries a
//! failed one. The receiver writes the chunks to a file (bounded memory),
//! checks it, and steps the Raft message only once the image is durable
//! (see [`crate::consensus::snapshot`]).
//!
//! Both ends gather their writes ([`crate::coalesce`]), so messages ready
//! together leave in one segment.
//!
//! TLS: peers are dialled through the member's [`Dialer`] (the peer
//! certificate as client identity, the peer CA as root); the listener side
//! is in [`crate::tls::serve`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use keel_proto::peer::membership_peer_client::MembershipPeerClient;
use keel_proto::peer::peer_client::PeerClient;
use keel_proto::peer::peer_server::Peer;
use keel_proto::peer::{
    MembersRequest, RaftBatch, RaftMessage, SendResponse, SnapshotChunk, SnapshotResponse,
};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::consensus::driver::Outbox;
use crate::consensus::snapshot::SnapDir;
use crate::consensus::Node;
use crate::error::Error;
use crate::lane::{LaneLink, LinkContext};
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::mvcc::Store;
use crate::tls::Dialer;

/// Bytes of image per snapshot chunk.
const SNAPSHOT_CHUNK: usize = 1024 * 1024;
/// Chunks buffered between the image writer and the network.
const SNAPSHOT_CHUNKS_IN_FLIGHT: usize = 4;

/// Peers whose links are cut, and how the links to the others are degraded
/// (test hooks). Empty and perfect in production.
#[derive(Debug, Default)]
pub struct LinkFilter {
    blocked: RwLock<HashSet<u64>>,
    quality: RwLock<Quality>,
}

/// A degraded link (test hook), the way netem degrades an interface: every
/// outgoing Raft message is dropped with probability `loss`, or sent `delay`
/// ± `jitter` later (so messages may overtake each other, as packets do
/// under netem's jitter).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Quality {
    pub delay: Duration,
    pub jitter: Duration,
    pub loss: f64,
}

impl Quality {
    /// No fault.
    pub fn is_perfect(&self) -> bool {
        self.delay.is_zero() && self.jitter.is_zero() && self.loss <= 0.0
    }
}

impl LinkFilter {
    /// Degrades every link (a perfect [`Quality`] restores them).
    pub fn set_quality(&self, q: Quality) {
        *self.quality.write().unwrap_or_else(|e| e.into_inner()) = q;
    }

    pub fn quality(&self) -> Quality {
        *self.quality.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether to drop this message (the loss hook).
    fn lose(&self) -> bool {
        let loss = self.quality().loss;
        loss > 0.0 && rand::random::<f64>() < loss
    }

    /// How long to hold back a batch (the delay hook); `None` when not.
    fn hold(&self) -> Option<Duration> {
        let q = self.quality();
        if q.delay.is_zero() && q.jitter.is_zero() {
            return None;
        }
        let j = q.jitter.as_secs_f64();
        let d = q.delay.as_secs_f64() + (rand::random::<f64>() * 2.0 - 1.0) * j;
        Some(Duration::from_secs_f64(d.max(0.0)))
    }

    pub fn is_blocked(&self, peer: u64) -> bool {
        let b = self.blocked.read().unwrap_or_else(|e| e.into_inner());
        !b.is_empty() && b.contains(&peer)
    }
    pub fn block(&self, peers: impl IntoIterator<Item = u64>) {
        self.blocked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(peers);
    }
    /// Heals every cut link and restores their quality.
    pub fn heal(&self) {
        self.blocked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.set_quality(Quality::default());
    }
    pub fn blocked(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .blocked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        v.sort_unstable();
        v
    }
}

/// Since when each peer's stream has been up; a peer whose link is cut by
/// the test hook counts as down.
#[derive(Debug)]
pub struct Activity {
    since: RwLock<HashMap<u64, Instant>>,
    filter: Arc<LinkFilter>,
}

impl Activity {
    pub fn new(filter: Arc<LinkFilter>) -> Activity {
        Activity {
            since: RwLock::new(HashMap::new()),
            filter,
        }
    }

    /// When the stream to `peer` came up, if it is up now.
    pub fn active_since(&self, peer: u64) -> Option<Instant> {
        if self.filter.is_blocked(peer) {
            return None;
        }
        self.since
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&peer)
            .copied()
    }

    pub(crate) fn set(&self, peer: u64, up: bool) {
        let mut since = self.since.write().unwrap_or_else(|e| e.into_inner());
        if up {
            since.entry(peer).or_insert_with(Instant::now);
        } else {
            since.remove(&peer);
        }
    }
}

/// How messages reach one peer.
enum Route {
    /// The gRPC stream's queue (its task does the rest).
    Stream(mpsc::Sender<Message>),
    /// The Raft lane ([`crate::lane`]); snapshots go to `snapshot`, which
    /// streams them over gRPC.
    Lane {
        link: Arc<LaneLink>,
        snapshot: Box<dyn Fn(Message) + Send>,
    },
}

/// Starts what sends to one peer: the Raft lane when the third argument
/// allows it and the peer is reached over `http://`, else the gRPC stream.
type Spawner = Box<dyn Fn(u64, Vec<String>, bool) -> Route + Send>;

/// The sending side: one route per peer, following the member list.
pub struct PeerTransport {
    /// Each peer's URLs and route.
    routes: HashMap<u64, (Vec<String>, Route)>,
    membership: Arc<Membership>,
    /// The membership version the routes were last matched against.
    seen: u64,
    filter: Arc<LinkFilter>,
    unreachable: Box<dyn Fn(u64) + Send>,
    spawn: Spawner,
    /// Lane frames being gathered for each peer (reused buffers).
    frames: HashMap<u64, Vec<u8>>,
    /// Where delayed lane frames wait (the delay hook).
    delays: tokio::runtime::Handle,
}

const QUEUE_DEPTH: usize = 4096;

/// What the peer transport needs besides the node.
pub struct TransportDeps {
    pub filter: Arc<LinkFilter>,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub membership: Arc<Membership>,
    pub activity: Arc<Activity>,
    /// Builds the endpoints of peer URLs (TLS).
    pub dialer: Dialer,
    /// Use the Raft lane for `http://` peers (`--raft-lane`).
    pub lane: bool,
}

impl PeerTransport {
    /// Starts one sender (a task on the gRPC stream, or a Raft lane) per
    /// peer the member list (or its remotes) names. Must be called from
    /// within the tokio runtime; the tasks of later peers are started on
    /// the same runtime.
    pub fn start<O: Send + 'static>(
        cluster_id: u64,
        me: u64,
        node: Node<O>,
        deps: TransportDeps,
    ) -> PeerTransport {
        let TransportDeps {
            filter,
            store,
            metrics,
            membership,
            activity,
            dialer,
            lane,
        } = deps;
        let runtime = tokio::runtime::Handle::current();
        let delays = runtime.clone();
        let n = node.clone();
        let (f, m) = (filter.clone(), membership.clone());
        let spawn: Spawner = Box::new(move |id, urls, try_lane| {
            let link = Link {
                cluster_id,
                me,
                peer: id,
                node: n.clone(),
                store: store.clone(),
                metrics: metrics.clone(),
                filter: f.clone(),
                activity: activity.clone(),
                membership: m.clone(),
                dialer: dialer.clone(),
            };
            if lane && try_lane && urls.iter().all(|u| u.starts_with("http://")) {
                let ctx = LinkContext {
                    cluster_id,
                    me,
                    peer: id,
                    node: n.clone(),
                    activity: activity.clone(),
                    membership: m.clone(),
                };
                match LaneLink::start(ctx, urls.clone()) {
                    Ok(l) => {
                        let rt = runtime.clone();
                        let snapshot = Box::new(move |msg: Message| {
                            rt.spawn(dial_and_send_snapshot(link.clone(), urls.clone(), msg));
                        });
                        return Route::Lane {
                            link: Arc::new(l),
                            snapshot,
                        };
                    }
                    Err(e) => {
                        tracing::warn!(peer = format!("{id:x}"), error = %e, "cannot start the raft lane; using the gRPC stream")
                    }
                }
            }
            let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
            runtime.spawn(peer_loop(link, urls, rx));
            Route::Stream(tx)
        });
        let mut t = PeerTransport {
            routes: HashMap::new(),
            membership,
            seen: 0,
            filter,
            unreachable: Box::new(move |id| node.report_unreachable(id)),
            spawn,
            frames: HashMap::new(),
            delays,
        };
        t.follow_members();
        t
    }

    /// Matches the routes to the member list when it changed.
    fn follow_members(&mut self) {
        let version = self.membership.version();
        if version == self.seen {
            return;
        }
        self.seen = version;
        let want = self.membership.peers();
        self.routes.retain(|id, (urls, _)| {
            let keep = want.get(id) == Some(urls);
            if !keep {
                tracing::info!(
                    peer = format!("{id:x}"),
                    "peer stream closed (member removed or its URLs changed)"
                );
            }
            keep
        });
        self.frames.retain(|id, _| want.contains_key(id));
        for (id, urls) in want {
            if self.routes.contains_key(&id) || urls.is_empty() {
                continue;
            }
            let route = (self.spawn)(id, urls.clone(), true);
            self.routes.insert(id, (urls, route));
        }
    }

    /// Moves the peers whose lane found no lane at the other end (an older
    /// keel) to the gRPC stream.
    fn leave_lanes_unsupported(&mut self) {
        let gave_up: Vec<u64> = self
            .routes
            .iter()
            .filter(|(_, (_, r))| matches!(r, Route::Lane { link, .. } if link.unsupported()))
            .map(|(id, _)| *id)
            .collect();
        for id in gave_up {
            if let Some((urls, _)) = self.routes.remove(&id) {
                let route = (self.spawn)(id, urls.clone(), false);
                self.routes.insert(id, (urls, route));
            }
        }
    }
}

impl Outbox for PeerTransport {
    fn send(&mut self, msgs: Vec<Message>) {
        self.follow_members();
        self.leave_lanes_unsupported();
        for m in msgs {
            let to = m.to;
            if self.filter.is_blocked(to) || self.filter.lose() {
                continue;
            }
            match self.routes.get(&to) {
                Some((_, Route::Stream(q))) => {
                    if q.try_send(m).is_err() {
                        (self.unreachable)(to);
                    }
                }
                Some((_, Route::Lane { snapshot, .. })) => {
                    if m.get_msg_type() == MessageType::MsgSnapshot {
                        snapshot(m);
                    } else {
                        crate::lane::frame(&m, self.frames.entry(to).or_default());
                    }
                }
                None => {
                    tracing::debug!(to = format!("{to:x}"), "message to an unknown peer dropped")
                }
            }
        }
        for (to, frames) in self.frames.iter_mut() {
            if frames.is_empty() {
                continue;
            }
            let Some((_, Route::Lane { link, .. })) = self.routes.get(to) else {
                frames.clear();
                continue;
            };
            let sent = match self.filter.hold() {
                None => link.send(frames),
                Some(hold) => {
                    // The delay hook: write them later, off the Raft thread.
                    let (link, data) = (link.clone(), frames.clone());
                    self.delays.spawn(async move {
                        tokio::time::sleep(hold).await;
                        link.send(&data);
                    });
                    true
                }
            };
            if !sent {
                (self.unreachable)(*to);
            }
            frames.clear();
            if frames.capacity() > 1024 * 1024 {
                frames.shrink_to(64 * 1024);
            }
        }
    }
}

/// What a peer's sending task needs.
struct Link<O> {
    cluster_id: u64,
    me: u64,
    peer: u64,
    node: Node<O>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    filter: Arc<LinkFilter>,
    activity: Arc<Activity>,
    membership: Arc<Membership>,
    dialer: Dialer,
}

impl<O> Clone for Link<O> {
    fn clone(&self) -> Self {
        Link {
            cluster_id: self.cluster_id,
            me: self.me,
            peer: self.peer,
            node: self.node.clone(),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            filter: self.filter.clone(),
            activity: self.activity.clone(),
            membership: self.membership.clone(),
            dialer: self.dialer.clone(),
        }
    }
}

/// Keeps one stream to `peer` open, reconnecting with backoff.
async fn peer_loop<O: Send + 'static>(
    link: Link<O>,
    urls: Vec<String>,
    mut rx: mpsc::Receiver<Message>,
) {
    let (cluster_id, me, peer, node) = (link.cluster_id, link.me, link.peer, link.node.clone());
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 0usize;
    // The last TLS failure logged, so a refusing peer is not logged every second.
    let mut refused: Option<String> = None;
    loop {
        if link.membership.local_removed() {
            // This member is stopping: no more reconnecting.
            if !drain_for(&mut rx, Duration::from_secs(1)).await {
                return;
            }
            continue;
        }
        let url = urls[attempt % urls.len()].clone();
        attempt += 1;
        let endpoint = match link.dialer.endpoint(&url) {
            Ok(e) => e
                .connect_timeout(Duration::from_millis(500))
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5)),
            Err(e) => {
                tracing::error!(peer = format!("{peer:x}"), %url, error = %e, "bad peer URL");
                return;
            }
        };
        let connected = match endpoint
            .connect_with_connector(tower::service_fn(crate::coalesce::connect))
            .await
        {
            Ok(c) => probe(c).await,
            Err(e) => Err(error_chain(&e)),
        };
        let channel = match connected {
            Ok(c) => c,
            Err(why) => {
                // A peer that is down is routine (debug); a TLS failure is a
                // configuration problem: say it once, until it changes.
                let tls = ["certificate", "tls", "alert"]
                    .iter()
                    .any(|w| why.to_ascii_lowercase().contains(w));
                if tls && refused.as_deref() != Some(why.as_str()) {
                    tracing::warn!(peer = format!("{peer:x}"), %url, error = %why, "cannot connect to peer: TLS failed");
                    refused = Some(why);
                } else if !tls {
                    tracing::debug!(peer = format!("{peer:x}"), %url, error = %why, "peer unreachable");
                }
                node.report_unreachable(peer);
                if !drain_for(&mut rx, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        refused = None;
        backoff = Duration::from_millis(50);
        link.activity.set(peer, true);
        tracing::info!(peer = format!("{peer:x}"), %url, "peer stream connected");
        let snapshot_channel = channel.clone();
        let mut client = PeerClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let (stx, srx) = mpsc::channel::<RaftBatch>(64);
        let mut call = tokio::spawn(async move { client.raft(ReceiverStream::new(srx)).await });
        loop {
            tokio::select! {
                first = rx.recv() => {
                    let Some(first) = first else { return };
                    let mut messages = Vec::new();
                    let mut next = Some(first);
                    while let Some(m) = next.take() {
                        if m.get_msg_type() == MessageType::MsgSnapshot {
                            tokio::spawn(send_snapshot(link.clone(), snapshot_channel.clone(), m));
                        } else {
                            messages.push(encode(&m));
                        }
                        if messages.len() < 256 {
                            next = rx.try_recv().ok();
                        }
                    }
                    if messages.is_empty() {
                        continue;
                    }
                    let batch = RaftBatch { cluster_id, from: me, messages };
                    if let Some(hold) = link.filter.hold() {
                        // The delay hook: send it later, off this loop.
                        let stx = stx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(hold).await;
                            let _ = stx.send(batch).await;
                        });
                        continue;
                    }
                    if stx.send(batch).await.is_err() {
                        break;
                    }
                }
                res = &mut call => {
                    match res {
                        Ok(Err(status)) if status.code() == tonic::Code::PermissionDenied => {
                            tracing::error!(peer = format!("{peer:x}"), error = %status.message(), "peer refused us");
                        }
                        Ok(Err(status)) if status.code() == tonic::Code::FailedPrecondition
                            && status.message() == Error::Removed.to_string() => {
                            tracing::error!(peer = format!("{peer:x}"), error = %status.message(), "peer says this member was removed");
                            link.membership.mark_removed();
                        }
                        Ok(Err(status)) => tracing::debug!(peer = format!("{peer:x}"), error = %status, "peer stream ended"),
                        _ => {}
                    }
                    break;
                }
            }
        }
        call.abort();
        link.activity.set(peer, false);
        node.report_unreachable(peer);
        if !drain_for(&mut rx, backoff).await {
            return;
        }
    }
}

/// Proves a new connection with one unary call (`MembershipPeer.Members`,
/// which every peer port serves) before it counts as up: over TLS 1.3 a peer
/// refuses a client certificate only after the client's side of the
/// handshake is done, so `connect` alone succeeds.
async fn probe(channel: tonic::transport::Channel) -> Result<tonic::transport::Channel, String> {
    let mut client = MembershipPeerClient::new(channel.clone());
    match tokio::time::timeout(Duration::from_secs(2), client.members(MembersRequest {})).await {
        Ok(Ok(_)) => Ok(channel),
        Ok(Err(status)) => Err(chain_from(
            status.message().to_string(),
            std::error::Error::source(&status),
        )),
        Err(_) => Err("no answer within 2s".into()),
    }
}

/// An error and its sources, `: `-separated.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    chain_from(e.to_string(), e.source())
}

/// `text`, then each source's text that it does not already hold.
fn chain_from(mut text: String, mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Connects to the first of `urls` that answers and sends the snapshot
/// there (peers on the Raft lane hold no gRPC channel open).
async fn dial_and_send_snapshot<O: Send + 'static>(link: Link<O>, urls: Vec<String>, msg: Message) {
    let mut last = String::from("no peer URL");
    for url in &urls {
        let endpoint = match link.dialer.endpoint(url) {
            Ok(e) => e.connect_timeout(Duration::from_millis(500)),
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        match endpoint.connect().await {
            Ok(channel) => return send_snapshot(link, channel, msg).await,
            Err(e) => last = error_chain(&e),
        }
    }
    let peer = link.peer;
    link.metrics.snapshot_send_failures.inc();
    tracing::warn!(peer = format!("{peer:x}"), error = %last, "snapshot send failed; Raft will retry");
    link.node.report_snapshot(peer, false);
}

/// Streams a snapshot (the Raft message, then the store's image) to the
/// link's peer and tells Raft how it went.
async fn send_snapshot<O: Send + 'static>(
    link: Link<O>,
    channel: tonic::transport::Channel,
    msg: Message,
) {
    let peer = link.peer;
    let index = msg.get_snapshot().get_metadata().index;
    let started = std::time::Instant::now();
    let result = stream_snapshot(&link, channel, &msg).await;
    match &result {
        Ok(bytes) => {
            link.metrics.snapshot_send_success.inc();
            tracing::info!(peer = format!("{peer:x}"), index, bytes, elapsed = ?started.elapsed(), "snapshot sent");
        }
        Err(e) => {
            link.metrics.snapshot_send_failures.inc();
            tracing::warn!(peer = format!("{peer:x}"), index, error = %e, "snapshot send failed; Raft will retry");
        }
    }
    link.node.report_snapshot(peer, result.is_ok());
}

async fn stream_snapshot<O: Send + 'static>(
    link: &Link<O>,
    channel: tonic::transport::Channel,
    msg: &Message,
) -> Result<u64, String> {
    if link.filter.is_blocked(link.peer) {
        return Err("link cut".into());
    }
    let (tx, rx) = mpsc::channel::<SnapshotChunk>(SNAPSHOT_CHUNKS_IN_FLIGHT);
    let header = SnapshotChunk {
        cluster_id: link.cluster_id,
        from: link.me,
        raft_metadata: msg.write_to_bytes().map_err(|e| e.to_string())?,
        offset: 0,
        data: Vec::new(),
        last: false,
    };
    tx.send(header)
        .await
        .map_err(|_| "stream closed".to_string())?;
    let store = link.store.clone();
    let (cluster_id, from) = (link.cluster_id, link.me);
    let writer = tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter {
            tx,
            buf: Vec::with_capacity(SNAPSHOT_CHUNK),
            offset: 0,
            cluster_id,
            from,
        };
        let summary = store.write_image(&mut out)?;
        out.finish()?;
        Ok::<_, crate::Error>(summary)
    });
    let mut client = PeerClient::new(channel).max_decoding_message_size(usize::MAX);
    let call = client.snapshot(ReceiverStream::new(rx));
    let (sent, written) = tokio::join!(call, writer);
    let summary = written
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let received = sent
        .map_err(|s| s.message().to_string())?
        .into_inner()
        .received;
    if received != summary.bytes {
        return Err(format!(
            "peer received {received} of {} bytes",
            summary.bytes
        ));
    }
    Ok(received)
}

/// Cuts the image into chunks and hands them to the gRPC stream, waiting
/// when the network is slower (bounded memory).
struct ChunkWriter {
    tx: mpsc::Sender<SnapshotChunk>,
    buf: Vec<u8>,
    offset: u64,
    cluster_id: u64,
    from: u64,
}

impl ChunkWriter {
    fn send(&mut self, last: bool) -> std::io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(SNAPSHOT_CHUNK));
        let chunk = SnapshotChunk {
            cluster_id: self.cluster_id,
            from: self.from,
            raft_metadata: Vec::new(),
            offset: self.offset,
            last,
            data,
        };
        self.offset += chunk.data.len() as u64;
        self.tx.blocking_send(chunk).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "snapshot stream closed")
        })
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.send(true)
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = SNAPSHOT_CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == SNAPSHOT_CHUNK {
            self.send(false)?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn encode(m: &Message) -> RaftMessage {
    RaftMessage {
        data: m.write_to_bytes().unwrap_or_default(),
    }
}

fn io_status(e: std::io::Error) -> Status {
    Status::internal(format!("snapshot file: {e}"))
}

/// Drops queued messages for `d`; false when the queue is closed.
async fn drain_for(rx: &mut mpsc::Receiver<Message>, d: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + d;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(_)) => continue,
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
}

/// The receiving side: the `keel.peer.Peer` service.
pub struct PeerService<O> {
    cluster_id: u64,
    me: u64,
    node: Node<O>,
    filter: Arc<LinkFilter>,
    snaps: SnapDir,
    metrics: Arc<Metrics>,
    membership: Arc<Membership>,
    /// One snapshot is received at a time.
    receiving: Arc<tokio::sync::Mutex<()>>,
}

impl<O> PeerService<O> {
    pub fn new(
        cluster_id: u64,
        me: u64,
        node: Node<O>,
        filter: Arc<LinkFilter>,
        snaps: SnapDir,
        metrics: Arc<Metrics>,
        membership: Arc<Membership>,
    ) -> Self {
        PeerService {
            cluster_id,
            me,
            node,
            filter,
            snaps,
            metrics,
            membership,
            receiving: Arc::default(),
        }
    }

    /// Refuses a member that was removed from the cluster.
    fn check_removed(&self, from: u64) -> Result<(), Status> {
        if refuse_removed(&self.membership, from) {
            return Err(Status::failed_precondition(Error::Removed.to_string()));
        }
        Ok(())
    }

    fn check_cluster(&self, cluster_id: u64, from: u64) -> Result<(), Status> {
        match cluster_mismatch(self.cluster_id, cluster_id, from) {
            Some(why) => Err(Status::permission_denied(why)),
            None => Ok(()),
        }
    }
}

// The receiving side's checks, shared by `PeerService` and the Raft lane.

/// etcd's refusal of a member (`from`) of cluster `remote` by a member of
/// cluster `local`, logged; `None` when they are the same cluster.
pub(crate) fn cluster_mismatch(local: u64, remote: u64, from: u64) -> Option<String> {
    if local == remote {
        return None;
    }
    tracing::warn!(
        local = format!("{local:x}"),
        remote = format!("{remote:x}"),
        from = format!("{from:x}"),
        "request cluster ID mismatch"
    );
    Some(format!(
        "request cluster ID mismatch (local {local:x}, remote {remote:x})"
    ))
}

/// Whether `from` was removed from the cluster, its traffic refused
/// (logged).
pub(crate) fn refuse_removed(membership: &Membership, from: u64) -> bool {
    if !membership.is_removed(from) {
        return false;
    }
    tracing::warn!(
        from = format!("{from:x}"),
        "refused traffic from a removed member"
    );
    true
}

/// Steps a received message into Raft, or drops it (logged) when it is for
/// another member; an error when the node is stopping.
pub(crate) fn deliver<O: Send + 'static>(
    node: &Node<O>,
    me: u64,
    msg: Message,
) -> crate::error::Result<()> {
    if msg.to != me {
        tracing::warn!(
            to = format!("{:x}", msg.to),
            "message for another member dropped"
        );
        return Ok(());
    }
    node.step(msg)
}

#[tonic::async_trait]
impl<O: Send + 'static> Peer for PeerService<O> {
    async fn raft(
        &self,
        request: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<SendResponse>, Status> {
        let mut stream = request.into_inner();
        while let Some(batch) = stream.message().await? {
            self.check_cluster(batch.cluster_id, batch.from)?;
            if self.filter.is_blocked(batch.from) {
                continue;
            }
            self.check_removed(batch.from)?;
            for m in batch.messages {
                let msg = Message::parse_from_bytes(&m.data)
                    .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))?;
                if deliver(&self.node, self.me, msg).is_err() {
                    return Err(Status::unavailable("member is stopping"));
                }
            }
        }
        Ok(Response::new(SendResponse {}))
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotResponse>, Status> {
        let _one = self
            .receiving
            .clone()
            .try_lock_owned()
            .map_err(|_| Status::unavailable("already receiving a snapshot"))?;
        let mut stream = request.into_inner();
        let Some(head) = stream.message().await? else {
            return Err(Status::invalid_argument("empty snapshot stream"));
        };
        self.check_cluster(head.cluster_id, head.from)?;
        self.check_removed(head.from)?;
        if self.filter.is_blocked(head.from) {
            return Err(Status::unavailable("link cut"));
        }
        let msg = Message::parse_from_bytes(&head.raft_metadata)
            .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))?;
        if msg.get_msg_type() != MessageType::MsgSnapshot || msg.to != self.me {
            return Err(Status::invalid_argument("not a snapshot for this member"));
        }
        let meta = msg.get_snapshot().get_metadata();
        let (term, index) = (meta.term, meta.index);
        let part = self.snaps.part_path(term, index);
        let mut file = tokio::fs::File::create(&part).await.map_err(io_status)?;
        let mut received = 0u64;
        let mut done = false;
        while let Some(chunk) = stream.message().await? {
            if chunk.offset != received {
                return Err(Status::invalid_argument(format!(
                    "snapshot chunk at offset {} after {received} bytes",
                    chunk.offset
                )));
            }
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk.data)
                .await
                .map_err(io_status)?;
            received += chunk.data.len() as u64;
            if chunk.last {
                done = true;
                break;
            }
        }
        if !done {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(Status::aborted("snapshot stream ended early"));
        }
        drop(file);
        // Check the image before Raft hears of it, then make it durable.
        let check = part.clone();
        let summary = tokio::task::spawn_blocking(move || {
            crate::mvcc::verify_image(&mut std::fs::File::open(&check)?)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        if let Err(e) = summary {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(Status::data_loss(e.to_string()));
        }
        let snaps = self.snaps.clone();
        tokio::task::spawn_blocking(move || snaps.commit_part(term, index))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        self.metrics.snapshot_receive_success.inc();
        tracing::info!(
            from = format!("{:x}", head.from),
            index,
            term,
            bytes = received,
            "snapshot received"
        );
        if self.node.step(msg).is_err() {
            return Err(Status::unavailable("member is stopping"));
        }
        Ok(Response::new(SnapshotResponse { received }))
    }
}
