//! The driver loop: the only owner of the `RawNode`.
//!
//! One iteration: wait for a command or the next tick (spinning first when
//! recent waits were short, few requests came at once, and what is awaited
//! is quick: [`super::spin`]); drain every queued command (so many
//! proposals become one `Ready`); tick when due; issue one
//! ReadIndex for all reads queued since the last one; then handle the `Ready` in
//! raft-rs's documented order, except that a follower applies after step 4:
//!
//! 1. send the leader's messages (they do not depend on our own write);
//! 2. apply committed entries (already durable here) — a leader only: its
//!    replies then need not wait for its fsync, while a follower's append
//!    response need not wait for its apply;
//! 3. append new entries, write the hard state; ONE flush (fsync) for both,
//!    and only when Raft needs it (`must_sync`: new entries, a snapshot, a new
//!    term or vote) or a conf state was recorded. A hard state that moved only
//!    its commit index is written but not synced on its own: it reaches the
//!    disk with the next sync, and a restart that finds it behind takes the
//!    applied index as the commit (etcd's `MustSync` does the same);
//! 4. send the persisted messages (votes, append responses), now safe;
//! 5. `advance`; record the new commit index; send its messages; apply its
//!    committed entries; `advance_apply`.
//!
//! Waiters: proposals wait by request id; reads wait for their ReadIndex reply,
//! then for `applied >= index`. A leader whose read lease holds answers
//! ReadIndex requests, its own and its followers', with its commit index at
//! once (see [`super::lease`]; the driver records the rounds the lease is
//! built from, and ignores vote requests for a while after a restart). Every waiter has a deadline checked on each tick;
//! a proposal made in an older term fails with "leader changed" when the term
//! moves on (its entry may or may not commit: the caller must treat that as
//! unknown, as with etcd).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft::eraftpb::{
    ConfChange as RaftConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType,
    Message, MessageType,
};
use raft::{RawNode, StateRole};
use tokio::sync::oneshot;

use super::lease::{LeaseRules, ReadLease};
use super::snapshot::{self, SnapDir};
use super::spin::Spin;
use super::{Command, ConfChange, ConfChangeKind, Replication, StateMachine, Status};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::raftlog::RaftStorage;

/// Where the driver sends Raft messages. Implemented by the peer transport.
pub trait Outbox: Send + 'static {
    fn send(&mut self, msgs: Vec<Message>);
}

struct ProposalWaiter<O> {
    term: u64,
    deadline: Instant,
    reply: oneshot::Sender<Result<O>>,
}

struct ReadWaiter {
    deadline: Instant,
    reply: oneshot::Sender<Result<u64>>,
}

/// Owns the `RawNode` and everything waiting on it.
pub struct Driver<SM: StateMachine, T: Outbox> {
    raw: RawNode<RaftStorage>,
    sm: SM,
    outbox: T,
    rx: crossbeam_channel::Receiver<Command<SM::Output>>,
    status: Arc<Status>,
    metrics: Arc<Metrics>,
    heartbeat: Duration,
    proposals: HashMap<u64, ProposalWaiter<SM::Output>>,
    queued_reads: Vec<ReadWaiter>,
    /// ReadIndex requests sent to Raft, by context, with when they were sent.
    inflight_reads: HashMap<u64, (Instant, Vec<ReadWaiter>)>,
    /// Reads whose index is known, waiting for apply to reach it.
    reads_by_index: BTreeMap<u64, Vec<ReadWaiter>>,
    next_read_ctx: u64,
    last_leader: u64,
    last_term: u64,
    snap_dir: SnapDir,
    log: LogRetention,
    spin: Spin,
    /// A conf state was recorded since the last sync: the next `Ready` syncs
    /// even if Raft does not ask for it (the state machine records the
    /// membership with the entry's index, so the two must not disagree
    /// after a crash).
    conf_unsynced: bool,
    /// The leader's read lease (see [`super::lease`]).
    lease: ReadLease,
    /// Until when vote requests are ignored: a restarted member has
    /// forgotten the lease it granted (see [`super::lease`]).
    quiet_until: Instant,
}

/// When to truncate the Raft log (etcd's `--snapshot-count` and
/// `--experimental-snapshot-catchup-entries`).
#[derive(Debug, Clone, Copy)]
pub struct LogRetention {
    /// Truncate once this many entries were applied since the last time.
    pub snapshot_count: u64,
    /// Entries kept behind the applied index for slow followers.
    pub catchup_entries: u64,
    /// Test hook: abort halfway through installing a snapshot.
    pub crash_in_install: bool,
}

impl<SM: StateMachine, T: Outbox> Driver<SM, T> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        raw: RawNode<RaftStorage>,
        sm: SM,
        outbox: T,
        rx: crossbeam_channel::Receiver<Command<SM::Output>>,
        status: Arc<Status>,
        metrics: Arc<Metrics>,
        heartbeat: Duration,
        snap_dir: SnapDir,
        log: LogRetention,
    ) -> Self {
        Driver {
            snap_dir,
            log,
            raw,
            sm,
            outbox,
            rx,
            status,
            metrics,
            heartbeat,
            proposals: HashMap::new(),
            queued_reads: Vec::new(),
            inflight_reads: HashMap::new(),
            reads_by_index: BTreeMap::new(),
            next_read_ctx: 1,
            last_leader: 0,
            last_term: 0,
            spin: Spin::new(Duration::ZERO),
            conf_unsynced: false,
            lease: ReadLease::new(None),
            quiet_until: Instant::now(),
        }
    }

    /// Lets the leader answer ReadIndex requests from a lease (see
    /// [`super::lease`]). A member that restarts (its log holds a term: it
    /// may have granted a lease before) ignores vote requests for the
    /// rules' quiet time from now on; a new member has granted none.
    pub(crate) fn with_read_lease(mut self, rules: Option<LeaseRules>) -> Self {
        self.lease = ReadLease::new(rules);
        if let Some(r) = rules.filter(|_| self.raw.raft.term > 0) {
            self.quiet_until = Instant::now() + r.restart_quiet;
        }
        self
    }

    /// Lets the driver spin on its queue for up to `limit` before sleeping
    /// (see [`super::spin`]).
    pub(crate) fn with_spin(mut self, limit: Duration) -> Self {
        self.spin = Spin::new(limit);
        self
    }

    /// Waits up to `wait` for the next command: when it is due soon (see
    /// below), first by spinning (if recent waits were short), then asleep
    /// on the queue.
    fn next_command(
        &mut self,
        wait: Duration,
    ) -> std::result::Result<Command<SM::Output>, crossbeam_channel::RecvTimeoutError> {
        // A leader spins while it waits for a client's next request or for
        // the heartbeat replies of a ReadIndex (a short round trip). A
        // proposal in flight waits for the followers' fsyncs: too long to
        // watch, and followers sharing the machine need the CPU for them.
        // A follower spins only while it waits for the leader's answer to a
        // ReadIndex (the same round trip, one hop longer).
        let spin = if self.raw.raft.state == StateRole::Leader {
            self.proposals.is_empty()
        } else {
            !self.inflight_reads.is_empty()
        };
        if !spin {
            return self.rx.recv_timeout(wait);
        }
        let started = Instant::now();
        let polite = !self.sole_voter();
        let got = match Spin::poll(&self.rx, self.spin.budget().min(wait), polite) {
            Some(cmd) => Ok(cmd),
            None => self.rx.recv_timeout(wait.saturating_sub(started.elapsed())),
        };
        self.spin.observe(started.elapsed());
        got
    }

    /// Runs until `Command::Stop` or every handle is dropped. A storage error is
    /// fatal: the member stops rather than run on a log it cannot trust.
    pub fn run(mut self) -> Result<()> {
        let mut next_tick = Instant::now() + self.heartbeat;
        self.publish_status();
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.next_command(wait) {
                Ok(cmd) => {
                    let mut requests = usize::from(cmd.is_request());
                    if !self.handle(cmd) {
                        break;
                    }
                    // Drain what else is queued: one Ready for all of it.
                    let mut stop = false;
                    for _ in 0..8192 {
                        match self.rx.try_recv() {
                            Ok(cmd) => {
                                requests += usize::from(cmd.is_request());
                                if !self.handle(cmd) {
                                    stop = true;
                                    break;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                    if stop {
                        break;
                    }
                    if requests > 0 {
                        self.spin.observe_batch(requests);
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                next_tick = now + self.heartbeat;
                self.expire(now);
                // Writes the state machine held back past their age.
                self.sm.end_batch()?;
            }
            self.check_lease();
            self.issue_reads();
            // Advancing can make more ready (e.g. entries committed by the
            // persist just done on a single member): handle it before sleeping.
            for _ in 0..16 {
                if !self.raw.has_ready() {
                    break;
                }
                self.on_ready()?;
            }
        }
        self.fail_all(Error::Stopped);
        self.sm.flush()
    }

    /// Handles one command; false means stop.
    fn handle(&mut self, cmd: Command<SM::Output>) -> bool {
        match cmd {
            Command::Propose {
                id,
                data,
                deadline,
                reply,
            } => {
                let r = self.raw.propose(vec![], data);
                self.wait_for(r, id, deadline, reply);
            }
            Command::ProposeConfChange {
                id,
                change,
                deadline,
                reply,
            } => {
                let r = self.raw.propose_conf_change(vec![], to_raft(&change));
                self.wait_for(r, id, deadline, reply);
            }
            Command::Replication(reply) => {
                let _ = reply.send(self.replication());
            }
            Command::Report(reply) => {
                let _ = reply.send(self.report());
            }
            Command::ReadIndex { deadline, reply } => {
                self.queued_reads.push(ReadWaiter { deadline, reply });
            }
            Command::Step(m) => self.step(*m),
            Command::Unreachable(peer) => self.raw.report_unreachable(peer),
            Command::ReportSnapshot { to, ok } => {
                let status = if ok {
                    raft::SnapshotStatus::Finish
                } else {
                    raft::SnapshotStatus::Failure
                };
                self.raw.report_snapshot(to, status);
            }
            Command::TransferLeader(to) => self.raw.transfer_leader(to),
            Command::Campaign => {
                if let Err(e) = self.raw.campaign() {
                    tracing::warn!(error = %e, "campaign failed");
                }
            }
            Command::Stop => return false,
        }
        true
    }

    /// Steps a peer's message into Raft, except for what the read lease
    /// handles itself (see [`super::lease`]): a follower's ReadIndex the
    /// lease answers, and vote requests in a restarted member's quiet time.
    fn step(&mut self, mut m: Message) {
        if self.lease.enabled() {
            match m.get_msg_type() {
                MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
                    if m.context != raft::CAMPAIGN_TRANSFER
                        && Instant::now() < self.quiet_until =>
                {
                    tracing::debug!(
                        from = format!("{:x}", m.from),
                        term = m.term,
                        "ignored a vote request: this member started less than an election timeout ago"
                    );
                    return;
                }
                MessageType::MsgReadIndex
                    if self.raw.raft.state == StateRole::Leader && m.from != self.raw.raft.id =>
                {
                    let now = Instant::now();
                    if self.lease_holds(now) {
                        let r = &self.raw.raft;
                        let mut answer = Message::default();
                        answer.set_msg_type(MessageType::MsgReadIndexResp);
                        answer.from = r.id;
                        answer.to = m.from;
                        answer.term = r.term;
                        answer.index = r.raft_log.committed;
                        answer.set_entries(m.take_entries());
                        self.metrics.read_index_leased.inc();
                        self.outbox.send(vec![answer]);
                        self.renew_lease(now);
                        return;
                    }
                    if let Some(e) = m.entries.first() {
                        let term = self.raw.raft.term;
                        self.lease.round_started(m.from, &e.data, term, now);
                    }
                }
                _ => {}
            }
        }
        if let Err(e) = self.raw.step(m) {
            tracing::debug!(error = %e, "dropped a peer message");
        }
    }

    /// Whether the lease lets this member answer a ReadIndex alone now: it
    /// leads, hands the leadership to no one, has committed an entry of its
    /// term, and a round confirmed it less than a lease ago.
    fn lease_holds(&self, now: Instant) -> bool {
        let r = &self.raw.raft;
        r.state == StateRole::Leader
            && r.lead_transferee.is_none()
            && self.lease.holds(r.term, now)
            && r.commit_to_current_term()
    }

    /// Ends the lease once this member stops leading or starts handing the
    /// leadership over (checked on every turn of the loop: a transfer starts
    /// in a step and is abandoned at the earliest an election timeout later).
    fn check_lease(&mut self) {
        if !self.lease.enabled() {
            return;
        }
        let r = &self.raw.raft;
        if r.state != StateRole::Leader || r.lead_transferee.is_some() {
            self.lease.revoke();
        }
    }

    /// Starts a round of our own when the lease is in its second half, so
    /// that reads keep being answered alone while it renews.
    fn renew_lease(&mut self, now: Instant) {
        let term = self.raw.raft.term;
        if !self.lease.needs_renewal(term, now) {
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        let bytes = ctx.to_be_bytes();
        self.lease
            .renewal_started(self.raw.raft.id, &bytes, term, now);
        self.raw.read_index(bytes.to_vec());
    }

    /// Sends messages, first noting the ReadIndex answers Raft gives
    /// followers: each one confirms a lease round.
    fn send_messages(&mut self, msgs: Vec<Message>) {
        let r = &self.raw.raft;
        if self.lease.awaiting() && r.state == StateRole::Leader && r.lead_transferee.is_none() {
            let term = r.term;
            for m in &msgs {
                if m.get_msg_type() == MessageType::MsgReadIndexResp {
                    if let Some(e) = m.entries.first() {
                        self.lease.round_confirmed(m.to, &e.data, term);
                    }
                }
            }
        }
        self.outbox.send(msgs);
    }

    /// Registers the waiter of a proposal Raft took, or answers it at once.
    fn wait_for(
        &mut self,
        proposed: raft::Result<()>,
        id: u64,
        deadline: Instant,
        reply: oneshot::Sender<Result<SM::Output>>,
    ) {
        match proposed {
            Ok(()) => {
                self.metrics.proposals_pending.inc();
                let term = self.raw.raft.term;
                self.proposals.insert(
                    id,
                    ProposalWaiter {
                        term,
                        deadline,
                        reply,
                    },
                );
            }
            Err(raft::Error::ProposalDropped) => {
                let _ = reply.send(Err(Error::NoLeader));
            }
            Err(e) => {
                self.metrics.proposals_failed.inc();
                let _ = reply.send(Err(Error::Raft(e)));
            }
        }
    }

    /// The leader's progress of every member; `None` on a non-leader.
    fn replication(&self) -> Option<Replication> {
        if self.raw.raft.state != StateRole::Leader {
            return None;
        }
        Some(Replication {
            leader: self.raw.raft.id,
            matched: self
                .raw
                .raft
                .prs()
                .iter()
                .map(|(id, pr)| (*id, pr.matched))
                .collect(),
        })
    }

    /// This member's Raft state for the admin API.
    fn report(&self) -> super::RaftReport {
        use keel_proto::admin::Progress;
        use raft::ProgressState;
        let r = &self.raw.raft;
        let first_index = self.raw.store().first_index();
        let learners = r.prs().conf().learners();
        let progress = if r.state == StateRole::Leader {
            r.prs()
                .iter()
                .map(|(id, pr)| Progress {
                    id: *id,
                    r#match: pr.matched,
                    next: pr.next_idx,
                    state: match pr.state {
                        ProgressState::Probe => "probe",
                        ProgressState::Replicate => "replicate",
                        ProgressState::Snapshot => "snapshot",
                    }
                    .into(),
                    inflight: pr.ins.count() as u64,
                    paused: pr.paused,
                    recent_active: pr.recent_active,
                    pending_snapshot: pr.pending_snapshot,
                    is_learner: learners.contains(id),
                })
                .collect()
        } else {
            Vec::new()
        };
        super::RaftReport {
            member_id: r.id,
            role: format!("{:?}", r.state)
                .to_lowercase()
                .replace("precandidate", "pre-candidate"),
            term: r.term,
            leader: r.leader_id,
            commit: r.raft_log.committed,
            applied: r.raft_log.applied,
            first_index,
            last_index: r.raft_log.last_index(),
            snapshot_index: first_index.saturating_sub(1),
            pending_proposals: self.proposals.len() as u64,
            pending_reads: (self.queued_reads.len()
                + self
                    .inflight_reads
                    .values()
                    .map(|(_, w)| w.len())
                    .sum::<usize>()
                + self.reads_by_index.values().map(Vec::len).sum::<usize>())
                as u64,
            progress,
        }
    }

    /// One ReadIndex for every read queued since the last one; on a leader
    /// whose lease holds, none: the reads take its commit index.
    fn issue_reads(&mut self) {
        if self.queued_reads.is_empty() {
            return;
        }
        let now = Instant::now();
        if self.lease.enabled() && self.lease_holds(now) {
            let index = self.raw.raft.raft_log.committed;
            let batch = std::mem::take(&mut self.queued_reads);
            self.metrics.read_index_leased.inc();
            self.reads_known(index, batch);
            self.renew_lease(now);
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        let bytes = ctx.to_be_bytes();
        if self.raw.raft.state == StateRole::Leader {
            let term = self.raw.raft.term;
            self.lease
                .round_started(self.raw.raft.id, &bytes, term, now);
        }
        self.raw.read_index(bytes.to_vec());
        let batch = std::mem::take(&mut self.queued_reads);
        self.inflight_reads.insert(ctx, (now, batch));
    }

    /// Deadlines; ReadIndex requests Raft dropped (no leader yet, or a new leader
    /// that has not committed in its term) are sent again.
    fn expire(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .proposals
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(w) = self.proposals.remove(&id) {
                self.metrics.proposals_pending.dec();
                self.metrics.proposals_failed.inc();
                let _ = w.reply.send(Err(Error::Timeout));
            }
        }
        let retry_after = self.heartbeat * 3;
        let stale: Vec<u64> = self
            .inflight_reads
            .iter()
            .filter(|(_, (sent, _))| now.duration_since(*sent) >= retry_after)
            .map(|(ctx, _)| *ctx)
            .collect();
        for ctx in stale {
            if let Some((_, waiters)) = self.inflight_reads.remove(&ctx) {
                for w in waiters {
                    if w.deadline <= now {
                        let _ = w.reply.send(Err(Error::Timeout));
                    } else {
                        self.queued_reads.push(w);
                    }
                }
            }
        }
        for waiters in self.reads_by_index.values_mut() {
            let (dead, live): (Vec<_>, Vec<_>) = std::mem::take(waiters)
                .into_iter()
                .partition(|w| w.deadline <= now);
            for w in dead {
                let _ = w.reply.send(Err(Error::Timeout));
            }
            *waiters = live;
        }
        self.reads_by_index.retain(|_, v| !v.is_empty());
    }

    fn on_ready(&mut self) -> Result<()> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let began = Instant::now();
        let mut ready = self.raw.ready();
        if !ready.messages().is_empty() {
            self.send_messages(ready.take_messages());
        }
        if !ready.snapshot().is_empty() {
            // Before anything after it: the state it brings, then its metadata.
            let snap = ready.snapshot().clone();
            let store = self.raw.store().clone();
            let sm = &mut self.sm;
            let crash = self.log.crash_in_install;
            snapshot::install(&self.snap_dir, &snap, &store, |image| {
                sm.restore(image)?;
                if crash {
                    tracing::error!("--unsafe-crash-in-snapshot-install: aborting mid-install");
                    std::process::abort();
                }
                Ok(())
            })?;
            self.metrics.snapshots_installed.inc();
        }
        if !ready.read_states().is_empty() {
            for rs in ready.take_read_states() {
                self.on_read_state(rs.request_ctx, rs.index);
            }
        }
        // A leader applies first: its followers have its entries already,
        // and the replies to its clients need not wait for its fsync. A
        // follower persists first, so that its acknowledgement (a persisted
        // message) need not wait for the apply; the committed entries were
        // durable before this Ready.
        let mut committed = ready.take_committed_entries();
        let applying = committed.len();
        let apply_first = self.raw.raft.state == StateRole::Leader;
        let mut applied_in = Duration::ZERO;
        if apply_first {
            let t = Instant::now();
            self.apply_entries(std::mem::take(&mut committed))?;
            applied_in = t.elapsed();
        }

        let store = self.raw.store().clone();
        if !ready.entries().is_empty() {
            store.append(ready.entries())?;
        }
        if let Some(hs) = ready.hs() {
            store.set_hard_state(hs)?;
        }
        let mut flushed_in = Duration::ZERO;
        if ready.must_sync() || self.conf_unsynced {
            flushed_in = self.sync(&store)?;
        }
        if let Some(ss) = ready.ss() {
            let leader = ss.leader_id;
            let role = ss.raft_state;
            self.on_soft_state(leader, role);
        }
        if !ready.persisted_messages().is_empty() {
            self.send_messages(ready.take_persisted_messages());
        }
        if !apply_first {
            let t = Instant::now();
            self.apply_entries(committed)?;
            applied_in = t.elapsed();
        }
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            store.set_commit(commit)?;
        }
        if !light.messages().is_empty() {
            self.send_messages(light.take_messages());
        }
        let committed = light.take_committed_entries();
        self.apply_entries(committed)?;
        if self.conf_unsynced {
            self.sync(&store)?;
        }
        self.raw.advance_apply();
        self.publish_status();
        self.truncate_log()?;
        let took = began.elapsed();
        // A Ready that takes longer than a heartbeat delays the heartbeats
        // (etcd: "leader failed to send out heartbeat on time").
        if took > self.heartbeat * 2 {
            tracing::warn!(
                ?took,
                apply = ?applied_in,
                flush = ?flushed_in,
                entries = applying,
                "slow raft ready: heartbeats were late"
            );
        }
        Ok(())
    }

    /// One `fdatasync` of the Raft log, timed into the fsync histogram.
    fn sync(&mut self, store: &RaftStorage) -> Result<Duration> {
        let took = store.flush()?;
        self.conf_unsynced = false;
        self.metrics.wal_fsync_seconds.observe(took.as_secs_f64());
        Ok(took)
    }

    /// Drops applied entries from the Raft log once `snapshot_count` were
    /// applied past the retained tail, keeping `catchup_entries` of them. No
    /// copy of the state is needed, only that the state machine's effects of
    /// the dropped entries are durable in sled: entries above the storage's
    /// `durable_applied` (the last background flush of sled) stay.
    fn truncate_log(&mut self) -> Result<()> {
        let store = self.raw.store();
        let applied = self
            .sm
            .applied_index()
            .min(self.raw.raft.raft_log.applied)
            .min(store.durable_applied());
        let first = store.first_index();
        let keep_from = applied.saturating_sub(self.log.catchup_entries).max(1);
        if keep_from <= first || keep_from - first < self.log.snapshot_count {
            return Ok(());
        }
        let started = Instant::now();
        store.compact(keep_from)?;
        self.metrics.snapshots_taken.inc();
        tracing::info!(
            applied,
            first_index = keep_from,
            took = ?started.elapsed(),
            "raft log truncated"
        );
        Ok(())
    }

    fn on_soft_state(&mut self, leader: u64, role: StateRole) {
        self.status
            .is_leader
            .store(role == StateRole::Leader, Ordering::Relaxed);
        if leader != self.last_leader {
            if leader != 0 {
                self.status.leader_changes.fetch_add(1, Ordering::Relaxed);
                self.metrics.leader_changes.inc();
            }
            tracing::info!(
                leader = format!("{leader:x}"),
                term = self.raw.raft.term,
                ?role,
                "leader changed"
            );
            self.last_leader = leader;
        }
        self.status.leader.store(leader, Ordering::Relaxed);
        self.metrics.has_leader.set(i64::from(leader != 0));
        self.metrics
            .is_leader
            .set(i64::from(role == StateRole::Leader));
    }

    /// Whether this member is the cluster's only voter (no follower shares
    /// its quorum, nor, on one machine, its CPU).
    fn sole_voter(&self) -> bool {
        self.raw.raft.prs().conf().voters().ids().len() == 1
    }

    fn publish_status(&mut self) {
        // A lone request's task may poll for its reply only on a member that
        // is the cluster's only voter and leads it: on three members sharing
        // a machine, a polling worker takes the CPU the followers need.
        let alone = self.raw.raft.state == StateRole::Leader && self.sole_voter();
        let reply_spin = if alone {
            self.spin.budget()
        } else {
            Duration::ZERO
        };
        let nanos = reply_spin.as_nanos() as u64;
        if self.status.reply_spin_nanos.load(Ordering::Relaxed) != nanos {
            self.status.reply_spin_nanos.store(nanos, Ordering::Relaxed);
        }
        let term = self.raw.raft.term;
        self.status.term.store(term, Ordering::Relaxed);
        self.status
            .commit_index
            .store(self.raw.raft.raft_log.committed, Ordering::Relaxed);
        self.status
            .applied_index
            .store(self.sm.applied_index(), Ordering::Relaxed);
        if term > self.last_term {
            self.last_term = term;
            // Proposals from an older term may have been lost with their leader.
            let old: Vec<u64> = self
                .proposals
                .iter()
                .filter(|(_, w)| w.term < term)
                .map(|(id, _)| *id)
                .collect();
            for id in old {
                if let Some(w) = self.proposals.remove(&id) {
                    self.metrics.proposals_pending.dec();
                    self.metrics.proposals_failed.inc();
                    let _ = w.reply.send(Err(Error::LeaderChanged));
                }
            }
        }
    }

    fn on_read_state(&mut self, ctx: Vec<u8>, index: u64) {
        let Ok(bytes) = <[u8; 8]>::try_from(ctx.as_slice()) else {
            return;
        };
        if self.lease.awaiting()
            && self.raw.raft.state == StateRole::Leader
            && self.raw.raft.lead_transferee.is_none()
        {
            let term = self.raw.raft.term;
            self.lease.round_confirmed(self.raw.raft.id, &bytes, term);
        }
        let ctx = u64::from_be_bytes(bytes);
        if let Some((_, waiters)) = self.inflight_reads.remove(&ctx) {
            self.reads_known(index, waiters);
        }
    }

    /// Reads whose index is known: answered now if applied reaches it, else
    /// when it does.
    fn reads_known(&mut self, index: u64, waiters: Vec<ReadWaiter>) {
        if self.sm.applied_index() >= index {
            for w in waiters {
                let _ = w.reply.send(Ok(index));
            }
        } else {
            self.reads_by_index
                .entry(index)
                .or_default()
                .extend(waiters);
        }
    }

    /// Applies committed entries, then ends the state machine's batch
    /// whatever happened to them: it may hold writes back until then (group
    /// commit), and an error must not lose the entries applied before it.
    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<()> {
        let applied = self.apply_each(entries);
        let ended = self.sm.end_batch();
        applied?;
        ended
    }

    fn apply_each(&mut self, entries: Vec<Entry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        for entry in entries {
            let index = entry.index;
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => self.sm.skip(index),
                EntryType::EntryNormal => {
                    let (id, out) = self.sm.apply(index, entry.term, &entry.data);
                    self.metrics.proposals_applied.inc();
                    if let Some(w) = self.proposals.remove(&id) {
                        self.metrics.proposals_pending.dec();
                        let _ = w.reply.send(Ok(out));
                    }
                }
                EntryType::EntryConfChange => {
                    let mut cc = RaftConfChange::default();
                    protobuf::Message::merge_from_bytes(&mut cc, &entry.data)
                        .map_err(|e| Error::Corrupt(format!("conf change at {index}: {e}")))?;
                    self.apply_conf_change(index, v1_to_v2(cc))?;
                }
                EntryType::EntryConfChangeV2 => {
                    let mut cc = ConfChangeV2::default();
                    protobuf::Message::merge_from_bytes(&mut cc, &entry.data)
                        .map_err(|e| Error::Corrupt(format!("conf change at {index}: {e}")))?;
                    self.apply_conf_change(index, cc)?;
                }
            }
        }
        self.metrics
            .proposals_committed
            .set(self.raw.raft.raft_log.committed as f64);
        let applied = self.sm.applied_index();
        self.status.applied_index.store(applied, Ordering::Relaxed);
        while let Some((&idx, _)) = self.reads_by_index.first_key_value() {
            if idx > applied {
                break;
            }
            if let Some((_, waiters)) = self.reads_by_index.pop_first() {
                for w in waiters {
                    let _ = w.reply.send(Ok(idx));
                }
            }
        }
        Ok(())
    }

    /// Applies a committed conf change: first to the state machine (which
    /// records the member list with the entry's index, or refuses the
    /// change), then, if accepted, to Raft and its stored conf state.
    fn apply_conf_change(&mut self, index: u64, cc: ConfChangeV2) -> Result<()> {
        let Some(change) = from_raft(&cc) else {
            // Not a change keel proposes (joint consensus): Raft's alone.
            tracing::warn!(index, ?cc, "applying a conf change keel did not propose");
            self.lease.revoke();
            let cs = self.raw.apply_conf_change(&cc)?;
            self.raw.store().set_conf_state(&cs)?;
            self.conf_unsynced = true;
            self.sm.skip(index);
            return Ok(());
        };
        let (id, out, accepted) = self.sm.apply_conf_change(index, &change);
        if accepted {
            // The lease was counted in the old configuration's quorum.
            self.lease.revoke();
            let cs = self.raw.apply_conf_change(&cc)?;
            self.raw.store().set_conf_state(&cs)?;
            self.conf_unsynced = true;
            tracing::info!(
                index,
                node = format!("{:x}", change.node),
                kind = ?change.kind,
                voters = ?cs.voters,
                learners = ?cs.learners,
                "applied a configuration change through raft"
            );
        }
        self.metrics.proposals_applied.inc();
        if let Some(w) = self.proposals.remove(&id) {
            self.metrics.proposals_pending.dec();
            let _ = w.reply.send(Ok(out));
        }
        Ok(())
    }

    fn fail_all(&mut self, err: Error) {
        let msg = err.to_string();
        for (_, w) in self.proposals.drain() {
            let _ = w.reply.send(Err(Error::Stopped));
        }
        for w in self.queued_reads.drain(..) {
            let _ = w.reply.send(Err(Error::Stopped));
        }
        for (_, (_, ws)) in self.inflight_reads.drain() {
            for w in ws {
                let _ = w.reply.send(Err(Error::Stopped));
            }
        }
        for (_, ws) in std::mem::take(&mut self.reads_by_index) {
            for w in ws {
                let _ = w.reply.send(Err(Error::Stopped));
            }
        }
        tracing::info!(reason = %msg, "raft driver stopped");
    }
}

/// keel's conf change as raft-rs's: one change, simple (no joint consensus).
fn to_raft(c: &ConfChange) -> ConfChangeV2 {
    let mut single = ConfChangeSingle::default();
    single.set_change_type(match c.kind {
        ConfChangeKind::AddVoter => ConfChangeType::AddNode,
        ConfChangeKind::AddLearner => ConfChangeType::AddLearnerNode,
        ConfChangeKind::Remove => ConfChangeType::RemoveNode,
    });
    single.node_id = c.node;
    let mut cc = ConfChangeV2::default();
    cc.set_changes(vec![single].into());
    cc.context = c.context.clone().into();
    cc
}

/// A ConfChange (v1, which keel never proposes) as a simple ConfChangeV2.
fn v1_to_v2(cc: RaftConfChange) -> ConfChangeV2 {
    let mut single = ConfChangeSingle::default();
    single.set_change_type(cc.get_change_type());
    single.node_id = cc.node_id;
    let mut v2 = ConfChangeV2::default();
    v2.set_changes(vec![single].into());
    v2.context = cc.context;
    v2
}

/// raft-rs's conf change as keel's, if it is one change.
fn from_raft(cc: &ConfChangeV2) -> Option<ConfChange> {
    let [single] = cc.get_changes() else {
        return None;
    };
    let kind = match single.get_change_type() {
        ConfChangeType::AddNode => ConfChangeKind::AddVoter,
        ConfChangeType::AddLearnerNode => ConfChangeKind::AddLearner,
        ConfChangeType::RemoveNode => ConfChangeKind::Remove,
    };
    Some(ConfChange {
        kind,
        node: single.node_id,
        context: cc.context.to_vec(),
    })
}
