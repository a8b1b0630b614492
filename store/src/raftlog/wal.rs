//! The Raft write-ahead log: the only durable home of the Raft log. A
//! `Ready` is made durable by appending its records to one preallocated file
//! and calling `fdatasync` once.
//!
//! # Files
//!
//! Segments are `<seq>.wal` (seq in 16 hex digits) in the member's `wal`
//! directory, each preallocated to [`SEGMENT_BYTES`] of zeros. Writing into
//! an allocated, already-sized file means `fdatasync` writes data blocks only,
//! never the inode (no size or extent change), as with etcd's preallocated
//! WAL. A background thread zero-fills the next segment as `next.tmp` while
//! the current one is in use; starting a segment renames it.
//!
//! A record is `len: u32 LE | crc32(kind, payload): u32 LE | kind: u8 |
//! payload`, `len` counting kind and payload. A zero length ends a file's
//! records (the preallocated tail). Kinds:
//!
//! - `1` entries: each a `u32 LE` length and a protobuf `Entry`;
//! - `2` a protobuf `HardState`;
//! - `3` a protobuf `ConfState`;
//! - `4` base: snapshot metadata, hard state and conf state, each a `u32 LE`
//!   length and a protobuf message. It resets the log to empty after the
//!   snapshot index (a snapshot installed, or the start of a base file);
//! - `5` compact: snapshot metadata; the entries up to its index are dropped.
//!
//! # Which files live
//!
//! Replaying every file in order rebuilds the log. A **base file** starts
//! with a base record and every entry the log still holds; once it is
//! synced, every older file is deleted (the storage writes one after each
//! compaction, so the WAL holds about what the log holds). Other new files
//! (a segment that filled up, every open) just continue the sequence.
//!
//! # Recovery
//!
//! A torn record at the end of the last file (a crash mid-write: never
//! synced, so never acknowledged) is cut off before appending resumes in a
//! new file; a bad record anywhere else is [`Error::Corrupt`].

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};

use crate::{Error, Result};

/// Size each segment is preallocated to; a segment is closed once a sync
/// would take it past this.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_CONF_STATE: u8 = 3;
const KIND_BASE: u8 = 4;
const KIND_COMPACT: u8 = 5;
/// Bytes before a record's kind.
const HEADER: usize = 8;
/// No record is larger (a sanity bound for reading a torn length).
const MAX_RECORD: u32 = 1 << 30;
/// The segment being zero-filled for later.
const NEXT: &str = "next.tmp";

/// One record, as written and as replayed.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Entries(Vec<Entry>),
    HardState(HardState),
    ConfState(ConfState),
    /// The log restarts, empty, after `snapshot.index`.
    Base {
        snapshot: SnapshotMetadata,
        hard_state: HardState,
        conf_state: ConfState,
    },
    /// Entries up to `index` are dropped; the metadata is the new point
    /// before the log.
    Compact(SnapshotMetadata),
}

/// What [`read_dir`] found.
#[derive(Debug, Default)]
pub struct Replay {
    pub records: Vec<Record>,
    /// The seq of the last file, 0 if there is none.
    pub last_seq: u64,
}

/// The open WAL: the current segment, with records buffered until
/// [`Wal::sync`].
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    seq: u64,
    file: File,
    /// Bytes written to the current segment.
    written: u64,
    buf: Vec<u8>,
    segment_bytes: u64,
    /// The next segment being zero-filled.
    prepared: Option<JoinHandle<std::io::Result<PathBuf>>>,
}

fn file_name(seq: u64) -> String {
    format!("{seq:016x}.wal")
}

fn seq_of(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".wal")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

fn codec(e: protobuf::ProtobufError) -> Error {
    Error::Raft(raft::Error::CodecError(e))
}

/// The segments in `dir`, by seq. Fails on a file of the earlier
/// experimental format (`wal-*.log`), which this build cannot read.
fn files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let item = item.map_err(|e| io(dir, e))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = seq_of(name) {
            out.push((seq, item.path()));
        } else if name.starts_with("wal-") && name.ends_with(".log") {
            return Err(Error::Corrupt(format!(
                "raft WAL {}: {name} was written by --experimental-raft-wal of an earlier build, whose format this build does not read",
                dir.display()
            )));
        }
    }
    out.sort();
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

/// Writes `bytes` of zeros to `dir/next.tmp` and syncs it.
fn prepare(dir: &Path, bytes: u64) -> std::io::Result<PathBuf> {
    let path = dir.join(NEXT);
    let mut f = File::create(&path)?;
    crate::bench::fsync::preallocate(&mut f, bytes)?;
    Ok(path)
}

fn start_preparing(dir: &Path, bytes: u64) -> Option<JoinHandle<std::io::Result<PathBuf>>> {
    let dir = dir.to_path_buf();
    std::thread::Builder::new()
        .name("raft-wal-prepare".into())
        .spawn(move || prepare(&dir, bytes))
        .ok()
}

/// Reads every record of the WAL in `dir` without changing anything (a
/// torn tail is left in place and ignored). A missing directory is an empty
/// WAL.
pub fn read_dir(dir: &Path) -> Result<Replay> {
    if !dir.exists() {
        return Ok(Replay::default());
    }
    read_all(dir, false)
}

fn read_all(dir: &Path, cut: bool) -> Result<Replay> {
    let all = files(dir)?;
    let mut replay = Replay::default();
    for (i, (seq, path)) in all.iter().enumerate() {
        let last = i + 1 == all.len();
        read_file(path, last, cut, &mut replay.records)?;
        replay.last_seq = *seq;
    }
    Ok(replay)
}

impl Wal {
    /// Opens the WAL in `dir` (created if missing) and reads every record.
    /// Returns the WAL, appending to a new segment after the last one, and
    /// the records in order.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(Wal, Vec<Record>)> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let replay = read_all(dir, true)?;
        let seq = replay.last_seq + 1;
        let wal = Wal {
            dir: dir.to_path_buf(),
            seq,
            file: install_segment(dir, seq, segment_bytes, None)?,
            written: 0,
            buf: Vec::new(),
            segment_bytes,
            prepared: start_preparing(dir, segment_bytes),
        };
        Ok((wal, replay.records))
    }

    /// The current segment's seq.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The WAL's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records `rec` (buffered until [`Wal::sync`]).
    pub fn record(&mut self, rec: &Record) -> Result<()> {
        self.framed(|buf| encode(rec, buf))
    }

    /// Records appended entries (buffered until [`Wal::sync`]).
    pub fn append_entries(&mut self, entries: &[Entry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.framed(|buf| encode_entries(entries, buf))
    }

    /// Buffers one record whose kind and payload `body` writes, framed with
    /// its length and checksum.
    fn framed(&mut self, body: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<()> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; HEADER]);
        if let Err(e) = body(&mut self.buf) {
            self.buf.truncate(start);
            return Err(e);
        }
        let body = &self.buf[start + HEADER..];
        let len = body.len() as u32;
        let crc = crc32fast::hash(body);
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    /// Writes the buffered records and `fdatasync`s the segment, first
    /// moving to a new segment if they would overflow this one. Returns
    /// whether there was anything to write.
    pub fn sync(&mut self) -> Result<bool> {
        if self.buf.is_empty() {
            return Ok(false);
        }
        if self.written > 0 && self.written + self.buf.len() as u64 > self.segment_bytes {
            self.start_next()?;
        }
        let path = self.dir.join(file_name(self.seq));
        self.file
            .write_all(&self.buf)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io(&path, e))?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(true)
    }

    /// Starts a base file: syncs what is buffered, starts a new segment
    /// holding `records` (a base record and the log's entries), syncs it, and
    /// deletes every older segment.
    pub fn start_base(&mut self, records: &[Record]) -> Result<()> {
        self.sync()?;
        self.start_next()?;
        for rec in records {
            self.record(rec)?;
        }
        self.sync()?;
        for (seq, path) in files(&self.dir)? {
            if seq < self.seq {
                std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
            }
        }
        sync_dir(&self.dir)
    }

    /// Moves to segment `seq + 1` and starts preparing the one after it.
    fn start_next(&mut self) -> Result<()> {
        debug_assert!(self.buf.is_empty(), "start a segment after sync");
        let seq = self.seq + 1;
        self.file = install_segment(&self.dir, seq, self.segment_bytes, self.prepared.take())?;
        self.seq = seq;
        self.written = 0;
        self.prepared = start_preparing(&self.dir, self.segment_bytes);
        Ok(())
    }
}

/// Makes segment `seq` in `dir` from the `prepared` zero-filled file (or
/// one filled now if there is none or the preparer failed), and opens it
/// for writing.
fn install_segment(
    dir: &Path,
    seq: u64,
    segment_bytes: u64,
    prepared: Option<JoinHandle<std::io::Result<PathBuf>>>,
) -> Result<File> {
    let prepared = match prepared.map(|h| h.join()) {
        Some(Ok(Ok(path))) => path,
        Some(Ok(Err(e))) => {
            tracing::warn!(error = %e, "raft WAL: preparing a segment failed; filling one now");
            prepare(dir, segment_bytes).map_err(|e| io(dir, e))?
        }
        Some(Err(_)) | None => prepare(dir, segment_bytes).map_err(|e| io(dir, e))?,
    };
    let path = dir.join(file_name(seq));
    std::fs::rename(&prepared, &path).map_err(|e| io(&path, e))?;
    sync_dir(dir)?;
    OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| io(&path, e))
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Some(h) = self.prepared.take() {
            let _ = h.join();
        }
    }
}

fn put_message<M: protobuf::Message>(m: &M, out: &mut Vec<u8>) -> Result<()> {
    out.extend_from_slice(&m.compute_size().to_le_bytes());
    m.write_to_vec(out).map_err(codec)
}

fn encode_entries(entries: &[Entry], out: &mut Vec<u8>) -> Result<()> {
    out.push(KIND_ENTRIES);
    for e in entries {
        put_message(e, out)?;
    }
    Ok(())
}

fn encode(rec: &Record, out: &mut Vec<u8>) -> Result<()> {
    match rec {
        Record::Entries(entries) => encode_entries(entries, out)?,
        Record::HardState(hs) => {
            out.push(KIND_HARD_STATE);
            hs.write_to_vec(out).map_err(codec)?;
        }
        Record::ConfState(cs) => {
            out.push(KIND_CONF_STATE);
            cs.write_to_vec(out).map_err(codec)?;
        }
        Record::Base {
            snapshot,
            hard_state,
            conf_state,
        } => {
            out.push(KIND_BASE);
            put_message(snapshot, out)?;
            put_message(hard_state, out)?;
            put_message(conf_state, out)?;
        }
        Record::Compact(meta) => {
            out.push(KIND_COMPACT);
            meta.write_to_vec(out).map_err(codec)?;
        }
    }
    Ok(())
}

/// Reads one file's records into `out`. A torn or bad record ends the file
/// when it is the last one (cut there when `cut`), else it is corruption.
fn read_file(path: &Path, last: bool, cut: bool, out: &mut Vec<Record>) -> Result<()> {
    let file = File::open(path).map_err(|e| io(path, e))?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut good: u64 = 0;
    let torn = |good: u64, what: &str| torn(path, last, cut, good, what);
    loop {
        let mut header = [0u8; HEADER];
        match read_exact_or_eof(&mut r, &mut header).map_err(|e| io(path, e))? {
            0 => return Ok(()),
            // The last few zeros of a segment too short for a header.
            n if n < HEADER && header[..n].iter().all(|b| *b == 0) => return Ok(()),
            n if n < HEADER => return torn(good, "a torn record header"),
            _ => {}
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if len == 0 && crc == 0 {
            return Ok(()); // the zero-filled rest of the segment
        }
        if len == 0 || len > MAX_RECORD {
            return torn(good, "a bad record length");
        }
        let mut body = vec![0u8; len as usize];
        if read_exact_or_eof(&mut r, &mut body).map_err(|e| io(path, e))? < body.len() {
            return torn(good, "a torn record");
        }
        if crc32fast::hash(&body) != crc {
            return torn(good, "a record whose checksum does not match");
        }
        match decode(&body) {
            Some(rec) => out.push(rec),
            None => return torn(good, "an undecodable record"),
        }
        good += (HEADER + body.len()) as u64;
    }
}

fn torn(path: &Path, last: bool, cut: bool, good: u64, what: &str) -> Result<()> {
    if !last {
        return Err(Error::Corrupt(format!(
            "raft WAL {}: {what} at byte {good}, and it is not the last file",
            path.display()
        )));
    }
    if !cut {
        tracing::warn!(file = %path.display(), at = good, what, "raft WAL: ignoring a torn tail (never acknowledged)");
        return Ok(());
    }
    tracing::warn!(file = %path.display(), at = good, what, "raft WAL: cutting off a torn tail (never acknowledged)");
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io(path, e))?;
    f.set_len(good)
        .and_then(|()| f.sync_all())
        .map_err(|e| io(path, e))
}

fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Splits a `u32 LE` length-prefixed message off `rest`.
fn take_message<M: protobuf::Message>(rest: &mut &[u8]) -> Option<M> {
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let bytes = rest.get(4..4 + len)?;
    let m = M::parse_from_bytes(bytes).ok()?;
    *rest = &rest[4 + len..];
    Some(m)
}

fn decode(body: &[u8]) -> Option<Record> {
    let (kind, mut rest) = body.split_first()?;
    match *kind {
        KIND_ENTRIES => {
            let mut entries = Vec::new();
            while !rest.is_empty() {
                entries.push(take_message(&mut rest)?);
            }
            Some(Record::Entries(entries))
        }
        KIND_HARD_STATE => Some(Record::HardState(HardState::parse_from_bytes(rest).ok()?)),
        KIND_CONF_STATE => Some(Record::ConfState(ConfState::parse_from_bytes(rest).ok()?)),
        KIND_BASE => {
            let snapshot = take_message(&mut rest)?;
            let hard_state = take_message(&mut rest)?;
            let conf_state = take_message(&mut rest)?;
            rest.is_empty().then_some(Record::Base {
                snapshot,
                hard_state,
                conf_state,
            })
        }
        KIND_COMPACT => Some(Record::Compact(
            SnapshotMetadata::parse_from_bytes(rest).ok()?,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: u64 = 4096;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 10].into(),
            ..Default::default()
        }
    }

    fn hs(term: u64, commit: u64) -> HardState {
        HardState {
            term,
            commit,
            ..Default::default()
        }
    }

    fn base(index: u64) -> Record {
        let mut snapshot = SnapshotMetadata {
            index,
            term: 1,
            ..Default::default()
        };
        snapshot.mut_conf_state().voters = vec![1, 2];
        Record::Base {
            conf_state: snapshot.get_conf_state().clone(),
            snapshot,
            hard_state: hs(1, index),
        }
    }

    fn seqs(dir: &Path) -> Vec<u64> {
        files(dir).unwrap().into_iter().map(|(s, _)| s).collect()
    }

    #[test]
    fn every_kind_comes_back_in_order_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, recs) = Wal::open(dir.path(), SMALL).unwrap();
        assert!(recs.is_empty());
        assert_eq!(
            std::fs::metadata(dir.path().join(file_name(w.seq())))
                .unwrap()
                .len(),
            SMALL,
            "segments are preallocated"
        );
        let cs = ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        };
        let mut compact = SnapshotMetadata {
            index: 1,
            term: 1,
            ..Default::default()
        };
        compact.set_conf_state(cs.clone());
        let written = vec![
            base(0),
            Record::Entries(vec![entry(1, 1), entry(2, 1)]),
            Record::HardState(hs(1, 2)),
            Record::ConfState(cs),
            Record::Compact(compact),
        ];
        for r in &written {
            w.record(r).unwrap();
        }
        assert!(w.sync().unwrap());
        assert!(!w.sync().unwrap(), "nothing buffered");
        w.append_entries(&[entry(3, 2)]).unwrap();
        w.sync().unwrap();
        let path = dir.path().join(file_name(w.seq()));
        let good = w.written;
        drop(w);
        // Half a record after the good ones, as a crash mid-write leaves it.
        let mut f = OpenOptions::new().write(true).open(&path).unwrap();
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(good)).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        // A read-only look leaves it alone.
        let replay = read_dir(dir.path()).unwrap();
        assert_eq!(replay.records.len(), written.len() + 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), SMALL);
        let (w, recs) = Wal::open(dir.path(), SMALL).unwrap();
        let mut expected = written;
        expected.push(Record::Entries(vec![entry(3, 2)]));
        assert_eq!(recs, expected);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good, "cut");
        assert_eq!(w.seq(), 2, "appends go to a new segment");
        drop(w);
        // The cut file is no longer last, and reads clean.
        let (_w, recs) = Wal::open(dir.path(), SMALL).unwrap();
        assert_eq!(recs, expected);
    }

    #[test]
    fn a_bad_record_before_the_last_file_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), SMALL).unwrap();
        w.append_entries(&[entry(1, 1)]).unwrap();
        w.sync().unwrap();
        let first = dir.path().join(file_name(w.seq()));
        let end = w.written as usize;
        drop(w);
        let (mut w, _) = Wal::open(dir.path(), SMALL).unwrap();
        w.append_entries(&[entry(2, 1)]).unwrap();
        w.sync().unwrap();
        drop(w);
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[end - 1] ^= 0xff;
        std::fs::write(&first, bytes).unwrap();
        let e = Wal::open(dir.path(), SMALL).unwrap_err();
        assert!(
            e.to_string().contains("checksum") && e.to_string().contains("not the last file"),
            "{e}"
        );
    }

    #[test]
    fn a_full_segment_moves_on_and_a_base_file_drops_older_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), SMALL).unwrap();
        let first = w.seq();
        for i in 1..=300 {
            w.append_entries(&[entry(i, 1)]).unwrap();
            w.record(&Record::HardState(hs(1, i))).unwrap();
            w.sync().unwrap();
        }
        assert!(
            w.seq() > first + 1,
            "300 syncs of ~50 bytes fill several 4 KiB segments"
        );
        let before = seqs(dir.path());
        assert_eq!(before.len() as u64, w.seq() - first + 1);
        let (_, recs) = {
            drop(w);
            Wal::open(dir.path(), SMALL).unwrap()
        };
        assert_eq!(recs.len(), 600);
        assert_eq!(recs[598], Record::Entries(vec![entry(300, 1)]));

        let (mut w, _) = Wal::open(dir.path(), SMALL).unwrap();
        w.start_base(&[
            base(290),
            Record::Entries((291..=300).map(|i| entry(i, 1)).collect()),
        ])
        .unwrap();
        assert_eq!(seqs(dir.path()), vec![w.seq()]);
        drop(w);
        let (_w, recs) = Wal::open(dir.path(), SMALL).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0], base(290));
    }

    #[test]
    fn files_of_the_experimental_format_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("wal-0000000000000001.log"), b"x").unwrap();
        let e = Wal::open(dir.path(), SMALL).unwrap_err();
        assert!(e.to_string().contains("--experimental-raft-wal"), "{e}");
    }
}
