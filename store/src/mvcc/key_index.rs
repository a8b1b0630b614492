//! The in-memory key index: for each key, the revisions at which it changed.
//!
//! Each key maps to its history entries in revision order; an entry is a
//! revision plus a tombstone flag. A tombstone ends a generation of the key
//! (etcd's `keyIndex.generations`); the next put starts a new one. Generations
//! are not stored apart: they are the runs between tombstones. Beside its
//! entries a key keeps what its newest put recorded ([`Live`]: the
//! generation's create_revision, the version, whether a lease holds it), so
//! that the next put can write its own without reading the previous record
//! from the backend (a B-tree lookup that was 7 % of a member's CPU per put,
//! docs/benchmarks.md). An entry is 16 bytes, the rest of a key 16 more, and a
//! key with one entry needs no allocation besides its name. (The generation
//! model and the compaction rule come from etcd's `mvcc/key_index.go`; this
//! representation is keel's.)
//!
//! Invariants: a key's entries are strictly increasing; a tombstone directly
//! follows a put; no key has zero entries (such keys are removed); when a
//! key's last entry is a put, its [`Live`] is that put's. Entries of
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

/// What a key's newest put recorded, besides its revision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Live {
    /// The revision that created the key's current generation.
    pub create_revision: i64,
    /// Puts in the generation so far (1 for the put that created it).
    pub version: i64,
    /// Whether the put attached a lease.
    pub leased: bool,
}

/// What [`KeyIndex::put`] found and recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Put {
    /// The key's newest put before this one, if the key was live.
    pub prev: Option<(Revision, Live)>,
    /// What this put recorded.
    pub live: Live,
    /// What [`KeyIndex::pop`] restores to undo it.
    pub replaced: Live,
}

/// [`Live`] in 16 bytes: the lease flag in the top bit of the version.
#[derive(Clone, Copy, Debug, Default)]
struct PackedLive {
    create_revision: i64,
    version: u64,
}

const LEASED_BIT: u64 = 1 << 63;

impl From<Live> for PackedLive {
    fn from(l: Live) -> PackedLive {
        debug_assert!(l.version >= 0);
        PackedLive {
            create_revision: l.create_revision,
            version: l.version as u64 | if l.leased { LEASED_BIT } else { 0 },
        }
    }
}

impl From<PackedLive> for Live {
    fn from(p: PackedLive) -> Live {
        Live {
            create_revision: p.create_revision,
            version: (p.version & !LEASED_BIT) as i64,
            leased: p.version & LEASED_BIT != 0,
        }
    }
}

/// One key's state in the index.
#[derive(Clone, Debug)]
struct KeyState {
    entries: Entries,
    /// The newest put's; stale while the last entry is a tombstone.
    live: PackedLive,
}

impl KeyState {
    fn push(&mut self, e: Entry) {
        debug_assert!(self
            .entries
            .as_slice()
            .last()
            .is_some_and(|l| l.revision() < e.revision()));
        self.entries.push(e);
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
    keys: BTreeMap<Box<[u8]>, KeyState>,
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
        self.get_in(self.keys.get(key)?.entries.as_slice(), at)
    }

    /// `key`'s newest entry, pending ones included.
    pub fn last(&self, key: &[u8]) -> Option<Entry> {
        self.keys
            .get(key)
            .and_then(|k| k.entries.as_slice().last().copied())
    }

    /// The revision and [`Live`] of `key`'s newest put, if that is its last
    /// entry (the key exists at the newest revision).
    #[cfg(test)]
    pub fn live(&self, key: &[u8]) -> Option<(Revision, Live)> {
        let k = self.keys.get(key)?;
        let last = k.entries.as_slice().last()?.live()?;
        Some((last, k.live.into()))
    }

    /// The revision of `key`'s value just before `rev`, if it existed then.
    pub fn before(&self, key: &[u8], rev: Revision) -> Option<Revision> {
        let entries = self.keys.get(key)?.entries.as_slice();
        let i = entries
            .partition_point(|e| e.revision() < rev)
            .checked_sub(1)?;
        entries[i].live()
    }

    /// Calls `f(key, revision)` for each key of `range` that existed at main
    /// revision `at`, in key order, while `f` returns true.
    pub fn visit(&self, range: KeyRange<'_>, at: i64, mut f: impl FnMut(&[u8], Revision) -> bool) {
        let Some(bounds) = range.bounds() else { return };
        for (key, k) in self.keys.range::<[u8], _>(bounds) {
            if let Some(rev) = self.get_in(k.entries.as_slice(), at) {
                if !f(key, rev) {
                    return;
                }
            }
        }
    }

    fn get_in(&self, entries: &[Entry], at: i64) -> Option<Revision> {
        last_at_or_below(entries, at).and_then(|i| entries[i].live())
    }

    /// Records a put of `key` at `rev` (above all its entries) that wrote
    /// `live` (as read back from a record); returns the [`Live`] it replaced.
    pub fn push_put(&mut self, key: &[u8], rev: Revision, live: Live) -> Live {
        self.put_with(key, rev, |_| live).replaced
    }

    /// Records a new put of `key` at `rev` (above all its entries), with a
    /// lease or not: it continues the key's generation, or starts one at
    /// `rev`. One lookup of the key, which the write path pays once per put.
    pub fn put(&mut self, key: &[u8], rev: Revision, leased: bool) -> Put {
        self.put_with(key, rev, |prev| match prev {
            Some((_, p)) => Live {
                create_revision: p.create_revision,
                version: p.version + 1,
                leased,
            },
            None => Live {
                create_revision: rev.main,
                version: 1,
                leased,
            },
        })
    }

    fn put_with(
        &mut self,
        key: &[u8],
        rev: Revision,
        next: impl FnOnce(Option<(Revision, Live)>) -> Live,
    ) -> Put {
        let entry = Entry::new(rev, false);
        match self.keys.get_mut(key) {
            Some(k) => {
                let replaced = Live::from(k.live);
                let last = k.entries.as_slice().last().and_then(|e| e.live());
                let prev = last.map(|r| (r, replaced));
                let live = next(prev);
                k.push(entry);
                k.live = live.into();
                Put {
                    prev,
                    live,
                    replaced,
                }
            }
            None => {
                let live = next(None);
                let entries = Entries::One(entry);
                let packed = live.into();
                self.keys.insert(
                    key.into(),
                    KeyState {
                        entries,
                        live: packed,
                    },
                );
                Put {
                    prev: None,
                    live,
                    replaced: Live::default(),
                }
            }
        }
    }

    /// Records a delete of `key` at `rev` (above all its entries).
    pub fn push_delete(&mut self, key: &[u8], rev: Revision) {
        let entry = Entry::new(rev, true);
        match self.keys.get_mut(key) {
            Some(k) => k.push(entry),
            None => {
                let entries = Entries::One(entry);
                let live = PackedLive::default();
                self.keys.insert(key.into(), KeyState { entries, live });
            }
        }
    }

    /// Records a change of `key` at `rev`: a delete, or a put whose
    /// [`Live`] does not matter to the caller.
    #[cfg(test)]
    pub fn push(&mut self, key: &[u8], rev: Revision, tombstone: bool) {
        if tombstone {
            self.push_delete(key, rev);
        } else {
            self.push_put(key, rev, Live::default());
        }
    }

    /// Undoes the last push of `key` (for an abandoned transaction). `restore`
    /// is the [`Live`] the put replaced ([`Put::replaced`]), to undo a put;
    /// `None` for a delete.
    pub fn pop(&mut self, key: &[u8], restore: Option<Live>) {
        if let Some(k) = self.keys.get_mut(key) {
            if let Some(live) = restore {
                k.live = live.into();
            }
            if !k.entries.pop() {
                self.keys.remove(key);
            }
        }
    }

    /// How many keys are live at main revision `at`.
    pub fn count_live(&self, at: i64) -> usize {
        self.keys
            .values()
            .filter(|k| self.get_in(k.entries.as_slice(), at).is_some())
            .count()
    }

    /// The entries that [`KeyIndex::compact`] at `at` would drop, as
    /// `(revision, tombstone)`, without changing anything.
    pub fn compaction_plan(&self, at: i64) -> Vec<(Revision, bool)> {
        let mut out = Vec::new();
        for k in self.keys.values() {
            let entries = k.entries.as_slice();
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
        self.keys.retain(|_, k| {
            let cut = compaction_cut(k.entries.as_slice(), at);
            cut == 0 || k.entries.keep_from(cut)
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
                    e.entries
                        .as_slice()
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
        ix.pop(b"a", Some(Live::default()));
        assert_eq!(ix.last(b"a"), Some(Entry::new(r(4, 0), true)));
        ix.push(b"z", r(7, 0), false);
        ix.pop(b"z", Some(Live::default()));
        assert_eq!(ix.len(), 1);
    }

    #[test]
    fn live_follows_the_newest_put_and_pop_restores_it() {
        let l = |create_revision, version, leased| Live {
            create_revision,
            version,
            leased,
        };
        let mut ix = KeyIndex::new();
        assert_eq!(ix.live(b"a"), None);
        assert_eq!(ix.push_put(b"a", r(2, 0), l(2, 1, false)), Live::default());
        assert_eq!(ix.push_put(b"a", r(3, 0), l(2, 2, true)), l(2, 1, false));
        assert_eq!(ix.live(b"a"), Some((r(3, 0), l(2, 2, true))));
        ix.push_delete(b"a", r(4, 0));
        assert_eq!(ix.live(b"a"), None);
        ix.pop(b"a", None);
        assert_eq!(ix.live(b"a"), Some((r(3, 0), l(2, 2, true))));
        let replaced = ix.push_put(b"a", r(5, 0), l(2, 3, false));
        assert_eq!(ix.live(b"a"), Some((r(5, 0), l(2, 3, false))));
        ix.pop(b"a", Some(replaced));
        assert_eq!(ix.live(b"a"), Some((r(3, 0), l(2, 2, true))));
        // A new put continues the generation, or starts one after a delete.
        let p = ix.put(b"a", r(6, 0), false);
        assert_eq!(p.prev, Some((r(3, 0), l(2, 2, true))));
        assert_eq!((p.live, p.replaced), (l(2, 3, false), l(2, 2, true)));
        ix.pop(b"a", Some(p.replaced));
        ix.push_delete(b"b", r(7, 0));
        let p = ix.put(b"b", r(8, 0), true);
        assert_eq!((p.prev, p.live), (None, l(8, 1, true)));
        assert_eq!(ix.put(b"c", r(9, 0), false).live, l(9, 1, false));
        ix.pop(b"b", Some(p.replaced));
        ix.pop(b"b", None);
        ix.pop(b"c", Some(Live::default()));
        // Compaction drops older entries, not what the newest put recorded.
        ix.compact(3);
        assert_eq!(ix.dump(), vec![(b"a".to_vec(), vec![(r(3, 0), false)])]);
        assert_eq!(ix.live(b"a"), Some((r(3, 0), l(2, 2, true))));
        assert_eq!(std::mem::size_of::<KeyState>(), 40);
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
