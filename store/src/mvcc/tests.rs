//! Scenario tests of the MVCC store, run against both backends.
//!
//! Each scenario is a function of a [`Harness`], which opens (and reopens) a
//! store over a [`MemoryBackend`], over a sled tree or over a [`LogBackend`]
//! in a temp dir; the `both!` macro makes one `#[test]` per scenario and
//! backend. The expected
//! numbers follow etcd 3.4 (fresh store at revision 1, first write at 2).

use std::sync::Arc;

use super::backend::{Backend, MemoryBackend, SledBackend};
use super::encoding::REVISIONS_END;
use super::logstore::LogBackend;
use super::{Event, EventKind, KeyValue, RangeOptions, Store};
use crate::Error;

/// Opens stores over one backend, across reopens.
struct Harness {
    memory: Option<Arc<MemoryBackend>>,
    dir: tempfile::TempDir,
    db: Option<sled::Db>,
    /// Whether the backend is a [`LogBackend`] (kept in `log` while open).
    on_log: bool,
    log: Option<LogBackend>,
}

impl Harness {
    fn new(memory: Option<Arc<MemoryBackend>>, on_log: bool) -> Harness {
        Harness {
            memory,
            dir: tempfile::tempdir().unwrap(),
            db: None,
            on_log,
            log: None,
        }
    }

    fn memory() -> Harness {
        Harness::new(Some(Arc::default()), false)
    }

    fn log() -> Harness {
        Harness::new(None, true)
    }

    fn sled() -> Harness {
        Harness::new(None, false)
    }

    fn backend(&mut self) -> Arc<dyn Backend> {
        if let Some(m) = &self.memory {
            return m.clone();
        }
        if self.on_log {
            let dir = self.dir.path().join("log");
            let log = self
                .log
                .get_or_insert_with(|| LogBackend::open(&dir).unwrap());
            return Arc::new(log.clone());
        }
        let db = match &self.db {
            Some(db) => db.clone(),
            None => {
                let db = crate::testutil::open_sled(self.dir.path());
                self.db = Some(db.clone());
                db
            }
        };
        Arc::new(SledBackend::new(db.open_tree("mvcc").unwrap()))
    }

    /// Opens a store; for sled, over the database as it is now.
    fn open(&mut self) -> Store {
        Store::open(self.backend()).unwrap()
    }

    /// Opens the store again after closing it: for sled, the database is
    /// flushed, closed and opened from disk. Drop the old store first.
    fn reopen(&mut self) -> Store {
        if let Some(db) = self.db.take() {
            db.flush().unwrap();
        }
        if let Some(log) = self.log.take() {
            log.flush().unwrap();
        }
        self.open()
    }

    /// How many revision records the backend holds.
    fn records(&mut self) -> usize {
        self.backend().scan(&[], REVISIONS_END).count()
    }
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod on_memory {
            $( #[test] fn $name() { super::$name(&mut super::Harness::memory()) } )*
        }
        mod on_sled {
            $( #[test] fn $name() { super::$name(&mut super::Harness::sled()) } )*
        }
        mod on_log {
            $( #[test] fn $name() { super::$name(&mut super::Harness::log()) } )*
        }
    };
}

both!(
    fresh_store,
    create_update_delete_recreate,
    txn_is_one_revision,
    txn_without_writes,
    past_revisions,
    range_end_forms,
    limit_count_keys_only,
    compaction,
    compaction_of_everything_deleted,
    interrupted_compaction_is_finished_on_open,
    reopen_rebuilds_state,
    history_events,
    consistent_index,
    dropped_txn_rolls_back,
    concurrent_reads,
    image_round_trip,
);

#[test]
fn store_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Store>();
    check::<MemoryBackend>();
    check::<SledBackend>();
}

fn kv(key: &str, value: &str, create: i64, modr: i64, version: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        create_revision: create,
        mod_revision: modr,
        version,
        value: value.into(),
        lease: 0,
    }
}

/// Puts; returns the value it replaced, as a prev_kv watcher gets it.
fn put(s: &Store, key: &str, value: &str) -> Option<KeyValue> {
    let mut t = s.write();
    t.put(key.as_bytes(), value.into(), 0).unwrap();
    let events = t.end(0).unwrap();
    s.prev_kv(&events[0]).unwrap()
}

fn del(s: &Store, key: &str, end: &str) -> Vec<KeyValue> {
    let mut t = s.write();
    let deleted = t.delete_range(key.as_bytes(), end.as_bytes()).unwrap();
    t.end(0).unwrap();
    deleted
}

fn at(rev: i64) -> RangeOptions {
    RangeOptions {
        revision: rev,
        ..RangeOptions::default()
    }
}

fn get(s: &Store, key: &str, rev: i64) -> Option<KeyValue> {
    let mut r = s.range(key.as_bytes(), b"", &at(rev)).unwrap();
    assert!(r.kvs.len() <= 1);
    r.kvs.pop()
}

fn keys(s: &Store, key: &[u8], end: &[u8], opts: &RangeOptions) -> Vec<String> {
    let r = s.range(key, end, opts).unwrap();
    r.kvs
        .into_iter()
        .map(|kv| String::from_utf8(kv.key).unwrap())
        .collect()
}

fn fresh_store(h: &mut Harness) {
    let s = h.open();
    assert_eq!(s.current_revision(), 1);
    assert_eq!(s.compact_revision(), 0);
    assert_eq!(s.consistent_index(), 0);
    assert_eq!(s.key_count(), 0);
    let r = s.range(&[0], &[0], &RangeOptions::default()).unwrap();
    assert_eq!((r.kvs.len(), r.count, r.revision), (0, 0, 1));
    assert!(matches!(
        s.range(b"a", b"", &at(2)),
        Err(Error::FutureRevision)
    ));
    assert_eq!(s.history(&[0], &[0], 1, 0, 0).unwrap(), vec![]);
    assert_eq!(s.write().revision(), 2);
}

fn create_update_delete_recreate(h: &mut Harness) {
    let s = h.open();
    assert_eq!(put(&s, "foo", "a"), None);
    assert_eq!(s.current_revision(), 2);
    assert_eq!(get(&s, "foo", 0), Some(kv("foo", "a", 2, 2, 1)));
    assert_eq!(put(&s, "foo", "b"), Some(kv("foo", "a", 2, 2, 1)));
    assert_eq!(get(&s, "foo", 0), Some(kv("foo", "b", 2, 3, 2)));
    put(&s, "bar", "x");
    assert_eq!(s.key_count(), 2);
    assert_eq!(del(&s, "foo", ""), vec![kv("foo", "b", 2, 3, 2)]);
    assert_eq!(s.current_revision(), 5);
    assert_eq!(get(&s, "foo", 0), None);
    assert_eq!(s.key_count(), 1);
    // Re-create: a new generation, version 1, new create_revision.
    assert_eq!(put(&s, "foo", "c"), None);
    assert_eq!(get(&s, "foo", 0), Some(kv("foo", "c", 6, 6, 1)));
    assert_eq!(put(&s, "foo", "d"), Some(kv("foo", "c", 6, 6, 1)));
    assert_eq!(get(&s, "foo", 0), Some(kv("foo", "d", 6, 7, 2)));
    assert_eq!(s.key_count(), 2);
    // Leases are kept per put.
    let mut t = s.write();
    t.put(b"l", b"v".to_vec(), 7587).unwrap();
    t.end(0).unwrap();
    assert_eq!(get(&s, "l", 0).unwrap().lease, 7587);
    // A put over a leased value carries that value in its event (the lessor
    // needs its lease); over one without a lease it leaves it to be read.
    let overwrite = |value: &str| {
        let mut t = s.write();
        t.put(b"l", value.into(), 0).unwrap();
        t.end(0).unwrap().remove(0)
    };
    let e = overwrite("w");
    assert_eq!(
        e.prev_kv.map(|p| (p.value, p.lease)),
        Some((b"v".to_vec(), 7587))
    );
    let e = overwrite("x");
    assert_eq!(e.prev_kv, None);
    assert_eq!(s.prev_kv(&e).unwrap().map(|p| p.value), Some(b"w".to_vec()));
    assert_eq!((e.kv.create_revision, e.kv.version), (8, 3));
}

fn txn_is_one_revision(h: &mut Harness) {
    let s = h.open();
    put(&s, "a", "1");
    let mut t = s.write();
    assert_eq!(t.revision(), 3);
    // Before writing, the txn reads at the current revision.
    assert_eq!(
        t.range(b"a", b"", &RangeOptions::default())
            .unwrap()
            .revision,
        2
    );
    t.put(b"b", "2".into(), 0).unwrap();
    t.put(b"a", "11".into(), 0).unwrap();
    // Later ops see earlier ones, and reads are at the txn's revision.
    let r = t.range(&[0], &[0], &RangeOptions::default()).unwrap();
    assert_eq!(r.revision, 3);
    assert_eq!(r.kvs, vec![kv("a", "11", 2, 3, 2), kv("b", "2", 3, 3, 1)]);
    // A second put of the same key in one txn continues from the first.
    t.put(b"b", "22".into(), 0).unwrap();
    assert_eq!(
        t.delete_range(b"a", b"c").unwrap(),
        vec![kv("a", "11", 2, 3, 2), kv("b", "22", 3, 3, 2)]
    );
    assert_eq!(
        t.range(&[0], &[0], &RangeOptions::default()).unwrap().count,
        0
    );
    // Concurrent readers do not see the pending revision.
    assert_eq!(s.current_revision(), 2);
    assert_eq!(get(&s, "a", 0), Some(kv("a", "1", 2, 2, 1)));
    t.put(b"a", "new".into(), 0).unwrap();
    let events = t.end(0).unwrap();
    assert_eq!(s.current_revision(), 3);
    let tomb = |k: &str| KeyValue {
        key: k.into(),
        mod_revision: 3,
        ..KeyValue::default()
    };
    assert_eq!(
        events,
        vec![
            Event {
                kind: EventKind::Put,
                kv: kv("b", "2", 3, 3, 1),
                prev_kv: None
            },
            // Left out: "a" existed before the txn, without a lease.
            Event {
                kind: EventKind::Put,
                kv: kv("a", "11", 2, 3, 2),
                prev_kv: None
            },
            Event {
                kind: EventKind::Put,
                kv: kv("b", "22", 3, 3, 2),
                prev_kv: Some(kv("b", "2", 3, 3, 1))
            },
            Event {
                kind: EventKind::Delete,
                kv: tomb("a"),
                prev_kv: Some(kv("a", "11", 2, 3, 2))
            },
            Event {
                kind: EventKind::Delete,
                kv: tomb("b"),
                prev_kv: Some(kv("b", "22", 3, 3, 2))
            },
            Event {
                kind: EventKind::Put,
                kv: kv("a", "new", 3, 3, 1),
                prev_kv: None
            },
        ]
    );
    assert_eq!(get(&s, "a", 0), Some(kv("a", "new", 3, 3, 1)));
    assert_eq!(get(&s, "b", 0), None);
    assert_eq!(s.key_count(), 1);
    // What a prev_kv watcher gets: the left-out one read from the store.
    let events: Vec<Event> = events
        .into_iter()
        .map(|e| Event {
            prev_kv: s.prev_kv(&e).unwrap(),
            ..e
        })
        .collect();
    assert_eq!(events[1].prev_kv, Some(kv("a", "1", 2, 2, 1)));
    // Sub revisions are in op order: history returns them in that order.
    assert_eq!(s.history(&[0], &[0], 3, 3, 0).unwrap(), events);
    drop(s);
    let s = h.reopen();
    assert_eq!(get(&s, "a", 0), Some(kv("a", "new", 3, 3, 1)));
    assert_eq!(get(&s, "b", 2), None);
    assert_eq!(s.history(&[0], &[0], 3, 3, 0).unwrap(), events);
    assert_eq!(s.key_count(), 1);
}

fn txn_without_writes(h: &mut Harness) {
    let s = h.open();
    put(&s, "a", "1");
    let mut t = s.write();
    assert_eq!(t.delete_range(b"zz", b"").unwrap(), vec![]);
    assert_eq!(t.delete_range(b"b", &[0]).unwrap(), vec![]);
    assert_eq!(
        t.range(b"a", b"", &RangeOptions::default())
            .unwrap()
            .kvs
            .len(),
        1
    );
    assert_eq!(t.end(9).unwrap(), vec![]);
    assert_eq!(s.current_revision(), 2);
    assert_eq!(s.consistent_index(), 9);
    assert_eq!(s.write().end(0).unwrap(), vec![]);
    assert_eq!(s.consistent_index(), 9);
    s.wait_compacted();
    assert_eq!(h.records(), 1);
    // A deleted key deleted again writes nothing either.
    del(&s, "a", "");
    assert_eq!(s.current_revision(), 3);
    assert!(del(&s, "a", "").is_empty());
    assert_eq!(s.current_revision(), 3);
    put(&s, "b", "1");
    assert_eq!(s.current_revision(), 4);
}

fn past_revisions(h: &mut Harness) {
    let s = h.open();
    put(&s, "a", "1"); // 2
    put(&s, "b", "1"); // 3
    put(&s, "a", "2"); // 4
    del(&s, "b", ""); // 5
    put(&s, "b", "3"); // 6
    let all = |rev| keys(&s, &[0], &[0], &at(rev));
    assert_eq!(all(1), Vec::<String>::new());
    assert_eq!(all(2), vec!["a"]);
    assert_eq!(all(5), vec!["a"]);
    assert_eq!(all(6), vec!["a", "b"]);
    assert_eq!(get(&s, "a", 3), Some(kv("a", "1", 2, 2, 1)));
    assert_eq!(get(&s, "a", 4), Some(kv("a", "2", 2, 4, 2)));
    assert_eq!(get(&s, "b", 4), Some(kv("b", "1", 3, 3, 1)));
    assert_eq!(get(&s, "b", 5), None);
    assert_eq!(get(&s, "b", 6), Some(kv("b", "3", 6, 6, 1)));
    // The result's revision is the current one, whatever was asked.
    assert_eq!(s.range(b"a", b"", &at(3)).unwrap().revision, 6);
    assert!(matches!(
        s.range(b"a", b"", &at(7)),
        Err(Error::FutureRevision)
    ));
    assert_eq!(get(&s, "a", -5), Some(kv("a", "2", 2, 4, 2)));
}

fn range_end_forms(h: &mut Harness) {
    let s = h.open();
    for k in ["a", "ab", "abc", "b", "c"] {
        put(&s, k, "v");
    }
    let all = RangeOptions::default();
    let r = |k: &[u8], e: &[u8]| keys(&s, k, e, &all);
    assert_eq!(r(b"ab", b""), vec!["ab"]);
    assert_eq!(r(b"abx", b""), Vec::<String>::new());
    assert_eq!(r(b"ab", &[0]), vec!["ab", "abc", "b", "c"]);
    assert_eq!(r(&[0], &[0]), vec!["a", "ab", "abc", "b", "c"]);
    assert_eq!(r(b"a", b"b"), vec!["a", "ab", "abc"]);
    assert_eq!(r(b"ab", b"ac"), vec!["ab", "abc"]); // prefix "ab"
    assert_eq!(r(b"b", b"a"), Vec::<String>::new());
    assert_eq!(r(b"b", b"b"), Vec::<String>::new());
    let mut t = s.write();
    assert_eq!(t.delete_range(b"ab", b"ac").unwrap().len(), 2);
    assert_eq!(t.delete_range(b"b", &[0]).unwrap().len(), 2);
    t.end(0).unwrap();
    assert_eq!(r(&[0], &[0]), vec!["a"]);
    assert_eq!(s.key_count(), 1);
}

fn limit_count_keys_only(h: &mut Harness) {
    let s = h.open();
    for k in ["a", "b", "c", "d"] {
        put(&s, k, "value");
    }
    let opts = RangeOptions {
        limit: 2,
        ..RangeOptions::default()
    };
    let res = s.range(&[0], &[0], &opts).unwrap();
    assert_eq!((res.kvs.len(), res.count, res.revision), (2, 4, 5));
    assert_eq!(res.kvs[1], kv("b", "value", 3, 3, 1));
    let opts = RangeOptions {
        limit: 10,
        ..RangeOptions::default()
    };
    assert_eq!(s.range(&[0], &[0], &opts).unwrap().kvs.len(), 4);
    let opts = RangeOptions {
        count_only: true,
        limit: 1,
        ..RangeOptions::default()
    };
    let res = s.range(b"b", &[0], &opts).unwrap();
    assert_eq!((res.kvs.len(), res.count), (0, 3));
    let opts = RangeOptions {
        keys_only: true,
        ..RangeOptions::default()
    };
    let res = s.range(b"c", b"", &opts).unwrap();
    assert_eq!(res.kvs, vec![kv("c", "", 4, 4, 1)]);
    // The same inside a write txn, over pending changes.
    let mut t = s.write();
    t.put(b"e", "pending".into(), 0).unwrap();
    let res = t.range(b"d", &[0], &opts).unwrap();
    assert_eq!(res.kvs, vec![kv("d", "", 5, 5, 1), kv("e", "", 6, 6, 1)]);
    let opts = RangeOptions {
        limit: 1,
        ..RangeOptions::default()
    };
    let res = t.range(b"d", &[0], &opts).unwrap();
    assert_eq!((res.kvs.len(), res.count, res.revision), (1, 2, 6));
    assert!(matches!(
        t.range(b"d", b"", &at(7)),
        Err(Error::FutureRevision)
    ));
    assert_eq!(t.range(b"e", b"", &at(5)).unwrap().count, 0);
}

fn compaction(h: &mut Harness) {
    let s = h.open();
    put(&s, "a", "1"); // 2
    put(&s, "a", "2"); // 3
    put(&s, "b", "1"); // 4
    del(&s, "b", ""); // 5
    put(&s, "c", "1"); // 6
    del(&s, "c", ""); // 7
    put(&s, "a", "3"); // 8
    s.wait_compacted();
    assert_eq!(h.records(), 7);
    assert!(matches!(s.compact(9, 0), Err(Error::FutureRevision)));
    assert!(matches!(s.compact(0, 0), Err(Error::Compacted)));

    s.compact(5, 0).unwrap();
    assert_eq!(s.compact_revision(), 5);
    // a@2 dropped (a@3 is the newest <= 5); b's tombstone at 5 and b@4 dropped.
    s.wait_compacted();
    assert_eq!(h.records(), 4); // a@3, c@6, c@7, a@8
    assert!(matches!(s.range(b"a", b"", &at(4)), Err(Error::Compacted)));
    assert_eq!(get(&s, "a", 5), Some(kv("a", "2", 2, 3, 2)));
    assert_eq!(get(&s, "b", 5), None);
    assert_eq!(get(&s, "c", 6), Some(kv("c", "1", 6, 6, 1)));
    assert_eq!(keys(&s, &[0], &[0], &at(0)), vec!["a"]);
    assert!(matches!(s.compact(5, 0), Err(Error::Compacted)));
    assert!(matches!(s.compact(4, 0), Err(Error::Compacted)));
    assert!(matches!(
        s.history(&[0], &[0], 4, 0, 0),
        Err(Error::Compacted)
    ));

    // Writes after compaction keep numbering and versions.
    assert_eq!(put(&s, "a", "4"), Some(kv("a", "3", 2, 8, 3)));
    assert_eq!(get(&s, "a", 0), Some(kv("a", "4", 2, 9, 4)));

    s.compact(7, 0).unwrap();
    s.wait_compacted();
    assert_eq!(h.records(), 3); // a@3 (a's value at 7), a@8, a@9
    assert_eq!(get(&s, "c", 7), None);
    assert_eq!(get(&s, "a", 7), Some(kv("a", "2", 2, 3, 2)));
    drop(s);
    let s = h.reopen();
    assert_eq!(
        (s.compact_revision(), s.current_revision(), s.key_count()),
        (7, 9, 1)
    );
    assert!(matches!(s.range(b"a", b"", &at(6)), Err(Error::Compacted)));
    assert_eq!(get(&s, "a", 7), Some(kv("a", "2", 2, 3, 2)));
    assert_eq!(get(&s, "a", 8), Some(kv("a", "3", 2, 8, 3)));
    assert!(matches!(s.compact(7, 0), Err(Error::Compacted)));
    s.compact(9, 0).unwrap();
    s.wait_compacted();
    assert_eq!(h.records(), 1);
    assert_eq!(get(&s, "a", 9), Some(kv("a", "4", 2, 9, 4)));
}

fn compaction_of_everything_deleted(h: &mut Harness) {
    let s = h.open();
    put(&s, "a", "1"); // 2
    put(&s, "b", "1"); // 3
    del(&s, "a", "c"); // 4
    s.compact(4, 0).unwrap();
    s.wait_compacted();
    assert_eq!(h.records(), 0);
    assert_eq!(s.key_count(), 0);
    assert_eq!(keys(&s, &[0], &[0], &at(4)), Vec::<String>::new());
    drop(s);
    let s = h.reopen();
    assert_eq!(
        (s.current_revision(), s.compact_revision(), s.key_count()),
        (4, 4, 0)
    );
    assert_eq!(put(&s, "a", "2"), None);
    assert_eq!(get(&s, "a", 0), Some(kv("a", "2", 5, 5, 1)));
}

/// A member stopped while the background compactor was deleting: the records
/// it had not deleted yet (here: a tombstone whose put was already gone, and a
/// superseded value) are recognised on open, kept out of every read, and
/// deleted again.
fn interrupted_compaction_is_finished_on_open(h: &mut Harness) {
    let s = h.open();
    put(&s, "a", "1"); // 2
    put(&s, "b", "1"); // 3
    del(&s, "a", ""); // 4
    put(&s, "b", "2"); // 5
    put(&s, "c", "1"); // 6
    let backend = h.backend();
    let all: Vec<(Vec<u8>, Vec<u8>)> = backend
        .scan(&[], REVISIONS_END)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(all.len(), 5);
    s.compact(5, 0).unwrap();
    s.wait_compacted();
    assert_eq!(h.records(), 2, "b@5 and c@6 stay");
    drop(s);
    // Put back the tombstone a@4 and the old value b@3, as if their deletion
    // never happened (a@2 was deleted: oldest first).
    let mut batch = super::Batch::new();
    batch.put(all[2].0.clone(), all[2].1.clone());
    batch.put(all[1].0.clone(), all[1].1.clone());
    backend.apply(batch).unwrap();
    drop(backend);
    let s = h.reopen();
    assert_eq!(
        (s.current_revision(), s.compact_revision(), s.key_count()),
        (6, 5, 2)
    );
    assert_eq!(keys(&s, &[0], &[0], &at(5)), vec!["b"]);
    assert_eq!(get(&s, "b", 5), Some(kv("b", "2", 3, 5, 2)));
    s.wait_compacted();
    assert_eq!(h.records(), 2, "the leftovers are deleted again");
}

/// Writes a mixed history, then checks that a reopened store answers every
/// read at every revision the same way.
fn reopen_rebuilds_state(h: &mut Harness) {
    let s = h.open();
    for i in 0..40 {
        let key = format!("k{}", i % 7);
        let mut t = s.write();
        match i % 5 {
            0..=2 => {
                t.put(key.as_bytes(), format!("v{i}").into(), i % 3)
                    .unwrap();
            }
            3 => {
                t.delete_range(key.as_bytes(), b"").unwrap();
            }
            _ => {
                t.put(key.as_bytes(), b"x".to_vec(), 0).unwrap();
                t.put(b"k9", format!("w{i}").into(), 0).unwrap();
                t.delete_range(b"k3", b"k5").unwrap();
            }
        }
        t.end(i as u64 + 100).unwrap();
        if i == 25 {
            s.compact(s.current_revision() - 4, 0).unwrap();
        }
    }
    let snapshot = |s: &Store| {
        let mut out = Vec::new();
        for rev in s.compact_revision()..=s.current_revision() {
            out.push(s.range(&[0], &[0], &at(rev)).unwrap().kvs);
        }
        let history = s.history(&[0], &[0], s.compact_revision(), 0, 0).unwrap();
        let dump = s.read_state().index.dump();
        // What the next put of each key continues from.
        let live: Vec<_> = (0..10)
            .map(|i| s.read_state().index.live(format!("k{i}").as_bytes()))
            .collect();
        (
            out,
            history,
            dump,
            live,
            s.current_revision(),
            s.compact_revision(),
            s.key_count(),
            s.consistent_index(),
        )
    };
    let before = snapshot(&s);
    drop(s);
    let s = h.reopen();
    assert_eq!(snapshot(&s), before);
    assert_eq!(s.consistent_index(), 139);
}

fn history_events(h: &mut Harness) {
    let s = h.open();
    put(&s, "a", "1"); // 2
    put(&s, "b", "1"); // 3
    put(&s, "a", "2"); // 4
    del(&s, "a", ""); // 5
    put(&s, "a", "3"); // 6
    put(&s, "c", "1"); // 7
    let ev = |kind, kv: KeyValue, prev: Option<KeyValue>| Event {
        kind,
        kv,
        prev_kv: prev,
    };
    let tomb = KeyValue {
        key: "a".into(),
        mod_revision: 5,
        ..KeyValue::default()
    };
    let a_events = vec![
        ev(EventKind::Put, kv("a", "1", 2, 2, 1), None),
        ev(
            EventKind::Put,
            kv("a", "2", 2, 4, 2),
            Some(kv("a", "1", 2, 2, 1)),
        ),
        ev(EventKind::Delete, tomb.clone(), Some(kv("a", "2", 2, 4, 2))),
        ev(EventKind::Put, kv("a", "3", 6, 6, 1), None),
    ];
    assert_eq!(s.history(b"a", b"", 1, 0, 0).unwrap(), a_events);
    // Starting mid-way, the first event's prev_kv comes from the index.
    assert_eq!(s.history(b"a", b"", 4, 0, 0).unwrap(), a_events[1..]);
    assert_eq!(s.history(b"a", b"", 5, 5, 0).unwrap(), a_events[2..3]);
    assert_eq!(s.history(b"a", b"", 2, 100, 2).unwrap(), a_events[..2]);
    assert_eq!(s.history(b"a", b"", 8, 0, 0).unwrap(), vec![]);
    let revs = |evs: Vec<Event>| {
        evs.into_iter()
            .map(|e| e.kv.mod_revision)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        revs(s.history(b"a", b"c", 3, 6, 0).unwrap()),
        vec![3, 4, 5, 6]
    );
    assert_eq!(revs(s.history(b"b", &[0], 0, 0, 0).unwrap()), vec![3, 7]);
    // Compaction at 4: from 4 on still works; prev_kv of a@4 is gone (compacted).
    s.compact(4, 0).unwrap();
    assert!(matches!(
        s.history(b"a", b"", 3, 0, 0),
        Err(Error::Compacted)
    ));
    let mut after = a_events[1..].to_vec();
    after[0].prev_kv = None;
    assert_eq!(s.history(b"a", b"", 4, 0, 0).unwrap(), after);
    assert_eq!(s.history(b"a", b"", 5, 0, 0).unwrap(), a_events[2..]);
}

fn consistent_index(h: &mut Harness) {
    let s = h.open();
    let mut t = s.write();
    t.put(b"a", b"1".to_vec(), 0).unwrap();
    t.end(5).unwrap();
    assert_eq!(s.consistent_index(), 5);
    s.set_consistent_index(6).unwrap();
    assert_eq!(s.consistent_index(), 6);
    s.set_consistent_index(3).unwrap(); // never goes back
    assert_eq!(s.consistent_index(), 6);
    drop(s);
    let s = h.reopen();
    assert_eq!(s.consistent_index(), 6);
    s.compact(2, 8).unwrap();
    assert_eq!(s.consistent_index(), 8);
    drop(s);
    let s = h.reopen();
    assert_eq!(s.consistent_index(), 8);
    let t = s.write();
    t.end(12).unwrap();
    drop(s);
    let s = h.reopen();
    assert_eq!((s.consistent_index(), s.current_revision()), (12, 2));
}

fn dropped_txn_rolls_back(h: &mut Harness) {
    let s = h.open();
    put(&s, "a", "1");
    {
        let mut t = s.write();
        t.put(b"a", "2".into(), 0).unwrap();
        t.put(b"new", "x".into(), 0).unwrap();
        t.delete_range(b"a", b"").unwrap();
    }
    assert_eq!(s.current_revision(), 2);
    assert_eq!(s.read_state().index.dump().len(), 1);
    assert_eq!(keys(&s, &[0], &[0], &at(0)), vec!["a"]);
    assert_eq!(put(&s, "a", "3"), Some(kv("a", "1", 2, 2, 1)));
    assert_eq!(get(&s, "a", 0), Some(kv("a", "3", 2, 3, 2)));
    assert_eq!(s.key_count(), 1);
}

fn concurrent_reads(h: &mut Harness) {
    let s = Arc::new(h.open());
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            for i in 0..200 {
                let mut t = s.write();
                t.put(format!("k{}", i % 10).as_bytes(), format!("{i}").into(), 0)
                    .unwrap();
                t.put(b"total", format!("{i}").into(), 0).unwrap();
                t.end(i).unwrap();
                if i % 50 == 49 {
                    s.compact(s.current_revision() - 5, i).unwrap();
                }
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        let r = s.range(&[0], &[0], &RangeOptions::default()).unwrap();
        // Each txn is atomic: "total" carries the newest i, and so does one k.
        let total = r
            .kvs
            .iter()
            .find(|kv| kv.key == b"total")
            .map(|kv| kv.value.clone());
        if let Some(total) = total {
            let i: usize = String::from_utf8(total).unwrap().parse().unwrap();
            let k = format!("k{}", i % 10);
            let kvk = r.kvs.iter().find(|kv| kv.key == k.as_bytes()).unwrap();
            assert_eq!(kvk.value, format!("{i}").into_bytes());
            assert_eq!(kvk.mod_revision, r.revision);
        }
        reads += 1;
    }
    writer.join().unwrap();
    assert_eq!(s.current_revision(), 201);
}

/// An image written from one store and installed into another (with other
/// content) gives the same keys, history, compaction point, consistent index
/// and outside records; a damaged image is refused by `verify_image`.
fn image_round_trip(h: &mut Harness) {
    let s = h.open();
    for i in 0..50 {
        put(&s, &format!("k{}", i % 7), &format!("v{i}"));
    }
    del(&s, "k3", "");
    let mut t = s.write();
    t.put(b"leased", b"x".to_vec(), 9).unwrap();
    t.put_record(b"\xfelease/abc".to_vec(), b"ttl".to_vec());
    t.end(77).unwrap();
    s.compact(20, 78).unwrap();
    s.wait_compacted();
    let mut img = Vec::new();
    let summary = s.write_image(&mut img).unwrap();
    assert_eq!(summary.revision, s.current_revision());
    assert_eq!(summary.compact_revision, 20);
    assert_eq!(summary.consistent_index, 78);
    assert_eq!(summary.bytes, img.len() as u64);
    assert_eq!(super::verify_image(&mut &img[..]).unwrap(), summary);

    let other = Store::open(Arc::new(MemoryBackend::new())).unwrap();
    put(&other, "stale", "gone after install");
    // More old records than one install batch: the old content goes in
    // several steps.
    let mut t = other.write();
    for i in 0..25_000 {
        t.put(format!("stale/{i}").as_bytes(), b"x".to_vec(), 0)
            .unwrap();
    }
    t.end(5).unwrap();
    other.install_image(&mut &img[..]).unwrap();
    let all = |st: &Store, rev: i64| {
        st.range(
            b"\0",
            b"\0",
            &RangeOptions {
                revision: rev,
                ..Default::default()
            },
        )
        .unwrap()
        .kvs
    };
    assert_eq!(all(&other, 0), all(&s, 0));
    assert_eq!(all(&other, 30), all(&s, 30));
    assert!(matches!(
        other.range(
            b"k1",
            b"",
            &RangeOptions {
                revision: 19,
                ..Default::default()
            }
        ),
        Err(Error::Compacted)
    ));
    assert_eq!(other.current_revision(), s.current_revision());
    assert_eq!(other.consistent_index(), 78);
    assert_eq!(other.compact_revision(), 20);
    assert_eq!(
        other.history(b"k", b"l", 21, 0, 0).unwrap(),
        s.history(b"k", b"l", 21, 0, 0).unwrap()
    );
    assert_eq!(
        other.backend().get(b"\xfelease/abc").unwrap(),
        Some(b"ttl".to_vec())
    );
    // Writes go on from the installed revision.
    put(&other, "after", "1");
    assert_eq!(other.current_revision(), s.current_revision() + 1);

    let mut bad = img.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    assert!(super::verify_image(&mut &bad[..]).is_err());
    assert!(super::verify_image(&mut &img[..img.len() - 3]).is_err());
}

/// The same writes made inside one backend write group (as the Raft thread
/// makes a `Ready`'s) and one batch at a time give the same reads, history
/// and records: during the group, after it and after a reopen.
#[test]
fn group_commit_matches_ungrouped() {
    fn script(s: &Store) {
        put(s, "a", "1");
        put(s, "b", "2");
        put(s, "a", "3");
        del(s, "b", "");
        let mut t = s.write();
        t.put(b"c", b"4".to_vec(), 0).unwrap();
        t.put(b"d", b"5".to_vec(), 0).unwrap();
        t.delete_range(b"a", b"b").unwrap();
        t.put_record(b"\xfelease/x".to_vec(), b"ttl".to_vec());
        t.end(7).unwrap();
        put(s, "a", "6");
        // The background deleter joins the open group.
        s.compact(5, 8).unwrap();
        s.wait_compacted();
        s.set_consistent_index(9).unwrap();
        let mut t = s.write();
        t.delete_record(b"\xfelease/x".to_vec());
        t.put(b"e", b"7".to_vec(), 0).unwrap();
        t.end(10).unwrap();
    }
    fn same(a: &Store, b: &Store) {
        let all = RangeOptions::default();
        assert_eq!(a.current_revision(), b.current_revision());
        assert_eq!(a.compact_revision(), b.compact_revision());
        assert_eq!(a.consistent_index(), b.consistent_index());
        assert_eq!(a.key_count(), b.key_count());
        assert_eq!(a.size_in_use(), b.size_in_use());
        for rev in a.compact_revision()..=a.current_revision() {
            let ra = a.range(&[0], &[0], &at(rev)).unwrap();
            let rb = b.range(&[0], &[0], &at(rev)).unwrap();
            assert_eq!((ra.kvs, ra.count), (rb.kvs, rb.count), "at {rev}");
        }
        let from = a.compact_revision();
        assert_eq!(
            a.history(&[0], &[0], from, 0, 0).unwrap(),
            b.history(&[0], &[0], from, 0, 0).unwrap()
        );
        let pairs = |s: &Store| {
            s.backend()
                .scan(&[], &[])
                .collect::<crate::Result<Vec<_>>>()
        };
        assert_eq!(pairs(a).unwrap(), pairs(b).unwrap());
        assert_eq!(keys(a, &[0], &[0], &all), keys(b, &[0], &[0], &all));
    }

    let mut grouped = Harness::sled();
    let mut plain = Harness::sled();
    let g = grouped.open();
    let p = plain.open();
    put(&g, "z", "0");
    put(&p, "z", "0");
    g.backend().begin_group();
    script(&g);
    script(&p);
    assert_eq!(g.current_revision(), 9);
    same(&g, &p);
    g.backend().end_group().unwrap();
    same(&g, &p);
    drop((g, p));
    let g = grouped.reopen();
    let p = plain.reopen();
    assert_eq!(g.consistent_index(), 10);
    same(&g, &p);
}
