//! Images: the whole replicated state of a store as one byte stream, for Raft
//! snapshots (catching up a member) and for backups (`snapshot save`).
//!
//! Format (keel's own): the magic `KEELIMG1`, then frames. A record frame is
//! the tag `1`, a big-endian `u32` key length, the key, a `u32` value length
//! and the value: one backend pair, either a history record (revision
//! keyspace) or a record outside it (leases, members: first byte in
//! `0x80..0xff`). The end frame is the tag `2`, then the consistent index
//! (`u64`), the revision (`i64`), the compact revision (`i64`), the number of
//! records (`u64`) and a CRC-32 (IEEE) of every byte before it. Bytes after
//! the end frame are ignored (a backup file pads and appends a checksum).
//!
//! Consistency without stopping writes: the records outside the revision
//! keyspace, the consistent index and the current revision `R` are read
//! together under the store's writer lock (every write transaction holds it),
//! which is short. History records are immutable, so the records at or below
//! `R` are then streamed without the lock while writes go on. A compaction
//! may delete some of them meanwhile; the compact revision is read again
//! after the scan and the image carries that one, so the installing member
//! sees the deleted records as compacted away (and deletes any leftovers
//! below it, as after an interrupted compaction). A compaction above `R`
//! during the scan could have removed a record the image needs: the image is
//! then refused ([`Error::Unavailable`]) and the caller tries again.
//!
//! Installing replaces the backend's whole content under the writer lock and
//! rebuilds the in-memory index. It is not atomic on its own: the caller
//! (`crate::snapshot`) keeps a marker until the install is durable and redoes
//! it after a crash.

use std::io::{self, Read, Write};

use super::backend::Batch;
use super::encoding;
use super::store::Store;
use super::Revision;
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"KEELIMG1";
const TAG_RECORD: u8 = 1;
const TAG_END: u8 = 2;
/// Backend pairs written per batch while installing.
const INSTALL_BATCH: usize = 10_000;
/// Largest key or value accepted in an image (sanity bound, far above any
/// request limit).
const MAX_FIELD: u32 = 256 * 1024 * 1024;

/// What an image holds, from its end frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImageSummary {
    /// The Raft index of the last entry reflected in the image.
    pub consistent_index: u64,
    /// The store's revision in the image.
    pub revision: i64,
    pub compact_revision: i64,
    /// Backend pairs in the image.
    pub records: u64,
    /// Length of the image in bytes, end frame included.
    pub bytes: u64,
}

/// A writer that counts and checksums what passes through it.
struct Summing<W> {
    inner: W,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<W: Write> Write for Summing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn write_record(w: &mut impl Write, key: &[u8], value: &[u8]) -> Result<()> {
    w.write_all(&[TAG_RECORD])?;
    w.write_all(&(key.len() as u32).to_be_bytes())?;
    w.write_all(key)?;
    w.write_all(&(value.len() as u32).to_be_bytes())?;
    w.write_all(value)?;
    Ok(())
}

impl Store {
    /// Writes an image of the store to `out` (see the module docs for why it
    /// is consistent while writes go on). Blocking: run it off async threads.
    pub fn write_image(&self, out: &mut dyn Write) -> Result<ImageSummary> {
        let (consistent_index, revision, extra) = {
            let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            let state = self.read_state();
            let extra: Vec<(Vec<u8>, Vec<u8>)> = self
                .backend
                .scan(encoding::REVISIONS_END, &[0xff])
                .collect::<Result<_>>()?;
            (state.consistent_index, state.current_rev, extra)
        };
        let mut w = Summing {
            inner: io::BufWriter::with_capacity(256 * 1024, out),
            crc: crc32fast::Hasher::new(),
            bytes: 0,
        };
        w.write_all(MAGIC)?;
        let mut records = 0u64;
        for (k, v) in &extra {
            write_record(&mut w, k, v)?;
            records += 1;
        }
        let end = Revision {
            main: revision + 1,
            sub: 0,
        }
        .to_key(false);
        for item in self.backend.scan(&[], &end) {
            let (k, v) = item?;
            write_record(&mut w, &k, &v)?;
            records += 1;
        }
        let compact_revision = self.compact_revision();
        if compact_revision > revision {
            return Err(Error::Unavailable(format!(
                "mvcc: compacted at {compact_revision} while imaging revision {revision}; try again"
            )));
        }
        w.write_all(&[TAG_END])?;
        w.write_all(&consistent_index.to_be_bytes())?;
        w.write_all(&revision.to_be_bytes())?;
        w.write_all(&compact_revision.to_be_bytes())?;
        w.write_all(&records.to_be_bytes())?;
        let crc = w.crc.clone().finalize();
        w.inner.write_all(&crc.to_be_bytes())?;
        w.inner.flush()?;
        let summary = ImageSummary {
            consistent_index,
            revision,
            compact_revision,
            records,
            bytes: w.bytes + 4,
        };
        tracing::debug!(?summary, "mvcc: image written");
        Ok(summary)
    }

    /// Replaces the whole content of the store with the image read from
    /// `input`, then rebuilds the in-memory state. Readers and writers wait
    /// meanwhile. Check the image with [`verify_image`] first: a damaged
    /// image found halfway leaves the backend half replaced.
    pub fn install_image(&self, input: &mut dyn Read) -> Result<ImageSummary> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        // A background compaction must not delete what the image brings.
        self.wait_compacted();
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        // The old records go a batch at a time (memory stays bounded
        // whatever the store's size), each scan starting after the last key
        // deleted.
        let mut from: Vec<u8> = Vec::new();
        loop {
            let mut old = Batch::with_capacity(INSTALL_BATCH);
            let mut last = None;
            for item in self.backend.scan(&from, &[]).take(INSTALL_BATCH) {
                let (k, _) = item?;
                last = Some(k.clone());
                old.delete(k);
            }
            let Some(mut last) = last else { break };
            self.backend.apply(old)?;
            last.push(0);
            from = last;
        }
        let mut batch = Batch::with_capacity(INSTALL_BATCH);
        let summary = read_frames(input, &mut |k, v| {
            batch.put(k, v);
            if batch.len() >= INSTALL_BATCH {
                self.backend.apply(std::mem::take(&mut batch))?;
            }
            Ok(())
        })?;
        batch.put(
            encoding::META_CONSISTENT_INDEX.to_vec(),
            encoding::encode_u64(summary.consistent_index).to_vec(),
        );
        batch.put(
            encoding::META_COMPACT_REVISION.to_vec(),
            encoding::encode_u64(summary.compact_revision as u64).to_vec(),
        );
        self.backend.apply(batch)?;
        self.reload(&mut state)?;
        tracing::info!(
            revision = state.current_rev,
            consistent_index = state.consistent_index,
            records = summary.records,
            "mvcc: image installed"
        );
        Ok(summary)
    }
}

/// Reads a whole image and checks its framing and checksum without keeping
/// anything.
pub fn verify_image(input: &mut dyn Read) -> Result<ImageSummary> {
    read_frames(input, &mut |_, _| Ok(()))
}

/// Reads frames, handing each record to `each`, up to and including the end
/// frame; checks the checksum.
fn read_frames(
    input: &mut dyn Read,
    each: &mut dyn FnMut(Vec<u8>, Vec<u8>) -> Result<()>,
) -> Result<ImageSummary> {
    struct Hashing<'a> {
        inner: io::BufReader<&'a mut dyn Read>,
        crc: crc32fast::Hasher,
        bytes: u64,
    }
    impl Hashing<'_> {
        fn exact(&mut self, buf: &mut [u8]) -> Result<()> {
            self.inner.read_exact(buf).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    corrupt("image ends early")
                } else {
                    Error::Io(e)
                }
            })?;
            self.crc.update(buf);
            self.bytes += buf.len() as u64;
            Ok(())
        }
        fn u32(&mut self) -> Result<u32> {
            let mut b = [0u8; 4];
            self.exact(&mut b)?;
            Ok(u32::from_be_bytes(b))
        }
        fn u64(&mut self) -> Result<u64> {
            let mut b = [0u8; 8];
            self.exact(&mut b)?;
            Ok(u64::from_be_bytes(b))
        }
        fn field(&mut self) -> Result<Vec<u8>> {
            let n = self.u32()?;
            if n > MAX_FIELD {
                return Err(corrupt("image field too long"));
            }
            let mut v = vec![0u8; n as usize];
            self.exact(&mut v)?;
            Ok(v)
        }
    }
    let mut r = Hashing {
        inner: io::BufReader::with_capacity(256 * 1024, input),
        crc: crc32fast::Hasher::new(),
        bytes: 0,
    };
    let mut magic = [0u8; 8];
    r.exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(corrupt("not a keel image (bad magic)"));
    }
    let mut records = 0u64;
    loop {
        let mut tag = [0u8; 1];
        r.exact(&mut tag)?;
        match tag[0] {
            TAG_RECORD => {
                let k = r.field()?;
                let v = r.field()?;
                each(k, v)?;
                records += 1;
            }
            TAG_END => {
                let consistent_index = r.u64()?;
                let revision = r.u64()? as i64;
                let compact_revision = r.u64()? as i64;
                let count = r.u64()?;
                let want = r.crc.clone().finalize();
                let mut b = [0u8; 4];
                r.inner
                    .read_exact(&mut b)
                    .map_err(|_| corrupt("image ends early"))?;
                if u32::from_be_bytes(b) != want {
                    return Err(corrupt("image checksum mismatch"));
                }
                if count != records {
                    return Err(corrupt("image record count mismatch"));
                }
                return Ok(ImageSummary {
                    consistent_index,
                    revision,
                    compact_revision,
                    records,
                    bytes: r.bytes + 4,
                });
            }
            other => return Err(corrupt(&format!("unknown image frame {other}"))),
        }
    }
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt(format!("snapshot image: {what}"))
}
