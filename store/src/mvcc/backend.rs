//! The MVCC store's storage seam: an ordered byte key-value map with atomic
//! batch writes and range scans.
//!
//! [`Backend`] is the small trait; [`MemoryBackend`] implements it over a
//! `BTreeMap` for tests (the shape of toydb's `storage::Engine` with `Memory`),
//! [`SledBackend`] over one `sled::Tree`.
//!
//! Invariants: a [`Batch`] is applied all or nothing (for sled, atomic on
//! recovery after a crash; concurrent readers may see part of a batch, which
//! the store never relies on: it publishes a revision only after its batch is
//! applied). Scans return keys in ascending byte order.
//!
//! Group commit ([`Backend::begin_group`], [`Backend::end_group`]): between
//! the two, [`SledBackend`] keeps every applied batch in an in-memory overlay
//! and writes the whole group as ONE sled batch at the end, because each
//! `sled::Tree::apply_batch` is costly in sled 0.34 (it seals IO buffers,
//! wakes sled's IO threads and takes its global write lock). The Raft thread
//! opens a group for all the entries of one `Ready` (see
//! `crate::apply::Applier`). Reads see the overlay first, so a write is
//! visible from its `apply`, and the overlay is cleared only after sled has
//! the group: no window where a value is invisible. The group is as atomic
//! as one batch. [`MemoryBackend`] has no groups (the defaults do nothing).
//!
//! Leaves out: durability. No backend here ever flushes; the Raft log storage
//! flushes sled (once per `Ready`, or at its WAL's checkpoints) and keeps
//! every entry until then, and a restart re-applies what sled lost. Snapshot
//! isolation is left out too: a scan may see writes made while it runs (and
//! for a key an open group holds, it returns the group's value as of the
//! scan's start).

use std::collections::BTreeMap;
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use sled::IVec;

use crate::Result;

/// Items of a range scan: `(key, value)` in ascending key order.
pub type ScanIter<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + 'a>;

/// An ordered byte key-value map with atomic batches.
pub trait Backend: Send + Sync + 'static {
    /// The value of `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Every pair with `start <= key < end`; an empty `end` means no upper bound.
    fn scan(&self, start: &[u8], end: &[u8]) -> ScanIter<'_>;
    /// Applies every operation of `batch`, atomically.
    fn apply(&self, batch: Batch) -> Result<()>;
    /// Bytes used: on disk where the backend knows it, else keys plus values.
    fn size(&self) -> Result<u64>;

    /// Opens a write group: until [`Backend::end_group`], [`Backend::apply`]
    /// may hold batches back and write them all at the end, as one atomic
    /// write. Reads see them at once. A no-op if a group is open already,
    /// and by default.
    fn begin_group(&self) {}

    /// Closes the open group, writing everything it holds back as one atomic
    /// write; a no-op without an open group, and by default. On an error the
    /// group stays open with its writes still pending (and readable): the
    /// caller may call again, or must stop using the backend.
    fn end_group(&self) -> Result<()> {
        Ok(())
    }

    /// How many keys the open group holds back (0 without one).
    fn pending_writes(&self) -> usize {
        0
    }

    /// Makes every write made so far durable, for a backend that keeps its
    /// own files; a no-op by default (sled's database is flushed whole by
    /// the Raft storage).
    fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Gives back the space of deleted and overwritten values now (etcd's
    /// defragmentation), for a backend that can; a no-op by default (sled
    /// reuses its segments by itself).
    fn defragment(&self) -> Result<()> {
        Ok(())
    }
}

/// One operation of a [`Batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// Writes applied together by [`Backend::apply`], in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<BatchOp>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }
    pub fn with_capacity(n: usize) -> Batch {
        Batch {
            ops: Vec::with_capacity(n),
        }
    }
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(BatchOp::Put(key, value));
    }
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push(BatchOp::Delete(key));
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    pub fn into_ops(self) -> Vec<BatchOp> {
        self.ops
    }
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }
}

/// Range bounds over byte keys.
type ByteBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

pub(super) fn bounds<'a>(start: &'a [u8], end: &'a [u8]) -> Option<ByteBounds<'a>> {
    if !end.is_empty() && end <= start {
        return None; // BTreeMap::range panics on an inverted range
    }
    let upper = if end.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(end)
    };
    Some((Bound::Included(start), upper))
}

/// An in-memory backend, for tests.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    inner: RwLock<Memory>,
}

#[derive(Debug, Default)]
struct Memory {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    size: u64,
}

impl MemoryBackend {
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Memory> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backend for MemoryBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.read().data.get(key).cloned())
    }

    fn scan(&self, start: &[u8], end: &[u8]) -> ScanIter<'_> {
        // The lock cannot outlive this call, so the range is copied out.
        let items: Vec<_> = match bounds(start, end) {
            Some(range) => {
                let mem = self.read();
                mem.data
                    .range::<[u8], _>(range)
                    .map(|(k, v)| Ok((k.clone(), v.clone())))
                    .collect()
            }
            None => Vec::new(),
        };
        Box::new(items.into_iter())
    }

    fn apply(&self, batch: Batch) -> Result<()> {
        let mut mem = self.inner.write().unwrap_or_else(|e| e.into_inner());
        for op in batch.ops {
            match op {
                BatchOp::Put(k, v) => {
                    let added = (k.len() + v.len()) as u64;
                    let klen = k.len() as u64;
                    if let Some(old) = mem.data.insert(k, v) {
                        mem.size -= klen + old.len() as u64;
                    }
                    mem.size += added;
                }
                BatchOp::Delete(k) => {
                    if let Some(old) = mem.data.remove(&k) {
                        mem.size -= (k.len() + old.len()) as u64;
                    }
                }
            }
        }
        Ok(())
    }

    fn size(&self) -> Result<u64> {
        Ok(self.read().size)
    }
}

/// A backend over one `sled::Tree`, which it owns whole, with group commit.
///
/// Concurrency: the `commit` lock is held by every writer for the whole of
/// its write (a batch applied outside a group, joining a group, opening or
/// closing one), so writes reach sled in the order they are made; readers
/// never take it. The overlay's `RwLock` is held only briefly: to add a
/// batch to it, to look a key up, to copy a scan's part of it, to clear it.
/// Another thread applying while the Raft thread has a group open (the MVCC
/// compactor) joins the group: its batch becomes visible at once and reaches
/// sled with the group, which keeps one sled write per group.
#[derive(Clone, Debug)]
pub struct SledBackend {
    tree: sled::Tree,
    db: Option<sled::Db>,
    group: Arc<Group>,
}

/// The group state of a [`SledBackend`] (shared by its clones).
#[derive(Debug, Default)]
struct Group {
    /// Whether a group is open; held across each write (see [`SledBackend`]).
    commit: Mutex<bool>,
    /// The writes of the open group not yet in sled, by key; `None` deletes.
    /// Modified only under `commit`.
    pending: RwLock<BTreeMap<IVec, Option<IVec>>>,
}

impl Group {
    fn lock_commit(&self) -> MutexGuard<'_, bool> {
        self.commit.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<IVec, Option<IVec>>> {
        self.pending.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<IVec, Option<IVec>>> {
        self.pending.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl SledBackend {
    /// A backend over `tree`. [`Backend::size`] then scans the tree (O(n));
    /// use [`SledBackend::with_db`] for a cheap size.
    pub fn new(tree: sled::Tree) -> SledBackend {
        SledBackend {
            tree,
            db: None,
            group: Arc::default(),
        }
    }

    /// A backend over `tree` whose [`Backend::size`] is `db`'s size on disk.
    pub fn with_db(db: sled::Db, tree: sled::Tree) -> SledBackend {
        SledBackend {
            tree,
            db: Some(db),
            group: Arc::default(),
        }
    }

    /// The tree. It lacks the writes of an open group.
    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }
}

impl Backend for SledBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        // The overlay first: it is cleared only once sled has its writes, so
        // a miss there means sled is up to date for `key`.
        if let Some(pending) = self.group.read().get(key) {
            return Ok(pending.as_ref().map(|v| v.to_vec()));
        }
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    fn scan(&self, start: &[u8], end: &[u8]) -> ScanIter<'_> {
        let Some(range) = bounds(start, end) else {
            return Box::new(std::iter::empty());
        };
        // The overlay's part is copied before sled's range is read (the
        // reason `get` looks at the overlay first), so a write is always in
        // one or the other. The copy is small: one group's writes at most.
        let overlay: Vec<(IVec, Option<IVec>)> = self
            .group
            .read()
            .range::<[u8], _>(range)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let on_disk = self.tree.range::<&[u8], _>(range);
        if overlay.is_empty() {
            return Box::new(on_disk.map(|item| {
                let (k, v) = item?;
                Ok((k.to_vec(), v.to_vec()))
            }));
        }
        Box::new(Merge {
            on_disk: on_disk.peekable(),
            overlay: overlay.into_iter().peekable(),
        })
    }

    fn apply(&self, batch: Batch) -> Result<()> {
        let open = self.group.lock_commit();
        if *open {
            let mut pending = self.group.write();
            for op in batch.ops {
                match op {
                    BatchOp::Put(k, v) => pending.insert(k.into(), Some(v.into())),
                    BatchOp::Delete(k) => pending.insert(k.into(), None),
                };
            }
            return Ok(());
        }
        let mut sb = sled::Batch::default();
        for op in batch.ops {
            match op {
                BatchOp::Put(k, v) => sb.insert(k, v),
                BatchOp::Delete(k) => sb.remove(k),
            }
        }
        self.tree.apply_batch(sb)?;
        Ok(())
    }

    fn size(&self) -> Result<u64> {
        if let Some(db) = &self.db {
            return Ok(db.size_on_disk()?);
        }
        let mut size = 0u64;
        for item in self.tree.iter() {
            let (k, v) = item?;
            size += (k.len() + v.len()) as u64;
        }
        Ok(size)
    }

    fn begin_group(&self) {
        *self.group.lock_commit() = true;
    }

    fn pending_writes(&self) -> usize {
        self.group.read().len()
    }

    fn end_group(&self) -> Result<()> {
        let mut open = self.group.lock_commit();
        if !*open {
            return Ok(());
        }
        // Nobody else changes the overlay while `commit` is held; readers
        // keep reading it during the sled write. The clones are cheap
        // (`IVec`s share their bytes).
        let (batch, writes) = {
            let pending = self.group.read();
            let mut batch = sled::Batch::default();
            for (k, v) in pending.iter() {
                match v {
                    Some(v) => batch.insert(k.clone(), v.clone()),
                    None => batch.remove(k.clone()),
                }
            }
            (batch, pending.len())
        };
        if writes > 0 {
            if let Err(e) = self.tree.apply_batch(batch) {
                tracing::error!(writes, error = %e, "mvcc: group commit to sled failed");
                return Err(e.into());
            }
            self.group.write().clear();
        }
        *open = false;
        Ok(())
    }
}

/// A sled range merged with the overlay's part of it: both in key order, the
/// overlay winning on equal keys, its deletions hiding sled's keys.
struct Merge<I: Iterator> {
    on_disk: Peekable<I>,
    overlay: Peekable<std::vec::IntoIter<(IVec, Option<IVec>)>>,
}

impl<I> Iterator for Merge<I>
where
    I: Iterator<Item = sled::Result<(IVec, IVec)>>,
{
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::cmp::Ordering::{Equal, Greater, Less};
        loop {
            let order = match (self.on_disk.peek(), self.overlay.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) | (Some(Ok(_)), None) => Less,
                (None, Some(_)) => Greater,
                (Some(Ok((disk, _))), Some((over, _))) => disk.cmp(over),
            };
            if order == Less {
                return self.on_disk.next().map(|item| {
                    let (k, v) = item?;
                    Ok((k.to_vec(), v.to_vec()))
                });
            }
            if order == Equal {
                self.on_disk.next(); // shadowed by the overlay
            }
            if let Some((k, Some(v))) = self.overlay.next() {
                return Some(Ok((k.to_vec(), v.to_vec())));
            }
            // A pending deletion: the key is gone.
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::mvcc) fn exercise(b: &dyn Backend) {
        let mut batch = Batch::new();
        batch.put(b"b".to_vec(), b"2".to_vec());
        batch.put(b"a".to_vec(), b"1".to_vec());
        batch.put(b"c".to_vec(), b"3".to_vec());
        batch.delete(b"zz".to_vec());
        assert_eq!(batch.len(), 4);
        b.apply(batch).unwrap();
        assert_eq!(b.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(b.get(b"x").unwrap(), None);
        let keys = |s: &[u8], e: &[u8]| b.scan(s, e).map(|r| r.unwrap().0).collect::<Vec<_>>();
        assert_eq!(
            keys(b"", b""),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(keys(b"b", b"c"), vec![b"b".to_vec()]);
        assert_eq!(keys(b"c", b"b"), Vec::<Vec<u8>>::new());
        let mut batch = Batch::new();
        batch.delete(b"b".to_vec());
        batch.put(b"a".to_vec(), b"11".to_vec());
        b.apply(batch).unwrap();
        assert_eq!(keys(b"", b""), vec![b"a".to_vec(), b"c".to_vec()]);
        assert_eq!(b.get(b"a").unwrap(), Some(b"11".to_vec()));
    }

    #[test]
    fn memory_backend() {
        let b = MemoryBackend::new();
        exercise(&b);
        assert_eq!(b.size().unwrap(), 3 + 2);
    }

    #[test]
    fn sled_backend() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::testutil::open_sled(dir.path());
        let b = SledBackend::new(db.open_tree("mvcc").unwrap());
        exercise(&b);
        assert_eq!(b.size().unwrap(), 3 + 2);
        let b = SledBackend::with_db(db.clone(), db.open_tree("mvcc").unwrap());
        // sled's size on disk is only certain to count the data once flushed.
        db.flush().unwrap();
        assert!(b.size().unwrap() > 0);
    }

    pub(in crate::mvcc) fn put(b: &dyn Backend, k: &str, v: &str) {
        let mut batch = Batch::new();
        batch.put(k.into(), v.into());
        b.apply(batch).unwrap();
    }

    pub(in crate::mvcc) fn del(b: &dyn Backend, k: &str) {
        let mut batch = Batch::new();
        batch.delete(k.into());
        b.apply(batch).unwrap();
    }

    fn pairs(b: &dyn Backend, start: &str, end: &str) -> Vec<(String, String)> {
        b.scan(start.as_bytes(), end.as_bytes())
            .map(|r| {
                let (k, v) = r.unwrap();
                (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap())
            })
            .collect()
    }

    fn tree_get(b: &SledBackend, k: &str) -> Option<String> {
        let v = b.tree().get(k).unwrap()?;
        Some(String::from_utf8(v.to_vec()).unwrap())
    }

    fn get(b: &dyn Backend, k: &str) -> Option<String> {
        let v = b.get(k.as_bytes()).unwrap()?;
        Some(String::from_utf8(v).unwrap())
    }

    fn owned(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sled_group_reads_see_pending_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::testutil::open_sled(dir.path());
        let b = SledBackend::new(db.open_tree("mvcc").unwrap());
        for k in ["a", "b", "c", "d"] {
            put(&b, k, &k.to_uppercase());
        }
        b.begin_group();
        b.begin_group(); // idempotent
        put(&b, "b", "B2"); // overwrites a sled key
        del(&b, "c"); // deletes a sled key
        put(&b, "e", "E"); // a new key after sled's
        put(&b, "0", "Z"); // a new key before sled's
        del(&b, "x"); // deletes nothing
        put(&b, "d", "D2");
        del(&b, "d"); // put then delete in one group
        put(&b, "f", "F");
        del(&b, "f");
        put(&b, "g", "G1");
        put(&b, "g", "G2"); // the last write wins

        // Nothing reached sled yet.
        assert_eq!(tree_get(&b, "b").as_deref(), Some("B"));
        assert_eq!(tree_get(&b, "c").as_deref(), Some("C"));
        assert_eq!(tree_get(&b, "e"), None);

        let check = |b: &dyn Backend| {
            assert_eq!(get(b, "a").as_deref(), Some("A"));
            assert_eq!(get(b, "b").as_deref(), Some("B2"));
            assert_eq!(get(b, "c"), None);
            assert_eq!(get(b, "d"), None);
            assert_eq!(get(b, "e").as_deref(), Some("E"));
            assert_eq!(get(b, "f"), None);
            assert_eq!(get(b, "g").as_deref(), Some("G2"));
            assert_eq!(get(b, "x"), None);
            let all = owned(&[("0", "Z"), ("a", "A"), ("b", "B2"), ("e", "E"), ("g", "G2")]);
            assert_eq!(pairs(b, "", ""), all);
            assert_eq!(pairs(b, "a", ""), all[1..].to_vec());
            assert_eq!(pairs(b, "b", "e"), owned(&[("b", "B2")]));
            assert_eq!(pairs(b, "b", "f"), owned(&[("b", "B2"), ("e", "E")]));
            assert_eq!(pairs(b, "c", "e"), vec![]);
            assert_eq!(pairs(b, "c", "d\0"), vec![]);
            assert_eq!(pairs(b, "", "a"), owned(&[("0", "Z")]));
            assert_eq!(pairs(b, "a", "b"), owned(&[("a", "A")]));
            assert_eq!(pairs(b, "e", "b"), vec![]);
            assert_eq!(pairs(b, "h", ""), vec![]);
        };
        check(&b);

        b.end_group().unwrap();
        b.end_group().unwrap(); // no group: nothing to do
        assert_eq!(tree_get(&b, "b").as_deref(), Some("B2"));
        assert_eq!(tree_get(&b, "c"), None);
        assert_eq!(tree_get(&b, "e").as_deref(), Some("E"));
        check(&b);

        // Outside a group, writes reach sled at once.
        put(&b, "h", "H");
        assert_eq!(tree_get(&b, "h").as_deref(), Some("H"));
        del(&b, "h");

        // Durable like any sled write: flushed, closed and opened again.
        db.flush().unwrap();
        drop(b);
        drop(db);
        let db = crate::testutil::open_sled(dir.path());
        let b = SledBackend::new(db.open_tree("mvcc").unwrap());
        check(&b);
    }

    #[test]
    fn sled_backend_in_a_group() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::testutil::open_sled(dir.path());
        let b = SledBackend::new(db.open_tree("mvcc").unwrap());
        b.begin_group();
        exercise(&b);
        assert!(b.tree().is_empty());
        b.end_group().unwrap();
        let on_disk: Vec<_> = b.tree().iter().map(|r| r.unwrap().0.to_vec()).collect();
        assert_eq!(on_disk, vec![b"a".to_vec(), b"c".to_vec()]);
        assert_eq!(get(&b, "a").as_deref(), Some("11"));
    }

    /// A writer commits groups while a reader checks, in a loop, that every
    /// write published so far is visible (through `get` and `scan`) and that
    /// a published delete hides its key from `get`, while another thread
    /// applies on its own (as the MVCC compactor does). The checks are
    /// invariants, not timings: a run can only fail by a real window. (A
    /// scan's view of keys deleted while it runs is not checked: sled's
    /// iterators are not isolated from a batch being applied.)
    #[test]
    fn sled_group_commit_has_no_read_window() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

        const ROUNDS: usize = 300;
        const PER_ROUND: usize = 8;
        const OTHERS: usize = 600;
        let dir = tempfile::tempdir().unwrap();
        let db = crate::testutil::open_sled(dir.path());
        let b = Arc::new(SledBackend::new(db.open_tree("mvcc").unwrap()));
        // Rounds whose writes are applied (not necessarily in sled yet).
        let rounds = Arc::new(AtomicUsize::new(0));
        let others = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let key = |r: usize, j: usize| format!("k{r:05}-{j}");

        let writer = {
            let (b, rounds) = (b.clone(), rounds.clone());
            std::thread::spawn(move || {
                for r in 0..ROUNDS {
                    b.begin_group();
                    let mut batch = Batch::new();
                    for j in 0..PER_ROUND {
                        batch.put(key(r, j).into_bytes(), vec![b'v'; 40 + j]);
                    }
                    // Each round's marker lives until the next round.
                    batch.put(format!("m{r:05}").into_bytes(), b"x".to_vec());
                    if r > 0 {
                        batch.delete(format!("m{:05}", r - 1).into_bytes());
                    }
                    b.apply(batch).unwrap();
                    rounds.store(r + 1, Ordering::Release);
                    // Give the reader a moment inside the group now and then.
                    if r % 4 == 0 {
                        std::thread::yield_now();
                    }
                    b.end_group().unwrap();
                }
            })
        };
        let other = {
            let (b, others) = (b.clone(), others.clone());
            std::thread::spawn(move || {
                for i in 0..OTHERS {
                    put(&*b, &format!("o{i:05}"), "o");
                    others.store(i + 1, Ordering::Release);
                }
            })
        };
        let reader = {
            let (b, rounds, others, done) =
                (b.clone(), rounds.clone(), others.clone(), done.clone());
            std::thread::spawn(move || {
                let mut checks = 0usize;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let n = rounds.load(Ordering::Acquire);
                    let o = others.load(Ordering::Acquire);
                    if n > 0 {
                        let last = n - 1;
                        for j in 0..PER_ROUND {
                            assert!(
                                b.get(key(last, j).as_bytes()).unwrap().is_some(),
                                "{last}/{j}"
                            );
                        }
                        // Deleted by the round `last`, already applied (its
                        // own marker may be gone by now: not checked).
                        if last > 0 {
                            let gone = format!("m{:05}", last - 1);
                            assert_eq!(b.get(gone.as_bytes()).unwrap(), None, "{gone}");
                        }
                    }
                    let ks: Vec<Vec<u8>> = b.scan(b"k", b"l").map(|r| r.unwrap().0).collect();
                    assert!(ks.windows(2).all(|w| w[0] < w[1]));
                    assert!(
                        ks.len() >= n * PER_ROUND,
                        "{} < {}",
                        ks.len(),
                        n * PER_ROUND
                    );
                    for (i, k) in ks.iter().take(n * PER_ROUND).enumerate() {
                        assert_eq!(k, key(i / PER_ROUND, i % PER_ROUND).as_bytes());
                    }
                    let os = b.scan(b"o", b"p").count();
                    assert!(os >= o, "{os} < {o}");
                    checks += 1;
                    if finished {
                        return checks;
                    }
                }
            })
        };
        writer.join().unwrap();
        other.join().unwrap();
        done.store(true, Ordering::Release);
        let checks = reader.join().unwrap();
        assert!(checks > 0);

        // Everything reached sled.
        b.end_group().unwrap();
        assert_eq!(b.tree().scan_prefix("k").count(), ROUNDS * PER_ROUND);
        assert_eq!(b.tree().scan_prefix("o").count(), OTHERS);
        let markers: Vec<_> = b.tree().scan_prefix("m").map(|r| r.unwrap().0).collect();
        assert_eq!(
            markers,
            vec![sled::IVec::from(format!("m{:05}", ROUNDS - 1).as_bytes())]
        );
    }
}
