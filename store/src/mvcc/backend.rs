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
//! Leaves out: durability. No backend here ever flushes; the Raft log storage
//! flushes sled (once per `Ready`, or at its WAL's checkpoints) and keeps
//! every entry until then, and a restart re-applies what sled lost. Snapshot isolation is left out too: a scan may see writes made
//! while it runs.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

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

fn bounds<'a>(start: &'a [u8], end: &'a [u8]) -> Option<ByteBounds<'a>> {
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

/// A backend over one `sled::Tree`, which it owns whole.
#[derive(Clone, Debug)]
pub struct SledBackend {
    tree: sled::Tree,
    db: Option<sled::Db>,
}

impl SledBackend {
    /// A backend over `tree`. [`Backend::size`] then scans the tree (O(n));
    /// use [`SledBackend::with_db`] for a cheap size.
    pub fn new(tree: sled::Tree) -> SledBackend {
        SledBackend { tree, db: None }
    }

    /// A backend over `tree` whose [`Backend::size`] is `db`'s size on disk.
    pub fn with_db(db: sled::Db, tree: sled::Tree) -> SledBackend {
        SledBackend { tree, db: Some(db) }
    }

    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }
}

impl Backend for SledBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    fn scan(&self, start: &[u8], end: &[u8]) -> ScanIter<'_> {
        let Some(range) = bounds(start, end) else {
            return Box::new(std::iter::empty());
        };
        Box::new(self.tree.range::<&[u8], _>(range).map(|item| {
            let (k, v) = item?;
            Ok((k.to_vec(), v.to_vec()))
        }))
    }

    fn apply(&self, batch: Batch) -> Result<()> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(b: &dyn Backend) {
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
}
