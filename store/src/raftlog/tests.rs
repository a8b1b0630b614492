//! Scenario tests of the Raft log storage. The scenarios follow raft-rs's
//! `MemStorage` tests (raft 0.7, `src/storage.rs`), written for a log that
//! is made durable by a WAL and keeps the term of the entry before it.

use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, Storage, StorageError};
use tempfile::TempDir;

use super::{legacy, wal, RaftStorage};
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
fn fresh() -> (TempDir, RaftStorage) {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    (dir, storage)
}

/// Segments of this size keep tests fast (64 MiB are preallocated otherwise).
const SEGMENT: u64 = 64 * 1024;

fn open(dir: &std::path::Path) -> RaftStorage {
    RaftStorage::open_with_segment(&dir.join("wal"), None, SEGMENT).unwrap()
}

/// A storage holding exactly `ents`, the log truncated just before them
/// (snapshot at `ents[0].index - 1` with that same number as term).
fn with_log(ents: &[Entry]) -> (TempDir, RaftStorage) {
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

fn all_entries(storage: &RaftStorage) -> Vec<Entry> {
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

type Seen = (HardState, ConfState, SnapshotMetadata, u64, u64, Vec<Entry>);

fn seen(s: &RaftStorage) -> Seen {
    (
        s.hard_state(),
        s.conf_state(),
        s.snapshot_metadata(),
        s.first_index(),
        s.last_index(),
        all_entries(s),
    )
}

#[test]
fn reopen_after_flush_returns_identical_state() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let storage = open(dir.path());
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
        storage.set_commit(16).unwrap();
        storage.flush().unwrap();
        seen(&storage)
    };
    let storage = open(dir.path());
    assert!(!storage.is_empty());
    assert_eq!(seen(&storage), before);
    assert_eq!(storage.hard_state().commit, 16);
    assert_eq!(storage.term(9), Ok(1));
    assert_eq!(storage.term(20), Ok(3));
    assert_eq!(storage.term(18), Ok(2));

    // And again after installing a snapshot.
    storage.apply_snapshot(&snapshot(30, 4, &[1, 2])).unwrap();
    storage.flush().unwrap();
    let before = seen(&storage);
    drop(storage);
    let storage = open(dir.path());
    assert_eq!(seen(&storage), before);
    assert_eq!(storage.term(30), Ok(4));
    assert_eq!((storage.first_index(), storage.last_index()), (31, 30));

    // The offline view reads the same.
    let view = RaftStorage::read_only(&dir.path().join("wal"), None).unwrap();
    assert_eq!(view.hard_state(), &before.0);
    assert_eq!((view.first_index(), view.last_index()), (31, 30));
}

/// What was not flushed is not there after a reopen (a crash); what was,
/// is, up to the last flush.
#[test]
fn only_flushed_changes_survive() {
    let dir = tempfile::tempdir().unwrap();
    {
        let storage = open(dir.path());
        storage.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        storage.flush().unwrap();
        storage.append(&[entry(3, 1)]).unwrap();
        storage
            .set_hard_state(&HardState {
                term: 1,
                commit: 3,
                ..Default::default()
            })
            .unwrap();
        // No flush: the buffered records are lost with the process.
    }
    let storage = open(dir.path());
    assert_eq!(storage.last_index(), 2);
    assert_eq!(storage.hard_state(), HardState::default());
}

/// Compacting writes a base file and deletes the older WAL files, so the
/// WAL holds about what the log holds; a reopen finds the same log.
#[test]
fn compaction_keeps_the_wal_short() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    let count = |d: &std::path::Path| {
        std::fs::read_dir(d)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "wal")
            })
            .count()
    };
    let storage = open(dir.path());
    let payload = vec![7u8; 200];
    for b in 0..50u64 {
        let ents: Vec<Entry> = (1..=20)
            .map(|i| Entry {
                data: payload.clone().into(),
                ..entry(b * 20 + i, 1)
            })
            .collect();
        storage.append(&ents).unwrap();
        storage.set_commit(b * 20 + 20).unwrap();
        storage.flush().unwrap();
    }
    assert!(
        count(&wal_dir) > 3,
        "1000 entries of 200 B fill several 64 KiB segments"
    );
    storage.compact(991).unwrap();
    assert_eq!(count(&wal_dir), 1, "only the base file is left");
    assert_eq!((storage.first_index(), storage.last_index()), (991, 1000));
    storage.append(&[entry(1001, 2)]).unwrap();
    storage.flush().unwrap();
    let before = seen(&storage);
    drop(storage);
    let storage = open(dir.path());
    assert_eq!(seen(&storage), before);
    assert_eq!(storage.term(990), Ok(1));
    assert_eq!(storage.hard_state().commit, 1000);
}

/// A log an earlier build kept in sled moves into the WAL on open, and the
/// sled trees go.
#[test]
fn a_log_kept_in_sled_moves_into_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::testutil::open_sled(&dir.path().join("db"));
    let mut snap = SnapshotMetadata {
        index: 4,
        term: 2,
        ..Default::default()
    };
    snap.set_conf_state(conf_state(&[1, 2, 3]));
    let old = legacy::SledLog {
        hard_state: HardState {
            term: 3,
            vote: 1,
            commit: 6,
            ..Default::default()
        },
        conf_state: conf_state(&[1, 2, 3]),
        snapshot: snap.clone(),
        entries: vec![entry(5, 2), entry(6, 3), entry(7, 3)],
    };
    legacy::testing::write(&db, &old);
    let storage =
        RaftStorage::open_with_segment(&dir.path().join("wal"), Some(&db), SEGMENT).unwrap();
    assert_eq!(storage.hard_state(), old.hard_state);
    assert_eq!(storage.snapshot_metadata(), snap);
    assert_eq!(all_entries(&storage), old.entries);
    assert!(!legacy::present(&db).unwrap());
    drop(storage);
    let storage =
        RaftStorage::open_with_segment(&dir.path().join("wal"), Some(&db), SEGMENT).unwrap();
    assert_eq!(all_entries(&storage), old.entries);
    assert_eq!(storage.term(4), Ok(2));
}

/// A WAL whose entries do not fit together is refused, not half-loaded.
#[test]
fn open_refuses_a_wal_with_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = wal::Wal::open(&dir.path().join("wal"), SEGMENT).unwrap();
        w.append_entries(&[entry(1, 1), entry(2, 1)]).unwrap();
        w.append_entries(&[entry(4, 1)]).unwrap();
        w.sync().unwrap();
    }
    let err = RaftStorage::open_with_segment(&dir.path().join("wal"), None, SEGMENT).unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains("gap"), "{err}");
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
