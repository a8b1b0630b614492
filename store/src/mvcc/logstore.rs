//! [`LogBackend`]: the MVCC keyspace in append-only files with an in-memory
//! index, a [`Backend`] for the store instead of a sled tree.
//!
//! Why: the store writes each revision once, under a key that only grows,
//! and reads it back by that key; sled spends most of a write on its B-tree
//! (walking to the leaf, linking a page delta, splitting the rightmost node
//! again and again). At put 100/1000 on three members that was a third of
//! each follower's Raft thread (docs/benchmarks.md, "The log backend"). Here
//! a write is an append to a buffer and an insert into a `BTreeMap`; the
//! values live in the files (the page cache), not in memory.
//!
//! # Files
//!
//! `<id>.klog` (the id in 16 hex digits) in the backend's directory. A file
//! is a sequence of batches, each `len: u32 LE | crc32(body): u32 LE |
//! body`; the body is the batch's operations in order, each `op: u8 |
//! key_len: u32 LE | key`, a put (`op` 1) going on with `value_len: u32 LE |
//! value`, a delete (`op` 2) ending there. Writes go to the newest file; one
//! that has passed its size limit is closed and the next one started.
//!
//! # Index
//!
//! Every live key maps to where its value is: file, offset, length. A read
//! takes the location under a read lock and reads the value with `pread`
//! (or from the write buffer, for a value not handed to the kernel yet).
//!
//! # Durability
//!
//! Nothing is synced per write, as with sled: [`LogBackend::flush`] hands
//! the buffer to the kernel and syncs every file written since the last
//! flush (and the directory when files came or went). The Raft storage
//! calls it at its checkpoints and keeps every entry applied after the last
//! one. A group ([`Backend::begin_group`]) only holds writes in the buffer
//! until it ends; each batch is framed and checksummed on its own.
//!
//! Each flush then records (in the file `synced`, replaced atomically) the
//! file and offset it synced up to. Opening replays the files in order. A
//! batch that is torn or fails its checksum before that point is corruption:
//! the open fails. After it, the first such batch ends the data: what
//! follows was never covered by a flush, so that file is cut there and every
//! later file removed (replaying past the gap would keep later writes and
//! lose earlier ones).
//!
//! # Reclaiming space
//!
//! An overwritten or deleted value is garbage. When garbage is more than
//! half of the bytes in the files, and more than [`GC_MIN_BYTES`], a
//! background thread rewrites the oldest file: its live values are written
//! again as new batches (skipping any a newer write replaced meanwhile), the
//! copies are flushed, then the file is deleted. Only the oldest file is
//! ever deleted, so a delete record that goes with it can never let an older
//! put of its key come back.
//!
//! Leaves out: compression, checksums on reads (a batch is checked when the
//! files are opened), and any limit on the index's memory (a key costs its
//! bytes plus about 60).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use super::backend::{bounds, Backend, Batch, BatchOp, ScanIter};
use crate::{Error, Result};

/// A file is closed once it holds this much.
pub const FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Garbage below this is never reclaimed.
pub const GC_MIN_BYTES: u64 = 64 * 1024 * 1024;
/// Keys copied per step of a rewrite (the writer is held for one step).
const GC_STEP: usize = 1024;
/// Entries a scan copies out of the index at a time.
const SCAN_STEP: usize = 512;
/// The most a scan reads in one `pread` for a run of values.
const SPAN_MAX: u64 = 1024 * 1024;
/// Bytes before a batch's body.
const HEADER: usize = 8;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const SUFFIX: &str = "klog";
/// The file recording how far the last flush synced: `<file id> <offset>`.
const SYNCED: &str = "synced";

/// Where a value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Loc {
    file: u32,
    len: u32,
    off: u64,
}

impl Loc {
    /// The bytes its record takes in the file (op, lengths, key, value).
    fn record_bytes(&self, key_len: usize) -> u64 {
        9 + key_len as u64 + u64::from(self.len)
    }
}

/// An open file and how much of it the kernel has.
#[derive(Debug)]
struct Handle {
    file: File,
    /// Bytes written to the file (the rest of its data is in the buffer).
    written: AtomicU64,
}

#[derive(Debug)]
struct FileInfo {
    handle: Arc<Handle>,
    /// Bytes of batches in the file, written or buffered.
    bytes: u64,
    /// Bytes of records the index still points into.
    live: u64,
}

#[derive(Debug, Default)]
struct State {
    index: BTreeMap<Box<[u8]>, Loc>,
    files: BTreeMap<u32, FileInfo>,
}

impl State {
    fn total(&self) -> u64 {
        self.files.values().map(|f| f.bytes).sum()
    }
    fn live(&self) -> u64 {
        self.files.values().map(|f| f.live).sum()
    }
    /// Points `key` at `loc` (a put just appended or replayed); the value
    /// it pointed at before becomes garbage.
    fn put(&mut self, key: &[u8], loc: Loc) {
        let bytes = loc.record_bytes(key.len());
        if let Some(f) = self.files.get_mut(&loc.file) {
            f.live += bytes;
        }
        let old = match self.index.get_mut(key) {
            Some(slot) => Some(std::mem::replace(slot, loc)),
            None => {
                self.index.insert(key.into(), loc);
                None
            }
        };
        if let Some(old) = old {
            self.forget(key.len(), old);
        }
    }
    fn delete(&mut self, key: &[u8]) {
        if let Some(old) = self.index.remove(key) {
            self.forget(key.len(), old);
        }
    }
    fn forget(&mut self, key_len: usize, old: Loc) {
        if let Some(f) = self.files.get_mut(&old.file) {
            f.live = f.live.saturating_sub(old.record_bytes(key_len));
        }
    }
}

/// The file being appended to.
#[derive(Debug)]
struct Writer {
    id: u32,
    handle: Arc<Handle>,
    /// Batches not yet written to the file; they start at `handle.written`.
    buf: Vec<u8>,
    /// Operations in `buf`.
    buffered: usize,
    /// Whether a group holds the buffer until it ends.
    group: bool,
    /// Files written since the last flush.
    dirty: BTreeSet<u32>,
    /// Whether files were created or removed since the last flush.
    dir_dirty: bool,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    /// Opened for an offline inspection: every write fails.
    read_only: bool,
    file_bytes: u64,
    gc_min_bytes: u64,
    state: RwLock<State>,
    writer: Mutex<Writer>,
    /// Serialises flushes (and a rewrite's flush with its delete).
    flushing: Mutex<()>,
    /// Serialises rewrites (the collector thread's and a caller's).
    collecting: Mutex<()>,
    /// Set when a write may have made a rewrite worth doing.
    gc_wake: (Mutex<bool>, Condvar),
}

/// The log backend (see the module doc); clones share it.
#[derive(Clone, Debug)]
pub struct LogBackend {
    shared: Arc<Shared>,
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

fn file_name(id: u32) -> String {
    format!("{id:016x}.{SUFFIX}")
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

/// Reads the [`SYNCED`] record; `(0, 0)` without one.
fn read_synced(dir: &Path) -> Result<(u32, u64)> {
    let path = dir.join(SYNCED);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(io(&path, e)),
    };
    let mut words = text.split_whitespace();
    let parsed = (|| {
        let id = u32::from_str_radix(words.next()?, 16).ok()?;
        let off = words.next()?.parse::<u64>().ok()?;
        Some((id, off))
    })();
    parsed
        .ok_or_else(|| Error::Corrupt(format!("mvcc log: {}: not a synced record", path.display())))
}

/// Records durably that everything before `off` of file `id` is synced.
fn write_synced(dir: &Path, id: u32, off: u64) -> Result<()> {
    let tmp = dir.join(format!("{SYNCED}.tmp"));
    let path = dir.join(SYNCED);
    let mut f = File::create(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(format!("{id:016x} {off}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
    sync_dir(dir)
}

/// Creates the file at `path`, to be appended to.
fn create_handle(path: &Path) -> Result<Arc<Handle>> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io(path, e))?;
    Ok(Arc::new(Handle {
        file,
        written: AtomicU64::new(0),
    }))
}

/// One operation read back from a file.
struct Replayed {
    key: Vec<u8>,
    /// For a put, where its value is; `None` for a delete.
    loc: Option<Loc>,
}

/// Reads the batches of `data` (file `id`); returns them and the length of
/// the valid prefix (less than `data.len()` if a batch is torn or bad).
fn parse_file(id: u32, data: &[u8]) -> (Vec<Replayed>, u64) {
    let mut ops = Vec::new();
    let mut at = 0usize;
    while data.len() - at >= HEADER {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().unwrap());
        let start = at + HEADER;
        if len == 0 || data.len() - start < len {
            break;
        }
        let body = &data[start..start + len];
        if crc32fast::hash(body) != crc {
            break;
        }
        let Some(batch) = parse_body(id, start as u64, body) else {
            break;
        };
        ops.extend(batch);
        at = start + len;
    }
    (ops, at as u64)
}

fn parse_body(id: u32, base: u64, body: &[u8]) -> Option<Vec<Replayed>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(body.get(at..at + 4)?.try_into().ok()?))
    };
    while at < body.len() {
        let op = body[at];
        let klen = u32_at(at + 1)? as usize;
        let key = body.get(at + 5..at + 5 + klen)?.to_vec();
        at += 5 + klen;
        match op {
            OP_PUT => {
                let vlen = u32_at(at)?;
                let off = at + 4;
                body.get(off..off + vlen as usize)?;
                out.push(Replayed {
                    key,
                    loc: Some(Loc {
                        file: id,
                        len: vlen,
                        off: base + off as u64,
                    }),
                });
                at = off + vlen as usize;
            }
            OP_DELETE => out.push(Replayed { key, loc: None }),
            _ => return None,
        }
    }
    Some(out)
}

impl LogBackend {
    /// Opens (creating if need be) the backend kept in `dir`.
    pub fn open(dir: &Path) -> Result<LogBackend> {
        LogBackend::open_with(dir, FILE_BYTES, GC_MIN_BYTES, true)
    }

    /// [`LogBackend::open`] with other limits (tests use small ones), and
    /// without the collector thread unless `collector` (garbage is then
    /// reclaimed only by [`LogBackend::collect_garbage`]).
    pub fn open_with(
        dir: &Path,
        file_bytes: u64,
        gc_min_bytes: u64,
        collector: bool,
    ) -> Result<LogBackend> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        LogBackend::open_inner(dir, file_bytes, gc_min_bytes, collector, false)
    }

    /// Opens the backend in `dir` for reading only (an offline inspection):
    /// nothing in the directory changes; a torn batch ends the data read,
    /// as on a normal open, but is not cut off; every write fails.
    pub fn open_read_only(dir: &Path) -> Result<LogBackend> {
        LogBackend::open_inner(dir, FILE_BYTES, GC_MIN_BYTES, false, true)
    }

    fn open_inner(
        dir: &Path,
        file_bytes: u64,
        gc_min_bytes: u64,
        collector: bool,
        read_only: bool,
    ) -> Result<LogBackend> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let name = entry.map_err(|e| io(dir, e))?.file_name();
            let name = name.to_string_lossy();
            if let Some(hex) = name.strip_suffix(&format!(".{SUFFIX}")) {
                if let Ok(id) = u32::from_str_radix(hex, 16) {
                    ids.push(id);
                }
            }
        }
        ids.sort_unstable();
        // Data before this point was synced by a completed flush: a bad
        // batch there is corruption, not a write the crash cut short.
        let synced = read_synced(dir)?;
        let mut state = State::default();
        let mut cut = false;
        let mut dir_changed = false;
        for &id in &ids {
            let path = dir.join(file_name(id));
            if cut {
                if read_only {
                    tracing::warn!(file = %path.display(), "mvcc log: ignoring a file written after a torn batch");
                    continue;
                }
                tracing::warn!(file = %path.display(), "mvcc log: removing a file written after a torn batch");
                std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
                dir_changed = true;
                continue;
            }
            let file = if read_only {
                File::open(&path)
            } else {
                OpenOptions::new().read(true).append(true).open(&path)
            }
            .map_err(|e| io(&path, e))?;
            let mut data = Vec::new();
            BufReader::new(&file)
                .read_to_end(&mut data)
                .map_err(|e| io(&path, e))?;
            let (ops, good) = parse_file(id, &data);
            if good < data.len() as u64 && (id, good) < synced {
                return Err(Error::Corrupt(format!(
                    "mvcc log: {}: bad batch at offset {good}, before what the last flush synced ({:016x} at {})",
                    path.display(),
                    synced.0,
                    synced.1
                )));
            }
            if good < data.len() as u64 {
                tracing::warn!(
                    file = %path.display(),
                    at = good,
                    dropped = data.len() as u64 - good,
                    "mvcc log: cutting a torn batch (never flushed) and what follows"
                );
                if !read_only {
                    file.set_len(good)
                        .and_then(|()| file.sync_all())
                        .map_err(|e| io(&path, e))?;
                }
                cut = true;
            }
            let handle = Arc::new(Handle {
                file,
                written: AtomicU64::new(good),
            });
            state.files.insert(
                id,
                FileInfo {
                    handle,
                    bytes: good,
                    live: 0,
                },
            );
            for r in ops {
                match r.loc {
                    Some(loc) => state.put(&r.key, loc),
                    None => state.delete(&r.key),
                }
            }
        }
        // Appends go to a new file (the last one may end in a cut), or to
        // the last one if it is empty.
        let reuse = state
            .files
            .last_key_value()
            .filter(|(_, f)| f.bytes == 0)
            .map(|(id, f)| (*id, f.handle.clone()));
        let (id, handle) = match reuse {
            Some(last) => last,
            None if read_only => {
                // Never written to: the last file's handle, or without one
                // a handle on the directory, stands in.
                match state.files.last_key_value() {
                    Some((id, f)) => (*id, f.handle.clone()),
                    None => (
                        0,
                        Arc::new(Handle {
                            file: File::open(dir).map_err(|e| io(dir, e))?,
                            written: AtomicU64::new(0),
                        }),
                    ),
                }
            }
            None => {
                let id = ids.last().map_or(1, |last| last + 1);
                let handle = create_handle(&dir.join(file_name(id)))?;
                state.files.insert(
                    id,
                    FileInfo {
                        handle: handle.clone(),
                        bytes: 0,
                        live: 0,
                    },
                );
                dir_changed = true;
                (id, handle)
            }
        };
        if dir_changed {
            // The files removed or created are part of the state now.
            sync_dir(dir)?;
        }
        tracing::info!(
            files = state.files.len(),
            keys = state.index.len(),
            bytes = state.total(),
            live = state.live(),
            dir = %dir.display(),
            "mvcc log opened"
        );
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            file_bytes,
            gc_min_bytes,
            read_only,
            state: RwLock::new(state),
            writer: Mutex::new(Writer {
                id,
                handle,
                buf: Vec::new(),
                buffered: 0,
                group: false,
                dirty: BTreeSet::new(),
                dir_dirty: false,
            }),
            flushing: Mutex::new(()),
            collecting: Mutex::new(()),
            gc_wake: (Mutex::new(false), Condvar::new()),
        });
        if collector {
            start_gc(Arc::downgrade(&shared));
        }
        Ok(LogBackend { shared })
    }

    /// Writes everything to the files and syncs them: the writes made
    /// before the call are durable when it returns.
    pub fn flush(&self) -> Result<()> {
        self.shared.flush()
    }

    /// Bytes the index points to and bytes in the files (for tests and
    /// logs).
    pub fn usage(&self) -> (u64, u64) {
        let st = self.shared.read();
        (st.live(), st.total())
    }

    /// The number of files.
    pub fn files(&self) -> usize {
        self.shared.read().files.len()
    }

    /// Runs one rewrite of the oldest file if garbage calls for one; true if
    /// it did (the background thread's step, callable from tests).
    pub fn collect_garbage(&self) -> Result<bool> {
        self.shared.gc_step()
    }
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value at `loc` of `handle`.
    fn read_value(&self, loc: Loc, handle: &Handle) -> Result<Vec<u8>> {
        let mut out = vec![0u8; loc.len as usize];
        let end = loc.off + u64::from(loc.len);
        if end > handle.written.load(Ordering::Acquire) {
            let w = self.lock_writer();
            let written = w.handle.written.load(Ordering::Acquire);
            if w.id == loc.file && loc.off >= written {
                let from = (loc.off - written) as usize;
                out.copy_from_slice(&w.buf[from..from + loc.len as usize]);
                return Ok(out);
            }
        }
        handle
            .file
            .read_exact_at(&mut out, loc.off)
            .map_err(|e| io(&self.dir.join(file_name(loc.file)), e))?;
        Ok(out)
    }

    /// Appends the batch `ops` to the buffer and points the index at it.
    fn append(&self, w: &mut Writer, ops: &[BatchOp]) {
        if ops.is_empty() {
            return;
        }
        let start = w.buf.len();
        let base = w.handle.written.load(Ordering::Relaxed) + start as u64;
        w.buf.extend_from_slice(&[0u8; HEADER]);
        let mut located: Vec<(&[u8], Option<Loc>)> = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                BatchOp::Put(k, v) => {
                    w.buf.push(OP_PUT);
                    w.buf.extend_from_slice(&(k.len() as u32).to_le_bytes());
                    w.buf.extend_from_slice(k);
                    w.buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    let off = base + (w.buf.len() - start) as u64;
                    w.buf.extend_from_slice(v);
                    located.push((
                        k,
                        Some(Loc {
                            file: w.id,
                            len: v.len() as u32,
                            off,
                        }),
                    ));
                }
                BatchOp::Delete(k) => {
                    w.buf.push(OP_DELETE);
                    w.buf.extend_from_slice(&(k.len() as u32).to_le_bytes());
                    w.buf.extend_from_slice(k);
                    located.push((k, None));
                }
            }
        }
        let body = &w.buf[start + HEADER..];
        let len = body.len() as u32;
        let crc = crc32fast::hash(body);
        w.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        w.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        let bytes = (w.buf.len() - start) as u64;
        w.buffered += ops.len();
        let mut st = self.write_state();
        if let Some(f) = st.files.get_mut(&w.id) {
            f.bytes += bytes;
        }
        for (k, loc) in located {
            match loc {
                Some(loc) => st.put(k, loc),
                None => st.delete(k),
            }
        }
    }

    /// Hands the buffer to the kernel; starts the next file once this one
    /// is full.
    fn write_out(&self, w: &mut Writer) -> Result<()> {
        if !w.buf.is_empty() {
            let path = self.dir.join(file_name(w.id));
            (&w.handle.file)
                .write_all(&w.buf)
                .map_err(|e| io(&path, e))?;
            w.handle
                .written
                .fetch_add(w.buf.len() as u64, Ordering::Release);
            w.buf.clear();
            w.buffered = 0;
            w.dirty.insert(w.id);
        }
        if w.handle.written.load(Ordering::Relaxed) >= self.file_bytes {
            self.start_file(w)?;
        }
        Ok(())
    }

    /// Closes the file being written (its buffer written out) and starts
    /// the next.
    fn start_file(&self, w: &mut Writer) -> Result<()> {
        let id = w.id + 1;
        let handle = create_handle(&self.dir.join(file_name(id)))?;
        self.write_state().files.insert(
            id,
            FileInfo {
                handle: handle.clone(),
                bytes: 0,
                live: 0,
            },
        );
        w.id = id;
        w.handle = handle;
        w.dir_dirty = true;
        Ok(())
    }

    /// Rewrites every file but a new one started here, oldest first: what
    /// stays is the live values (see [`Backend::defragment`]).
    fn defragment(&self) -> Result<()> {
        let _one = self.collecting.lock().unwrap_or_else(|e| e.into_inner());
        let active = {
            let mut w = self.lock_writer();
            self.write_out(&mut w)?;
            if w.handle.written.load(Ordering::Relaxed) > 0 {
                self.start_file(&mut w)?;
            }
            w.id
        };
        loop {
            // Only the oldest file is ever deleted (see the module doc).
            let Some(oldest) = self.read().files.keys().next().copied() else {
                return Ok(());
            };
            if oldest >= active || !self.rewrite(oldest)? {
                return Ok(());
            }
        }
    }

    fn flush(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let _one = self.flushing.lock().unwrap_or_else(|e| e.into_inner());
        let (dirty, dir_dirty, end) = {
            let mut w = self.lock_writer();
            self.write_out(&mut w)?;
            let end = (w.id, w.handle.written.load(Ordering::Relaxed));
            (
                std::mem::take(&mut w.dirty),
                std::mem::take(&mut w.dir_dirty),
                end,
            )
        };
        let handles: Vec<(u32, Arc<Handle>)> = {
            let st = self.read();
            dirty
                .iter()
                .filter_map(|id| st.files.get(id).map(|f| (*id, f.handle.clone())))
                .collect()
        };
        let result = (|| {
            for (id, h) in &handles {
                h.file
                    .sync_data()
                    .map_err(|e| io(&self.dir.join(file_name(*id)), e))?;
            }
            if dir_dirty {
                sync_dir(&self.dir)?;
            }
            if !dirty.is_empty() {
                write_synced(&self.dir, end.0, end.1)?;
            }
            Ok(())
        })();
        if result.is_err() {
            // Not synced: the next flush tries again.
            let mut w = self.lock_writer();
            w.dirty.extend(dirty);
            w.dir_dirty |= dir_dirty;
        }
        result
    }

    /// After a write: wakes the collector if garbage calls for it.
    fn maybe_wake_gc(&self) {
        if self.gc_due().is_some() {
            let (flag, cv) = &self.gc_wake;
            *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_one();
        }
    }

    /// The file to rewrite, if garbage is due for collection: the oldest,
    /// unless it is the one being written.
    fn gc_due(&self) -> Option<u32> {
        let st = self.read();
        let (total, live) = (st.total(), st.live());
        let garbage = total - live.min(total);
        if garbage < self.gc_min_bytes || garbage * 2 < total {
            return None;
        }
        let oldest = *st.files.keys().next()?;
        let newest = *st.files.keys().next_back()?;
        (oldest != newest).then_some(oldest)
    }

    /// Rewrites the oldest file if due (see the module doc).
    fn gc_step(&self) -> Result<bool> {
        let _one = self.collecting.lock().unwrap_or_else(|e| e.into_inner());
        let Some(victim) = self.gc_due() else {
            return Ok(false);
        };
        self.rewrite(victim)
    }

    /// Copies the live values of file `victim` (the oldest, not the one
    /// written) to the newest, flushes, and deletes `victim`; true if it did.
    /// The caller holds `collecting`.
    fn rewrite(&self, victim: u32) -> Result<bool> {
        let (before, victim_bytes, handle) = {
            let st = self.read();
            let Some(f) = st.files.get(&victim) else {
                return Ok(false);
            };
            (st.total(), f.bytes, f.handle.clone())
        };
        let mut from: Bound<Box<[u8]>> = Bound::Unbounded;
        let mut copied = 0usize;
        loop {
            // A step: the next keys still in the victim, copied under the
            // writer so that no write of theirs comes in between.
            let mut w = self.lock_writer();
            let chunk: Vec<(Box<[u8]>, Loc)> = {
                let st = self.read();
                st.index
                    .range::<Box<[u8]>, _>((from.clone(), Bound::Unbounded))
                    .filter(|(_, loc)| loc.file == victim)
                    .take(GC_STEP)
                    .map(|(k, l)| (k.clone(), *l))
                    .collect()
            };
            let Some((last, _)) = chunk.last() else {
                self.write_out(&mut w)?;
                break;
            };
            from = Bound::Excluded(last.clone());
            let mut ops = Vec::with_capacity(chunk.len());
            for (k, loc) in &chunk {
                let v = self.read_value(*loc, &handle)?;
                ops.push(BatchOp::Put(k.to_vec(), v));
            }
            copied += ops.len();
            self.append(&mut w, &ops);
            if !w.group {
                self.write_out(&mut w)?;
            }
        }
        // The copies are durable before the only other copy goes.
        self.flush()?;
        let _one = self.flushing.lock().unwrap_or_else(|e| e.into_inner());
        {
            let mut st = self.write_state();
            let live = st.files.get(&victim).map_or(0, |f| f.live);
            if live != 0 {
                tracing::error!(
                    file = victim,
                    live,
                    "mvcc log: a rewritten file still holds live values; kept"
                );
                return Ok(false);
            }
            st.files.remove(&victim);
        }
        let path = self.dir.join(file_name(victim));
        std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
        sync_dir(&self.dir)?;
        let after = self.read().total();
        tracing::info!(
            file = victim,
            copied,
            freed = victim_bytes,
            before,
            after,
            "mvcc log: reclaimed the oldest file"
        );
        Ok(true)
    }
}

/// The collector thread: rewrites while garbage is due, sleeping between.
fn start_gc(shared: Weak<Shared>) {
    let spawned = std::thread::Builder::new()
        .name("mvcc-log-gc".into())
        .spawn(move || loop {
            {
                let Some(s) = shared.upgrade() else { return };
                let (flag, cv) = &s.gc_wake;
                let mut woken = flag.lock().unwrap_or_else(|e| e.into_inner());
                if !*woken {
                    woken = cv
                        .wait_timeout(woken, Duration::from_secs(1))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                *woken = false;
            }
            let Some(s) = shared.upgrade() else { return };
            loop {
                match s.gc_step() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "mvcc log: reclaiming space failed");
                        break;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "mvcc log: no collector thread; garbage is never reclaimed");
    }
}

impl Backend for LogBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let (loc, handle) = {
            let st = self.shared.read();
            let Some(loc) = st.index.get(key).copied() else {
                return Ok(None);
            };
            match st.files.get(&loc.file) {
                Some(f) => (loc, f.handle.clone()),
                None => return Err(Error::Corrupt(format!("mvcc log: no file {}", loc.file))),
            }
        };
        self.shared.read_value(loc, &handle).map(Some)
    }

    fn scan(&self, start: &[u8], end: &[u8]) -> ScanIter<'_> {
        if bounds(start, end).is_none() {
            return Box::new(std::iter::empty());
        }
        Box::new(Scan {
            shared: &self.shared,
            from: Bound::Included(start.into()),
            end: end.into(),
            ready: Vec::new().into_iter(),
            done: false,
        })
    }

    fn apply(&self, batch: Batch) -> Result<()> {
        if self.shared.read_only {
            return Err(Error::Corrupt(
                "mvcc log: opened read-only, written to".into(),
            ));
        }
        let mut w = self.shared.lock_writer();
        self.shared.append(&mut w, batch.ops());
        if !w.group {
            self.shared.write_out(&mut w)?;
            drop(w);
            self.shared.maybe_wake_gc();
        }
        Ok(())
    }

    fn size(&self) -> Result<u64> {
        Ok(self.shared.read().total())
    }

    fn begin_group(&self) {
        self.shared.lock_writer().group = true;
    }

    fn end_group(&self) -> Result<()> {
        let mut w = self.shared.lock_writer();
        if !w.group {
            return Ok(());
        }
        self.shared.write_out(&mut w)?;
        w.group = false;
        drop(w);
        self.shared.maybe_wake_gc();
        Ok(())
    }

    fn pending_writes(&self) -> usize {
        let w = self.shared.lock_writer();
        if w.group {
            w.buffered
        } else {
            0
        }
    }

    fn flush(&self) -> Result<()> {
        self.shared.flush()
    }

    fn defragment(&self) -> Result<()> {
        if self.shared.read_only {
            return Ok(());
        }
        self.shared.defragment()
    }
}

/// A key, where its value is, and that file's handle (if it is open).
type Located = (Box<[u8]>, Loc, Option<Arc<Handle>>);

/// A range scan, copying locations out of the index a step at a time.
struct Scan<'a> {
    shared: &'a Shared,
    from: Bound<Box<[u8]>>,
    end: Box<[u8]>,
    ready: std::vec::IntoIter<Result<(Vec<u8>, Vec<u8>)>>,
    done: bool,
}

impl Scan<'_> {
    fn refill(&mut self) {
        let upper: Bound<Box<[u8]>> = if self.end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(self.end.clone())
        };
        let step: Vec<Located> = {
            let st = self.shared.read();
            st.index
                .range::<Box<[u8]>, _>((self.from.clone(), upper))
                .take(SCAN_STEP)
                .map(|(k, loc)| {
                    (
                        k.clone(),
                        *loc,
                        st.files.get(&loc.file).map(|f| f.handle.clone()),
                    )
                })
                .collect()
        };
        if step.len() < SCAN_STEP {
            self.done = true;
        }
        if let Some((last, _, _)) = step.last() {
            self.from = Bound::Excluded(last.clone());
        }
        let mut items = Vec::with_capacity(step.len());
        let mut rest = step.as_slice();
        while !rest.is_empty() {
            // A run of values in one file, read with one `pread` when they
            // lie close together (a scan in revision order reads a file
            // front to back: the store's load at start, images, history).
            let (_, first, handle) = &rest[0];
            let run = rest
                .iter()
                .take_while(|(_, loc, _)| loc.file == first.file && loc.off >= first.off)
                .count();
            let (now, later) = rest.split_at(run);
            rest = later;
            let Some(handle) = handle else {
                items.push(Err(Error::Corrupt(format!(
                    "mvcc log: no file {}",
                    first.file
                ))));
                continue;
            };
            let end = now
                .iter()
                .map(|(_, l, _)| l.off + u64::from(l.len))
                .max()
                .unwrap_or(first.off);
            let wanted: u64 = now.iter().map(|(_, l, _)| u64::from(l.len)).sum();
            let span = end - first.off;
            let dense = run > 1
                && span <= SPAN_MAX
                && span <= 2 * wanted + 64 * run as u64
                && end <= handle.written.load(Ordering::Acquire);
            if dense {
                let mut buf = vec![0u8; span as usize];
                match handle.file.read_exact_at(&mut buf, first.off) {
                    Ok(()) => {
                        for (k, l, _) in now {
                            let at = (l.off - first.off) as usize;
                            items.push(Ok((k.to_vec(), buf[at..at + l.len as usize].to_vec())));
                        }
                    }
                    Err(e) => items.push(Err(io(&self.shared.dir.join(file_name(first.file)), e))),
                }
                continue;
            }
            for (k, loc, _) in now {
                items.push(
                    self.shared
                        .read_value(*loc, handle)
                        .map(|v| (k.to_vec(), v)),
                );
            }
        }
        self.ready = items.into_iter();
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.ready.next() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            self.refill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::backend::tests::{del, exercise, put};

    fn all(b: &dyn Backend) -> Vec<(String, String)> {
        b.scan(b"", b"")
            .map(|r| {
                let (k, v) = r.unwrap();
                (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap())
            })
            .collect()
    }

    fn file_paths(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == SUFFIX))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn behaves_as_a_backend() {
        let dir = tempfile::tempdir().unwrap();
        let b = LogBackend::open(dir.path()).unwrap();
        exercise(&b);
        assert!(b.size().unwrap() > 0);
    }

    #[test]
    fn reopening_finds_what_was_flushed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = LogBackend::open(dir.path()).unwrap();
            put(&b, "a", "1");
            put(&b, "b", "2");
            put(&b, "a", "3");
            del(&b, "b");
            put(&b, "c", "4");
            b.flush().unwrap();
        }
        let b = LogBackend::open(dir.path()).unwrap();
        assert_eq!(
            all(&b),
            vec![("a".into(), "3".into()), ("c".into(), "4".into())]
        );
        // Each open appends to a new file.
        assert_eq!(b.files(), 2);
        put(&b, "d", "5");
        assert_eq!(b.get(b"d").unwrap(), Some(b"5".to_vec()));
    }

    #[test]
    fn a_group_is_readable_before_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let b = LogBackend::open(dir.path()).unwrap();
        put(&b, "a", "1");
        b.begin_group();
        put(&b, "a", "2");
        put(&b, "b", "x".repeat(5000).as_str());
        assert!(b.pending_writes() > 0);
        assert_eq!(b.get(b"a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(b.get(b"b").unwrap().unwrap().len(), 5000);
        assert_eq!(all(&b).len(), 2);
        b.end_group().unwrap();
        assert_eq!(b.pending_writes(), 0);
        assert_eq!(b.get(b"a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(b.get(b"b").unwrap().unwrap().len(), 5000);
    }

    #[test]
    fn a_torn_batch_after_the_last_flush_ends_the_data() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = LogBackend::open(dir.path()).unwrap();
            put(&b, "a", "1");
            b.flush().unwrap();
            // Written to the file, never synced: a crash may tear it.
            put(&b, "b", "2");
        }
        let first = file_paths(dir.path())[0].clone();
        let len = std::fs::metadata(&first).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&first)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        {
            let b = LogBackend::open(dir.path()).unwrap();
            assert_eq!(all(&b), vec![("a".into(), "1".into())]);
            assert!(std::fs::metadata(&first).unwrap().len() + 3 < len, "cut");
            put(&b, "c", "3");
            b.flush().unwrap();
            put(&b, "d", "4");
        }
        // Damage "c", which a flush made durable: that is corruption, not
        // a torn write, and opening refuses.
        let second = file_paths(dir.path())[1].clone();
        let f = OpenOptions::new().write(true).open(&second).unwrap();
        f.write_all_at(b"\xff", HEADER as u64 + 2).unwrap();
        match LogBackend::open(dir.path()) {
            Err(Error::Corrupt(m)) => assert!(m.contains("bad batch"), "{m}"),
            other => panic!("opened a corrupt log: {other:?}"),
        }
    }

    #[test]
    fn a_gap_before_later_writes_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = LogBackend::open_with(dir.path(), 64, GC_MIN_BYTES, false).unwrap();
            put(&b, "a", "1");
            b.flush().unwrap();
            // Unsynced: "b" fills the first file (64 bytes here), "c" goes
            // to the next.
            put(&b, "b", "x".repeat(80).as_str());
            put(&b, "c", "3");
        }
        let files = file_paths(dir.path());
        assert_eq!(files.len(), 2, "{files:?}");
        // The kernel wrote back the second file but not the end of the
        // first: "c" must not survive without "b".
        let len = std::fs::metadata(&files[0]).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&files[0])
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        let b = LogBackend::open_with(dir.path(), 64, GC_MIN_BYTES, false).unwrap();
        assert_eq!(all(&b), vec![("a".into(), "1".into())]);
        assert!(!files[1].exists());
    }

    #[test]
    fn garbage_is_reclaimed_from_the_oldest_file() {
        let dir = tempfile::tempdir().unwrap();
        let value = "v".repeat(100);
        {
            let b = LogBackend::open_with(dir.path(), 4096, 8192, false).unwrap();
            // A key that lives through every rewrite, one deleted, and many
            // overwritten.
            put(&b, "keep", "k");
            put(&b, "gone", "g");
            for round in 0..20 {
                for i in 0..10 {
                    put(&b, &format!("k{i}"), &format!("{round}{value}"));
                }
            }
            del(&b, "gone");
            let files = b.files();
            let (live, total) = b.usage();
            assert!(total > 2 * live, "{live} {total}");
            while b.collect_garbage().unwrap() {}
            let (live2, total2) = b.usage();
            assert_eq!(live2, live, "live bytes stay");
            assert!(total2 < total && b.files() < files, "{total2} {total}");
            assert!(total2 <= 2 * live2 || total2 - live2 < 8192);
            assert_eq!(b.get(b"keep").unwrap(), Some(b"k".to_vec()));
            assert_eq!(b.get(b"gone").unwrap(), None);
            for i in 0..10 {
                assert_eq!(
                    b.get(format!("k{i}").as_bytes()).unwrap(),
                    Some(format!("19{value}").into_bytes())
                );
            }
            b.flush().unwrap();
        }
        let b = LogBackend::open_with(dir.path(), 4096, 8192, false).unwrap();
        let got = all(&b);
        assert_eq!(got.len(), 11);
        assert_eq!(got[0], ("k0".into(), format!("19{value}")));
        assert_eq!(got[10], ("keep".into(), "k".into()));
        assert_eq!(b.get(b"gone").unwrap(), None);
    }

    #[test]
    fn defragmenting_leaves_only_live_values() {
        let dir = tempfile::tempdir().unwrap();
        let value = "v".repeat(100);
        {
            // Thresholds so high that only a defragmentation reclaims.
            let b = LogBackend::open_with(dir.path(), 1024, u64::MAX, false).unwrap();
            put(&b, "keep", "k");
            for round in 0..10 {
                for i in 0..5 {
                    put(&b, &format!("k{i}"), &format!("{round}{value}"));
                }
            }
            del(&b, "k4");
            assert!(!b.collect_garbage().unwrap());
            let (live, total) = b.usage();
            assert!(total > 4 * live, "{live} {total}");
            b.defragment().unwrap();
            let (live2, total2) = b.usage();
            assert_eq!(live2, live);
            // Only batch headers are left beside the live records.
            assert!(total2 < live2 + 64, "{live2} {total2}");
            assert_eq!(b.get(b"k4").unwrap(), None);
            assert_eq!(b.get(b"keep").unwrap(), Some(b"k".to_vec()));
            b.flush().unwrap();
        }
        let b = LogBackend::open(dir.path()).unwrap();
        let got = all(&b);
        assert_eq!(got.len(), 5);
        assert_eq!(got[0], ("k0".into(), format!("9{value}")));
        assert_eq!(b.get(b"k4").unwrap(), None);
    }

    #[test]
    fn readers_see_whole_values_while_writes_and_rewrites_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let b = LogBackend::open_with(dir.path(), 8192, 16384, true).unwrap();
        for i in 0..50 {
            put(&b, &format!("k{i:02}"), &format!("{i:02}-0"));
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (b, stop) = (b.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for (k, v) in all(&b) {
                        // Each value names its key: never a torn or wrong read.
                        assert_eq!(&v[..2], &k[1..], "{k} {v}");
                        reads += 1;
                    }
                }
                reads
            })
        };
        for round in 1..200 {
            b.begin_group();
            for i in (round % 5..50).step_by(5) {
                put(&b, &format!("k{i:02}"), &format!("{i:02}-{round}"));
            }
            b.end_group().unwrap();
            let _ = b.collect_garbage().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        assert_eq!(all(&b).len(), 50);
    }
}
