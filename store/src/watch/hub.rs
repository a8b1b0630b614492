//! The watch hub: every watcher of every stream, and the two paths events take
//! to them (etcd's synced / unsynced / victim design, in `watchable_store.go`).
//!
//! - Synced watchers have seen every applied revision. [`Hub::notify`] (called
//!   by apply, on the Raft thread, after each write) hands the revision's events
//!   to each synced watcher whose range they touch, with a non-blocking
//!   `try_send` into the watcher's stream queue. It never waits.
//! - A watcher whose queue is full (its client reads slowly), or which starts
//!   from a past revision, is unsynced: it remembers the first revision it has
//!   not received, and the sync thread catches it up from MVCC history in
//!   windows of revisions, while holding no lock, then moves it back to synced.
//!   Memory per watcher is bounded by its stream queue and one window.
//!
//! Invariants (the watch guarantees rest on them):
//! - A watcher receives the revisions from its start onwards, each exactly once,
//!   in order, each revision's events in one message (never split here).
//! - `notified` is the last revision handed to `notify`; a synced watcher has
//!   received (or had queued) everything up to it. State changes and sends into
//!   a stream queue happen under the hub lock, so queue order is revision order.
//! - A watcher starting below the compaction point gets one compacted message
//!   and is removed.
//!
//! Left out here: converting to protobuf, filters and prev_kv selection,
//! fragmenting (all in `stream.rs`), and permission checks (auth issue).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;

use super::queue::{self, Receiver};
use super::{Out, StreamId, WatchId};
use crate::error::Error;
use crate::mvcc::{Event, KeyRange, Store};

/// Revisions read from history per catch-up step of one watcher.
const CATCH_UP_WINDOW: i64 = 1000;
/// Unsynced watchers handled per pass of the sync thread (etcd: 512).
const SYNC_BATCH: usize = 512;

type Slot = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Registered; its "created" response is not yet sent. Gets nothing.
    Pending,
    Synced,
    Unsynced,
}

struct Watcher {
    stream: StreamId,
    id: WatchId,
    key: Vec<u8>,
    range_end: Vec<u8>,
    /// The first revision not yet received (for a synced watcher: the lowest
    /// revision it may receive, i.e. its start revision).
    next_rev: i64,
    state: State,
}

impl Watcher {
    fn range(&self) -> KeyRange<'_> {
        KeyRange::new(&self.key, &self.range_end)
    }
    fn is_single(&self) -> bool {
        self.range_end.is_empty()
    }
}

/// Where a stream's messages go: a tokio channel (the lock and election
/// recipes' internal watches), or a [`queue`] (Watch streams: smaller).
#[derive(Clone)]
enum Sink {
    Channel(mpsc::Sender<Out>),
    Queue(queue::Sender),
}

impl Sink {
    /// Queues `out`; false when the queue is full (the stream reads slowly).
    /// A message for a stream whose receiver is gone is dropped.
    fn try_send(&self, out: Out) -> bool {
        match self {
            Sink::Channel(tx) => {
                !matches!(tx.try_send(out), Err(mpsc::error::TrySendError::Full(_)))
            }
            Sink::Queue(tx) => tx.try_send(out).is_ok(),
        }
    }

    fn has_room(&self) -> bool {
        match self {
            Sink::Channel(tx) => tx.capacity() > 0,
            Sink::Queue(tx) => tx.has_room(),
        }
    }
}

struct StreamState {
    tx: Sink,
    watchers: HashMap<WatchId, Slot>,
    next_id: WatchId,
    /// An on-demand progress request waits for every watcher to be synced.
    progress_pending: bool,
}

#[derive(Default)]
struct Inner {
    watchers: HashMap<Slot, Watcher>,
    streams: HashMap<StreamId, StreamState>,
    /// Synced single-key watchers by key; synced range watchers in a list.
    synced_keys: HashMap<Vec<u8>, Vec<Slot>>,
    synced_ranges: HashSet<Slot>,
    unsynced: HashSet<Slot>,
    notified: i64,
    next_slot: Slot,
    next_stream: StreamId,
}

/// Every watcher, and the paths events take to them.
pub struct Hub {
    inner: Mutex<Inner>,
    store: Arc<Store>,
    wake: crossbeam_channel::Sender<()>,
}

/// Why a watch could not be created (etcd's messages).
pub const ERR_DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
pub const ERR_EMPTY_RANGE: &str = "mvcc: watcher range is empty";

impl Hub {
    /// A hub over `store`, with its sync thread. Create it before anything is
    /// applied, so that `notified` starts at the store's current revision.
    pub fn new(store: Arc<Store>) -> Arc<Hub> {
        let (wake, woken) = crossbeam_channel::bounded(1);
        let hub = Arc::new(Hub {
            inner: Mutex::new(Inner {
                notified: store.current_revision(),
                ..Default::default()
            }),
            store,
            wake,
        });
        let weak = Arc::downgrade(&hub);
        std::thread::Builder::new()
            .name("watch-sync".into())
            .spawn(move || sync_loop(weak, woken))
            .expect("spawn the watch sync thread");
        hub
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last revision handed to watchers.
    pub fn notified_revision(&self) -> i64 {
        self.lock().notified
    }

    /// Opens a stream whose messages go to `tx`.
    pub fn open_stream(&self, tx: mpsc::Sender<Out>) -> StreamId {
        self.open(Sink::Channel(tx))
    }

    /// Opens a stream whose messages go to a [`queue`] of `capacity`.
    pub fn open_queue_stream(&self, capacity: usize) -> (StreamId, Receiver) {
        let (tx, rx) = queue::queue(capacity);
        (self.open(Sink::Queue(tx)), rx)
    }

    fn open(&self, tx: Sink) -> StreamId {
        let mut g = self.lock();
        g.next_stream += 1;
        let id = g.next_stream;
        g.streams.insert(
            id,
            StreamState {
                tx,
                watchers: HashMap::new(),
                next_id: 0,
                progress_pending: false,
            },
        );
        id
    }

    /// Closes a stream and drops its watchers.
    pub fn close_stream(&self, stream: StreamId) {
        let mut g = self.lock();
        if let Some(s) = g.streams.remove(&stream) {
            for slot in s.watchers.into_values() {
                remove_slot(&mut g, slot);
            }
        }
    }

    /// Registers a watcher (not yet receiving: see [`Hub::activate`]). `id` 0
    /// asks the hub to choose. `start_rev` is the first revision to deliver.
    pub fn register(
        &self,
        stream: StreamId,
        id: WatchId,
        key: Vec<u8>,
        range_end: Vec<u8>,
        start_rev: i64,
    ) -> Result<WatchId, &'static str> {
        if !range_end.is_empty() && range_end != [0] && range_end <= key {
            return Err(ERR_EMPTY_RANGE);
        }
        let mut g = self.lock();
        let inner = &mut *g;
        let s = inner.streams.get_mut(&stream).ok_or(ERR_DUPLICATE_ID)?;
        let id = if id == 0 {
            while s.watchers.contains_key(&s.next_id) {
                s.next_id += 1;
            }
            s.next_id
        } else {
            if s.watchers.contains_key(&id) {
                return Err(ERR_DUPLICATE_ID);
            }
            id
        };
        inner.next_slot += 1;
        let slot = inner.next_slot;
        s.watchers.insert(id, slot);
        inner.watchers.insert(
            slot,
            Watcher {
                stream,
                id,
                key,
                range_end,
                next_rev: start_rev,
                state: State::Pending,
            },
        );
        Ok(id)
    }

    /// Starts delivering to a registered watcher (after its "created" response
    /// went out): synced at once when it starts after every applied revision,
    /// else caught up from history.
    pub fn activate(&self, stream: StreamId, id: WatchId) {
        let mut g = self.lock();
        let Some(slot) = g
            .streams
            .get(&stream)
            .and_then(|s| s.watchers.get(&id))
            .copied()
        else {
            return;
        };
        let notified = g.notified;
        let next = g.watchers.get(&slot).map(|w| w.next_rev).unwrap_or(0);
        if next > notified {
            // Revisions in (notified, next) are skipped by notify's check.
            make_synced(&mut g, slot);
        } else {
            if let Some(w) = g.watchers.get_mut(&slot) {
                w.state = State::Unsynced;
            }
            g.unsynced.insert(slot);
            drop(g);
            let _ = self.wake.try_send(());
        }
    }

    /// Cancels a watcher; false if the stream has no such watcher.
    pub fn cancel(&self, stream: StreamId, id: WatchId) -> bool {
        let mut g = self.lock();
        let Some(slot) = g
            .streams
            .get_mut(&stream)
            .and_then(|s| s.watchers.remove(&id))
        else {
            return false;
        };
        remove_slot(&mut g, slot);
        true
    }

    /// Hands one applied revision's events to the synced watchers they concern.
    /// Called on the Raft thread after every write; never blocks.
    pub fn notify(&self, rev: i64, events: Vec<Event>) {
        let mut g = self.lock();
        g.notified = g.notified.max(rev);
        if g.watchers.is_empty() || events.is_empty() {
            return;
        }
        let mut hit: Vec<Slot> = Vec::new();
        for e in &events {
            if let Some(slots) = g.synced_keys.get(&e.kv.key) {
                hit.extend_from_slice(slots);
            }
        }
        for &slot in &g.synced_ranges {
            if let Some(w) = g.watchers.get(&slot) {
                if events.iter().any(|e| w.range().contains(&e.kv.key)) {
                    hit.push(slot);
                }
            }
        }
        if hit.is_empty() {
            return;
        }
        hit.sort_unstable();
        hit.dedup();
        let events = Arc::new(events);
        let mut fell_behind = false;
        for slot in hit {
            let Some(w) = g.watchers.get(&slot) else {
                continue;
            };
            if rev < w.next_rev {
                // Synced early, waiting for a future start revision.
                continue;
            }
            let (stream, id) = (w.stream, w.id);
            let Some(s) = g.streams.get(&stream) else {
                continue;
            };
            let msg = Out::Events {
                watch_id: id,
                rev,
                events: events.clone(),
            };
            if !s.tx.try_send(msg) {
                // A slow reader: catch it up from history later (a victim).
                make_unsynced(&mut g, slot, rev);
                fell_behind = true;
            }
        }
        drop(g);
        if fell_behind {
            let _ = self.wake.try_send(());
        }
    }

    /// The store was replaced by a Raft snapshot now at `rev`: every synced
    /// watcher moves to the catch-up path from the first revision it has not
    /// received, so the revisions the snapshot skipped reach it from history
    /// (or, when compacted away, it gets the compacted response).
    pub fn restored(&self, rev: i64) {
        let mut g = self.lock();
        let first_missing = g.notified + 1;
        let synced: Vec<Slot> = g
            .watchers
            .iter()
            .filter(|(_, w)| w.state == State::Synced)
            .map(|(slot, _)| *slot)
            .collect();
        for slot in synced {
            let next = g.watchers[&slot].next_rev.max(first_missing);
            make_unsynced(&mut g, slot, next);
        }
        g.notified = g.notified.max(rev);
        drop(g);
        let _ = self.wake.try_send(());
    }

    /// Periodic progress for one watcher: sent only while it is synced, with
    /// the last notified revision (etcd's `progress`).
    pub fn progress(&self, stream: StreamId, id: WatchId) {
        let g = self.lock();
        let Some(slot) = g.streams.get(&stream).and_then(|s| s.watchers.get(&id)) else {
            return;
        };
        if g.watchers.get(slot).map(|w| w.state) != Some(State::Synced) {
            return;
        }
        if let Some(s) = g.streams.get(&stream) {
            s.tx.try_send(Out::Progress {
                watch_id: id,
                rev: g.notified,
            });
        }
    }

    /// On-demand progress for the whole stream (watch id -1): sent once every
    /// watcher of the stream is synced, so its revision is never ahead of an
    /// event the stream has yet to receive.
    pub fn progress_all(&self, stream: StreamId) {
        let mut g = self.lock();
        try_stream_progress(&mut g, stream);
    }
}

fn try_stream_progress(g: &mut Inner, stream: StreamId) {
    let notified = g.notified;
    let Some(s) = g.streams.get(&stream) else {
        return;
    };
    let all_synced = s
        .watchers
        .values()
        .all(|slot| g.watchers.get(slot).map(|w| w.state) == Some(State::Synced));
    let sent = all_synced
        && s.tx.try_send(Out::Progress {
            watch_id: -1,
            rev: notified,
        });
    if let Some(s) = g.streams.get_mut(&stream) {
        s.progress_pending = !sent;
    }
}

fn make_synced(g: &mut Inner, slot: Slot) {
    g.unsynced.remove(&slot);
    let Some(w) = g.watchers.get_mut(&slot) else {
        return;
    };
    w.state = State::Synced;
    if w.is_single() {
        g.synced_keys.entry(w.key.clone()).or_default().push(slot);
    } else {
        g.synced_ranges.insert(slot);
    }
}

fn unindex(g: &mut Inner, slot: Slot) {
    let Some(w) = g.watchers.get(&slot) else {
        return;
    };
    if w.state != State::Synced {
        return;
    }
    if w.is_single() {
        if let Some(v) = g.synced_keys.get_mut(&w.key) {
            v.retain(|s| *s != slot);
            if v.is_empty() {
                let key = w.key.clone();
                g.synced_keys.remove(&key);
            }
        }
    } else {
        g.synced_ranges.remove(&slot);
    }
}

fn make_unsynced(g: &mut Inner, slot: Slot, next_rev: i64) {
    unindex(g, slot);
    if let Some(w) = g.watchers.get_mut(&slot) {
        w.state = State::Unsynced;
        w.next_rev = next_rev;
        g.unsynced.insert(slot);
    }
}

fn remove_slot(g: &mut Inner, slot: Slot) {
    unindex(g, slot);
    g.unsynced.remove(&slot);
    g.watchers.remove(&slot);
}

/// One catch-up job, read without the lock.
struct Job {
    slot: Slot,
    key: Vec<u8>,
    range_end: Vec<u8>,
    from: i64,
}

enum JobResult {
    Events { to: i64, events: Vec<Event> },
    Compacted,
}

/// The sync thread: catches unsynced watchers up, a window at a time.
fn sync_loop(hub: std::sync::Weak<Hub>, woken: crossbeam_channel::Receiver<()>) {
    loop {
        let Some(h) = hub.upgrade() else { return };
        let busy = sync_once(&h);
        drop(h);
        if !busy {
            match woken.recv_timeout(Duration::from_millis(100)) {
                Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// One pass; true when it made progress and more work may remain.
fn sync_once(hub: &Hub) -> bool {
    let (jobs, target) = {
        let g = hub.lock();
        let target = g.notified;
        let jobs: Vec<Job> = g
            .unsynced
            .iter()
            .filter_map(|slot| {
                let w = g.watchers.get(slot)?;
                let s = g.streams.get(&w.stream)?;
                // A queue with no room: the reader is still slow; try later.
                s.tx.has_room().then(|| Job {
                    slot: *slot,
                    key: w.key.clone(),
                    range_end: w.range_end.clone(),
                    from: w.next_rev,
                })
            })
            .take(SYNC_BATCH)
            .collect();
        (jobs, target)
    };
    if jobs.is_empty() {
        let mut g = hub.lock();
        let pending: Vec<StreamId> = g
            .streams
            .iter()
            .filter(|(_, s)| s.progress_pending)
            .map(|(id, _)| *id)
            .collect();
        for id in pending {
            try_stream_progress(&mut g, id);
        }
        return false;
    }
    let mut results = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let to = target.min(job.from + CATCH_UP_WINDOW - 1);
        let r = if job.from > to {
            Ok(JobResult::Events {
                to,
                events: Vec::new(),
            })
        } else {
            match hub.store.history(&job.key, &job.range_end, job.from, to, 0) {
                Ok(events) => Ok(JobResult::Events { to, events }),
                Err(Error::Compacted) => Ok(JobResult::Compacted),
                Err(e) => Err(e),
            }
        };
        results.push(r);
    }
    let mut g = hub.lock();
    let mut progressed = false;
    let compact_rev = hub.store.compact_revision();
    for (job, r) in jobs.into_iter().zip(results) {
        let Some(w) = g.watchers.get(&job.slot) else {
            continue;
        };
        if w.state != State::Unsynced || w.next_rev != job.from {
            continue;
        }
        let (stream, id) = (w.stream, w.id);
        let Some(tx) = g.streams.get(&stream).map(|s| s.tx.clone()) else {
            continue;
        };
        match r {
            Err(e) => {
                tracing::error!(error = %e, watch_id = id, "watch catch-up read failed; will retry");
            }
            Ok(JobResult::Compacted) => {
                if tx.try_send(Out::Compacted {
                    watch_id: id,
                    compact_rev,
                }) {
                    if let Some(s) = g.streams.get_mut(&stream) {
                        s.watchers.remove(&id);
                    }
                    remove_slot(&mut g, job.slot);
                    progressed = true;
                }
            }
            Ok(JobResult::Events { to, events }) => {
                let sent = events.is_empty()
                    || tx.try_send(Out::Events {
                        watch_id: id,
                        rev: target,
                        events: Arc::new(events),
                    });
                if !sent {
                    continue;
                }
                progressed = true;
                let notified = g.notified;
                if to >= notified {
                    make_synced(&mut g, job.slot);
                } else if let Some(w) = g.watchers.get_mut(&job.slot) {
                    w.next_rev = to + 1;
                }
            }
        }
    }
    let pending: Vec<StreamId> = g
        .streams
        .iter()
        .filter(|(_, s)| s.progress_pending)
        .map(|(id, _)| *id)
        .collect();
    for id in pending {
        try_stream_progress(&mut g, id);
    }
    progressed
}
