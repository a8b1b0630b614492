//! Backups: the file `etcdctl snapshot save` writes from the Maintenance
//! `Snapshot` stream, and `keel snapshot restore`, which builds a data dir
//! for a new cluster from it.
//!
//! The file is a store image (`mvcc::Store::write_image`: every key, the
//! history above the compaction point, the compaction point, leases) padded
//! with zeros to a multiple of 512 bytes and followed by the SHA-256 of all
//! of that: etcd's rule for a snapshot file, whose restore checks the hash
//! when `size % 512 == 32` (so the file is also accepted by etcd's length and
//! checksum check, though its content is keel's, not a bbolt database).
//!
//! The image is first written to a temporary file beside the data (so the
//! stream knows its size and the member's memory stays bounded), then sent in
//! 1 MiB blobs with the bytes remaining after each, as etcd sends them.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::mvcc::{verify_image, ImageSummary, Store};

/// A snapshot file's body is a multiple of this, then the hash.
const PAGE: u64 = 512;
const HASH_LEN: u64 = 32;
/// Bytes per streamed message.
pub const BLOB: usize = 1024 * 1024;

/// Writes a backup of `store` to `path` (created, synced). Returns its size.
pub fn write_backup(store: &Store, path: &Path) -> Result<u64> {
    struct Hashing {
        file: std::io::BufWriter<File>,
        sha: Sha256,
    }
    impl Write for Hashing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.file.write(buf)?;
            self.sha.update(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.file.flush()
        }
    }
    let mut out = Hashing {
        file: std::io::BufWriter::with_capacity(256 * 1024, File::create(path)?),
        sha: Sha256::new(),
    };
    let summary = store.write_image(&mut out)?;
    let pad = (PAGE - summary.bytes % PAGE) % PAGE;
    out.write_all(&vec![0u8; pad as usize])?;
    let hash = out.sha.finalize();
    out.file.write_all(&hash)?;
    let file = out
        .file
        .into_inner()
        .map_err(|e| Error::Io(e.into_error()))?;
    file.sync_all()?;
    Ok(summary.bytes + pad + HASH_LEN)
}

/// Checks a backup file: its SHA-256 when it has one (unless `skip_hash`),
/// then the image inside. Returns what the image holds.
pub fn verify_backup(path: &Path, skip_hash: bool) -> Result<ImageSummary> {
    let mut f = File::open(path)?;
    let size = f.metadata()?.len();
    let has_hash = size % PAGE == HASH_LEN;
    if has_hash && !skip_hash {
        let body = size - HASH_LEN;
        let mut sha = Sha256::new();
        let mut left = body;
        let mut buf = vec![0u8; 256 * 1024];
        while left > 0 {
            let n = (left as usize).min(buf.len());
            f.read_exact(&mut buf[..n])?;
            sha.update(&buf[..n]);
            left -= n as u64;
        }
        let mut want = [0u8; HASH_LEN as usize];
        f.read_exact(&mut want)?;
        if sha.finalize().as_slice() != want {
            return Err(Error::Corrupt(format!(
                "snapshot file {}: sha256 mismatch",
                path.display()
            )));
        }
        f.seek(SeekFrom::Start(0))?;
    }
    verify_image(&mut f)
}

/// A temporary backup file, removed on drop.
pub struct TempBackup {
    pub path: PathBuf,
    pub size: u64,
}

impl TempBackup {
    /// Writes a backup of `store` into `dir` under a fresh name.
    pub fn create(store: &Store, dir: &Path) -> Result<TempBackup> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = dir.join(format!("backup-{nanos:x}.tmp"));
        let size = match write_backup(store, &path) {
            Ok(n) => n,
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(e);
            }
        };
        Ok(TempBackup { path, size })
    }

    /// Reads the file in blobs of [`BLOB`] bytes, calling `send(blob,
    /// remaining_after_it)` for each; stops early when `send` says false.
    pub fn send_blobs(&self, mut send: impl FnMut(Vec<u8>, u64) -> bool) -> Result<()> {
        let mut f = File::open(&self.path)?;
        let mut left = self.size;
        while left > 0 {
            let n = (left as usize).min(BLOB);
            let mut blob = vec![0u8; n];
            f.read_exact(&mut blob)?;
            left -= n as u64;
            if !send(blob, left) {
                break;
            }
        }
        Ok(())
    }
}

/// The Maintenance `Snapshot` stream: a backup of `store` made in `dir`, sent
/// in blobs with the bytes remaining after each (every message carries
/// `header`). The file is removed once sent or when the client goes away.
pub fn snapshot_stream(
    store: std::sync::Arc<Store>,
    dir: PathBuf,
    header: keel_proto::etcdserverpb::ResponseHeader,
) -> tokio_stream::wrappers::ReceiverStream<
    std::result::Result<keel_proto::etcdserverpb::SnapshotResponse, tonic::Status>,
> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let backup = match TempBackup::create(&store, &dir) {
            Ok(b) => b,
            Err(e) => {
                let _ = tx.blocking_send(Err(e.to_status()));
                return;
            }
        };
        tracing::info!(bytes = backup.size, "sending a snapshot to a client");
        let sent = backup.send_blobs(|blob, remaining| {
            let msg = keel_proto::etcdserverpb::SnapshotResponse {
                header: Some(header),
                remaining_bytes: remaining,
                blob,
            };
            tx.blocking_send(Ok(msg)).is_ok()
        });
        if let Err(e) = sent {
            let _ = tx.blocking_send(Err(e.to_status()));
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

impl Drop for TempBackup {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::MemoryBackend;
    use std::sync::Arc;

    #[test]
    fn backup_round_trip_and_damage() {
        let store = Store::open(Arc::new(MemoryBackend::new())).unwrap();
        for i in 0..100 {
            let mut t = store.write();
            t.put(format!("k{i}").as_bytes(), vec![b'v'; i], 0).unwrap();
            t.end(i as u64 + 1).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let tmp = TempBackup::create(&store, dir.path()).unwrap();
        assert_eq!(tmp.size % PAGE, HASH_LEN);
        assert_eq!(fs::metadata(&tmp.path).unwrap().len(), tmp.size);
        let summary = verify_backup(&tmp.path, false).unwrap();
        assert_eq!(summary.revision, store.current_revision());
        assert_eq!(summary.consistent_index, 100);
        let mut got = Vec::new();
        tmp.send_blobs(|b, left| {
            got.extend(b);
            assert_eq!(left, tmp.size - got.len() as u64);
            true
        })
        .unwrap();
        assert_eq!(got, fs::read(&tmp.path).unwrap());

        // A flipped bit in the body fails the hash; skipping the hash check
        // still fails on the image's own checksum.
        let bad = dir.path().join("bad");
        let mut bytes = got.clone();
        bytes[20] ^= 1;
        fs::write(&bad, &bytes).unwrap();
        let e = verify_backup(&bad, false).unwrap_err();
        assert!(e.to_string().contains("sha256 mismatch"), "{e}");
        assert!(verify_backup(&bad, true).is_err());
        let path = tmp.path.clone();
        drop(tmp);
        assert!(!path.exists());
    }
}
