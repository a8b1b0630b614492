//! Scenario tests of the Raft log storage. The scenarios follow raft-rs's
//! `MemStorage` tests (raft 0.7, `src/storage.rs`), written for a log that
//! lives on disk and keeps the term of the entry before it.

use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, Storage, StorageError};
use tempfile::TempDir;

use super::{SledStorage, LOG_TREE};
use crate::Error;

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Default::default()
    }
}

fn conf_state(voters: &[u64]) -> ConfState {
    ConfState {
        voters: voters.to_vec(),
        ..Default::default()
    }
}

fn snapshot(index: u64, term: u64, voters: &[u64]) -> Snapshot {
    let mut snap = Snapshot::default();
    let meta = snap.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(conf_state(voters));
    snap
}

fn store_err(e: StorageError) -> raft::Error {
    raft::Error::Store(e)
}

fn ctx() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

/// A storage in a fresh temp dir (the dir must outlive the storage).
fn fresh() -> (TempDir, SledStorage) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::testutil::open_sled(dir.path());
    let storage = SledStorage::open(&db).unwrap();
    (dir, storage)
}

/// A storage holding exactly `ents`, the log truncated just before them
/// (snapshot at `ents[0].index - 1` with that same number as term).
fn with_log(ents: &[Entry]) -> (TempDir, SledStorage) {
    let (dir, storage) = fresh();
    let before = ents[0].index - 1;
    if before > 0 {
        storage
            .apply_snapshot(&snapshot(before, before, &[1]))
            .unwrap();
    }
    storage.append(ents).unwrap();
    (dir, storage)
}

fn all_entries(storage: &SledStorage) -> Vec<Entry> {
    let (first, last) = (storage.first_index(), storage.last_index());
    storage.entries(first, last + 1, None, ctx()).unwrap()
}

fn three() -> Vec<Entry> {
    vec![entry(3, 3), entry(4, 4), entry(5, 5)]
}

fn raft_err(e: Error) -> raft::Error {
    match e {
        Error::Raft(e) => e,
        other => panic!("want a raft error, got {other:?}"),
    }
}

#[test]
fn term() {
    let (_dir, storage) = with_log(&three());
    let cases = [
        (1, Err(store_err(StorageError::Compacted))),
        (2, Ok(2)), // the entry before the log keeps its term
        (3, Ok(3)),
        (4, Ok(4)),
        (5, Ok(5)),
        (6, Err(store_err(StorageError::Unavailable))),
    ];
    for (idx, want) in cases {
        assert_eq!(storage.term(idx), want, "term({idx})");
    }
}

#[test]
fn entries_with_max_size() {
    let ents = vec![entry(3, 3), entry(4, 4), entry(5, 5), entry(6, 6)];
    let (_dir, storage) = with_log(&ents);
    let size = |i: usize| u64::from(ents[i].compute_size());
    let max = u64::MAX;
    let cases = [
        (2, 6, max, Err(store_err(StorageError::Compacted))),
        (3, 4, max, Ok(ents[0..1].to_vec())),
        (4, 5, max, Ok(ents[1..2].to_vec())),
        (4, 6, max, Ok(ents[1..3].to_vec())),
        (4, 7, max, Ok(ents[1..4].to_vec())),
        // Even with max size zero, the first entry comes back.
        (4, 7, 0, Ok(ents[1..2].to_vec())),
        (4, 7, size(1) + size(2), Ok(ents[1..3].to_vec())),
        (
            4,
            7,
            size(1) + size(2) + size(3) / 2,
            Ok(ents[1..3].to_vec()),
        ),
        (
            4,
            7,
            size(1) + size(2) + size(3) - 1,
            Ok(ents[1..3].to_vec()),
        ),
        (4, 7, size(1) + size(2) + size(3), Ok(ents[1..4].to_vec())),
        (3, 3, max, Ok(vec![])),
        (4, 8, max, Err(store_err(StorageError::Unavailable))),
    ];
    for (i, (low, high, max_size, want)) in cases.into_iter().enumerate() {
        let got = storage.entries(low, high, max_size, ctx());
        assert_eq!(got, want, "#{i}: entries({low}, {high}, {max_size})");
    }
    // No limit at all.
    assert_eq!(storage.entries(3, 7, None, ctx()), Ok(ents));
}

#[test]
fn entries_with_payload_stop_at_max_size() {
    let ents: Vec<Entry> = (1..=50)
        .map(|i| Entry {
            data: vec![7u8; 1000].into(),
            ..entry(i, 1)
        })
        .collect();
    let (_dir, storage) = with_log(&ents);
    let one = u64::from(ents[0].compute_size());
    let got = storage.entries(1, 51, one * 10 + 5, ctx()).unwrap();
    assert_eq!(got, ents[..10].to_vec());
}

#[test]
fn last_index() {
    let (_dir, storage) = with_log(&three());
    assert_eq!(Storage::last_index(&storage), Ok(5));
    storage.append(&[entry(6, 5)]).unwrap();
    assert_eq!(Storage::last_index(&storage), Ok(6));
    assert_eq!(storage.last_index(), 6);
}

#[test]
fn first_index() {
    let (_dir, storage) = with_log(&three());
    assert_eq!(Storage::first_index(&storage), Ok(3));
    storage.compact(4).unwrap();
    assert_eq!(Storage::first_index(&storage), Ok(4));
    assert_eq!(storage.first_index(), 4);
}

#[test]
fn compact() {
    // (compact index, first index after, its term, entries left)
    let cases = [(2, 3, 3, 3), (3, 3, 3, 3), (4, 4, 4, 2), (5, 5, 5, 1)];
    for (compact_index, want_first, want_term, want_len) in cases {
        let (_dir, storage) = with_log(&three());
        storage.compact(compact_index).unwrap();
        let first = storage.first_index();
        assert_eq!(first, want_first, "compact({compact_index})");
        let head = storage.entries(first, first + 1, 1, ctx()).unwrap();
        assert_eq!(head[0].term, want_term, "compact({compact_index})");
        assert_eq!(all_entries(&storage).len(), want_len);
        assert_eq!(storage.last_index(), 5);
    }
}

#[test]
fn compact_keeps_term_before_first_index() {
    let (_dir, storage) = with_log(&[entry(3, 3), entry(4, 3), entry(5, 4), entry(6, 4)]);
    storage.set_conf_state(&conf_state(&[1, 2, 3])).unwrap();
    storage.compact(5).unwrap();
    assert_eq!(storage.term(4), Ok(3));
    assert_eq!(storage.term(3), Err(store_err(StorageError::Compacted)));
    assert_eq!(
        storage.entries(4, 6, None, ctx()),
        Err(store_err(StorageError::Compacted))
    );
    let meta = storage.snapshot_metadata();
    assert_eq!((meta.index, meta.term), (4, 3));
    assert_eq!(meta.get_conf_state(), &conf_state(&[1, 2, 3]));

    // Up to last + 1: the log empties, its last entry's term stays.
    storage.compact(7).unwrap();
    assert_eq!((storage.first_index(), storage.last_index()), (7, 6));
    assert_eq!(storage.term(6), Ok(4));
    assert_eq!(all_entries(&storage), vec![]);
    // ... and appending goes on from there.
    storage.append(&[entry(7, 5)]).unwrap();
    assert_eq!(storage.term(7), Ok(5));

    // Beyond last + 1 is an error, and so is nothing else.
    let err = storage.compact(9).unwrap_err();
    assert_eq!(raft_err(err), store_err(StorageError::Unavailable));
    storage.compact(3).unwrap();
    assert_eq!(storage.first_index(), 7);
}

#[test]
fn snapshot_comes_from_the_provider() {
    let (_dir, storage) = with_log(&three());
    assert_eq!(
        storage.snapshot(0, 2),
        Err(store_err(StorageError::SnapshotTemporarilyUnavailable))
    );
    // The provider may read the storage (no lock is held while it runs).
    let reader = storage.clone();
    storage.set_snapshot_provider(Box::new(move |request_index| {
        let hs = reader.hard_state();
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = hs.commit.max(request_index);
        meta.term = reader.term(hs.commit)?;
        meta.set_conf_state(reader.conf_state());
        Ok(snap)
    }));
    storage.set_conf_state(&conf_state(&[1, 2, 3])).unwrap();
    storage
        .set_hard_state(&HardState {
            term: 5,
            commit: 4,
            ..Default::default()
        })
        .unwrap();
    let snap = storage.snapshot(0, 2).unwrap();
    assert_eq!(snap, snapshot(4, 4, &[1, 2, 3]));
    let snap = storage.snapshot(5, 2).unwrap();
    assert_eq!(snap.get_metadata().index, 5);
}

#[test]
fn apply_snapshot() {
    let (_dir, storage) = fresh();
    storage.apply_snapshot(&snapshot(4, 4, &[1, 2, 3])).unwrap();
    assert_eq!((storage.first_index(), storage.last_index()), (5, 4));
    assert_eq!(storage.term(4), Ok(4));
    assert_eq!(storage.term(3), Err(store_err(StorageError::Compacted)));
    assert_eq!(storage.conf_state(), conf_state(&[1, 2, 3]));
    let hs = storage.hard_state();
    assert_eq!((hs.term, hs.commit), (4, 4));
    assert_eq!(
        storage.snapshot_metadata(),
        snapshot(4, 4, &[1, 2, 3]).take_metadata()
    );

    // Older than the log: out of date.
    let err = storage
        .apply_snapshot(&snapshot(3, 3, &[1, 2, 3]))
        .unwrap_err();
    assert_eq!(raft_err(err), store_err(StorageError::SnapshotOutOfDate));

    // Appending at the snapshot index is below the log; right after is fine.
    let err = storage.append(&[entry(4, 4)]).unwrap_err();
    assert_eq!(raft_err(err), store_err(StorageError::Compacted));
    storage.append(&[entry(5, 5), entry(6, 5)]).unwrap();
    assert_eq!(storage.term(6), Ok(5));
}

#[test]
fn apply_snapshot_drops_the_whole_log() {
    let (_dir, storage) = with_log(&[entry(3, 3), entry(4, 4), entry(5, 5), entry(6, 6)]);
    storage
        .set_hard_state(&HardState {
            term: 9,
            vote: 2,
            commit: 5,
            ..Default::default()
        })
        .unwrap();
    // A snapshot inside the log, from a lower term than the hard state.
    storage.apply_snapshot(&snapshot(4, 4, &[1, 2])).unwrap();
    assert_eq!((storage.first_index(), storage.last_index()), (5, 4));
    assert_eq!(all_entries(&storage), vec![]);
    assert_eq!(storage.term(4), Ok(4));
    assert_eq!(storage.term(5), Err(store_err(StorageError::Unavailable)));
    // Term and commit are only ever raised.
    let hs = storage.hard_state();
    assert_eq!((hs.term, hs.vote, hs.commit), (9, 2, 5));
    // A snapshot beyond the log.
    storage
        .apply_snapshot(&snapshot(20, 10, &[1, 2, 3]))
        .unwrap();
    assert_eq!((storage.first_index(), storage.last_index()), (21, 20));
    assert_eq!(storage.term(20), Ok(10));
    let hs = storage.hard_state();
    assert_eq!((hs.term, hs.vote, hs.commit), (10, 2, 20));
}

#[test]
fn append() {
    let e = entry;
    let cases: Vec<(Vec<Entry>, Option<Vec<Entry>>)> = vec![
        (three(), Some(three())),
        (
            vec![e(3, 3), e(4, 6), e(5, 6)],
            Some(vec![e(3, 3), e(4, 6), e(5, 6)]),
        ),
        (
            vec![e(3, 3), e(4, 4), e(5, 5), e(6, 5)],
            Some(vec![e(3, 3), e(4, 4), e(5, 5), e(6, 5)]),
        ),
        // Overwriting compacted entries is refused.
        (vec![e(2, 3), e(3, 3), e(4, 5)], None),
        // Truncates the conflicting tail.
        (vec![e(4, 5)], Some(vec![e(3, 3), e(4, 5)])),
        // Direct append.
        (
            vec![e(6, 6)],
            Some(vec![e(3, 3), e(4, 4), e(5, 5), e(6, 6)]),
        ),
        // A gap is refused.
        (vec![e(7, 6)], None),
        // So are entries that are not contiguous.
        (vec![e(6, 6), e(8, 6)], None),
        (vec![e(4, 4), e(4, 4)], None),
        // Nothing to append.
        (vec![], Some(three())),
    ];
    for (i, (ents, want)) in cases.into_iter().enumerate() {
        let (_dir, storage) = with_log(&three());
        let res = storage.append(&ents);
        match want {
            Some(want) => {
                res.unwrap();
                assert_eq!(all_entries(&storage), want, "#{i}");
                let last = want.last().unwrap();
                assert_eq!(storage.last_index(), last.index, "#{i}");
                assert_eq!(storage.term(last.index), Ok(last.term), "#{i}");
            }
            None => {
                assert!(matches!(res, Err(Error::Raft(_))), "#{i}: {res:?}");
                assert_eq!(all_entries(&storage), three(), "#{i}: log unchanged");
            }
        }
    }
}

#[test]
fn initial_state_and_bootstrap() {
    let (_dir, storage) = fresh();
    assert!(storage.is_empty());
    let state = storage.initial_state().unwrap();
    assert!(!state.initialized());
    assert_eq!(state.hard_state, HardState::default());
    assert_eq!((storage.first_index(), storage.last_index()), (1, 0));
    assert_eq!(storage.term(0), Ok(0));

    storage
        .initialize_with_conf_state(conf_state(&[1, 2, 3]))
        .unwrap();
    assert!(!storage.is_empty());
    let state = storage.initial_state().unwrap();
    assert!(state.initialized());
    assert_eq!(state.conf_state, conf_state(&[1, 2, 3]));
    assert_eq!((storage.first_index(), storage.last_index()), (1, 0));
    let meta = storage.snapshot_metadata();
    assert_eq!((meta.index, meta.term), (0, 0));
    assert_eq!(meta.get_conf_state(), &conf_state(&[1, 2, 3]));
    assert!(matches!(
        storage.initialize_with_conf_state(conf_state(&[4])),
        Err(Error::Config(_))
    ));

    storage.append(&[entry(1, 1), entry(2, 1)]).unwrap();
    storage
        .set_hard_state(&HardState {
            term: 1,
            vote: 1,
            commit: 1,
            ..Default::default()
        })
        .unwrap();
    storage.set_commit(2).unwrap();
    let state = storage.initial_state().unwrap();
    assert_eq!(
        state.hard_state,
        HardState {
            term: 1,
            vote: 1,
            commit: 2,
            ..Default::default()
        }
    );
}

#[test]
fn reopen_after_flush_returns_identical_state() {
    let dir = tempfile::tempdir().unwrap();
    type Seen = (HardState, ConfState, SnapshotMetadata, u64, u64, Vec<Entry>);
    let seen = |s: &SledStorage| -> Seen {
        (
            s.hard_state(),
            s.conf_state(),
            s.snapshot_metadata(),
            s.first_index(),
            s.last_index(),
            all_entries(s),
        )
    };
    let before = {
        let db = crate::testutil::open_sled(dir.path());
        let storage = SledStorage::open(&db).unwrap();
        storage
            .initialize_with_conf_state(conf_state(&[1, 2, 3]))
            .unwrap();
        let ents: Vec<Entry> = (1..=20)
            .map(|i| Entry {
                data: format!("put k{i}").into_bytes().into(),
                ..entry(i, 1 + i / 10)
            })
            .collect();
        storage.append(&ents).unwrap();
        storage.append(&[entry(19, 3), entry(20, 3)]).unwrap();
        storage
            .set_hard_state(&HardState {
                term: 3,
                vote: 2,
                commit: 15,
                ..Default::default()
            })
            .unwrap();
        storage.set_conf_state(&conf_state(&[1, 2, 3, 4])).unwrap();
        storage.compact(10).unwrap();
        storage.flush().unwrap();
        seen(&storage)
    };
    let db = crate::testutil::open_sled(dir.path());
    let storage = SledStorage::open(&db).unwrap();
    assert!(!storage.is_empty());
    assert_eq!(seen(&storage), before);
    assert_eq!(storage.term(9), Ok(1));
    assert_eq!(storage.term(20), Ok(3));
    assert_eq!(storage.term(18), Ok(2));

    // And again after installing a snapshot.
    storage.apply_snapshot(&snapshot(30, 4, &[1, 2])).unwrap();
    storage.flush().unwrap();
    let before = seen(&storage);
    drop((storage, db));
    let db = crate::testutil::open_sled(dir.path());
    let storage = SledStorage::open(&db).unwrap();
    assert_eq!(seen(&storage), before);
    assert_eq!(storage.term(30), Ok(4));
    assert_eq!((storage.first_index(), storage.last_index()), (31, 30));
}

#[test]
fn open_refuses_a_log_with_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = crate::testutil::open_sled(dir.path());
        let storage = SledStorage::open(&db).unwrap();
        storage
            .append(&[entry(1, 1), entry(2, 1), entry(3, 1)])
            .unwrap();
        db.open_tree(LOG_TREE)
            .unwrap()
            .remove(2u64.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let db = crate::testutil::open_sled(dir.path());
    let err = SledStorage::open(&db).unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
}

/// Not a benchmark: prints what append + flush of 100-entry batches costs
/// here, and what the leader's reads of fresh entries cost.
#[test]
fn throughput_micro_check() {
    const BATCHES: u64 = 50;
    const PER_BATCH: u64 = 100;
    let (_dir, storage) = fresh();
    let payload = vec![0x5a_u8; 256];
    let (mut appending, mut flushing) = (Duration::ZERO, Duration::ZERO);
    let mut reading = Duration::ZERO;
    for b in 0..BATCHES {
        let ents: Vec<Entry> = (1..=PER_BATCH)
            .map(|i| Entry {
                data: payload.clone().into(),
                ..entry(b * PER_BATCH + i, 1)
            })
            .collect();
        let start = Instant::now();
        storage.append(&ents).unwrap();
        appending += start.elapsed();
        flushing += storage.flush().unwrap();
        let start = Instant::now();
        let low = b * PER_BATCH + 1;
        let got = storage.entries(low, low + PER_BATCH, None, ctx()).unwrap();
        assert_eq!(got.len() as u64, PER_BATCH);
        reading += start.elapsed();
    }
    let n = BATCHES * PER_BATCH;
    let total = appending + flushing;
    let start = Instant::now();
    for i in 1..=n {
        storage.term(i).unwrap();
    }
    let terms = start.elapsed();
    println!(
        "raftlog: {n} entries of 256 B in {BATCHES} batches: append {:?}/batch, \
         flush {:?}/batch, {:.0} entries/s; entries() of a fresh batch {:?}; term() {:?}/call",
        appending / BATCHES as u32,
        flushing / BATCHES as u32,
        n as f64 / total.as_secs_f64(),
        reading / BATCHES as u32,
        terms / n as u32,
    );
}

#[test]
fn truncated_entries_are_deleted_in_the_background_and_leftovers_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = crate::testutil::open_sled(dir.path());
        let storage = SledStorage::open(&db).unwrap();
        let ents: Vec<Entry> = (1..=5000).map(|i| entry(i, 1)).collect();
        storage.append(&ents).unwrap();
        storage.compact(4001).unwrap();
        assert_eq!(storage.first_index(), 4001);
        assert_eq!(storage.term(4000), Ok(1));
        assert_eq!(
            storage.entries(3999, 4001, None, ctx()),
            Err(raft::Error::Store(StorageError::Compacted))
        );
        // The deleter empties the range below the first index.
        let log = db.open_tree(LOG_TREE).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.len() != 1000 {
            assert!(Instant::now() < deadline, "{} entries", log.len());
            std::thread::sleep(Duration::from_millis(10));
        }
        // A crash before the deletion: simulate leftovers below the first index.
        log.insert(17u64.to_be_bytes(), entry(17, 1).write_to_bytes().unwrap())
            .unwrap();
        storage.flush().unwrap();
    }
    let db = crate::testutil::open_sled(dir.path());
    let storage = SledStorage::open(&db).unwrap();
    assert_eq!((storage.first_index(), storage.last_index()), (4001, 5000));
    assert_eq!(db.open_tree(LOG_TREE).unwrap().len(), 1000);
}

/// The WAL makes a `Ready` durable without flushing sled: a sled that lost
/// everything since its last checkpoint (here: an empty one, next to the
/// WAL files of a storage that wrote entries and hard states) is rebuilt
/// from the WAL on open, up to the last flush and no further.
#[test]
fn the_wal_rebuilds_what_sled_lost_since_its_checkpoint() {
    let a = tempfile::tempdir().unwrap();
    let db = crate::testutil::open_sled(&a.path().join("db"));
    let storage = SledStorage::open_with_wal(&db, &a.path().join("wal")).unwrap();
    storage
        .append(&[entry(1, 1), entry(2, 1), entry(3, 1)])
        .unwrap();
    let hs = HardState {
        term: 1,
        vote: 7,
        commit: 2,
        ..Default::default()
    };
    storage.set_hard_state(&hs).unwrap();
    storage.flush().unwrap();
    // A conflicting tail from a new leader, then the commit moves on.
    storage.append(&[entry(3, 2), entry(4, 2)]).unwrap();
    storage.set_commit(4).unwrap();
    storage.flush().unwrap();
    // Written after the last flush: never acknowledged, may be lost.
    storage.append(&[entry(5, 2)]).unwrap();

    let b = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(b.path().join("wal")).unwrap();
    for f in std::fs::read_dir(a.path().join("wal")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), b.path().join("wal").join(f.file_name())).unwrap();
    }
    let db_b = crate::testutil::open_sled(&b.path().join("db"));
    let rebuilt = SledStorage::open_with_wal(&db_b, &b.path().join("wal")).unwrap();
    assert_eq!(rebuilt.last_index(), 4);
    assert_eq!(rebuilt.term(3).unwrap(), 2);
    assert_eq!(rebuilt.term(4).unwrap(), 2);
    let want = HardState {
        term: 1,
        vote: 7,
        commit: 4,
        ..Default::default()
    };
    assert_eq!(rebuilt.hard_state(), want);
    // The replay was checkpointed: sled alone now has it, the old WAL files
    // are gone.
    drop(rebuilt);
    drop(db_b);
    let db_b = crate::testutil::open_sled(&b.path().join("db"));
    let plain = SledStorage::open(&db_b).unwrap();
    assert_eq!((plain.last_index(), plain.hard_state()), (4, want));
}

/// Checkpoints rotate the WAL: a snapshot install (not in the WAL) flushes
/// sled and starts a new file, so old records are never replayed over it.
#[test]
fn a_snapshot_install_is_a_checkpoint() {
    let a = tempfile::tempdir().unwrap();
    let wal = a.path().join("wal");
    let db = crate::testutil::open_sled(&a.path().join("db"));
    let storage = SledStorage::open_with_wal(&db, &wal).unwrap();
    storage.append(&[entry(1, 1), entry(2, 1)]).unwrap();
    storage.flush().unwrap();
    let files = || std::fs::read_dir(&wal).unwrap().count();
    storage.apply_snapshot(&snapshot(10, 3, &[1])).unwrap();
    storage.flush().unwrap();
    assert_eq!(files(), 1);
    let only = std::fs::read_dir(&wal).unwrap().next().unwrap().unwrap();
    // The flush synced into the old file, then the checkpoint started an
    // empty one.
    assert_eq!(only.metadata().unwrap().len(), 0, "{only:?}");
    drop(storage);
    drop(db);
    let db = crate::testutil::open_sled(&a.path().join("db"));
    let reopened = SledStorage::open_with_wal(&db, &wal).unwrap();
    assert_eq!((reopened.first_index(), reopened.last_index()), (11, 10));
}

/// The background checkpointer flushes sled and drops old WAL files once
/// the WAL has grown, while appends go on; a reopen finds everything.
#[test]
fn the_background_checkpointer_keeps_the_wal_short() {
    let a = tempfile::tempdir().unwrap();
    let wal = a.path().join("wal");
    let db = crate::testutil::open_sled(&a.path().join("db"));
    let storage = SledStorage::open_with_wal(&db, &wal).unwrap();
    let wal_bytes = || -> u64 {
        std::fs::read_dir(&wal)
            .unwrap()
            .map(|f| f.unwrap().metadata().unwrap().len())
            .sum()
    };
    // 12 MiB of entries, flushed a Ready at a time.
    let data = vec![7u8; 64 * 1024];
    for index in 1..=192u64 {
        let e = Entry {
            index,
            term: 1,
            data: data.clone().into(),
            ..Default::default()
        };
        storage.append(&[e]).unwrap();
        storage.flush().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while wal_bytes() > super::wal::CHECKPOINT_BYTES + 256 * 1024 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        wal_bytes() <= super::wal::CHECKPOINT_BYTES + 256 * 1024,
        "the WAL still holds {} bytes",
        wal_bytes()
    );
    drop(storage);
    drop(db);
    let db = crate::testutil::open_sled(&a.path().join("db"));
    let reopened = SledStorage::open_with_wal(&db, &wal).unwrap();
    assert_eq!(reopened.last_index(), 192);
    assert_eq!(
        reopened.entries(100, 101, None, ctx()).unwrap()[0]
            .data
            .len(),
        data.len()
    );
}

/// Turning `--experimental-raft-wal` off again: the WAL an earlier start
/// left is replayed into sled and removed, nothing lost.
#[test]
fn a_wal_left_by_an_earlier_start_is_replayed_when_it_is_off() {
    let a = tempfile::tempdir().unwrap();
    let wal = a.path().join("wal");
    let db = crate::testutil::open_sled(&a.path().join("db"));
    let storage = SledStorage::open_for_member(&db, &wal, true).unwrap();
    storage.append(&[entry(1, 1), entry(2, 1)]).unwrap();
    storage.flush().unwrap();
    assert!(wal.exists());
    drop(storage);
    let storage = SledStorage::open_for_member(&db, &wal, false).unwrap();
    assert!(!wal.exists());
    assert_eq!(storage.last_index(), 2);
    storage.append(&[entry(3, 1)]).unwrap();
    storage.flush().unwrap();
    assert!(!wal.exists(), "no WAL when it is off");
}
