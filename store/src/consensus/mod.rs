//! Consensus: the one thread that owns raft-rs's `RawNode`, and the async handle
//! the rest of the store talks to.
//!
//! Shape (after raft-rs's `RawNode` examples and toydb's `Node`): a dedicated OS
//! thread runs [`driver::Driver`], the only code that touches the `RawNode`. It
//! ticks on a fixed heartbeat, steps peer messages, turns every queued client
//! proposal and read into Raft calls, then handles the resulting `Ready` in the
//! order raft-rs documents, with one durable flush of the log per `Ready`. The
//! thread never awaits; async callers reach it through an unbounded channel and
//! get answers on oneshots.
//!
//! Invariants:
//! - Proposals carry a request id chosen by [`Node`]; the state machine returns
//!   the id of each applied entry and the driver answers the waiter by id, never
//!   by order. Entries proposed by other members have ids nobody here waits for.
//! - Messages that depend on a write (`persisted_messages`) leave only after the
//!   flush that made the write durable.
//! - Raft types stay in this module and [`crate::transport`]; callers speak in
//!   bytes (the encoded request), [`ConfChange`] and the state machine's
//!   output type.
//! - A committed configuration change reaches Raft only if the state machine
//!   accepted it ([`StateMachine::apply_conf_change`]), so Raft's
//!   configuration always matches the replicated member list. Changes are
//!   simple (one member at a time, ConfChangeV2 without joint consensus), as
//!   etcd 3.4 makes them.
//!
//! Log truncation and snapshots: see [`snapshot`] (the driver truncates the
//! log after `--snapshot-count` entries and installs snapshots raft-rs hands
//! it).

pub mod driver;
pub mod lease;
pub mod logger;
pub mod snapshot;
pub mod spin;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// What the driver needs from the replicated state machine. Implemented by
/// [`crate::apply::Applier`]; tests can use a trivial one.
pub trait StateMachine: Send + 'static {
    /// What a waiter receives when its entry is applied.
    type Output: Send + 'static;

    /// Applies one committed normal entry carrying `data`. Returns the request id
    /// found in it (0 if none) and the output for its waiter.
    fn apply(&mut self, index: u64, term: u64, data: &[u8]) -> (u64, Self::Output);

    /// Applies one committed change of Raft's configuration. Returns the
    /// request id found in its context (0 if none), the output for its waiter,
    /// and whether Raft must take the change: false when the state machine
    /// refused it (unknown member, duplicate URLs...), so that Raft's
    /// configuration never differs from the state machine's member list.
    fn apply_conf_change(&mut self, index: u64, change: &ConfChange) -> (u64, Self::Output, bool);

    /// Records that the entry at `index` carried nothing to apply (a new leader's
    /// empty entry).
    fn skip(&mut self, index: u64);

    /// The index of the last applied entry.
    fn applied_index(&self) -> u64;

    /// Replaces the whole state with the image in `image` (a Raft snapshot
    /// being installed); afterwards `applied_index` is the image's.
    fn restore(&mut self, image: &std::path::Path) -> Result<()>;

    /// Ends a batch of applied entries: the driver calls it at the end of
    /// every run of `apply`, `apply_conf_change` and `skip` calls (the
    /// committed entries of one `Ready`), error paths included, and on every
    /// tick. A state machine may hold its writes back (group commit), within
    /// its own bounds of size and age, since the Raft log keeps the entries
    /// until the state machine's writes are durable; an error means some
    /// were lost and is fatal. The default does nothing.
    fn end_batch(&mut self) -> Result<()> {
        Ok(())
    }

    /// Writes whatever [`StateMachine::end_batch`] held back (the driver
    /// calls it when it stops). The default does nothing.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// What a configuration change does to Raft's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfChangeKind {
    /// Adds a voter, or promotes a learner to one.
    AddVoter,
    AddLearner,
    Remove,
}

/// A change of Raft's configuration, in keel's terms: the driver proposes it
/// as a raft-rs ConfChangeV2 with one change and `context` as its context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfChange {
    pub kind: ConfChangeKind,
    pub node: u64,
    pub context: Vec<u8>,
}

/// The leader's view of replication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replication {
    /// The leader (this member).
    pub leader: u64,
    /// Each member's highest log index known to match the leader's log
    /// (voters and learners, the leader included).
    pub matched: BTreeMap<u64, u64>,
}

/// What `keelctl inspect raft` shows of this member (see the driver's
/// `report`).
pub type RaftReport = keel_proto::admin::RaftStatusResponse;

/// A message to the driver thread.
pub(crate) enum Command<O> {
    Propose {
        id: u64,
        data: Vec<u8>,
        deadline: Instant,
        reply: oneshot::Sender<Result<O>>,
    },
    ProposeConfChange {
        id: u64,
        change: ConfChange,
        deadline: Instant,
        reply: oneshot::Sender<Result<O>>,
    },
    /// Replication progress, answered only by the leader (else `None`).
    Replication(oneshot::Sender<Option<Replication>>),
    /// This member's Raft state, for the admin API.
    Report(oneshot::Sender<RaftReport>),
    ReadIndex {
        deadline: Instant,
        reply: oneshot::Sender<Result<u64>>,
    },
    Step(Box<raft::eraftpb::Message>),
    Unreachable(u64),
    ReportSnapshot {
        to: u64,
        ok: bool,
    },
    TransferLeader(u64),
    Campaign,
    Stop,
}

impl<O> Command<O> {
    /// A client's proposal or read (what the spin policy counts per wake-up).
    pub(crate) fn is_request(&self) -> bool {
        matches!(self, Command::Propose { .. } | Command::ReadIndex { .. })
    }
}

/// Live facts about this member, shared with services and metrics. Written only
/// by the driver.
#[derive(Debug, Default)]
pub struct Status {
    pub term: AtomicU64,
    pub leader: AtomicU64,
    pub is_leader: AtomicBool,
    pub commit_index: AtomicU64,
    pub applied_index: AtomicU64,
    pub leader_changes: AtomicU64,
    /// How long a lone request's task may poll for its reply before it parks,
    /// in nanoseconds; 0: it parks at once (set by the driver, see [`spin`]).
    pub reply_spin_nanos: AtomicU64,
    /// Client requests waiting for their reply from the driver.
    pub waiting: std::sync::atomic::AtomicUsize,
}

impl Status {
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Relaxed)
    }
    pub fn leader(&self) -> u64 {
        self.leader.load(Ordering::Relaxed)
    }
    pub fn has_leader(&self) -> bool {
        self.leader() != 0
    }
    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Relaxed)
    }
}

/// The async handle to the driver thread. Cheap to clone.
pub struct Node<O> {
    tx: crossbeam_channel::Sender<Command<O>>,
    status: Arc<Status>,
    ids: Arc<IdGenerator>,
    request_timeout: Duration,
    retry_every: Duration,
}

impl<O> Clone for Node<O> {
    fn clone(&self) -> Self {
        Node {
            tx: self.tx.clone(),
            status: self.status.clone(),
            ids: self.ids.clone(),
            request_timeout: self.request_timeout,
            retry_every: self.retry_every,
        }
    }
}

/// Creates a node handle and the receiving end its driver reads from.
pub(crate) fn channel<O>(
    member_id: u64,
    request_timeout: Duration,
    retry_every: Duration,
) -> (Node<O>, crossbeam_channel::Receiver<Command<O>>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let node = Node {
        tx,
        status: Arc::new(Status::default()),
        ids: Arc::new(IdGenerator::new(member_id)),
        request_timeout,
        retry_every,
    };
    (node, rx)
}

impl<O: Send + 'static> Node<O> {
    /// Live status of this member.
    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    /// A fresh request id, unique across members.
    pub fn next_id(&self) -> u64 {
        self.ids.next()
    }

    /// Proposes `data` (an encoded request carrying `id`) and waits until the entry
    /// is applied here. While there is no leader the proposal is retried until
    /// the request timeout; then "request timed out".
    pub async fn propose(&self, id: u64, data: Vec<u8>) -> Result<O> {
        self.propose_with(|deadline, reply| Command::Propose {
            id,
            data: data.clone(),
            deadline,
            reply,
        })
        .await
    }

    /// Proposes a change of Raft's configuration (carrying request `id` in its
    /// context) and waits until it is applied here, with the retries of
    /// [`Node::propose`]. Raft ignores a change proposed while another is not
    /// yet applied: the waiter then times out, as with etcd.
    pub async fn propose_conf_change(&self, id: u64, change: ConfChange) -> Result<O> {
        self.propose_with(|deadline, reply| Command::ProposeConfChange {
            id,
            change: change.clone(),
            deadline,
            reply,
        })
        .await
    }

    async fn propose_with(
        &self,
        command: impl Fn(Instant, oneshot::Sender<Result<O>>) -> Command<O>,
    ) -> Result<O> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let (reply, rx) = oneshot::channel();
            self.send(command(deadline, reply))?;
            match spin::wait_reply(rx, &self.status)
                .await
                .ok_or(Error::Stopped)?
            {
                Err(Error::NoLeader) if Instant::now() + self.retry_every < deadline => {
                    tokio::time::sleep(self.retry_every).await;
                }
                Err(Error::NoLeader) => return Err(Error::Timeout),
                other => return other,
            }
        }
    }

    /// Waits until this member has applied everything committed at the moment of
    /// the call, confirmed by a quorum (Raft's ReadIndex); returns that index.
    pub async fn read_index(&self) -> Result<u64> {
        let deadline = Instant::now() + self.request_timeout;
        let (reply, rx) = oneshot::channel();
        self.send(Command::ReadIndex { deadline, reply })?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// The leader's replication progress; `None` when this member is not the
    /// leader.
    pub async fn replication(&self) -> Result<Option<Replication>> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Replication(reply))?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// This member's Raft state (and on the leader every member's progress).
    pub async fn raft_report(&self) -> Result<RaftReport> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Report(reply))?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Hands messages received from a peer to Raft.
    pub fn step(&self, msg: raft::eraftpb::Message) -> Result<()> {
        self.send(Command::Step(Box::new(msg)))
    }

    /// Tells Raft a peer could not be reached.
    pub fn report_unreachable(&self, peer: u64) {
        let _ = self.send(Command::Unreachable(peer));
    }

    /// Tells Raft how sending a snapshot to `to` ended.
    pub fn report_snapshot(&self, to: u64, ok: bool) {
        let _ = self.send(Command::ReportSnapshot { to, ok });
    }

    /// Asks the leader to hand leadership to `to`.
    pub fn transfer_leader(&self, to: u64) -> Result<()> {
        self.send(Command::TransferLeader(to))
    }

    /// Starts an election at once (tests and single-member start-up).
    pub fn campaign(&self) -> Result<()> {
        self.send(Command::Campaign)
    }

    /// Stops the driver thread.
    pub fn stop(&self) {
        let _ = self.tx.send(Command::Stop);
    }

    fn send(&self, c: Command<O>) -> Result<()> {
        self.tx.send(c).map_err(|_| Error::Stopped)
    }
}

/// Request ids: the member id's low 16 bits, then a counter started from the
/// clock, so ids stay unique across members and restarts (etcd's idutil idea).
#[derive(Debug)]
pub struct IdGenerator {
    prefix: u64,
    counter: AtomicU64,
}

impl IdGenerator {
    pub fn new(member_id: u64) -> Self {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        IdGenerator {
            prefix: (member_id & 0xffff) << 48,
            counter: AtomicU64::new((now_ms & 0xff_ffff_ffff) << 8),
        }
    }

    pub fn next(&self) -> u64 {
        let c = self.counter.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff_ffff;
        (self.prefix | c).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_carry_the_member() {
        let g = IdGenerator::new(0xabcd_0000_0000_1234);
        let a = g.next();
        let b = g.next();
        assert_ne!(a, b);
        assert_eq!(a >> 48, 0x1234);
        let other = IdGenerator::new(0x5678);
        assert_ne!(other.next() >> 48, a >> 48);
    }
}
