//! The KV API's logic, between the thin gRPC adapter and the Raft node:
//! validation, proposing writes, linearizable or serializable reads, and the
//! response header every etcd response carries.
//!
//! Writes: validated, wrapped in an `InternalRequest` with a fresh id, refused
//! when the encoding exceeds `--max-request-bytes`, proposed, answered when
//! applied here. Reads: ReadIndex first unless `serializable`, then served from
//! local MVCC state. Read-only txns are reads too (as in etcd), never proposed.
//!
//! Auth: every read and write names its [`Caller`] and passes
//! [`AuthStore::check`] here first (reads: read access to the range; puts and
//! deletes: write, plus read for `prev_kv`; txns: every compare and op of both
//! branches, see [`crate::auth::txn_accesses`]); writes carry the caller in
//! their entry's header and are checked again in apply. Compaction is not
//! checked (etcd 3.4 checks nothing for it).
//!
//! Quota: puts, txns (and, through [`Kv::check_quota`], lease grants) are
//! checked against the backend quota before anything else, as etcd's quota
//! servers wrap its KV and Lease servers; past it the member raises the NOSPACE
//! alarm through Raft and the request fails (see [`crate::maintenance::quota`]).

pub mod check;

use std::sync::Arc;

use keel_proto::etcdserverpb::alarm_request::AlarmAction;
use keel_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AlarmType, CompactionRequest, CompactionResponse,
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    ResponseHeader, TxnRequest, TxnResponse,
};
use keel_proto::peer::{internal_request, InternalRequest, RequestHeader};
use prost::Message as _;

use crate::apply::{self, Response};
use crate::auth::{txn_accesses, Access, AuthStore, Caller};
use crate::consensus::Node;
use crate::error::{Error, Result};
use crate::maintenance::alarm::Alarms;
use crate::maintenance::quota::{self, Quota};
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::mvcc::Store;

/// The node type the store runs: its state machine answers with [`Response`].
pub type StoreNode = Node<Result<Response>>;

/// Who this member is, for response headers.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    pub cluster_id: u64,
    pub member_id: u64,
}

/// The KV API.
#[derive(Clone)]
pub struct Kv {
    node: StoreNode,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    id: Identity,
    max_request_bytes: usize,
    max_txn_ops: usize,
    /// Test-only: skip ReadIndex (see `--unsafe-stale-reads`).
    stale_reads: bool,
    /// The member list, to refuse what a learner cannot serve.
    membership: Option<Arc<Membership>>,
    /// The raised alarms (shared with apply).
    alarms: Arc<Alarms>,
    /// The backend quota; None: no quota.
    quota: Option<Quota>,
    /// Users, roles and tokens (shared with apply).
    auth: Arc<AuthStore>,
}

impl Kv {
    pub fn new(
        node: StoreNode,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        id: Identity,
        max_request_bytes: usize,
        max_txn_ops: usize,
    ) -> Kv {
        Kv {
            node,
            store,
            metrics,
            id,
            max_request_bytes,
            max_txn_ops,
            stale_reads: false,
            membership: None,
            alarms: Arc::new(Alarms::default()),
            quota: None,
            auth: Arc::new(AuthStore::default()),
        }
    }

    /// Shares the auth store the applier keeps.
    pub fn with_auth(mut self, auth: Arc<AuthStore>) -> Kv {
        self.auth = auth;
        self
    }

    pub fn auth(&self) -> &Arc<AuthStore> {
        &self.auth
    }

    /// Refuses linearizable ranges while this member is a learner (etcd's
    /// interceptor: a learner serves serializable ranges only).
    pub fn with_membership(mut self, membership: Arc<Membership>) -> Kv {
        self.membership = Some(membership);
        self
    }

    fn is_learner(&self) -> bool {
        self.membership
            .as_ref()
            .is_some_and(|m| m.local_is_learner())
    }

    /// Shares the alarm set the applier keeps.
    pub fn with_alarms(mut self, alarms: Arc<Alarms>) -> Kv {
        self.alarms = alarms;
        self
    }

    /// Checks writes against `quota` before proposing them.
    pub fn with_quota(mut self, quota: Option<Quota>) -> Kv {
        self.quota = quota;
        self
    }

    /// Deliberately unsafe: linearizable reads become local reads. Only for
    /// proving that the jepsen harness catches stale reads.
    pub fn with_unsafe_stale_reads(mut self, on: bool) -> Kv {
        if on {
            tracing::warn!("--unsafe-stale-reads: linearizable reads are served from local state (NOT linearizable)");
        }
        self.stale_reads = on;
        self
    }

    /// Waits for a ReadIndex unless the request is serializable.
    async fn linearize(&self, serializable: bool) -> Result<()> {
        if !serializable && !self.stale_reads {
            self.node.read_index().await?;
        }
        Ok(())
    }

    pub fn node(&self) -> &StoreNode {
        &self.node
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn identity(&self) -> Identity {
        self.id
    }

    pub fn alarms(&self) -> &Arc<Alarms> {
        &self.alarms
    }

    pub fn quota(&self) -> Option<Quota> {
        self.quota
    }

    /// Refuses a write of `cost` bytes that does not fit in the quota, after
    /// raising the NOSPACE alarm for this member (etcd's `quotaAlarmer`).
    pub async fn check_quota(&self, cost: u64) -> Result<()> {
        let Some(q) = self.quota else {
            return Ok(());
        };
        let in_use = self.store.size_in_use();
        if q.available(in_use, cost) {
            return Ok(());
        }
        tracing::warn!(
            in_use,
            cost,
            quota = q.max_bytes(),
            "backend quota exceeded; raising NOSPACE"
        );
        let raise = AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: self.id.member_id,
            alarm: AlarmType::Nospace as i32,
        };
        if let Err(e) = self.alarm(raise).await {
            tracing::warn!(error = %e, "cannot raise the NOSPACE alarm");
        }
        Err(Error::NoSpace)
    }

    /// Proposes an alarm request (get, raise or clear) and returns its answer.
    pub async fn alarm(&self, r: AlarmRequest) -> Result<AlarmResponse> {
        match self.propose(internal_request::Request::Alarm(r)).await? {
            Response::Alarm(resp) => Ok(resp),
            other => Err(unexpected(other)),
        }
    }

    /// A full response header at `revision` (0: the current revision).
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.id.cluster_id,
            member_id: self.id.member_id,
            revision: if revision == 0 {
                self.store.current_revision()
            } else {
                revision
            },
            raft_term: self.node.status().term(),
        }
    }

    /// A full response header at exactly `revision` (0 stays 0, as in etcd's
    /// compacted watch response).
    pub fn header_at(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.id.cluster_id,
            member_id: self.id.member_id,
            revision,
            raft_term: self.node.status().term(),
        }
    }

    fn fill(&self, h: &mut Option<ResponseHeader>) {
        let rev = h.as_ref().map(|h| h.revision).unwrap_or(0);
        *h = Some(self.header(rev));
    }

    pub async fn range(&self, caller: &Caller, r: RangeRequest) -> Result<RangeResponse> {
        if !r.serializable && self.is_learner() {
            return Err(Error::NotSupportedForLearner);
        }
        check::range(&r)?;
        self.auth
            .check(caller, Access::read(&r.key, &r.range_end))?;
        self.metrics.mvcc_range_total.inc();
        self.linearize(r.serializable).await?;
        let mut resp = apply::range(&mut self.store.read_view(), &r)?;
        self.fill(&mut resp.header);
        Ok(resp)
    }

    pub async fn put(&self, caller: &Caller, r: PutRequest) -> Result<PutResponse> {
        self.check_quota(quota::cost_put(&r)).await?;
        check::put(&r)?;
        if self.auth.is_enabled() {
            self.auth.check_all(caller, &put_accesses(&r))?;
        }
        match self
            .propose_as(caller, internal_request::Request::Put(r))
            .await?
        {
            Response::Put(mut resp) => {
                self.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_range(
        &self,
        caller: &Caller,
        r: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse> {
        check::delete_range(&r)?;
        if self.auth.is_enabled() {
            self.auth.check_all(caller, &delete_accesses(&r))?;
        }
        match self
            .propose_as(caller, internal_request::Request::DeleteRange(r))
            .await?
        {
            Response::DeleteRange(mut resp) => {
                self.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn txn(&self, caller: &Caller, r: TxnRequest) -> Result<TxnResponse> {
        self.check_quota(quota::cost_txn(&r)).await?;
        check::txn(&r, self.max_txn_ops)?;
        if self.auth.is_enabled() {
            // Apply checks writes again: an enable in between is not missed.
            self.auth.check_all(caller, &txn_accesses(&r))?;
        }
        if apply::txn_is_read_only(&r) {
            self.metrics.mvcc_txn_total.inc();
            self.linearize(txn_is_serializable(&r)).await?;
            let mut resp = apply::read_only_txn(&self.store, &r)?;
            self.fill(&mut resp.header);
            return Ok(resp);
        }
        match self
            .propose_as(caller, internal_request::Request::Txn(r))
            .await?
        {
            Response::Txn(mut resp) => {
                self.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn compact(&self, r: CompactionRequest) -> Result<CompactionResponse> {
        let physical = r.physical;
        match self
            .propose(internal_request::Request::Compaction(r))
            .await?
        {
            Response::Compaction(mut resp) => {
                if physical {
                    // Wait for the background deletion of the compacted records.
                    let store = self.store.clone();
                    let _ = tokio::task::spawn_blocking(move || store.wait_compacted()).await;
                }
                self.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Proposes one request through Raft as keel itself and waits for its
    /// result.
    pub async fn propose(&self, request: internal_request::Request) -> Result<Response> {
        self.propose_as(&Caller::system(), request).await
    }

    /// Proposes one request made by `caller` (named in the entry's header,
    /// for apply's permission check) and waits for its result.
    pub async fn propose_as(
        &self,
        caller: &Caller,
        request: internal_request::Request,
    ) -> Result<Response> {
        let id = self.node.next_id();
        let req = InternalRequest {
            header: Some(RequestHeader {
                id,
                username: caller.user().to_string(),
                auth_revision: caller.revision(),
            }),
            request: Some(request),
        };
        let data = req.encode_to_vec();
        if data.len() > self.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        self.node.propose(id, data).await?
    }
}

/// What a put needs: write on its key, read too for `prev_kv`. (A put with
/// a lease also needs write on the lease's keys: apply checks that.)
pub fn put_accesses(r: &PutRequest) -> Vec<Access<'_>> {
    let mut v = vec![Access::write(&r.key, &[])];
    if r.prev_kv {
        v.push(Access::read(&r.key, &[]));
    }
    v
}

/// What a delete needs: write on its range, read too for `prev_kv`.
pub fn delete_accesses(r: &DeleteRangeRequest) -> Vec<Access<'_>> {
    let mut v = vec![Access::write(&r.key, &r.range_end)];
    if r.prev_kv {
        v.push(Access::read(&r.key, &r.range_end));
    }
    v
}

/// etcd's rule: a read-only txn skips ReadIndex only when every op of both
/// top-level branches is a serializable range (a nested txn counts as not).
fn txn_is_serializable(t: &TxnRequest) -> bool {
    use keel_proto::etcdserverpb::request_op::Request as R;
    t.success
        .iter()
        .chain(t.failure.iter())
        .all(|op| matches!(&op.request, Some(R::RequestRange(r)) if r.serializable))
}

fn unexpected(r: Response) -> Error {
    Error::InvalidArgument(format!("etcdserver: unexpected response {r:?}"))
}
