//! Apply: turns a committed request into MVCC operations and an etcd response,
//! with etcd 3.4's exact semantics (the rules of its `applierV3backend`: which
//! header revision each response carries, how txn compares treat missing keys,
//! how sort, limit and the min/max filters combine).
//!
//! The same range, compare and txn code serves both paths: requests applied from
//! the Raft log (in one MVCC write transaction each) and read-only requests
//! served from local state (ranges and read-only txns, at one fixed revision).
//!
//! Invariants: applying is deterministic (every member reaches the same state
//! from the same log); an error leaves the store untouched; every write records
//! the Raft index it came from, atomically with the write, so a restart replays
//! exactly the entries after it.
//!
//! Leases: a put names an existing lease or fails ("requested lease not
//! found"); after each write the [`Lessor`] follows the keys that moved between
//! leases (from the write's events: a put with another lease moves the key, a
//! delete detaches it). LeaseGrant writes the lease record; LeaseRevoke deletes
//! every attached key and the record in one write transaction, so at one
//! revision on every member.
//!
//! Alarms: an alarm request raises, clears or lists alarms in the replicated
//! [`Alarms`] set (its records ride in a write transaction with the consistent
//! index, using no revision); while NOSPACE or CORRUPT is raised, the requests
//! it forbids fail here, identically on every member (see
//! [`crate::maintenance::alarm`]).
//!
//! Membership: conf change entries (add, remove, promote) and the
//! MemberUpdate and publish entries go through [`Membership::apply`] in one
//! write transaction that records the member list with the entry's index and
//! no revision; a refused change writes only the index.
//!
//! Auth: writes (puts, deletes, txns, lease revokes) are checked again here,
//! against the auth state at apply time, as the caller in the entry's header
//! ([`Caller::from_header`]): a put with a lease needs write on every key the
//! lease holds, a LeaseRevoke write on every key it holds (etcd 3.4's
//! `checkLeasePuts`), and a caller checked before the last auth change gets
//! "revision of auth store is old". Auth changes go through
//! [`AuthStore::apply`] in one write transaction with the entry's index and
//! no revision; an Authenticate records its token on every member.
//!
//! Group commit: the first applied entry opens a backend write group
//! ([`crate::mvcc::Backend::begin_group`]); [`StateMachine::end_batch`]
//! closes it once it holds [`GROUP_MAX_WRITES`] keys or is
//! [`GROUP_MAX_AGE`] old (as etcd's backend commits its batch every 100 ms
//! or 10,000 writes, smaller here: see the constants), so many entries reach
//! sled as one write (sled's `apply_batch` has a large fixed cost: it seals
//! its IO buffers twice and wakes all its IO threads). Reads see
//! each write as soon as it is applied; the Raft log keeps the entries until
//! a flush of sled covers them ([`Applier::written_index`] tells the
//! checkpointer how far sled has them). A snapshot image is installed with
//! no group open.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_proto::etcdserverpb::{
    compare, request_op, response_op, AlarmRequest, AlarmResponse, CompactionRequest,
    CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use keel_proto::mvccpb;
use keel_proto::peer::{internal_request, InternalRequest};
use prost::Message as _;

use crate::auth::{self, txn_accesses, Access, AuthStore, Caller};
use crate::consensus::{ConfChange, ConfChangeKind, StateMachine};
use crate::error::{Error, Result};
use crate::lease::Lessor;
use crate::maintenance::alarm::Alarms;
use crate::membership::{self, Change, Membership};
use crate::metrics::Metrics;
use crate::mvcc::{KeyValue, RangeOptions, RangeResult, Store, WriteTxn};
use crate::watch::Hub;

/// The response to an applied request.
#[derive(Debug, Clone)]
pub enum Response {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    Alarm(AlarmResponse),
    /// A membership change: the member list after it.
    Members(Vec<membership::Member>),
    /// An auth change or an Authenticate (its token).
    Auth(auth::Applied),
}

/// The replicated state machine: MVCC, leases, alarms, the member list and
/// the auth state.
pub struct Applier {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    hub: Arc<Hub>,
    lessor: Arc<Lessor>,
    membership: Arc<Membership>,
    alarms: Arc<Alarms>,
    auth: Arc<AuthStore>,
    applied: u64,
    /// When the open backend write group was opened, if one is.
    grouping: Option<Instant>,
    /// The applied index whose writes are all in sled (none held back).
    written: Arc<AtomicU64>,
}

/// A write group is written to sled once it holds this many keys...
pub const GROUP_MAX_WRITES: usize = 2_000;
/// ... or is this old. Larger groups (100 ms, 10,000 keys, as etcd's
/// backend) made sled hold far more memory (with 300k puts: RSS 444 MiB
/// against 297 MiB at 10 ms) and stall the Raft thread longer per write.
pub const GROUP_MAX_AGE: Duration = Duration::from_millis(10);

impl Applier {
    pub fn new(
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        hub: Arc<Hub>,
        lessor: Arc<Lessor>,
        membership: Arc<Membership>,
    ) -> Applier {
        let applied = store.consistent_index();
        Applier {
            store,
            metrics,
            hub,
            lessor,
            membership,
            alarms: Arc::new(Alarms::default()),
            auth: Arc::new(AuthStore::default()),
            applied,
            grouping: None,
            written: Arc::new(AtomicU64::new(applied)),
        }
    }

    /// The applied index whose writes have all reached sled (none held back
    /// in a write group): what a flush of sled makes durable.
    pub fn written_index(&self) -> Arc<AtomicU64> {
        self.written.clone()
    }

    /// Opens a backend write group, if none is open.
    fn group(&mut self) {
        if self.grouping.is_none() {
            self.store.backend().begin_group();
            self.grouping = Some(Instant::now());
        }
    }

    /// Writes the open group (if any) to sled.
    fn end_group(&mut self) -> Result<()> {
        if self.grouping.is_some() {
            // On an error the group stays open, its writes pending: a later
            // call tries again (the driver stops instead).
            self.store.backend().end_group()?;
            self.grouping = None;
        }
        self.written.store(self.applied, Ordering::Release);
        Ok(())
    }

    /// Applies a membership change: its records and the index in one batch,
    /// then the new list in memory.
    fn member_change(&mut self, index: u64, change: &Change) -> Result<Response> {
        let mut txn = self.store.write();
        let staged = self.membership.apply(&mut txn, change)?;
        self.commit(txn, index)?;
        self.membership.commit(staged);
        Ok(Response::Members(self.membership.members()))
    }

    /// Keeps users and roles in `auth` (loaded from the store by the caller).
    pub fn with_auth(mut self, auth: Arc<AuthStore>) -> Applier {
        self.auth = auth;
        self
    }

    /// Checks a write made by `caller` against the auth state now.
    fn check_write(&self, caller: &Caller, req: &internal_request::Request) -> Result<()> {
        use internal_request::Request as R;
        if caller.is_system() || !self.auth.is_enabled() {
            return Ok(());
        }
        let lease_keys = |id: i64| -> Vec<Vec<u8>> {
            self.lessor
                .lookup(id, true)
                .map(|l| l.keys)
                .unwrap_or_default()
        };
        match req {
            R::Put(p) => {
                let held = if p.lease != 0 {
                    lease_keys(p.lease)
                } else {
                    Vec::new()
                };
                let mut need = crate::kv::put_accesses(p);
                need.extend(held.iter().map(|k| Access::write(k, &[])));
                self.auth.check_all(caller, &need)
            }
            R::DeleteRange(d) => self.auth.check_all(caller, &crate::kv::delete_accesses(d)),
            R::Txn(t) => self.auth.check_all(caller, &txn_accesses(t)),
            R::LeaseRevoke(r) => {
                let held = lease_keys(r.id);
                // No keys, nothing to check (etcd 3.4's checkLeasePuts).
                let need: Vec<Access<'_>> = held.iter().map(|k| Access::write(k, &[])).collect();
                self.auth.check_all(caller, &need)
            }
            _ => Ok(()),
        }
    }

    /// Applies an auth change: its records and the index in one batch, then
    /// the new state in memory.
    fn auth_change(
        &mut self,
        index: u64,
        caller: &Caller,
        req: &internal_request::Request,
    ) -> Result<Response> {
        let mut txn = self.store.write();
        let staged = self.auth.apply(&mut txn, caller, req)?;
        self.commit(txn, index)?;
        self.auth.commit(staged);
        Ok(Response::Auth(auth::Applied::default()))
    }

    /// Keeps alarms in `alarms` (loaded from the store by the caller).
    pub fn with_alarms(mut self, alarms: Arc<Alarms>) -> Applier {
        self.alarms = alarms;
        self
    }

    /// Ends a write transaction, lets the lessor follow the keys it moved and
    /// hands its events to the watchers.
    fn commit(&self, txn: WriteTxn<'_>, index: u64) -> Result<()> {
        self.commit_then(txn, index, || {})
    }

    /// Like [`Applier::commit`], running `settle` after the write is published
    /// and before watchers hear of it, so that what they then ask (e.g. a
    /// revoked lease's time to live) already sees the change.
    fn commit_then(&self, txn: WriteTxn<'_>, index: u64, settle: impl FnOnce()) -> Result<()> {
        let events = txn.end(index)?;
        self.lessor.apply_events(&events);
        settle();
        if let Some(first) = events.first() {
            self.hub.notify(first.kv.mod_revision, events);
        }
        Ok(())
    }

    fn apply_request(
        &mut self,
        index: u64,
        caller: &Caller,
        req: internal_request::Request,
    ) -> Result<Response> {
        use internal_request::Request as R;
        if let Some(refused) = self.alarms.refuse(&req) {
            return Err(refused);
        }
        self.check_write(caller, &req)?;
        match req {
            R::Put(p) => {
                self.metrics.mvcc_put_total.inc();
                let lessor = &self.lessor;
                check_put(&mut self.store.write_view(), &p, &|id| lessor.exists(id))?;
                let mut txn = self.store.write();
                let resp = put(&mut txn, &p)?;
                self.commit(txn, index)?;
                Ok(Response::Put(resp))
            }
            R::DeleteRange(d) => {
                self.metrics.mvcc_delete_total.inc();
                let mut txn = self.store.write();
                let resp = delete_range(&mut txn, &d)?;
                self.commit(txn, index)?;
                Ok(Response::DeleteRange(resp))
            }
            R::Txn(t) => {
                self.metrics.mvcc_txn_total.inc();
                let mut txn = self.store.write();
                let path = compare_path(&mut txn, &t)?;
                let lessor = &self.lessor;
                check_txn(&mut txn, &t, &path, &|id| lessor.exists(id))?;
                let mut resp = TxnResponse {
                    header: Some(ResponseHeader::default()),
                    succeeded: path[0],
                    responses: Vec::new(),
                };
                run_txn(&mut txn, &t, &path, &mut resp)?;
                let wrote = txn.has_changes();
                let rev = txn.revision() - i64::from(!wrote);
                self.commit(txn, index)?;
                if let Some(h) = resp.header.as_mut() {
                    h.revision = rev;
                }
                Ok(Response::Txn(resp))
            }
            R::Compaction(c) => self.compact(index, &c),
            R::LeaseGrant(g) => self.lease_grant(index, &g),
            R::LeaseRevoke(r) => self.lease_revoke(index, &r),
            R::MemberAttributes(m) => self.member_change(
                index,
                &Change::Publish {
                    id: m.id,
                    name: m.name,
                    client_urls: m.client_urls,
                },
            ),
            R::MemberUpdate(u) => self.member_change(
                index,
                &Change::Update {
                    id: u.id,
                    peer_urls: u.peer_ur_ls,
                },
            ),
            R::Alarm(a) => self.alarm(index, &a),
            R::Authenticate(a) => {
                let token = self.auth.authenticate(index, &a)?;
                self.store.set_consistent_index(index)?;
                Ok(Response::Auth(auth::Applied { token: Some(token) }))
            }
            ref r @ (R::AuthEnable(_)
            | R::AuthDisable(_)
            | R::AuthUserAdd(_)
            | R::AuthUserDelete(_)
            | R::AuthUserChangePassword(_)
            | R::AuthUserGrantRole(_)
            | R::AuthUserRevokeRole(_)
            | R::AuthRoleAdd(_)
            | R::AuthRoleDelete(_)
            | R::AuthRoleGrantPermission(_)
            | R::AuthRoleRevokePermission(_)) => self.auth_change(index, caller, r),
            _ => Err(Error::InvalidArgument(
                "etcdserver: this request type is not supported yet".into(),
            )),
        }
    }

    fn lease_grant(&mut self, index: u64, g: &LeaseGrantRequest) -> Result<Response> {
        let mut txn = self.store.write();
        let ttl = self.lessor.grant(&mut txn, g.id, g.ttl)?;
        self.commit(txn, index)?;
        self.lessor.granted(g.id, ttl);
        Ok(Response::LeaseGrant(LeaseGrantResponse {
            header: Some(ResponseHeader {
                revision: self.store.current_revision(),
                ..Default::default()
            }),
            id: g.id,
            ttl,
            error: String::new(),
        }))
    }

    fn lease_revoke(&mut self, index: u64, r: &LeaseRevokeRequest) -> Result<Response> {
        let mut txn = self.store.write();
        self.lessor.revoke(&mut txn, r.id)?;
        self.commit_then(txn, index, || self.lessor.revoked(r.id))?;
        Ok(Response::LeaseRevoke(LeaseRevokeResponse {
            header: Some(ResponseHeader {
                revision: self.store.current_revision(),
                ..Default::default()
            }),
        }))
    }

    fn alarm(&mut self, index: u64, a: &AlarmRequest) -> Result<Response> {
        let mut txn = self.store.write();
        let (resp, change) = self.alarms.apply(&mut txn, a);
        self.commit(txn, index)?;
        self.alarms.settle(change);
        Ok(Response::Alarm(resp))
    }

    fn compact(&mut self, index: u64, c: &CompactionRequest) -> Result<Response> {
        self.store.compact(c.revision, index)?;
        Ok(Response::Compaction(CompactionResponse {
            header: Some(ResponseHeader {
                revision: self.store.current_revision(),
                ..Default::default()
            }),
        }))
    }
}

impl StateMachine for Applier {
    type Output = Result<Response>;

    fn apply(&mut self, index: u64, _term: u64, data: &[u8]) -> (u64, Result<Response>) {
        self.group();
        if index <= self.applied {
            // Already applied before a restart (the store's consistent index is
            // ahead of Raft's idea of applied): never apply twice.
            return (0, Err(Error::Stopped));
        }
        self.applied = index;
        let req = match InternalRequest::decode(data) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(index, error = %e, "undecodable entry; skipped");
                return (0, Err(Error::Decode(e)));
            }
        };
        let id = req.header.as_ref().map(|h| h.id).unwrap_or(0);
        let caller = req
            .header
            .as_ref()
            .map(Caller::from_header)
            .unwrap_or_else(Caller::system);
        let out = match req.request {
            Some(r) => self.apply_request(index, &caller, r),
            None => Err(Error::InvalidArgument("etcdserver: empty request".into())),
        };
        if out.is_err() {
            // Nothing was written; still remember how far we got.
            let _ = self.store.set_consistent_index(index);
        }
        (id, out)
    }

    fn apply_conf_change(&mut self, index: u64, cc: &ConfChange) -> (u64, Result<Response>, bool) {
        self.group();
        if index <= self.applied {
            // Already in the state (a snapshot image newer than its Raft
            // metadata): Raft takes the change if the member list has it.
            return (0, Err(Error::Stopped), self.membership.agrees_with(cc));
        }
        self.applied = index;
        let (id, out) = match conf_change_to_member_change(cc) {
            Ok((id, change)) => (id, self.member_change(index, &change)),
            Err(e) => (0, Err(e)),
        };
        if let Err(e) = &out {
            tracing::warn!(index, node = format!("{:x}", cc.node), error = %e, "refused a configuration change");
            let _ = self.store.set_consistent_index(index);
        }
        let accepted = out.is_ok();
        (id, out, accepted)
    }

    fn skip(&mut self, index: u64) {
        if index > self.applied {
            self.group();
            self.applied = index;
            if let Err(e) = self.store.set_consistent_index(index) {
                tracing::error!(index, error = %e, "cannot record applied index");
            }
        }
    }

    fn applied_index(&self) -> u64 {
        self.applied
    }

    fn restore(&mut self, image: &std::path::Path) -> Result<()> {
        // Never install over writes still held back.
        self.end_group()?;
        let mut file = std::fs::File::open(image)?;
        let summary = self.store.install_image(&mut file)?;
        self.lessor.reload(&self.store)?;
        self.membership.reload(&self.store)?;
        self.alarms.reload(&self.store)?;
        self.auth.reload(&self.store)?;
        self.hub.restored(self.store.current_revision());
        self.applied = self.store.consistent_index();
        tracing::info!(
            applied = self.applied,
            revision = summary.revision,
            records = summary.records,
            "state replaced by a snapshot image"
        );
        Ok(())
    }

    fn end_batch(&mut self) -> Result<()> {
        let due = match self.grouping {
            None => true,
            Some(opened) => {
                opened.elapsed() >= GROUP_MAX_AGE
                    || self.store.backend().pending_writes() >= GROUP_MAX_WRITES
            }
        };
        if due {
            self.end_group()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.end_group()
    }
}

/// Reads a conf change's context: the request id and the membership change.
/// The Raft node id must be the context's member id (etcd panics otherwise;
/// keel refuses the change).
fn conf_change_to_member_change(cc: &ConfChange) -> Result<(u64, Change)> {
    let ctx = keel_proto::peer::ConfChangeContext::decode(cc.context.as_slice())?;
    let member = ctx
        .member
        .map(membership::Member::from_proto)
        .unwrap_or_default();
    if member.id != cc.node {
        return Err(Error::InvalidArgument(format!(
            "conf change for node {:x} carries member {:x}",
            cc.node, member.id
        )));
    }
    let change = match (cc.kind, ctx.is_promote) {
        (ConfChangeKind::AddVoter, true) => Change::Promote(member.id),
        (ConfChangeKind::AddVoter, false) => Change::Add(membership::Member {
            is_learner: false,
            ..member
        }),
        (ConfChangeKind::AddLearner, _) => Change::Add(membership::Member {
            is_learner: true,
            ..member
        }),
        (ConfChangeKind::Remove, _) => Change::Remove(member.id),
    };
    Ok((ctx.request_id, change))
}

/// A read view for ranges and compares: the MVCC store at one revision, or a
/// write transaction (which sees its own writes).
pub trait KvRead {
    fn range(&mut self, key: &[u8], end: &[u8], opts: &RangeOptions) -> Result<RangeResult>;
    /// The revision reads see (the header revision of read-only responses).
    fn rev(&self) -> i64;
    /// The oldest revision still readable.
    fn first_rev(&self) -> i64;
}

/// The store frozen at the revision current when it was taken.
pub struct ReadView<'a> {
    store: &'a Store,
    rev: i64,
}

impl Store {
    /// A read view at the current revision.
    pub fn read_view(&self) -> ReadView<'_> {
        ReadView {
            rev: self.current_revision(),
            store: self,
        }
    }
    /// A read view used for checks before a write (same as `read_view`).
    fn write_view(&self) -> ReadView<'_> {
        self.read_view()
    }
}

impl KvRead for ReadView<'_> {
    fn range(&mut self, key: &[u8], end: &[u8], opts: &RangeOptions) -> Result<RangeResult> {
        let mut o = opts.clone();
        if o.revision <= 0 {
            o.revision = self.rev;
        }
        let mut rr = self.store.range(key, end, &o)?;
        rr.revision = self.rev;
        Ok(rr)
    }
    fn rev(&self) -> i64 {
        self.rev
    }
    fn first_rev(&self) -> i64 {
        self.store.compact_revision()
    }
}

impl KvRead for WriteTxn<'_> {
    fn range(&mut self, key: &[u8], end: &[u8], opts: &RangeOptions) -> Result<RangeResult> {
        let mut rr = WriteTxn::range(self, key, end, opts)?;
        rr.revision = KvRead::rev(self);
        Ok(rr)
    }
    fn rev(&self) -> i64 {
        // etcd: a write txn reads at its begin revision, +1 once it has written.
        self.revision() - i64::from(!self.has_changes())
    }
    fn first_rev(&self) -> i64 {
        self.compact_revision()
    }
}

pub(crate) fn to_pb(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// etcd's Range: filters, sort, limit with `more`, count.
pub fn range(view: &mut dyn KvRead, r: &RangeRequest) -> Result<RangeResponse> {
    use keel_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
    let filtered = r.sort_order != SortOrder::None as i32
        || r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    let mut limit = if filtered { 0 } else { r.limit.max(0) as usize };
    if limit > 0 {
        limit += 1; // one extra for `more`
    }
    let opts = RangeOptions {
        limit,
        revision: r.revision,
        count_only: r.count_only,
        keys_only: r.keys_only,
    };
    let rr = view.range(&r.key, &r.range_end, &opts)?;
    let mut kvs = rr.kvs;
    if r.max_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision <= r.max_mod_revision);
    }
    if r.min_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision >= r.min_mod_revision);
    }
    if r.max_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision <= r.max_create_revision);
    }
    if r.min_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision >= r.min_create_revision);
    }
    let mut order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    }
    if order != SortOrder::None {
        // A stable sort, as Go's sort.Sort is not: ties keep key order, which is
        // one of the orders etcd may produce.
        match target {
            SortTarget::Key => kvs.sort_by(|a, b| a.key.cmp(&b.key)),
            SortTarget::Version => kvs.sort_by_key(|kv| kv.version),
            SortTarget::Create => kvs.sort_by_key(|kv| kv.create_revision),
            SortTarget::Mod => kvs.sort_by_key(|kv| kv.mod_revision),
            SortTarget::Value => kvs.sort_by(|a, b| a.value.cmp(&b.value)),
        }
        if order == SortOrder::Descend {
            kvs.reverse();
        }
    }
    let mut more = false;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    Ok(RangeResponse {
        header: Some(ResponseHeader {
            revision: rr.revision,
            ..Default::default()
        }),
        kvs: kvs.into_iter().map(to_pb).collect(),
        more,
        count: rr.count as i64,
    })
}

/// Whether a lease exists (the lessor's answer, or a stub in read-only paths).
type LeaseExists<'a> = &'a dyn Fn(i64) -> bool;

fn check_put(view: &mut dyn KvRead, p: &PutRequest, lease_exists: LeaseExists<'_>) -> Result<()> {
    if p.ignore_value || p.ignore_lease {
        let rr = view.range(&p.key, &[], &RangeOptions::default())?;
        if rr.kvs.is_empty() {
            return Err(Error::KeyNotFound);
        }
    }
    if p.lease != 0 && !lease_exists(p.lease) {
        return Err(Error::LeaseNotFound);
    }
    Ok(())
}

fn put(txn: &mut WriteTxn<'_>, p: &PutRequest) -> Result<PutResponse> {
    let mut value = p.value.clone();
    let mut lease = p.lease;
    let mut prev_kv = None;
    if p.ignore_value || p.ignore_lease || p.prev_kv {
        let rr = WriteTxn::range(txn, &p.key, &[], &RangeOptions::default())?;
        let prev = rr.kvs.into_iter().next();
        if p.ignore_value || p.ignore_lease {
            let prev = prev.as_ref().ok_or(Error::KeyNotFound)?;
            if p.ignore_value {
                value = prev.value.clone();
            }
            if p.ignore_lease {
                lease = prev.lease;
            }
        }
        if p.prev_kv {
            prev_kv = prev.map(to_pb);
        }
    }
    txn.put(&p.key, value, lease)?;
    Ok(PutResponse {
        header: Some(ResponseHeader {
            revision: txn.revision(),
            ..Default::default()
        }),
        prev_kv,
    })
}

fn delete_range(txn: &mut WriteTxn<'_>, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
    let deleted = txn.delete_range(&d.key, &d.range_end)?;
    let revision = KvRead::rev(txn);
    Ok(DeleteRangeResponse {
        header: Some(ResponseHeader {
            revision,
            ..Default::default()
        }),
        deleted: deleted.len() as i64,
        prev_kvs: if d.prev_kv {
            deleted.into_iter().map(to_pb).collect()
        } else {
            Vec::new()
        },
    })
}

/// The branch each (nested) txn takes, in pre-order, decided before any op runs.
fn compare_path(view: &mut dyn KvRead, t: &TxnRequest) -> Result<Vec<bool>> {
    let mut path = Vec::new();
    compare_path_into(view, t, &mut path)?;
    Ok(path)
}

fn compare_path_into(view: &mut dyn KvRead, t: &TxnRequest, path: &mut Vec<bool>) -> Result<()> {
    let mut ok = true;
    for c in &t.compare {
        if !apply_compare(view, c)? {
            ok = false;
            break;
        }
    }
    path.push(ok);
    let ops = if ok { &t.success } else { &t.failure };
    for op in ops {
        if let Some(request_op::Request::RequestTxn(inner)) = &op.request {
            compare_path_into(view, inner, path)?;
        }
    }
    Ok(())
}

fn apply_compare(view: &mut dyn KvRead, c: &Compare) -> Result<bool> {
    let rr = match view.range(&c.key, &c.range_end, &RangeOptions::default()) {
        Ok(rr) => rr,
        Err(_) => return Ok(false),
    };
    let target =
        compare::CompareTarget::try_from(c.target).unwrap_or(compare::CompareTarget::Version);
    if rr.kvs.is_empty() {
        if target == compare::CompareTarget::Value {
            return Ok(false);
        }
        return Ok(compare_kv(c, target, &KeyValue::default()));
    }
    Ok(rr.kvs.iter().all(|kv| compare_kv(c, target, kv)))
}

fn compare_kv(c: &Compare, target: compare::CompareTarget, kv: &KeyValue) -> bool {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    let ord = match target {
        CompareTarget::Value => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        CompareTarget::Create => kv.create_revision.cmp(&match c.target_union {
            Some(TargetUnion::CreateRevision(r)) => r,
            _ => 0,
        }),
        CompareTarget::Mod => kv.mod_revision.cmp(&match c.target_union {
            Some(TargetUnion::ModRevision(r)) => r,
            _ => 0,
        }),
        CompareTarget::Version => kv.version.cmp(&match c.target_union {
            Some(TargetUnion::Version(r)) => r,
            _ => 0,
        }),
        CompareTarget::Lease => kv.lease.cmp(&match c.target_union {
            Some(TargetUnion::Lease(r)) => r,
            _ => 0,
        }),
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord.is_eq(),
        Ok(CompareResult::NotEqual) => ord.is_ne(),
        Ok(CompareResult::Greater) => ord.is_gt(),
        Ok(CompareResult::Less) => ord.is_lt(),
        Err(_) => true,
    }
}

/// Checks the ops on the chosen path before anything runs (so a failing txn
/// writes nothing): puts need their lease and, with ignore_*, their key; ranges
/// need a readable revision.
fn check_txn(
    view: &mut dyn KvRead,
    t: &TxnRequest,
    path: &[bool],
    lease_exists: LeaseExists<'_>,
) -> Result<usize> {
    let ops = if path[0] { &t.success } else { &t.failure };
    let mut used = 0;
    for op in ops {
        match &op.request {
            Some(request_op::Request::RequestTxn(inner)) => {
                let n = check_txn(view, inner, &path[1 + used..], lease_exists)?;
                used += n + 1;
            }
            Some(request_op::Request::RequestPut(p)) => check_put(view, p, lease_exists)?,
            Some(request_op::Request::RequestRange(r)) => {
                if r.revision > view.rev() {
                    return Err(Error::FutureRevision);
                }
                if r.revision != 0 && r.revision < view.first_rev() {
                    return Err(Error::Compacted);
                }
            }
            _ => {}
        }
    }
    Ok(used)
}

/// Runs the ops of the chosen branches in order; returns how many nested txns
/// of `path` it consumed.
fn run_txn<V: TxnOps>(
    view: &mut V,
    t: &TxnRequest,
    path: &[bool],
    resp: &mut TxnResponse,
) -> Result<usize> {
    let ops = if path[0] { &t.success } else { &t.failure };
    let mut used = 0;
    for op in ops {
        let r = match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                response_op::Response::ResponseRange(range(view, r)?)
            }
            Some(request_op::Request::RequestPut(p)) => {
                response_op::Response::ResponsePut(view.put(p)?)
            }
            Some(request_op::Request::RequestDeleteRange(d)) => {
                response_op::Response::ResponseDeleteRange(view.delete_range(d)?)
            }
            Some(request_op::Request::RequestTxn(inner)) => {
                let mut inner_resp = TxnResponse {
                    header: Some(ResponseHeader::default()),
                    succeeded: path[1 + used],
                    responses: Vec::new(),
                };
                let n = run_txn(view, inner, &path[1 + used..], &mut inner_resp)?;
                used += n + 1;
                // etcd leaves a nested txn's header revision at zero.
                response_op::Response::ResponseTxn(inner_resp)
            }
            None => continue,
        };
        resp.responses.push(ResponseOp { response: Some(r) });
    }
    Ok(used)
}

/// What running txn ops needs: reads always, writes only in a write txn.
pub trait TxnOps: KvRead {
    fn put(&mut self, p: &PutRequest) -> Result<PutResponse>;
    fn delete_range(&mut self, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse>;
}

impl TxnOps for WriteTxn<'_> {
    fn put(&mut self, p: &PutRequest) -> Result<PutResponse> {
        put(self, p)
    }
    fn delete_range(&mut self, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        delete_range(self, d)
    }
}

impl TxnOps for ReadView<'_> {
    fn put(&mut self, _: &PutRequest) -> Result<PutResponse> {
        Err(read_only_violation())
    }
    fn delete_range(&mut self, _: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        Err(read_only_violation())
    }
}

fn read_only_violation() -> Error {
    Error::InvalidArgument("etcdserver: write in a read-only txn".into())
}

/// True when no branch of the txn (at any depth) writes.
pub fn txn_is_read_only(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(t.failure.iter())
        .all(|op: &RequestOp| match &op.request {
            Some(request_op::Request::RequestRange(_)) | None => true,
            Some(request_op::Request::RequestTxn(inner)) => txn_is_read_only(inner),
            _ => false,
        })
}

/// Serves a read-only txn from local state at one revision.
pub fn read_only_txn(store: &Store, t: &TxnRequest) -> Result<TxnResponse> {
    let mut view = store.read_view();
    let path = compare_path(&mut view, t)?;
    check_txn(&mut view, t, &path, &|_| true)?;
    let mut resp = TxnResponse {
        header: Some(ResponseHeader {
            revision: view.rev(),
            ..Default::default()
        }),
        succeeded: path[0],
        responses: Vec::new(),
    };
    run_txn(&mut view, t, &path, &mut resp)?;
    Ok(resp)
}
