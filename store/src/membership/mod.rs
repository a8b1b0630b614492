//! Membership: the replicated member list (etcd's `membership.RaftCluster`,
//! re-written here) and the Cluster API built on it.
//!
//! - [`Membership`]: every member's id, name, peer URLs, client URLs and
//!   learner flag, plus the ids removed for good. Changed only in apply, the
//!   same way on every member: [`Membership::apply`] checks a [`Change`] with
//!   etcd's rules and stages its records in the entry's write transaction;
//!   [`Membership::commit`] installs the new list once that transaction ended.
//! - [`api`]: the Cluster API's logic (MemberList, MemberAdd, MemberRemove,
//!   MemberUpdate, MemberPromote, with etcd's strict reconfiguration checks)
//!   and the publish task, by which a member records its name and client URLs
//!   through Raft after it starts.
//! - [`join`]: how a member started with `--initial-cluster-state existing`
//!   learns its id and the cluster id from the running members.
//! - [`gate`]: refuses client calls a learner cannot serve, and every client
//!   call once this member was removed.
//! - [`service`]: the thin gRPC adapters (`etcdserverpb.Cluster` on the client
//!   port, `keel.peer.MembershipPeer` on the peer port).
//!
//! Persistence: one record `\xfdmember/<id: 8 bytes BE>` = `keel.peer.Member`
//! per member and `\xfdremoved/<id>` = empty per removed id, in the MVCC
//! backend's keyspace outside the revision and meta keys, written in the same
//! batch as the consistent index of the entry that changed them. A Raft
//! snapshot's image copies every record in `0x80..0xff`, so the member list
//! travels with snapshots. The initial members are written at bootstrap,
//! identically on every initial member, before the first entry.
//!
//! Invariants:
//! - The records are the source of truth for Raft's configuration: voters are
//!   the members that are not learners, learners the others. A conf change
//!   entry changes Raft's configuration only if [`Membership::apply`] accepted
//!   it, so the two never diverge; on start the server re-derives Raft's conf
//!   state from the records (see [`Membership::conf_state`]).
//! - A removed id never comes back (etcd's rule): adding, updating or
//!   removing it again fails with "member not found".
//! - Members are listed sorted by id (as etcd lists them).
//!
//! Left out: etcd's v2 store copy of the member list, cluster version
//! negotiation, and TLS peer URLs.

pub mod api;
pub mod gate;
pub mod join;
pub mod service;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use keel_proto::{etcdserverpb, peer};
use prost::Message as _;
use tokio::sync::watch;

use crate::config::MemberId;
use crate::consensus::{ConfChange, ConfChangeKind};
use crate::error::{Error, Result};
use crate::mvcc::{Store, WriteTxn};

pub use api::Members;

/// etcd 3.4's limit on learners in a cluster.
pub const MAX_LEARNERS: usize = 1;

const MEMBER_PREFIX: &[u8] = b"\xfdmember/";
const MEMBER_END: &[u8] = b"\xfdmember0";
const REMOVED_PREFIX: &[u8] = b"\xfdremoved/";
const REMOVED_END: &[u8] = b"\xfdremoved0";

fn record_key(prefix: &[u8], id: MemberId) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn id_of(prefix: &[u8], key: &[u8]) -> Result<MemberId> {
    key.strip_prefix(prefix)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| Error::Corrupt("member record key is damaged".into()))
}

/// One member of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    pub id: MemberId,
    /// Empty until the member has published it (etcd: "unstarted").
    pub name: String,
    /// Sorted.
    pub peer_urls: Vec<String>,
    /// Empty until the member has published them.
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl Member {
    /// etcd's `IsStarted`: the member has a name (initial members have one
    /// from `--initial-cluster`; added members once they published it).
    pub fn is_started(&self) -> bool {
        !self.name.is_empty()
    }

    pub fn to_proto(&self) -> peer::Member {
        peer::Member {
            id: self.id,
            name: self.name.clone(),
            peer_urls: self.peer_urls.clone(),
            client_urls: self.client_urls.clone(),
            is_learner: self.is_learner,
        }
    }

    pub fn from_proto(m: peer::Member) -> Member {
        Member {
            id: m.id,
            name: m.name,
            peer_urls: m.peer_urls,
            client_urls: m.client_urls,
            is_learner: m.is_learner,
        }
    }

    /// The member as the etcd API shows it.
    pub fn to_api(&self) -> etcdserverpb::Member {
        etcdserverpb::Member {
            id: self.id,
            name: self.name.clone(),
            peer_ur_ls: self.peer_urls.clone(),
            client_ur_ls: self.client_urls.clone(),
            is_learner: self.is_learner,
        }
    }
}

/// A change to the member list, in keel's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new member (voter or learner), with its id and peer URLs.
    Add(Member),
    /// A learner becomes a voter.
    Promote(MemberId),
    Remove(MemberId),
    /// New peer URLs (sorted) for a member.
    Update {
        id: MemberId,
        peer_urls: Vec<String>,
    },
    /// A member's name and client URLs, published by the member itself.
    Publish {
        id: MemberId,
        name: String,
        client_urls: Vec<String>,
    },
}

impl Change {
    /// The member the change is about.
    pub fn id(&self) -> MemberId {
        match self {
            Change::Add(m) => m.id,
            Change::Promote(id) | Change::Remove(id) => *id,
            Change::Update { id, .. } | Change::Publish { id, .. } => *id,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct State {
    members: BTreeMap<MemberId, Member>,
    removed: BTreeSet<MemberId>,
}

impl State {
    fn learners(&self) -> usize {
        self.members.values().filter(|m| m.is_learner).count()
    }

    fn voting(&self) -> impl Iterator<Item = &Member> {
        self.members.values().filter(|m| !m.is_learner)
    }

    fn url_taken(&self, urls: &[String], except: Option<MemberId>) -> bool {
        self.members
            .values()
            .filter(|m| Some(m.id) != except)
            .any(|m| m.peer_urls.iter().any(|u| urls.contains(u)))
    }

    /// etcd's `ValidateConfigurationChange`, plus publish (never refused).
    fn validate(&self, c: &Change) -> Result<()> {
        if !matches!(c, Change::Publish { .. }) && self.removed.contains(&c.id()) {
            return Err(Error::MemberNotFound);
        }
        match c {
            Change::Add(m) => {
                if self.members.contains_key(&m.id) {
                    return Err(Error::MemberExists);
                }
                if self.url_taken(&m.peer_urls, None) {
                    return Err(Error::PeerUrlExists);
                }
                if m.is_learner && self.learners() + 1 > MAX_LEARNERS {
                    return Err(Error::TooManyLearners);
                }
            }
            Change::Promote(id) => match self.members.get(id) {
                None => return Err(Error::MemberNotFound),
                Some(m) if !m.is_learner => return Err(Error::MemberNotLearner),
                Some(_) => {}
            },
            Change::Remove(id) => {
                if !self.members.contains_key(id) {
                    return Err(Error::MemberNotFound);
                }
            }
            Change::Update { id, peer_urls } => {
                if !self.members.contains_key(id) {
                    return Err(Error::MemberNotFound);
                }
                if self.url_taken(peer_urls, Some(*id)) {
                    return Err(Error::PeerUrlExists);
                }
            }
            Change::Publish { .. } => {}
        }
        Ok(())
    }

    /// Applies a validated change.
    fn change(&mut self, c: &Change) {
        match c {
            Change::Add(m) => {
                self.members.insert(m.id, m.clone());
            }
            Change::Promote(id) => {
                if let Some(m) = self.members.get_mut(id) {
                    m.is_learner = false;
                }
            }
            Change::Remove(id) => {
                self.members.remove(id);
                self.removed.insert(*id);
            }
            Change::Update { id, peer_urls } => {
                if let Some(m) = self.members.get_mut(id) {
                    m.peer_urls = peer_urls.clone();
                }
            }
            Change::Publish {
                id,
                name,
                client_urls,
            } => {
                if let Some(m) = self.members.get_mut(id) {
                    m.name = name.clone();
                    m.client_urls = client_urls.clone();
                }
            }
        }
    }
}

/// A change checked and written into a write transaction, to be installed by
/// [`Membership::commit`] once the transaction has ended.
#[derive(Debug)]
pub struct Staged {
    next: State,
    change: Change,
}

/// The member list: replicated state shared by apply (the Raft thread), the
/// Cluster API, the peer transport and the client gate.
#[derive(Debug)]
pub struct Membership {
    local: MemberId,
    state: RwLock<State>,
    /// Peer URLs of members known from outside the replicated list: a joining
    /// member's view of the cluster until its first snapshot brings the list.
    remotes: RwLock<BTreeMap<MemberId, Vec<String>>>,
    /// Bumped on every change, so followers of the list (the transport) know
    /// when to look again.
    version: AtomicU64,
    removed: watch::Sender<bool>,
    /// Set once this member's name and client URLs are in the replicated
    /// list (etcd serves no client before that; keel reports unhealthy).
    published: AtomicBool,
}

impl Membership {
    /// Loads the member list recorded in `store`; `local` is this member's id.
    pub fn open(store: &Store, local: MemberId) -> Result<Membership> {
        let state = load(store)?;
        let removed = state.removed.contains(&local);
        tracing::debug!(
            members = state.members.len(),
            removed = state.removed.len(),
            "membership: opened"
        );
        Ok(Membership {
            local,
            state: RwLock::new(state),
            remotes: RwLock::new(BTreeMap::new()),
            version: AtomicU64::new(1),
            removed: watch::channel(removed).0,
            published: AtomicBool::new(false),
        })
    }

    /// Reads the records again (after a snapshot replaced the backend).
    pub fn reload(&self, store: &Store) -> Result<()> {
        let state = load(store)?;
        let removed = state.removed.contains(&self.local);
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = state;
        self.version.fetch_add(1, Ordering::Relaxed);
        if removed {
            self.mark_removed();
        }
        Ok(())
    }

    /// Writes the initial member list of a new cluster, without a revision
    /// and without moving the consistent index (every initial member writes
    /// the same records before its first entry).
    pub fn bootstrap(store: &Store, members: &[Member]) -> Result<()> {
        // On a fresh store there is nothing to replace.
        Self::replace_all(store, members)
    }

    /// Replaces every member and removed-id record in `store` with
    /// `members` (a backup restored into a new cluster brings the old
    /// cluster's list), without a revision and without moving the consistent
    /// index.
    pub fn replace_all(store: &Store, members: &[Member]) -> Result<()> {
        let mut old = Vec::new();
        for (start, end) in [(MEMBER_PREFIX, MEMBER_END), (REMOVED_PREFIX, REMOVED_END)] {
            for item in store.backend().scan(start, end) {
                old.push(item?.0);
            }
        }
        let mut txn = store.write();
        for k in old {
            txn.delete_record(k);
        }
        for m in members {
            txn.put_record(
                record_key(MEMBER_PREFIX, m.id),
                m.to_proto().encode_to_vec(),
            );
        }
        txn.end(0)?;
        Ok(())
    }

    /// Whether `store` holds any member record.
    pub fn has_records(store: &Store) -> Result<bool> {
        Ok(store
            .backend()
            .scan(MEMBER_PREFIX, MEMBER_END)
            .next()
            .transpose()?
            .is_some())
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn local_id(&self) -> MemberId {
        self.local
    }

    /// Every member, sorted by id.
    pub fn members(&self) -> Vec<Member> {
        self.read().members.values().cloned().collect()
    }

    pub fn member(&self, id: MemberId) -> Option<Member> {
        self.read().members.get(&id).cloned()
    }

    pub fn is_removed(&self, id: MemberId) -> bool {
        self.read().removed.contains(&id)
    }

    /// Whether this member is in the list as a learner (etcd's
    /// `IsMemberExist(ID) && IsLearner()`).
    pub fn local_is_learner(&self) -> bool {
        self.read()
            .members
            .get(&self.local)
            .is_some_and(|m| m.is_learner)
    }

    /// Whether this member's attributes (name, client URLs) are published.
    pub fn local_published(&self) -> bool {
        self.published.load(Ordering::Acquire)
    }

    /// Records that this member's attributes are in the replicated list.
    pub fn mark_published(&self) {
        self.published.store(true, Ordering::Release);
    }

    /// Whether this member was removed from the cluster.
    pub fn local_removed(&self) -> bool {
        *self.removed.borrow()
    }

    /// Records that this member was removed (a peer said so, or the removal
    /// was applied here).
    pub fn mark_removed(&self) {
        self.removed
            .send_if_modified(|r| !std::mem::replace(r, true));
    }

    /// Resolves once this member has been removed from the cluster.
    pub async fn wait_removed(&self) {
        let mut rx = self.removed.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Changes whenever the list (or the remotes) change.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    /// Sets the peers known from outside the list (see `remotes`).
    pub fn set_remotes(&self, remotes: BTreeMap<MemberId, Vec<String>>) {
        *self.remotes.write().unwrap_or_else(|e| e.into_inner()) = remotes;
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    /// Every other member's peer URLs: the list's, then the remotes' for ids
    /// the list does not have; removed ids and this member left out.
    pub fn peers(&self) -> BTreeMap<MemberId, Vec<String>> {
        let state = self.read();
        let mut out: BTreeMap<MemberId, Vec<String>> = self
            .remotes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(id, _)| !state.removed.contains(id))
            .map(|(id, urls)| (*id, urls.clone()))
            .collect();
        for m in state.members.values() {
            out.insert(m.id, m.peer_urls.clone());
        }
        out.remove(&self.local);
        out
    }

    /// The peer URLs of member `id` (list or remotes).
    pub fn peer_urls(&self, id: MemberId) -> Option<Vec<String>> {
        if let Some(m) = self.read().members.get(&id) {
            return Some(m.peer_urls.clone());
        }
        self.remotes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// Raft's configuration as the list implies it: (voters, learners), or
    /// `None` when the list is empty (a joining member before its snapshot).
    pub fn conf_state(&self) -> Option<(Vec<MemberId>, Vec<MemberId>)> {
        let state = self.read();
        if state.members.is_empty() {
            return None;
        }
        let (learners, voters): (Vec<&Member>, Vec<&Member>) =
            state.members.values().partition(|m| m.is_learner);
        Some((
            voters.iter().map(|m| m.id).collect(),
            learners.iter().map(|m| m.id).collect(),
        ))
    }

    /// A fresh member id for `peer_urls`: a hash of the URLs, the cluster id
    /// and the time (etcd's recipe, FNV instead of SHA-1), stepped past any
    /// id in use or removed. Apply refuses a duplicate anyway.
    pub fn new_member_id(&self, peer_urls: &[String], cluster_id: u64) -> MemberId {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let state = self.read();
        let mut salt = nanos;
        loop {
            let id = crate::config::member_id_of(peer_urls, &format!("{cluster_id:x}/{salt}"));
            if !state.members.contains_key(&id) && !state.removed.contains(&id) {
                return id;
            }
            salt = salt.wrapping_add(1);
        }
    }

    /// etcd's `IsReadyToAddVotingMember`: after adding one more voter, the
    /// started voters are still a quorum (or this is the second member of a
    /// one-member cluster).
    pub fn ready_to_add_voting(&self) -> bool {
        let state = self.read();
        let members = state.voting().count() + 1;
        let started = state.voting().filter(|m| m.is_started()).count();
        if started == 1 && members == 2 {
            return true;
        }
        started > members / 2
    }

    /// etcd's `IsReadyToRemoveVotingMember`: without `id`, the started voters
    /// are still a quorum.
    pub fn ready_to_remove_voting(&self, id: MemberId) -> bool {
        let state = self.read();
        let rest: Vec<&Member> = state.voting().filter(|m| m.id != id).collect();
        let started = rest.iter().filter(|m| m.is_started()).count();
        started > rest.len() / 2
    }

    /// etcd's `IsReadyToPromoteMember`: counting the learner as a started
    /// voter, the started voters are a quorum.
    pub fn ready_to_promote(&self) -> bool {
        let state = self.read();
        let members = state.voting().count() + 1;
        let started = state.voting().filter(|m| m.is_started()).count() + 1;
        started > members / 2
    }

    /// The voting members' ids.
    pub fn voting_ids(&self) -> Vec<MemberId> {
        self.read().voting().map(|m| m.id).collect()
    }

    /// Whether the list already shows the effect of a Raft conf change (for
    /// changes applied to the state before Raft replays them: an image newer
    /// than its snapshot's metadata). Taking exactly those leaves Raft's
    /// configuration equal to the list's.
    pub fn agrees_with(&self, change: &ConfChange) -> bool {
        let member = self.member(change.node);
        match change.kind {
            ConfChangeKind::AddVoter => member.is_some_and(|m| !m.is_learner),
            ConfChangeKind::AddLearner => member.is_some_and(|m| m.is_learner),
            ConfChangeKind::Remove => member.is_none(),
        }
    }

    /// Checks `change` with etcd's rules and writes its records into `txn`
    /// (apply path). Nothing changes in memory until [`Membership::commit`].
    pub fn apply(&self, txn: &mut WriteTxn<'_>, change: &Change) -> Result<Staged> {
        let mut next = self.read().clone();
        next.validate(change)?;
        next.change(change);
        let id = change.id();
        match next.members.get(&id) {
            Some(m) => txn.put_record(record_key(MEMBER_PREFIX, id), m.to_proto().encode_to_vec()),
            None if matches!(change, Change::Remove(_)) => {
                txn.delete_record(record_key(MEMBER_PREFIX, id));
                txn.put_record(record_key(REMOVED_PREFIX, id), Vec::new());
            }
            // Publish of a member not (or no longer) in the list: nothing to do.
            None => {}
        }
        Ok(Staged {
            next,
            change: change.clone(),
        })
    }

    /// Installs a staged change whose transaction has ended.
    pub fn commit(&self, staged: Staged) {
        let Staged { next, change } = staged;
        let removed_self = matches!(change, Change::Remove(id) if id == self.local);
        if let Change::Publish { id, .. } = &change {
            if !next.members.contains_key(id) {
                tracing::warn!(
                    member = format!("{id:x}"),
                    "skipped publishing the attributes of a member not in the cluster"
                );
            }
        }
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = next;
        self.version.fetch_add(1, Ordering::Relaxed);
        match &change {
            Change::Add(m) => tracing::info!(
                member = format!("{:x}", m.id),
                peer_urls = ?m.peer_urls,
                learner = m.is_learner,
                "added member"
            ),
            Change::Promote(id) => {
                tracing::info!(member = format!("{id:x}"), "promoted learner")
            }
            Change::Remove(id) => tracing::info!(member = format!("{id:x}"), "removed member"),
            Change::Update { id, peer_urls } => {
                tracing::info!(member = format!("{id:x}"), ?peer_urls, "updated member")
            }
            Change::Publish {
                id,
                name,
                client_urls,
            } => tracing::info!(
                member = format!("{id:x}"),
                %name,
                ?client_urls,
                "member published its attributes"
            ),
        }
        if removed_self {
            self.mark_removed();
        }
    }
}

fn load(store: &Store) -> Result<State> {
    let mut state = State::default();
    for item in store.backend().scan(MEMBER_PREFIX, MEMBER_END) {
        let (k, v) = item?;
        let id = id_of(MEMBER_PREFIX, &k)?;
        let m = peer::Member::decode(v.as_slice())
            .map_err(|e| Error::Corrupt(format!("member record {id:x}: {e}")))?;
        state.members.insert(id, Member::from_proto(m));
    }
    for item in store.backend().scan(REMOVED_PREFIX, REMOVED_END) {
        let (k, _) = item?;
        state.removed.insert(id_of(REMOVED_PREFIX, &k)?);
    }
    Ok(state)
}

/// Parses peer URLs with etcd's `types.NewURLs` rules (a scheme of http,
/// https, unix or unixs; `host:port`; no path) and sorts them.
pub fn parse_peer_urls(urls: &[String]) -> Result<Vec<String>> {
    if urls.is_empty() {
        return Err(Error::MemberBadUrls);
    }
    let mut out = Vec::with_capacity(urls.len());
    for u in urls {
        let u = u.trim();
        let (scheme, rest) = u.split_once("://").ok_or(Error::MemberBadUrls)?;
        if !matches!(scheme, "http" | "https" | "unix" | "unixs") {
            return Err(Error::MemberBadUrls);
        }
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(Error::MemberBadUrls);
        }
        let (h, _port) = rest.rsplit_once(':').ok_or(Error::MemberBadUrls)?;
        if h.contains(':') && !(h.starts_with('[') && h.ends_with(']')) {
            return Err(Error::MemberBadUrls);
        }
        out.push(u.to_string());
    }
    out.sort();
    Ok(out)
}
