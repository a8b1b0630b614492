//! Watch: etcd 3.4's Watch service, served by every member from its own applied
//! state.
//!
//! - [`hub`]: every watcher, the synced and unsynced (catch-up) paths, and the
//!   revision-ordered queue of each stream.
//! - [`stream`]: one gRPC `Watch` stream: create / cancel / progress requests,
//!   the created / canceled / compacted / progress responses with etcd's exact
//!   fields, filters (NOPUT, NODELETE), prev_kv, fragmenting, the periodic
//!   progress ticker, and the `hasleader` rule.
//! - [`queue`]: the bounded queue from the hub to one Watch stream.
//! - [`grpc`]: the service's gRPC server, with small per-stream codec buffers.
//!
//! Guarantees (etcd's robustness rules): ordered, unique, atomic (a revision's
//! events share one response unless the watcher asked for `fragment`),
//! reliable, resumable, bookmarkable, filtered, prev_kv and is_create exact.
//!
//! Left out: permission checks (auth issue).

pub mod grpc;
pub mod hub;
pub mod queue;
pub mod stream;

use std::sync::Arc;

use crate::mvcc::Event;

pub use hub::Hub;

/// A watch id within one stream (etcd's `WatchID`; -1 = the whole stream).
pub type WatchId = i64;
/// A stream's id within the hub.
pub type StreamId = u64;

/// What the hub queues for a stream, in revision order.
#[derive(Debug)]
pub enum Out {
    /// Events of one revision (synced) or of a window of revisions (catch-up),
    /// already limited to the watcher's key range; `rev` is the header revision.
    Events {
        watch_id: WatchId,
        rev: i64,
        events: Arc<Vec<Event>>,
    },
    /// The watcher's start revision was compacted; it is removed.
    Compacted { watch_id: WatchId, compact_rev: i64 },
    /// A progress notification at `rev` (watch id -1: the whole stream).
    Progress { watch_id: WatchId, rev: i64 },
}
