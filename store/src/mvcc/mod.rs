//! MVCC: the replicated state machine of the store, with etcd 3.4's semantics.
//!
//! Every write transaction that changes something commits at one new main
//! revision; its changes get sub revisions 0, 1, 2... in op order. The
//! [`Backend`] keeps the history keyed by revision (see `encoding` for the
//! layout) plus the meta keys (consistent index, compact revision), all in one
//! keyspace so that a transaction is one atomic batch. The in-memory key index
//! maps each key to its revisions, in generations ended by tombstones, without
//! values. Reads at a past revision see the state as of that revision;
//! compaction drops the history below a revision, keeping for each key its
//! value at that revision.
//!
//! Files: `revision` (the clock and its byte encoding), `encoding` (records and
//! meta keys), `key_index` (the in-memory index), `backend` (the storage seam,
//! in memory and on sled), `store` (the [`Store`]: open, reads, compaction,
//! history, bytes in use), `txn` (the [`WriteTxn`]), `hash` (hashes of the
//! history for consistency checks).
//!
//! Invariants: a fresh store is at revision 1 and its first write commits at 2
//! (as in etcd); a revision becomes visible to readers only once its batch is
//! applied; the current revision and the compact revision only grow.
//!
//! Leaves out: durability (the Raft log storage flushes sled; the Raft log
//! replays anything lost since), leases (a kv only carries its
//! lease id), watch (built on [`Store::history`] and the events returned by
//! [`WriteTxn::end`]), Raft snapshot transfer (`image` only writes and
//! installs the state as one stream; `crate::snapshot` moves it), and
//! etcd's background batching of compaction (one batch here).

mod backend;
mod encoding;
mod hash;
mod image;
mod key_index;
mod logstore;
mod revision;
mod store;
mod txn;

#[cfg(test)]
mod tests;

pub use backend::{Backend, Batch, BatchOp, MemoryBackend, ScanIter, SledBackend};
pub use hash::{Crc32c, KvHash};
pub use image::{verify_image, ImageSummary};
pub use key_index::KeyRange;
pub use logstore::LogBackend;
pub use revision::Revision;
pub use store::Store;
pub use txn::WriteTxn;

/// A key's value at one revision (etcd's `mvccpb.KeyValue`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    /// The revision of the put that created this generation of the key.
    pub create_revision: i64,
    /// The revision of the last change.
    pub mod_revision: i64,
    /// 1 on create, +1 per put; a delete resets it.
    pub version: i64,
    pub value: Vec<u8>,
    /// The lease id, 0 for none.
    pub lease: i64,
}

/// What a change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, as watchers see it.
///
/// A delete's `kv` has only `key` and `mod_revision` (the deleting revision),
/// as etcd sends tombstones. `prev_kv` is the value before the change. A
/// delete always has it. A put has it when it comes from
/// [`Store::history`], or when the previous value held a lease; a put of a
/// key that already existed (`kv.version > 1`) may leave it out otherwise:
/// [`Store::prev_kv`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

/// Options of a range read.
#[derive(Clone, Debug, Default)]
pub struct RangeOptions {
    /// At most this many kvs; 0 = no limit.
    pub limit: usize,
    /// Read as of this revision; <= 0 = the current one.
    pub revision: i64,
    /// Only count the keys.
    pub count_only: bool,
    /// Leave the values out.
    pub keys_only: bool,
}

/// The answer of a range read.
#[derive(Clone, Debug, Default)]
pub struct RangeResult {
    /// Sorted by key, ascending; at most `limit`.
    pub kvs: Vec<KeyValue>,
    /// How many keys match, ignoring `limit`.
    pub count: usize,
    /// The store's current revision (in a write transaction that has written:
    /// the transaction's revision).
    pub revision: i64,
}
