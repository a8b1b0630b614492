//! The in-memory key index: for each key, the revisions at which it changed.
//!
//! Each key maps to its history entries in revision order; an entry is a
//! revision plus a tombstone flag. A tombstone ends a generation of the key
//! (etcd's `keyIndex.generations`); the next put starts a new one. Generations
//! are not stored apart: they are the runs between tombstones, and the version
//! and create_revision of a key live in the backend records, not here, so an
//! entry is 16 bytes and a key with one entry needs no allocation besides its
//! name. (The generation model and the compaction rule come from etcd's
//! `mvcc/key_index.go`; this representation is keel's.)
//!
//! Invariants: a key's entries are strictly increasing; a tombstone directly
//! follows a put; no key has zero entries (such keys are removed). Entries of
//! a write transaction that has not ended may be present: they carry a main
//! revision above the store's current revision, and readers never ask past it.
//!
//! Leaves out: values (the backend has them), locking (the store's job).

use std::collections::BTreeMap;
use std::ops::Bound;

use super::revision::Revision;

const TOMBSTONE_BIT: u64 = 1 << 63;

/// One index entry: a revision, and whether it deleted the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    main: i64,
    /// `sub` in the low 63 bits, the tombstone flag in the top bit.
    sub: u64,
}

impl Entry {
    pub fn new(rev: Revision, tombstone: bool) -> Entry {
        debug_assert!(rev.sub >= 0);
        Entry {
            main: rev.main,
            sub: rev.sub as u64 | if tombstone { TOMBSTONE_BIT } else { 0 },
        }
    }
    pub fn revision(self) -> Revision {
        Revision {
            main: self.main,
            sub: (self.sub & !TOMBSTONE_BIT) as i64,
        }
    }
    pub fn is_tombstone(self) -> bool {
        self.sub & TOMBSTONE_BIT != 0
    }
    /// The revision if this entry is a put.
    fn live(self) -> Option<Revision> {
        (!self.is_tombstone()).then(|| self.revision())
    }
}

/// A key's entries; one entry (the common case after compaction) is inline.
#[derive(Clone, Debug)]
enum Entries {
    One(Entry),
    Many(Vec<Entry>),
}

impl Entries {
    fn as_slice(&self) -> &[Entry] {
        match self {
            Entries::One(e) => std::slice::from_ref(e),
            Entries::Many(v) => v,
        }
    }

    fn push(&mut self, e: Entry) {
        match self {
            Entries::One(first) => *self = Entries::Many(vec![*first, e]),
            Entries::Many(v) => v.push(e),
        }
    }

    /// Keeps `self[from..]`; returns false if nothing is left.
    fn keep_from(&mut self, from: usize) -> bool {
        match self {
            Entries::One(_) => from == 0,
            Entries::Many(v) => {
                v.drain(..from);
                self.normalize()
            }
        }
    }

    /// Drops the last entry; returns false if nothing is left.
    fn pop(&mut self) -> bool {
        match self {
            Entries::One(_) => false,
            Entries::Many(v) => {
                v.pop();
                self.normalize()
            }
        }
    }

    /// Inlines a single entry, gives back spare capacity; false if empty.
    fn normalize(&mut self) -> bool {
        if let Entries::Many(v) = self {
            match v.len() {
                0 => return false,
                1 => *self = Entries::One(v[0]),
                _ => v.shrink_to_fit(),
            }
        }
        true
    }
}

/// Where the last entry at or below `at` is: its position in `entries`.
fn last_at_or_below(entries: &[Entry], at: i64) -> Option<usize> {
    entries.partition_point(|e| e.main <= at).checked_sub(1)
}

/// Which entries compaction at `at` drops from one key: `entries[..n]`.
/// Keeps, per key, the latest entry at or below `at` unless it is a
/// tombstone, and everything above `at` (etcd's `keyIndex.compact`).
fn compaction_cut(entries: &[Entry], at: i64) -> usize {
    match last_at_or_below(entries, at) {
        None => 0,
        Some(i) if entries[i].is_tombstone() => i + 1,
        Some(i) => i,
    }
}

/// Range bounds over byte keys.
type ByteBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// A key range in etcd's terms: `range_end` empty = the single `key`;
/// `[0]` = every key `>= key`; otherwise `[key, range_end)`.
#[derive(Clone, Copy, Debug)]
pub struct KeyRange<'a> {
    pub key: &'a [u8],
    pub range_end: &'a [u8],
}

impl<'a> KeyRange<'a> {
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> KeyRange<'a> {
        KeyRange { key, range_end }
    }

    fn is_single(&self) -> bool {
        self.range_end.is_empty()
    }

    fn unbounded(&self) -> bool {
        self.range_end == [0]
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        if self.is_single() {
            k == self.key
        } else {
            k >= self.key && (self.unbounded() || k < self.range_end)
        }
    }

    fn bounds(&self) -> Option<ByteBounds<'a>> {
        if self.is_single() {
            return Some((Bound::Included(self.key), Bound::Included(self.key)));
        }
        if self.unbounded() {
            return Some((Bound::Included(self.key), Bound::Unbounded));
        }
        (self.range_end > self.key)
            .then_some((Bound::Included(self.key), Bound::Excluded(self.range_end)))
    }
}

/// The key index.
#[derive(Debug, Default)]
pub struct KeyIndex {
    keys: BTreeMap<Box<[u8]>, Entries>,
}

impl KeyIndex {
    pub fn new() -> KeyIndex {
        KeyIndex::default()
    }

    /// How many keys have entries (live or not yet compacted away).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The revision of `key`'s value as of main revision `at`, if it existed then.
    #[cfg(test)]
    pub fn get(&self, key: &[u8], at: i64) -> Option<Revision> {
        self.get_in(self.keys.get(key)?.as_slice(), at)
    }

    /// `key`'s newest entry, pending ones included.
    pub fn last(&self, key: &[u8]) -> Option<Entry> {
        self.keys
            .get(key)
            .and_then(|e| e.as_slice().last().copied())
    }

    /// The revision of `key`'s value just before `rev`, if it existed then.
    pub fn before(&self, key: &[u8], rev: Revision) -> Option<Revision> {
        let entries = self.keys.get(key)?.as_slice();
        let i = entries
            .partition_point(|e| e.revision() < rev)
            .checked_sub(1)?;
        entries[i].live()
    }

    /// Calls `f(key, revision)` for each key of `range` that existed at main
    /// revision `at`, in key order, while `f` returns true.
    pub fn visit(&self, range: KeyRange<'_>, at: i64, mut f: impl FnMut(&[u8], Revision) -> bool) {
        let Some(bounds) = range.bounds() else { return };
        for (key, entries) in self.keys.range::<[u8], _>(bounds) {
            if let Some(rev) = self.get_in(entries.as_slice(), at) {
                if !f(key, rev) {
                    return;
                }
            }
        }
    }

    fn get_in(&self, entries: &[Entry], at: i64) -> Option<Revision> {
        last_at_or_below(entries, at).and_then(|i| entries[i].live())
    }

    /// Records a change of `key` at `rev`, which must be above all its entries.
    pub fn push(&mut self, key: &[u8], rev: Revision, tombstone: bool) {
        let entry = Entry::new(rev, tombstone);
        match self.keys.get_mut(key) {
            Some(entries) => {
                debug_assert!(entries
                    .as_slice()
                    .last()
                    .is_some_and(|l| l.revision() < rev));
                entries.push(entry);
            }
            None => {
                self.keys.insert(key.into(), Entries::One(entry));
            }
        }
    }

    /// Undoes the last [`KeyIndex::push`] of `key` (for an abandoned transaction).
    pub fn pop(&mut self, key: &[u8]) {
        if let Some(entries) = self.keys.get_mut(key) {
            if !entries.pop() {
                self.keys.remove(key);
            }
        }
    }

    /// How many keys are live at main revision `at`.
    pub fn count_live(&self, at: i64) -> usize {
        self.keys
            .values()
            .filter(|e| self.get_in(e.as_slice(), at).is_some())
            .count()
    }

    /// The entries that [`KeyIndex::compact`] at `at` would drop, as
    /// `(revision, tombstone)`, without changing anything.
    pub fn compaction_plan(&self, at: i64) -> Vec<(Revision, bool)> {
        let mut out = Vec::new();
        for entries in self.keys.values() {
            let entries = entries.as_slice();
            let cut = compaction_cut(entries, at);
            out.extend(
                entries[..cut]
                    .iter()
                    .map(|e| (e.revision(), e.is_tombstone())),
            );
        }
        out
    }

    /// Drops, per key, every entry at or below `at` except the latest one,
    /// and that one too if it is a tombstone; removes keys left empty.
    pub fn compact(&mut self, at: i64) {
        self.keys.retain(|_, entries| {
            let cut = compaction_cut(entries.as_slice(), at);
            cut == 0 || entries.keep_from(cut)
        });
    }

    /// Every key's entries as `(revision, tombstone)`, for tests.
    #[cfg(test)]
    #[allow(clippy::type_complexity)]
    pub fn dump(&self) -> Vec<(Vec<u8>, Vec<(Revision, bool)>)> {
        self.keys
            .iter()
            .map(|(k, e)| {
                (
                    k.to_vec(),
                    e.as_slice()
                        .iter()
                        .map(|e| (e.revision(), e.is_tombstone()))
                        .collect(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64, sub: i64) -> Revision {
        Revision::new(main, sub)
    }

    fn collect(ix: &KeyIndex, key: &[u8], end: &[u8], at: i64) -> Vec<(Vec<u8>, Revision)> {
        let mut out = Vec::new();
        ix.visit(KeyRange::new(key, end), at, |k, rev| {
            out.push((k.to_vec(), rev));
            true
        });
        out
    }

    #[test]
    fn entry_packs_tombstone() {
        let e = Entry::new(r(5, 3), true);
        assert_eq!((e.revision(), e.is_tombstone()), (r(5, 3), true));
        assert_eq!(Entry::new(r(5, 3), false).live(), Some(r(5, 3)));
        assert_eq!(std::mem::size_of::<Entry>(), 16);
        assert!(std::mem::size_of::<Entries>() <= 24);
    }

    #[test]
    fn get_across_generations() {
        let mut ix = KeyIndex::new();
        ix.push(b"a", r(2, 0), false);
        ix.push(b"a", r(3, 0), false);
        ix.push(b"a", r(4, 0), true);
        ix.push(b"a", r(6, 1), false);
        assert_eq!(ix.get(b"a", 1), None);
        assert_eq!(ix.get(b"a", 2), Some(r(2, 0)));
        assert_eq!(ix.get(b"a", 3), Some(r(3, 0)));
        assert_eq!(ix.get(b"a", 4), None);
        assert_eq!(ix.get(b"a", 5), None);
        assert_eq!(ix.get(b"a", 6), Some(r(6, 1)));
        assert_eq!(ix.get(b"a", 100), Some(r(6, 1)));
        assert_eq!(ix.get(b"b", 100), None);
        assert_eq!(ix.before(b"a", r(6, 1)), None);
        assert_eq!(ix.before(b"a", r(4, 0)), Some(r(3, 0)));
        assert_eq!(ix.before(b"a", r(2, 0)), None);
        assert_eq!(ix.last(b"a"), Some(Entry::new(r(6, 1), false)));
        ix.pop(b"a");
        assert_eq!(ix.last(b"a"), Some(Entry::new(r(4, 0), true)));
        ix.push(b"z", r(7, 0), false);
        ix.pop(b"z");
        assert_eq!(ix.len(), 1);
    }

    #[test]
    fn visit_ranges() {
        let mut ix = KeyIndex::new();
        for (i, k) in [&b"a"[..], b"b", b"c", b"d"].iter().enumerate() {
            ix.push(k, r(2 + i as i64, 0), false);
        }
        ix.push(b"c", r(10, 0), true);
        let keys = |k: &[u8], e: &[u8], at| {
            collect(&ix, k, e, at)
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(b"b", b"", 20), vec![b"b".to_vec()]);
        assert_eq!(keys(b"b", b"d", 20), vec![b"b".to_vec()]);
        assert_eq!(keys(b"b", b"d", 9), vec![b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(keys(b"b", &[0], 20), vec![b"b".to_vec(), b"d".to_vec()]);
        assert_eq!(keys(&[0], &[0], 3), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(keys(b"d", b"b", 20), Vec::<Vec<u8>>::new());
        assert_eq!(keys(b"b", b"b", 20), Vec::<Vec<u8>>::new());
        assert_eq!(ix.count_live(20), 3);
        let mut n = 0;
        ix.visit(KeyRange::new(&[0], &[0]), 20, |_, _| {
            n += 1;
            n < 2
        });
        assert_eq!(n, 2);
    }

    #[test]
    fn compaction_rule() {
        let mut ix = KeyIndex::new();
        // a: put 2, put 3, tomb 4, put 6, put 8
        for (m, t) in [(2, false), (3, false), (4, true), (6, false), (8, false)] {
            ix.push(b"a", r(m, 0), t);
        }
        // b: put 3, tomb 5
        ix.push(b"b", r(3, 1), false);
        ix.push(b"b", r(5, 0), true);
        assert_eq!(ix.compaction_plan(1), vec![]);
        assert_eq!(ix.compaction_plan(3), vec![(r(2, 0), false)]);
        assert_eq!(
            ix.compaction_plan(4),
            vec![(r(2, 0), false), (r(3, 0), false), (r(4, 0), true)]
        );
        assert_eq!(
            ix.compaction_plan(5),
            vec![
                (r(2, 0), false),
                (r(3, 0), false),
                (r(4, 0), true),
                (r(3, 1), false),
                (r(5, 0), true)
            ]
        );
        ix.compact(3);
        assert_eq!(ix.get(b"a", 3), Some(r(3, 0)));
        ix.compact(5);
        assert_eq!(
            ix.dump(),
            vec![(b"a".to_vec(), vec![(r(6, 0), false), (r(8, 0), false)])]
        );
        ix.compact(8);
        assert_eq!(ix.dump(), vec![(b"a".to_vec(), vec![(r(8, 0), false)])]);
        ix.push(b"a", r(9, 0), true);
        ix.compact(9);
        assert!(ix.is_empty());
    }
}
