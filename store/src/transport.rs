//! Peer transport: Raft messages between members over tonic streams.
//!
//! Sending: one task per peer holds a client-streaming `keel.peer.Peer/Raft`
//! call open and writes every queued message into it, several per batch. When
//! the call fails the task reports the peer unreachable to Raft, backs off, and
//! reconnects; messages queued meanwhile are dropped (Raft resends what matters).
//! The driver never blocks on the network: it only `try_send`s into the
//! per-peer queue.
//!
//! Receiving: [`PeerService`] checks each batch's cluster id (a member of another
//! cluster is refused with a clear status) and hands the messages to the node.
//! A member removed from the cluster is refused with "the member has been
//! permanently removed from the cluster"; its sender, told so, marks itself
//! removed (and stops), as etcd's rafthttp does.
//!
//! Peers follow the member list: the sender side compares the
//! [`Membership`]'s version on every send and starts a task for each new
//! peer, restarts it when its peer URLs changed, and drops it when the peer
//! left. [`Activity`] records since when each peer's stream has been up
//! (etcd's `ActiveSince`), for the strict reconfiguration checks.
//!
//! Faults for tests: a [`LinkFilter`] shared by both directions drops traffic to
//! and from blocked peers. The binary exposes it only with the hidden
//! `--unsafe-fault-hooks` flag (see `http.rs`).
//!
//! Left out here: snapshot streaming (the `Snapshot` RPC) and TLS.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use keel_proto::peer::peer_client::PeerClient;
use keel_proto::peer::peer_server::Peer;
use keel_proto::peer::{RaftBatch, RaftMessage, SendResponse, SnapshotChunk, SnapshotResponse};
use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::consensus::driver::Outbox;
use crate::consensus::Node;
use crate::error::Error;
use crate::membership::Membership;

/// Peers whose links are cut (test hook). Empty in production.
#[derive(Debug, Default)]
pub struct LinkFilter {
    blocked: RwLock<HashSet<u64>>,
}

impl LinkFilter {
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
    pub fn heal(&self) {
        self.blocked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
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

    fn set(&self, peer: u64, up: bool) {
        let mut since = self.since.write().unwrap_or_else(|e| e.into_inner());
        if up {
            since.entry(peer).or_insert_with(Instant::now);
        } else {
            since.remove(&peer);
        }
    }
}

/// Starts the task that sends to one peer.
type Spawner = Box<dyn Fn(u64, Vec<String>, mpsc::Receiver<Message>) + Send>;

/// The sending side: one queue per peer, following the member list.
pub struct PeerTransport {
    /// Each peer's URLs and queue.
    queues: HashMap<u64, (Vec<String>, mpsc::Sender<Message>)>,
    membership: Arc<Membership>,
    /// The membership version the queues were last matched against.
    seen: u64,
    filter: Arc<LinkFilter>,
    unreachable: Box<dyn Fn(u64) + Send>,
    spawn: Spawner,
}

const QUEUE_DEPTH: usize = 4096;

impl PeerTransport {
    /// Starts one sender task per peer the member list (or its remotes)
    /// names. Must be called from within the tokio runtime; the tasks of
    /// later peers are started on the same runtime.
    pub fn start<O: Send + 'static>(
        cluster_id: u64,
        me: u64,
        node: Node<O>,
        filter: Arc<LinkFilter>,
        membership: Arc<Membership>,
        activity: Arc<Activity>,
    ) -> PeerTransport {
        let runtime = tokio::runtime::Handle::current();
        let n = node.clone();
        let m = membership.clone();
        let spawn: Spawner = Box::new(move |id, urls, rx| {
            let link = Link {
                cluster_id,
                me,
                peer: id,
                node: n.clone(),
                activity: activity.clone(),
                membership: m.clone(),
            };
            runtime.spawn(peer_loop(link, urls, rx));
        });
        let mut t = PeerTransport {
            queues: HashMap::new(),
            membership,
            seen: 0,
            filter,
            unreachable: Box::new(move |id| node.report_unreachable(id)),
            spawn,
        };
        t.follow_members();
        t
    }

    /// Matches the queues to the member list when it changed.
    fn follow_members(&mut self) {
        let version = self.membership.version();
        if version == self.seen {
            return;
        }
        self.seen = version;
        let want = self.membership.peers();
        self.queues.retain(|id, (urls, _)| {
            let keep = want.get(id) == Some(urls);
            if !keep {
                tracing::info!(
                    peer = format!("{id:x}"),
                    "peer stream closed (member removed or its URLs changed)"
                );
            }
            keep
        });
        for (id, urls) in want {
            if self.queues.contains_key(&id) || urls.is_empty() {
                continue;
            }
            let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
            (self.spawn)(id, urls.clone(), rx);
            self.queues.insert(id, (urls, tx));
        }
    }
}

impl Outbox for PeerTransport {
    fn send(&mut self, msgs: Vec<Message>) {
        self.follow_members();
        for m in msgs {
            let to = m.to;
            if self.filter.is_blocked(to) {
                continue;
            }
            match self.queues.get(&to) {
                Some((_, q)) => {
                    if q.try_send(m).is_err() {
                        (self.unreachable)(to);
                    }
                }
                None => {
                    tracing::debug!(to = format!("{to:x}"), "message to an unknown peer dropped")
                }
            }
        }
    }
}

/// What a peer's sender task needs.
struct Link<O> {
    cluster_id: u64,
    me: u64,
    peer: u64,
    node: Node<O>,
    activity: Arc<Activity>,
    membership: Arc<Membership>,
}

/// Keeps one stream to `peer` open, reconnecting with backoff.
async fn peer_loop<O: Send + 'static>(
    link: Link<O>,
    urls: Vec<String>,
    mut rx: mpsc::Receiver<Message>,
) {
    let Link {
        cluster_id,
        me,
        peer,
        node,
        activity,
        membership,
    } = link;
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 0usize;
    loop {
        if membership.local_removed() {
            // This member is stopping: no more reconnecting.
            if !drain_for(&mut rx, Duration::from_secs(1)).await {
                return;
            }
            continue;
        }
        let url = urls[attempt % urls.len()].clone();
        attempt += 1;
        let endpoint = match tonic::transport::Endpoint::from_shared(url.clone()) {
            Ok(e) => e
                .connect_timeout(Duration::from_millis(500))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5)),
            Err(e) => {
                tracing::error!(peer = format!("{peer:x}"), %url, error = %e, "bad peer URL");
                return;
            }
        };
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(peer = format!("{peer:x}"), %url, error = %e, "peer unreachable");
                node.report_unreachable(peer);
                if !drain_for(&mut rx, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        activity.set(peer, true);
        tracing::info!(peer = format!("{peer:x}"), %url, "peer stream connected");
        let mut client = PeerClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let (stx, srx) = mpsc::channel::<RaftBatch>(64);
        let mut call = tokio::spawn(async move { client.raft(ReceiverStream::new(srx)).await });
        loop {
            tokio::select! {
                first = rx.recv() => {
                    let Some(first) = first else { return };
                    let mut messages = vec![encode(&first)];
                    while messages.len() < 256 {
                        match rx.try_recv() {
                            Ok(m) => messages.push(encode(&m)),
                            Err(_) => break,
                        }
                    }
                    let batch = RaftBatch { cluster_id, from: me, messages };
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
                            membership.mark_removed();
                        }
                        Ok(Err(status)) => tracing::debug!(peer = format!("{peer:x}"), error = %status, "peer stream ended"),
                        _ => {}
                    }
                    break;
                }
            }
        }
        call.abort();
        activity.set(peer, false);
        node.report_unreachable(peer);
        if !drain_for(&mut rx, backoff).await {
            return;
        }
    }
}

fn encode(m: &Message) -> RaftMessage {
    RaftMessage {
        data: m.write_to_bytes().unwrap_or_default(),
    }
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
    membership: Arc<Membership>,
}

impl<O> PeerService<O> {
    pub fn new(
        cluster_id: u64,
        me: u64,
        node: Node<O>,
        filter: Arc<LinkFilter>,
        membership: Arc<Membership>,
    ) -> Self {
        PeerService {
            cluster_id,
            me,
            node,
            filter,
            membership,
        }
    }
}

#[tonic::async_trait]
impl<O: Send + 'static> Peer for PeerService<O> {
    async fn raft(
        &self,
        request: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<SendResponse>, Status> {
        let mut stream = request.into_inner();
        while let Some(batch) = stream.message().await? {
            if batch.cluster_id != self.cluster_id {
                tracing::warn!(
                    local = format!("{:x}", self.cluster_id),
                    remote = format!("{:x}", batch.cluster_id),
                    from = format!("{:x}", batch.from),
                    "request cluster ID mismatch"
                );
                return Err(Status::permission_denied(format!(
                    "request cluster ID mismatch (local {:x}, remote {:x})",
                    self.cluster_id, batch.cluster_id
                )));
            }
            if self.filter.is_blocked(batch.from) {
                continue;
            }
            if self.membership.is_removed(batch.from) {
                tracing::warn!(
                    from = format!("{:x}", batch.from),
                    "refused traffic from a removed member"
                );
                return Err(Status::failed_precondition(Error::Removed.to_string()));
            }
            for m in batch.messages {
                let msg = Message::parse_from_bytes(&m.data)
                    .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))?;
                if msg.to != self.me {
                    tracing::warn!(
                        to = format!("{:x}", msg.to),
                        "message for another member dropped"
                    );
                    continue;
                }
                if self.node.step(msg).is_err() {
                    return Err(Status::unavailable("member is stopping"));
                }
            }
        }
        Ok(Response::new(SendResponse {}))
    }

    async fn snapshot(
        &self,
        _request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotResponse>, Status> {
        Err(Status::unimplemented(
            "snapshot transfer comes with log compaction",
        ))
    }
}
