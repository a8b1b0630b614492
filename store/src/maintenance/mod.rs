//! Maintenance: the logic of etcd's `Maintenance` service, alarms, the backend
//! quota, automatic compaction and the corruption check (etcd 3.4's
//! behaviour; `service` is the thin gRPC adapter).
//!
//! - Status: version (the etcd version keel speaks), db size (sled's files on
//!   disk: the member's whole database, Raft log included), db size in use
//!   (the bytes of the MVCC records: what the quota counts), leader, Raft
//!   commit index, term and applied index, and errors ("etcdserver: no
//!   leader", then every raised alarm as etcd prints it).
//! - Hash / HashKV: [`crate::mvcc::Store::hash`] and
//!   [`crate::mvcc::Store::hash_kv`]; HashKV is equal on every member at the
//!   same revision and compact revision.
//! - Defragment: waits until the background deletion of compacted records
//!   is done (what makes the space compaction freed count as free: the quota
//!   counts bytes in use, see [`quota`]), then has the backend give the
//!   space back ([`crate::mvcc::Backend::defragment`]): the log backend
//!   rewrites its files, keeping only the live values, so `dbSize` falls to
//!   about the bytes in use; sled has nothing to do (it cleans and reuses its segments
//!   itself, and its files never shrink). It answers as etcd does (an empty
//!   response, no header).
//! - MoveLeader: only the leader accepts it ("etcdserver: not leader"); the
//!   transferee must be a voting member of the replicated member list
//!   ("etcdserver: bad leader transferee"); it asks Raft to transfer leadership and waits until the
//!   transferee leads, or fails after the request timeout.
//! - Alarm: GET, ACTIVATE and DEACTIVATE all go through Raft, as in etcd
//!   ([`alarm`]).
//!
//! Status reports `is_learner` from the replicated member list.

pub mod alarm;
pub mod compactor;
pub mod corrupt;
pub mod quota;
pub mod service;

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentResponse, HashKvResponse, HashResponse,
    MoveLeaderResponse, StatusResponse,
};
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::http::ETCD_VERSION;
use crate::kv::Kv;
use crate::membership::Membership;
use crate::mvcc::{KvHash, Store};

/// The Maintenance API. Cheap to clone.
#[derive(Clone)]
pub struct Maintenance {
    kv: Kv,
    /// The replicated member list.
    membership: Arc<Membership>,
    election_timeout: Duration,
    request_timeout: Duration,
    /// Where backups for the `Snapshot` stream are written before sending.
    snapshot_dir: std::path::PathBuf,
}

impl Maintenance {
    pub fn new(
        kv: Kv,
        membership: Arc<Membership>,
        election_timeout: Duration,
        request_timeout: Duration,
    ) -> Maintenance {
        Maintenance {
            kv,
            membership,
            election_timeout,
            request_timeout,
            snapshot_dir: std::env::temp_dir(),
        }
    }

    /// Writes the backups of the `Snapshot` stream in `dir` (the member's
    /// snapshot directory, on the data disk) instead of the system temp dir.
    pub fn with_snapshot_dir(mut self, dir: std::path::PathBuf) -> Maintenance {
        self.snapshot_dir = dir;
        self
    }

    /// The `Snapshot` stream: a backup of the store (see [`crate::backup`]).
    pub fn snapshot(
        &self,
    ) -> tokio_stream::wrappers::ReceiverStream<
        std::result::Result<keel_proto::etcdserverpb::SnapshotResponse, tonic::Status>,
    > {
        let store = self.kv.store().clone();
        let header = self.kv.header(store.current_revision());
        crate::backup::snapshot_stream(store, self.snapshot_dir.clone(), header)
    }

    pub fn kv(&self) -> &Kv {
        &self.kv
    }

    /// This member's status.
    pub fn status(&self) -> Result<StatusResponse> {
        let st = self.kv.node().status();
        let store = self.kv.store();
        let leader = st.leader();
        let mut errors = Vec::new();
        if leader == 0 {
            errors.push(Error::NoLeader.to_string());
        }
        errors.extend(self.kv.alarms().strings());
        Ok(StatusResponse {
            header: Some(self.kv.header(0)),
            version: ETCD_VERSION.to_string(),
            db_size: store.size_bytes()? as i64,
            leader,
            raft_index: st.commit_index.load(Ordering::Relaxed),
            raft_term: st.term(),
            raft_applied_index: st.applied_index.load(Ordering::Relaxed),
            errors,
            db_size_in_use: store.size_in_use() as i64,
            is_learner: self.membership.local_is_learner(),
        })
    }

    /// The hash of the history up to `revision` (0: all of it).
    pub async fn hash_kv(&self, revision: i64) -> Result<HashKvResponse> {
        let h = blocking(self.kv.store(), move |s| s.hash_kv(revision)).await?;
        Ok(hash_kv_response(&self.kv, h))
    }

    /// The hash of the whole MVCC keyspace.
    pub async fn hash(&self) -> Result<HashResponse> {
        let (hash, rev) = blocking(self.kv.store(), |s| s.hash()).await?;
        Ok(HashResponse {
            header: Some(self.kv.header(rev)),
            hash,
        })
    }

    /// See the module doc: waits for the deletion of compacted records.
    pub async fn defragment(&self) -> Result<DefragmentResponse> {
        let started = Instant::now();
        let before = self.kv.store().size_in_use();
        tracing::info!(in_use = before, "starting defragment");
        blocking(self.kv.store(), |s| {
            s.wait_compacted();
            s.backend().defragment()
        })
        .await?;
        tracing::info!(
            in_use_before = before,
            in_use = self.kv.store().size_in_use(),
            took = ?started.elapsed(),
            "finished defragment"
        );
        Ok(DefragmentResponse { header: None })
    }

    /// Hands leadership to `target` and waits until it leads.
    pub async fn move_leader(&self, target: u64) -> Result<MoveLeaderResponse> {
        let me = self.kv.identity().member_id;
        let status = self.kv.node().status().clone();
        if status.leader() != me {
            return Err(Error::NotLeader);
        }
        if self.membership.member(target).is_none_or(|m| m.is_learner) {
            return Err(Error::BadLeaderTransferee);
        }
        let started = Instant::now();
        let deadline = started + self.request_timeout;
        tracing::info!(
            transferee = format!("{target:x}"),
            "leadership transfer starting"
        );
        let mut asked = None;
        while status.leader() != target {
            // raft-rs drops a transfer after an election timeout if the
            // transferee did not take over: ask again.
            if asked.is_none_or(|t: Instant| t.elapsed() >= self.election_timeout)
                && status.leader() == me
            {
                self.kv.node().transfer_leader(target)?;
                asked = Some(Instant::now());
            }
            if Instant::now() >= deadline {
                return Err(Error::LeaderTransferTimeout);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(
            new_leader = format!("{target:x}"),
            took = ?started.elapsed(),
            "leadership transfer finished"
        );
        Ok(MoveLeaderResponse { header: None })
    }

    /// An alarm request, through Raft.
    pub async fn alarm(&self, r: AlarmRequest) -> Result<AlarmResponse> {
        self.kv.alarm(r).await
    }
}

/// The HashKV response etcd builds: its header revision is the store's
/// revision when hashed.
pub fn hash_kv_response(kv: &Kv, h: KvHash) -> HashKvResponse {
    HashKvResponse {
        header: Some(kv.header(h.revision)),
        hash: h.hash,
        compact_revision: h.compact_revision,
    }
}

/// Runs `f` on the store on a blocking thread (hashing scans everything).
async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
) -> Result<T> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| Error::Transport(format!("maintenance task: {e}")))?
}
