//! The write-ahead log in front of the sled Raft log: what makes a `Ready`
//! durable with one `fdatasync` of one append-only file, instead of a flush
//! of the whole sled database.
//!
//! Every entry append and hard-state change is written to sled (unflushed)
//! and recorded here; [`Wal::sync`] writes the buffered records and
//! `fdatasync`s the file. sled is flushed only at a **checkpoint**: the WAL
//! starts a new file, records in sled that the new file is the first one sled
//! may lack, flushes sled, and deletes the older files. A background thread
//! checkpoints every [`CHECKPOINT_BYTES`] or [`CHECKPOINT_EVERY`] (its sled
//! flush runs beside the Raft thread, which goes on appending to the new
//! file); the Raft thread checkpoints itself after a rare change the WAL does
//! not record (a snapshot installed, a compaction, a conf state) and, as a
//! backstop, past [`ROTATE_BYTES`].
//!
//! Files are `wal-<seq>.log` (seq in 16 hex digits) in the member's `wal`
//! directory. A record is `len: u32 LE | crc32(kind, payload): u32 LE | kind:
//! u8 | payload`, `len` counting kind and payload. Kinds: `1` entries (each a
//! `u32 LE` length and a protobuf `Entry`), `2` a protobuf `HardState`.
//!
//! # Recovery
//!
//! sled records (in its `raft_state` tree, written before each checkpoint's
//! flush) the first WAL seq that is not yet in sled. On open, files with a
//! lower seq are deleted unread; the others are replayed in order into sled
//! (appends and hard states, exactly as they were made), then a checkpoint
//! makes the result durable. sled's own recovery after a crash yields a
//! prefix of its writes, so whatever sled lost since its last flush is in
//! the WAL files that follow it.
//!
//! A torn record at the end of the last file (a crash mid-write: never
//! synced, so never acknowledged) is cut off; a bad record anywhere else is
//! [`Error::Corrupt`].

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState};

use crate::{Error, Result};

/// The background checkpointer starts a new file and flushes sled once the
/// current file is this large (or it is older than [`CHECKPOINT_EVERY`]).
pub const CHECKPOINT_BYTES: u64 = 4 * 1024 * 1024;
/// ... or once the current file has records this old.
pub const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// A file this large is checkpointed on the Raft thread (the background one
/// fell behind).
pub const ROTATE_BYTES: u64 = 64 * 1024 * 1024;

const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
/// Bytes before a record's kind.
const HEADER: usize = 8;
/// No record is larger (a sanity bound for reading a torn length).
const MAX_RECORD: u32 = 1 << 30;

/// One replayed record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Entries(Vec<Entry>),
    HardState(HardState),
}

/// The open WAL: the current file, with records buffered until [`Wal::sync`].
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    seq: u64,
    file: File,
    /// Bytes in the current file, synced or not.
    size: u64,
    buf: Vec<u8>,
}

fn file_name(seq: u64) -> String {
    format!("wal-{seq:016x}.log")
}

fn seq_of(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("wal-")?.strip_suffix(".log")?;
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

/// The WAL files in `dir`, by seq.
fn files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let item = item.map_err(|e| io(dir, e))?;
        if let Some(seq) = item.file_name().to_str().and_then(seq_of) {
            out.push((seq, item.path()));
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

impl Wal {
    /// Opens the WAL in `dir` (created if missing), reading every record of
    /// the files from `first_seq` on; older files are deleted. Returns the
    /// WAL, appending to a new file after the last one, and the records.
    pub fn open(dir: &Path, first_seq: u64) -> Result<(Wal, Vec<Record>)> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let all = files(dir)?;
        let mut records = Vec::new();
        let mut next = first_seq.max(1);
        let live: Vec<&(u64, PathBuf)> = all.iter().filter(|(s, _)| *s >= first_seq).collect();
        for (i, (seq, path)) in live.iter().enumerate() {
            let last = i + 1 == live.len();
            read_file(path, last, &mut records)?;
            next = seq + 1;
        }
        let wal = Wal::create(dir, next)?;
        // Only now: the new file exists, so a crash here still finds them.
        for (seq, path) in &all {
            if *seq < first_seq {
                std::fs::remove_file(path).map_err(|e| io(path, e))?;
            }
        }
        Ok((wal, records))
    }

    fn create(dir: &Path, seq: u64) -> Result<Wal> {
        let path = dir.join(file_name(seq));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        let size = file.metadata().map_err(|e| io(&path, e))?.len();
        sync_dir(dir)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            seq,
            file,
            size,
            buf: Vec::new(),
        })
    }

    /// The current file's seq.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Bytes in the current file, including what is not synced yet.
    pub fn size(&self) -> u64 {
        self.size + self.buf.len() as u64
    }

    /// Whether records wait for [`Wal::sync`] (a `Ready` is half written).
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Records appended entries (buffered until [`Wal::sync`]).
    pub fn append_entries(&mut self, entries: &[Entry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let start = self.begin(KIND_ENTRIES);
        for e in entries {
            let len = e.compute_size();
            self.buf.extend_from_slice(&len.to_le_bytes());
            e.write_to_vec(&mut self.buf)
                .map_err(|e| Error::Raft(raft::Error::CodecError(e)))?;
        }
        self.end(start);
        Ok(())
    }

    /// Records a hard state (buffered until [`Wal::sync`]).
    pub fn append_hard_state(&mut self, hs: &HardState) -> Result<()> {
        let start = self.begin(KIND_HARD_STATE);
        hs.write_to_vec(&mut self.buf)
            .map_err(|e| Error::Raft(raft::Error::CodecError(e)))?;
        self.end(start);
        Ok(())
    }

    fn begin(&mut self, kind: u8) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; HEADER]);
        self.buf.push(kind);
        start
    }

    fn end(&mut self, start: usize) {
        let body = &self.buf[start + HEADER..];
        let len = body.len() as u32;
        let crc = crc32fast::hash(body);
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Writes the buffered records and `fdatasync`s the file. Returns
    /// whether there was anything to write.
    pub fn sync(&mut self) -> Result<bool> {
        if self.buf.is_empty() {
            return Ok(false);
        }
        let path = self.dir.join(file_name(self.seq));
        self.file
            .write_all(&self.buf)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io(&path, e))?;
        self.size += self.buf.len() as u64;
        self.buf.clear();
        Ok(true)
    }

    /// Starts file `seq + 1` and deletes the older ones. Call it only once
    /// everything recorded so far is durable elsewhere (sled flushed), and
    /// after recording there that the WAL now starts at [`Wal::next_seq`].
    pub fn rotate(&mut self) -> Result<()> {
        self.start_next()?;
        delete_before(&self.dir, self.seq)
    }

    /// Starts file `seq + 1`, keeping the older ones (for a checkpoint whose
    /// sled flush is still to come: then [`delete_before`]).
    pub fn start_next(&mut self) -> Result<()> {
        debug_assert!(self.buf.is_empty(), "start a file after sync");
        *self = Wal::create(&self.dir, self.seq + 1)?;
        Ok(())
    }

    /// The WAL's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The seq the next [`Wal::rotate`] starts.
    pub fn next_seq(&self) -> u64 {
        self.seq + 1
    }
}

/// Deletes the WAL files in `dir` older than `seq`.
pub fn delete_before(dir: &Path, seq: u64) -> Result<()> {
    for (s, path) in files(dir)? {
        if s < seq {
            std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
        }
    }
    Ok(())
}

/// Reads one file's records into `out`. A torn or bad record ends the file
/// when it is the last one (it is truncated there), else it is corruption.
fn read_file(path: &Path, last: bool, out: &mut Vec<Record>) -> Result<()> {
    let file = File::open(path).map_err(|e| io(path, e))?;
    let mut r = BufReader::new(file);
    let mut good: u64 = 0;
    loop {
        let mut header = [0u8; HEADER];
        match read_exact_or_eof(&mut r, &mut header).map_err(|e| io(path, e))? {
            0 => return Ok(()),
            n if n < HEADER => return torn(path, last, good, "a torn record header"),
            _ => {}
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if len == 0 || len > MAX_RECORD {
            return torn(path, last, good, "a bad record length");
        }
        let mut body = vec![0u8; len as usize];
        if read_exact_or_eof(&mut r, &mut body).map_err(|e| io(path, e))? < body.len() {
            return torn(path, last, good, "a torn record");
        }
        if crc32fast::hash(&body) != crc {
            return torn(path, last, good, "a record whose checksum does not match");
        }
        match decode(&body) {
            Some(rec) => out.push(rec),
            None => return torn(path, last, good, "an undecodable record"),
        }
        good += (HEADER + body.len()) as u64;
    }
}

fn torn(path: &Path, last: bool, good: u64, what: &str) -> Result<()> {
    if !last {
        return Err(Error::Corrupt(format!(
            "raft WAL {}: {what} at byte {good}, and it is not the last file",
            path.display()
        )));
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

fn decode(body: &[u8]) -> Option<Record> {
    let (kind, mut rest) = body.split_first()?;
    match *kind {
        KIND_ENTRIES => {
            let mut entries = Vec::new();
            while !rest.is_empty() {
                let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
                let bytes = rest.get(4..4 + len)?;
                entries.push(Entry::parse_from_bytes(bytes).ok()?);
                rest = &rest[4 + len..];
            }
            Some(Record::Entries(entries))
        }
        KIND_HARD_STATE => Some(Record::HardState(HardState::parse_from_bytes(rest).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn records_come_back_in_order_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, recs) = Wal::open(dir.path(), 1).unwrap();
        assert!(recs.is_empty());
        w.append_entries(&[entry(1, 1), entry(2, 1)]).unwrap();
        w.append_hard_state(&hs(1, 2)).unwrap();
        assert!(w.sync().unwrap());
        w.append_entries(&[entry(3, 2)]).unwrap();
        w.sync().unwrap();
        let path = dir.path().join(file_name(w.seq()));
        let good = std::fs::metadata(&path).unwrap().len();
        drop(w);
        // Half a record at the end, as a crash mid-write leaves it.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let (w, recs) = Wal::open(dir.path(), 1).unwrap();
        assert_eq!(
            recs,
            vec![
                Record::Entries(vec![entry(1, 1), entry(2, 1)]),
                Record::HardState(hs(1, 2)),
                Record::Entries(vec![entry(3, 2)]),
            ]
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
        assert_eq!(
            w.seq(),
            2,
            "appends go to a new file after the replayed ones"
        );
    }

    #[test]
    fn a_bad_record_before_the_last_file_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), 1).unwrap();
        w.append_entries(&[entry(1, 1)]).unwrap();
        w.sync().unwrap();
        let first = dir.path().join(file_name(w.seq()));
        drop(w);
        let (mut w, _) = Wal::open(dir.path(), 1).unwrap();
        w.append_entries(&[entry(2, 1)]).unwrap();
        w.sync().unwrap();
        drop(w);
        let mut bytes = std::fs::read(&first).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&first, bytes).unwrap();
        let e = Wal::open(dir.path(), 1).unwrap_err();
        assert!(
            e.to_string().contains("checksum") && e.to_string().contains("not the last file"),
            "{e}"
        );
    }

    #[test]
    fn rotation_and_the_first_seq_drop_older_files() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), 1).unwrap();
        w.append_entries(&[entry(1, 1)]).unwrap();
        w.sync().unwrap();
        let next = w.next_seq();
        w.rotate().unwrap();
        assert_eq!(w.seq(), next);
        w.append_entries(&[entry(2, 1)]).unwrap();
        w.sync().unwrap();
        assert_eq!(files(dir.path()).unwrap().len(), 1);
        drop(w);
        // Reopened from the seq sled recorded: only the newer records.
        let (w, recs) = Wal::open(dir.path(), next).unwrap();
        assert_eq!(recs, vec![Record::Entries(vec![entry(2, 1)])]);
        drop(w);
        // A seq past every file: nothing to replay, the old files go.
        let (w, recs) = Wal::open(dir.path(), next + 5).unwrap();
        assert!(recs.is_empty());
        assert_eq!(w.seq(), next + 5);
        assert_eq!(files(dir.path()).unwrap().len(), 1);
    }
}
