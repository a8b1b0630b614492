//! The Raft log storage: a [`raft::Storage`] on sled.
//!
//! [`SledStorage`] keeps what raft-rs asks a storage to keep: the log entries,
//! the hard state (term, vote, commit), the conf state, and the metadata
//! (index, term, conf state) of the point the log was last truncated at, by a
//! compaction or by installing a snapshot. It lives in two trees of the node's
//! sled database:
//!
//! - `raft_log`: one entry per key, the key the index as 8-byte big-endian,
//!   the value the entry encoded with protobuf (`protobuf` 2, raft-rs's codec);
//! - `raft_state`: `hard_state`, `conf_state` and `snapshot_metadata`, each a
//!   protobuf message.
//!
//! # Invariants
//!
//! - The log holds exactly the indexes `first_index()..=last_index()`, no
//!   gaps, where `first_index() == snapshot_metadata().index + 1`; an empty log
//!   has `last_index() == first_index() - 1`. [`SledStorage::open`] checks this
//!   and refuses a data dir that breaks it ([`Error::Corrupt`]).
//! - `term(first_index() - 1)` answers: it is the snapshot (or compaction)
//!   term, kept so that raft can match the entry just before the log.
//! - Every mutating call is one atomic sled write (a batch, or a transaction
//!   over both trees for `apply_snapshot`), made under the write lock of the
//!   in-memory cache, so the cache never disagrees with the trees. `compact`
//!   is the exception: it writes the new snapshot metadata at once and leaves
//!   the deletion of the entries below it to a background thread (entries
//!   below the first index are never read, and `open` deletes any a crash
//!   left behind).
//! - Nothing here is durable until [`SledStorage::flush`]: the node calls it
//!   once per `Ready`, after appending the entries and setting the hard state,
//!   and before sending the messages that depend on them (raft-rs's
//!   persistence order). Opened with a write-ahead log
//!   ([`SledStorage::open_with_wal`], see [`wal`]; a member with
//!   `--experimental-raft-wal`), `flush` syncs one append-only file and sled
//!   is flushed only at checkpoints. Without one (the default, tests, offline
//!   tools) `flush` syncs the whole sled database.
//! - Hard state, conf state, snapshot metadata, first and last index and the
//!   last entry's term are cached in memory: reading them never touches sled.
//!   Entries are read from sled (its page cache serves recent ones).
//!
//! # Left out
//!
//! - Snapshot data: it belongs to the state machine. [`Storage::snapshot`]
//!   asks the provider installed by [`SledStorage::set_snapshot_provider`]
//!   and, without one, answers `SnapshotTemporarilyUnavailable`.
//! - Deciding when to compact: the caller compacts applied entries only.
//! - Asynchronous entry fetching: `GetEntriesContext` is ignored and reads
//!   are served synchronously.
//!
//! The contract was learned from raft-rs's `MemStorage` (raft 0.7,
//! `src/storage.rs`) and etcd's `MemoryStorage`; the code is our own. Unlike
//! `MemStorage` it never panics on a bad argument: it returns raft's
//! `StorageError`s wrapped in [`Error::Raft`].

use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use sled::transaction::{ConflictableTransactionResult, TransactionError, Transactional};

use crate::{Error, Result};

mod layout;
#[cfg(test)]
mod tests;
pub mod wal;

use layout::{check_index, decode, encode, key, load};
use layout::{CONF_STATE_KEY, HARD_STATE_KEY, LOG_TREE, SNAPSHOT_KEY, STATE_TREE, WAL_SEQ_KEY};
use wal::{Record, Wal};

/// Builds the snapshot that [`Storage::snapshot`] hands to raft, given the
/// requested index (raft's `request_index`, usually 0). Returning
/// `Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))`
/// makes raft retry later.
pub type SnapshotProvider = Box<dyn Fn(u64) -> raft::Result<Snapshot> + Send + Sync>;

type SharedProvider = Arc<dyn Fn(u64) -> raft::Result<Snapshot> + Send + Sync>;

/// The Raft log storage of a node: a cheap handle (clones share one store).
#[derive(Clone)]
pub struct SledStorage {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    log: sled::Tree,
    state: sled::Tree,
    cache: RwLock<Cache>,
    provider: RwLock<Option<SharedProvider>>,
    /// Ranges of truncated entries for the background deleter.
    deleter: std::sync::Mutex<std::sync::mpsc::Sender<(u64, u64)>>,
    /// The write-ahead log, when the storage has one ([`SledStorage::open_with_wal`]).
    wal: std::sync::Mutex<Option<WalState>>,
}

struct WalState {
    wal: Wal,
    /// A change the WAL does not record was made: flush sled at the next
    /// [`SledStorage::flush`].
    checkpoint: bool,
}

/// Entries deleted per step by the background deleter.
const DELETE_STEP: u64 = 100;
/// The deleter rests this many times as long as each step took.
const DELETE_REST_FACTOR: u32 = 3;

/// Deletes truncated entries (`[from, to)` ranges) off the Raft thread, a
/// step of [`DELETE_STEP`] entries at a time, resting between steps.
/// Exits when the storage is dropped.
///
/// Why so gentle: old entries are mostly out of sled's cache, so deleting
/// them reads them back from disk; one large batch (which takes sled's
/// database-wide write lock) stalled the Raft thread's applies for seconds
/// (worst put 2.5-4.5 s in `bench/snapshot-stall.sh`). Single-key removes
/// take only sled's shared lock, and the rests leave the disk to the
/// Raft thread.
fn start_deleter(log: sled::Tree) -> std::sync::mpsc::Sender<(u64, u64)> {
    let (tx, rx) = std::sync::mpsc::channel::<(u64, u64)>();
    let spawned = std::thread::Builder::new()
        .name("raft-log-truncate".into())
        .spawn(move || {
            for (from, to) in rx {
                let began = Instant::now();
                if let Err(e) = delete_paced(&log, from, to) {
                    tracing::error!(error = %e, "raft log: deleting truncated entries failed; the next start deletes them");
                    continue;
                }
                tracing::debug!(from, to, took = ?began.elapsed(), "raft log: truncated entries deleted");
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "raft log: no deleter thread; truncated entries stay until the next start");
    }
    tx
}

fn delete_paced(log: &sled::Tree, from: u64, to: u64) -> sled::Result<()> {
    let mut at = from;
    while at < to {
        let step = Instant::now();
        let end = (at + DELETE_STEP).min(to);
        for index in at..end {
            log.remove(&key(index)[..])?;
        }
        at = end;
        std::thread::sleep(step.elapsed() * DELETE_REST_FACTOR);
    }
    Ok(())
}

/// The in-memory copy of everything but the entries.
#[derive(Debug, Default)]
struct Cache {
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the entry just before the log, with a conf state.
    snapshot: SnapshotMetadata,
    last_index: u64,
    /// Term of `last_index` (the snapshot term when the log is empty).
    last_term: u64,
    /// Whether anything was ever written.
    written: bool,
}

impl Cache {
    fn first_index(&self) -> u64 {
        self.snapshot.index + 1
    }
}

impl SledStorage {
    /// Opens the Raft log storage in `db`, creating its trees if needed, and
    /// loads the cache. Fails with [`Error::Corrupt`] if the stored log breaks
    /// the invariants (undecodable record, gap); entries below the snapshot
    /// are leftovers of an interrupted truncation and are deleted.
    pub fn open(db: &sled::Db) -> Result<SledStorage> {
        let log = db.open_tree(LOG_TREE)?;
        let state = db.open_tree(STATE_TREE)?;
        let cache = load(&log, &state)?;
        let log_for_deleter = log.clone();
        tracing::debug!(
            first_index = cache.first_index(),
            last_index = cache.last_index,
            commit = cache.hard_state.commit,
            term = cache.hard_state.term,
            "raft log opened"
        );
        Ok(SledStorage {
            inner: Arc::new(Inner {
                db: db.clone(),
                log,
                state,
                cache: RwLock::new(cache),
                provider: RwLock::new(None),
                deleter: std::sync::Mutex::new(start_deleter(log_for_deleter)),
                wal: std::sync::Mutex::new(None),
            }),
        })
    }

    /// Opens the storage with a write-ahead log in `dir` (see [`wal`]):
    /// replays into sled what sled may have lost since its last flush, makes
    /// that durable, and from then on [`SledStorage::flush`] syncs only the
    /// WAL (and sled at checkpoints).
    pub fn open_with_wal(db: &sled::Db, dir: &std::path::Path) -> Result<SledStorage> {
        let storage = SledStorage::replay_wal(db, dir)?;
        storage.start_checkpointer();
        Ok(storage)
    }

    /// Opens the storage, replays the WAL in `dir` into sled and checkpoints
    /// (sled flushed, a new empty WAL file); no checkpointer thread yet.
    fn replay_wal(db: &sled::Db, dir: &std::path::Path) -> Result<SledStorage> {
        let storage = SledStorage::open(db)?;
        let first_seq = match storage.inner.state.get(WAL_SEQ_KEY)? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| Error::Corrupt(format!("raft log: bad WAL seq record {v:?}")))?,
            ),
            None => 1,
        };
        let (wal, records) = Wal::open(dir, first_seq)?;
        let replayed = records.len();
        for r in records {
            match r {
                Record::Entries(entries) => {
                    let first = storage.first_index();
                    let live: Vec<Entry> =
                        entries.into_iter().filter(|e| e.index >= first).collect();
                    storage.append(&live)?;
                }
                Record::HardState(hs) => storage.set_hard_state(&hs)?,
            }
        }
        // A hard state is synced only with the log it goes with, but sled may
        // have kept a newer, unsynced one whose commit points past the log
        // the WAL rebuilt: those entries were never acknowledged here, so
        // the leader still has them.
        let mut hs = storage.hard_state();
        if hs.commit > storage.last_index() {
            tracing::warn!(
                commit = hs.commit,
                last_index = storage.last_index(),
                "raft log: unsynced commit index past the log; lowered to the log"
            );
            hs.commit = storage.last_index();
            storage.set_hard_state(&hs)?;
        }
        *storage.wal_lock() = Some(WalState {
            wal,
            checkpoint: true,
        });
        storage.checkpoint()?;
        tracing::info!(
            replayed,
            wal_seq = first_seq,
            last_index = storage.last_index(),
            commit = storage.hard_state().commit,
            "raft log opened with its WAL"
        );
        Ok(storage)
    }

    /// Starts the background checkpointer (see [`wal`]); it ends when the
    /// storage is dropped.
    fn start_checkpointer(&self) {
        let weak = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("raft-wal-checkpoint".into())
            .spawn(move || {
                let mut last = Instant::now();
                loop {
                    std::thread::sleep(Duration::from_millis(100));
                    let Some(inner) = weak.upgrade() else { return };
                    let storage = SledStorage { inner };
                    if let Err(e) = storage.background_checkpoint(&mut last) {
                        tracing::error!(error = %e, "raft WAL: background checkpoint failed; the Raft thread checkpoints past the backstop size");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "raft WAL: no checkpointer thread; the Raft thread checkpoints past the backstop size");
        }
    }

    /// One background checkpoint, when the WAL is due: under the WAL's lock,
    /// start a new file and record in sled that it is the first one sled may
    /// lack; then, with the lock released (the Raft thread goes on writing to
    /// the new file), flush sled and delete the older files. Skipped while a
    /// `Ready` is half written (records buffered), so every file ends with
    /// the hard state of its last sync.
    fn background_checkpoint(&self, last: &mut Instant) -> Result<()> {
        let (next, dir) = {
            let mut guard = self.wal_lock();
            let Some(w) = guard.as_mut() else {
                return Ok(());
            };
            let size = w.wal.size();
            let due = size >= wal::CHECKPOINT_BYTES
                || (size > 0 && last.elapsed() >= wal::CHECKPOINT_EVERY);
            if !due || w.wal.has_buffered() {
                return Ok(());
            }
            w.wal.start_next()?;
            let next = w.wal.seq();
            self.inner.state.insert(WAL_SEQ_KEY, &next.to_be_bytes())?;
            (next, w.wal.dir().to_path_buf())
        };
        *last = Instant::now();
        let bytes = self.inner.db.flush()?;
        wal::delete_before(&dir, next)?;
        tracing::debug!(bytes, wal_seq = next, took = ?last.elapsed(), "raft WAL: background checkpoint");
        Ok(())
    }

    /// A member's storage: with the WAL in `dir` when `wal` (see
    /// [`SledStorage::open_with_wal`]), else without; a WAL left by an
    /// earlier start with it is replayed first, then removed.
    pub fn open_for_member(db: &sled::Db, dir: &std::path::Path, wal: bool) -> Result<SledStorage> {
        if wal {
            return SledStorage::open_with_wal(db, dir);
        }
        if !dir.exists() {
            return SledStorage::open(db);
        }
        // Replayed and checkpointed: sled holds everything, the WAL is empty.
        let storage = SledStorage::replay_wal(db, dir)?;
        *storage.wal_lock() = None;
        std::fs::remove_dir_all(dir).map_err(Error::Io)?;
        tracing::info!(dir = %dir.display(), "raft log: the WAL of an earlier start is replayed and removed (--experimental-raft-wal is off)");
        Ok(storage)
    }

    fn wal_lock(&self) -> std::sync::MutexGuard<'_, Option<WalState>> {
        self.inner.wal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records in the WAL (if any) what `f` gives it.
    fn log_to_wal(&self, f: impl FnOnce(&mut Wal) -> Result<()>) -> Result<()> {
        match self.wal_lock().as_mut() {
            Some(w) => f(&mut w.wal),
            None => Ok(()),
        }
    }

    /// Marks a change the WAL does not record: sled is flushed at the next
    /// [`SledStorage::flush`].
    fn need_checkpoint(&self) {
        if let Some(w) = self.wal_lock().as_mut() {
            w.checkpoint = true;
        }
    }

    /// Whether nothing was ever written (a fresh data dir).
    pub fn is_empty(&self) -> bool {
        !self.read().written
    }

    /// Bootstraps a fresh node with its initial membership: first index 1,
    /// last index 0, snapshot metadata at index 0 carrying `cs`. Fails with
    /// [`Error::Config`] if a conf state was already set.
    pub fn initialize_with_conf_state(&self, cs: ConfState) -> Result<()> {
        let mut cache = self.write();
        if cache.conf_state != ConfState::default() {
            return Err(Error::Config(
                "raft log storage is already initialized".into(),
            ));
        }
        let mut snapshot = cache.snapshot.clone();
        snapshot.set_conf_state(cs.clone());
        let mut batch = sled::Batch::default();
        batch.insert(CONF_STATE_KEY, encode(&cs)?);
        batch.insert(SNAPSHOT_KEY, encode(&snapshot)?);
        self.inner.state.apply_batch(batch)?;
        cache.conf_state = cs;
        cache.snapshot = snapshot;
        cache.written = true;
        self.need_checkpoint();
        Ok(())
    }

    /// Bootstraps a fresh member of a new cluster: the log starts after a
    /// snapshot at index 1, term 1, carrying the initial membership `cs` (as
    /// raft-rs's examples do). Every initial member starts identical, and a
    /// member that joins later with an empty log is always sent a snapshot,
    /// which is how it learns the membership and the data.
    pub fn bootstrap(&self, cs: ConfState) -> Result<()> {
        if !self.is_empty() {
            return Err(Error::Config(
                "raft log storage is already initialized".into(),
            ));
        }
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = 1;
        meta.term = 1;
        meta.set_conf_state(cs);
        self.apply_snapshot(&snap)
    }

    /// Appends `entries`, which must be contiguous. They may start anywhere
    /// from `first_index()` to `last_index() + 1`: entries already stored at
    /// their indexes are replaced, and any stored entry after the last of them
    /// is dropped (a new leader's log wins over a conflicting tail).
    ///
    /// Errors: `Compacted` if they start before `first_index()`; `Other` if
    /// they would leave a gap after `last_index()` or are not contiguous.
    /// Not durable until [`SledStorage::flush`].
    pub fn append(&self, entries: &[Entry]) -> Result<()> {
        let (Some(head), Some(tail)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let mut cache = self.write();
        if head.index < cache.first_index() {
            return Err(store_error(StorageError::Compacted));
        }
        if head.index > cache.last_index + 1 {
            return Err(other_error(format!(
                "raft log: appending at {} would leave a gap after last index {}",
                head.index, cache.last_index
            )));
        }
        if let Some(pair) = entries.windows(2).find(|w| w[1].index != w[0].index + 1) {
            return Err(other_error(format!(
                "raft log: appended entries are not contiguous ({} then {})",
                pair[0].index, pair[1].index
            )));
        }
        let mut batch = sled::Batch::default();
        for entry in entries {
            batch.insert(&key(entry.index)[..], encode(entry)?);
        }
        for index in tail.index + 1..=cache.last_index {
            batch.remove(&key(index)[..]);
        }
        self.inner.log.apply_batch(batch)?;
        cache.last_index = tail.index;
        cache.last_term = tail.term;
        cache.written = true;
        self.log_to_wal(|w| w.append_entries(entries))
    }

    /// Saves the hard state. Not durable until [`SledStorage::flush`].
    pub fn set_hard_state(&self, hs: &HardState) -> Result<()> {
        let mut cache = self.write();
        self.put_hard_state(&mut cache, hs.clone())
    }

    /// Sets the hard state's commit index (what a light ready carries).
    /// Not durable until [`SledStorage::flush`].
    pub fn set_commit(&self, commit: u64) -> Result<()> {
        let mut cache = self.write();
        let mut hs = cache.hard_state.clone();
        hs.commit = commit;
        self.put_hard_state(&mut cache, hs)
    }

    /// Saves the conf state (after applying a conf change).
    /// Not durable until [`SledStorage::flush`].
    pub fn set_conf_state(&self, cs: &ConfState) -> Result<()> {
        let mut cache = self.write();
        self.inner.state.insert(CONF_STATE_KEY, encode(cs)?)?;
        cache.conf_state = cs.clone();
        cache.written = true;
        self.need_checkpoint();
        Ok(())
    }

    /// Installs a snapshot's metadata: drops every entry, makes the snapshot
    /// index the point before the log (`first_index()` becomes index + 1),
    /// takes its conf state, and raises the hard state's term and commit to
    /// the snapshot's. The snapshot data is the state machine's business.
    ///
    /// Errors: `SnapshotOutOfDate` if the snapshot index is below
    /// `first_index()`. Not durable until [`SledStorage::flush`].
    pub fn apply_snapshot(&self, snap: &Snapshot) -> Result<()> {
        let meta = snap.get_metadata();
        let mut cache = self.write();
        if meta.index < cache.first_index() {
            return Err(store_error(StorageError::SnapshotOutOfDate));
        }
        let mut hs = cache.hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = hs.commit.max(meta.index);
        let cs = meta.get_conf_state().clone();

        let mut log = sled::Batch::default();
        for index in cache.first_index()..=cache.last_index {
            log.remove(&key(index)[..]);
        }
        let mut state = sled::Batch::default();
        state.insert(HARD_STATE_KEY, encode(&hs)?);
        state.insert(CONF_STATE_KEY, encode(&cs)?);
        state.insert(SNAPSHOT_KEY, encode(meta)?);
        self.apply_both(&log, &state)?;

        cache.hard_state = hs;
        cache.conf_state = cs;
        cache.snapshot = meta.clone();
        cache.last_index = meta.index;
        cache.last_term = meta.term;
        cache.written = true;
        self.need_checkpoint();
        Ok(())
    }

    /// Drops the entries below `compact_index`. The last dropped entry's
    /// index and term become the snapshot metadata (with the current conf
    /// state), so `term(compact_index - 1)` still answers. Compacting at or
    /// below `first_index()` does nothing.
    ///
    /// The metadata is written (and the entries stop being readable) at once;
    /// the entries themselves are deleted by a background thread, so a large
    /// truncation never holds up the caller. Entries a crash leaves below the
    /// first index are deleted by [`SledStorage::open`].
    ///
    /// Errors: `Unavailable` if `compact_index > last_index() + 1`.
    /// Not durable until [`SledStorage::flush`].
    pub fn compact(&self, compact_index: u64) -> Result<()> {
        let mut cache = self.write();
        let first = cache.first_index();
        if compact_index <= first {
            return Ok(());
        }
        if compact_index > cache.last_index + 1 {
            return Err(store_error(StorageError::Unavailable));
        }
        let index = compact_index - 1;
        let mut meta = SnapshotMetadata {
            index,
            term: self.term_in(&cache, index)?,
            ..Default::default()
        };
        meta.set_conf_state(cache.conf_state.clone());
        self.inner.state.insert(SNAPSHOT_KEY, encode(&meta)?)?;
        cache.snapshot = meta;
        cache.written = true;
        drop(cache);
        self.need_checkpoint();
        let deleter = self.inner.deleter.lock().unwrap_or_else(|e| e.into_inner());
        if deleter.send((first, compact_index)).is_err() {
            tracing::warn!("raft log: deleter gone; truncated entries stay until the next start");
        }
        Ok(())
    }

    /// Installs the function [`Storage::snapshot`] asks for a snapshot
    /// (replacing any previous one). It is called with no lock of the
    /// storage held, so it may read the storage.
    pub fn set_snapshot_provider(&self, f: SnapshotProvider) {
        *self.inner.provider.write().expect("raft log provider lock") = Some(Arc::from(f));
    }

    /// Makes every entry and hard state written so far durable. Call it once
    /// per `Ready`. With a WAL: appends the current hard state and syncs the
    /// WAL (one `fdatasync`); sled is flushed by the background checkpointer,
    /// or here after a change the WAL does not record (or past the backstop
    /// size).
    /// Without: syncs the whole sled database.
    ///
    /// The state machine's writes are not made durable by it (with a WAL):
    /// the Raft log keeps the entries until a checkpoint has them in sled.
    ///
    /// Returns how long the sync took, for the caller's fsync histogram.
    pub fn flush(&self) -> Result<Duration> {
        let start = Instant::now();
        let mut guard = self.wal_lock();
        let Some(w) = guard.as_mut() else {
            drop(guard);
            let bytes = self.inner.db.flush()?;
            let elapsed = start.elapsed();
            tracing::trace!(bytes, ?elapsed, "raft log flushed");
            return Ok(elapsed);
        };
        // Every sync ends with the hard state, so a replay ends with the
        // hard state that matches the log it rebuilt.
        let hs = self.read().hard_state.clone();
        w.wal.append_hard_state(&hs)?;
        w.wal.sync()?;
        if w.checkpoint || w.wal.size() >= wal::ROTATE_BYTES {
            self.checkpoint_locked(w)?;
        }
        let elapsed = start.elapsed();
        tracing::trace!(?elapsed, "raft log flushed");
        Ok(elapsed)
    }

    /// Makes everything durable, the state machine's writes and every other
    /// sled tree included: syncs the WAL, flushes sled and starts a new WAL
    /// file. For the rare moments that need it (bootstrap, snapshot install,
    /// shutdown); per `Ready`, [`SledStorage::flush`].
    pub fn checkpoint(&self) -> Result<()> {
        let mut guard = self.wal_lock();
        match guard.as_mut() {
            Some(w) => {
                w.wal.sync()?;
                self.checkpoint_locked(w)
            }
            None => {
                drop(guard);
                self.inner.db.flush()?;
                Ok(())
            }
        }
    }

    fn checkpoint_locked(&self, w: &mut WalState) -> Result<()> {
        let started = Instant::now();
        let next = w.wal.next_seq();
        self.inner.state.insert(WAL_SEQ_KEY, &next.to_be_bytes())?;
        let bytes = self.inner.db.flush()?;
        w.wal.rotate()?;
        w.checkpoint = false;
        tracing::debug!(bytes, wal_seq = next, took = ?started.elapsed(), "raft log: checkpoint (sled flushed, WAL rotated)");
        Ok(())
    }

    /// The hard state (cached).
    pub fn hard_state(&self) -> HardState {
        self.read().hard_state.clone()
    }

    /// The conf state (cached).
    pub fn conf_state(&self) -> ConfState {
        self.read().conf_state.clone()
    }

    /// The index of the first entry in the log (snapshot index + 1).
    pub fn first_index(&self) -> u64 {
        self.read().first_index()
    }

    /// The index of the last entry, or the snapshot index if the log is empty.
    pub fn last_index(&self) -> u64 {
        self.read().last_index
    }

    /// Index, term and conf state of the last installed snapshot or
    /// compaction point (for a compaction, the conf state is the one current
    /// when it ran).
    pub fn snapshot_metadata(&self) -> SnapshotMetadata {
        self.read().snapshot.clone()
    }

    fn read(&self) -> RwLockReadGuard<'_, Cache> {
        self.inner.cache.read().expect("raft log cache lock")
    }

    fn write(&self) -> RwLockWriteGuard<'_, Cache> {
        self.inner.cache.write().expect("raft log cache lock")
    }

    fn put_hard_state(&self, cache: &mut Cache, hs: HardState) -> Result<()> {
        self.inner.state.insert(HARD_STATE_KEY, encode(&hs)?)?;
        cache.hard_state = hs;
        cache.written = true;
        // The WAL gets the hard state at the next flush (the last one wins).
        Ok(())
    }

    /// Applies a batch to each tree in one sled transaction.
    fn apply_both(&self, log: &sled::Batch, state: &sled::Batch) -> Result<()> {
        (&self.inner.log, &self.inner.state)
            .transaction(
                |(log_tx, state_tx)| -> ConflictableTransactionResult<(), Infallible> {
                    log_tx.apply_batch(log)?;
                    state_tx.apply_batch(state)?;
                    Ok(())
                },
            )
            .map_err(|e| match e {
                TransactionError::Storage(e) => Error::Sled(e),
                TransactionError::Abort(never) => match never {},
            })
    }

    fn term_in(&self, cache: &Cache, index: u64) -> Result<u64> {
        if index == cache.snapshot.index {
            return Ok(cache.snapshot.term);
        }
        if index < cache.first_index() {
            return Err(store_error(StorageError::Compacted));
        }
        if index > cache.last_index {
            return Err(store_error(StorageError::Unavailable));
        }
        if index == cache.last_index {
            return Ok(cache.last_term);
        }
        Ok(self.read_entry(index)?.term)
    }

    fn read_entry(&self, index: u64) -> Result<Entry> {
        let value = self
            .inner
            .log
            .get(key(index))?
            .ok_or_else(|| Error::Corrupt(format!("raft log: entry {index} is missing")))?;
        let entry: Entry = decode(&value, "entry")?;
        check_index(index, &entry)?;
        Ok(entry)
    }

    /// Entries `[low, high)`, stopping early once they exceed `max_size`; the
    /// final cut is `raft::util::limit_size`'s, so at least one is returned.
    fn entries_in(
        &self,
        cache: &Cache,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> Result<Vec<Entry>> {
        if low < cache.first_index() {
            return Err(store_error(StorageError::Compacted));
        }
        if high > cache.last_index + 1 {
            return Err(store_error(StorageError::Unavailable));
        }
        if low > high {
            return Err(other_error(format!(
                "raft log: invalid entries range [{low}, {high})"
            )));
        }
        let wanted = high - low;
        let mut entries = Vec::with_capacity(wanted.min(1024) as usize);
        let mut size = 0u64;
        let mut over_limit = false;
        for item in self.inner.log.range(key(low)..key(high)) {
            let (_, value) = item?;
            let entry: Entry = decode(&value, "entry")?;
            check_index(low + entries.len() as u64, &entry)?;
            size += u64::from(entry.compute_size());
            entries.push(entry);
            // Keep the entry that crosses the limit: limit_size drops it, and
            // is then the one judge of the cut.
            over_limit = max_size.is_some_and(|max| size > max);
            if over_limit {
                break;
            }
        }
        if !over_limit && entries.len() as u64 != wanted {
            return Err(Error::Corrupt(format!(
                "raft log: entries [{low}, {high}) have gaps ({} found)",
                entries.len()
            )));
        }
        raft::util::limit_size(&mut entries, max_size);
        Ok(entries)
    }
}

impl Storage for SledStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let cache = self.read();
        Ok(RaftState::new(
            cache.hard_state.clone(),
            cache.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let cache = self.read();
        self.entries_in(&cache, low, high, max_size.into())
            .map_err(into_raft)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let cache = self.read();
        self.term_in(&cache, idx).map_err(into_raft)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(SledStorage::first_index(self))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(SledStorage::last_index(self))
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let provider = self
            .inner
            .provider
            .read()
            .expect("raft log provider lock")
            .clone();
        match provider {
            Some(provide) => {
                tracing::debug!(request_index, to, "raft log: snapshot requested");
                provide(request_index)
            }
            None => Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            )),
        }
    }
}

impl fmt::Debug for SledStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cache = self.read();
        f.debug_struct("SledStorage")
            .field("first_index", &cache.first_index())
            .field("last_index", &cache.last_index)
            .field("hard_state", &cache.hard_state)
            .finish_non_exhaustive()
    }
}

fn store_error(e: StorageError) -> Error {
    Error::Raft(raft::Error::Store(e))
}

fn other_error(msg: String) -> Error {
    store_error(StorageError::Other(msg.into()))
}

/// keel's error as raft's: raft errors pass through, the rest become
/// `StorageError::Other`.
fn into_raft(e: Error) -> raft::Error {
    match e {
        Error::Raft(e) => e,
        other => raft::Error::Store(StorageError::Other(Box::new(other))),
    }
}
