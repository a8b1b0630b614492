//! Raft snapshots on disk: where a received snapshot waits, how it is
//! installed, and how an interrupted install is finished.
//!
//! keel follows etcd's shape. Truncating the Raft log needs no copy of the
//! state: the state machine's writes are in sled, flushed in the background,
//! so the log is simply compacted up to what a flush covered (keeping the last
//! `--experimental-snapshot-catchup-entries` entries for slow followers) and
//! the raft-rs snapshot is only metadata (index, term, conf state). When a
//! follower needs a snapshot, the leader answers raft-rs with that metadata
//! at its applied index and the peer transport streams an *image* of the
//! current state (`mvcc::Store::write_image`) beside the Raft message. The
//! image may be a little newer than the metadata: it records its own
//! consistent index, and apply skips entries at or below it.
//!
//! Receiving (`transport::PeerService::snapshot`): chunks are written to
//! `snap/<term>-<index>.part` (bounded memory), checked, synced and renamed
//! to `.snap`; only then is the Raft message stepped. Installing (the driver,
//! when raft-rs hands the snapshot in a `Ready`):
//!
//! 1. write the marker `snap/installing` (the encoded metadata), synced;
//! 2. replace the state machine's content with the image;
//! 3. install the metadata in the Raft log storage; flush sled, then sync the
//!    Raft WAL (`RaftStorage::checkpoint`);
//! 4. remove the marker and every older snapshot file.
//!
//! A crash anywhere before 4 leaves the marker: on start, [`recover`] redoes
//! 2 and 3 from the same file, so the member restarts in the installed state.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{Snapshot, SnapshotMetadata};

use crate::error::{Error, Result};
use crate::raftlog::RaftStorage;

const MARKER: &str = "installing";

/// The directory holding received snapshots (`<data-dir>/member/snap`).
#[derive(Debug, Clone)]
pub struct SnapDir {
    path: PathBuf,
}

impl SnapDir {
    /// Opens (creating) the directory and drops unfinished downloads and
    /// backups a crash left behind.
    pub fn open(path: PathBuf) -> Result<SnapDir> {
        fs::create_dir_all(&path)?;
        for entry in fs::read_dir(&path)? {
            let p = entry?.path();
            if p.extension().is_some_and(|e| e == "part" || e == "tmp") {
                let _ = fs::remove_file(&p);
            }
        }
        Ok(SnapDir { path })
    }

    /// The directory itself (also where temporary backups are written).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the image of the snapshot at `(term, index)` is kept.
    pub fn image_path(&self, term: u64, index: u64) -> PathBuf {
        self.path.join(format!("{term:016x}-{index:016x}.snap"))
    }

    /// Where it is written while it arrives.
    pub fn part_path(&self, term: u64, index: u64) -> PathBuf {
        self.path.join(format!("{term:016x}-{index:016x}.part"))
    }

    fn marker(&self) -> PathBuf {
        self.path.join(MARKER)
    }

    /// Makes a fully received `.part` file the image of its snapshot:
    /// synced, renamed, directory synced.
    pub fn commit_part(&self, term: u64, index: u64) -> Result<PathBuf> {
        let part = self.part_path(term, index);
        fs::File::open(&part)?.sync_all()?;
        let done = self.image_path(term, index);
        fs::rename(&part, &done)?;
        sync_dir(&self.path)?;
        Ok(done)
    }

    /// Removes every image but `keep`.
    fn remove_others(&self, keep: &Path) {
        if let Ok(entries) = fs::read_dir(&self.path) {
            for entry in entries.flatten() {
                let p = entry.path();
                if p != keep && p.extension().is_some_and(|e| e == "snap") {
                    let _ = fs::remove_file(&p);
                }
            }
        }
    }
}

fn sync_dir(path: &Path) -> Result<()> {
    fs::File::open(path)?.sync_all()?;
    Ok(())
}

/// Installs the snapshot raft-rs handed over: `restore` replaces the state
/// machine from the image file, then the Raft log storage takes the metadata.
/// Durable when this returns.
pub fn install(
    dir: &SnapDir,
    snap: &Snapshot,
    storage: &RaftStorage,
    restore: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let meta = snap.get_metadata();
    let image = dir.image_path(meta.term, meta.index);
    if !image.exists() {
        return Err(Error::Corrupt(format!(
            "raft snapshot at index {} has no image at {}",
            meta.index,
            image.display()
        )));
    }
    let marker = dir.marker();
    {
        let mut f = fs::File::create(&marker)?;
        f.write_all(&meta.write_to_bytes().map_err(raft::Error::from)?)?;
        f.sync_all()?;
    }
    sync_dir(&dir.path)?;
    finish(dir, meta, &image, storage, restore)
}

/// Finishes an install a crash interrupted, if the marker says there was one.
/// Returns whether it did.
pub fn recover(
    dir: &SnapDir,
    storage: &RaftStorage,
    restore: impl FnOnce(&Path) -> Result<()>,
) -> Result<bool> {
    let marker = dir.marker();
    let bytes = match fs::read(&marker) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let meta = SnapshotMetadata::parse_from_bytes(&bytes)
        .map_err(|e| Error::Corrupt(format!("snapshot install marker: {e}")))?;
    let image = dir.image_path(meta.term, meta.index);
    tracing::warn!(
        index = meta.index,
        term = meta.term,
        "finishing a snapshot install interrupted by a crash"
    );
    finish(dir, &meta, &image, storage, restore)?;
    Ok(true)
}

fn finish(
    dir: &SnapDir,
    meta: &SnapshotMetadata,
    image: &Path,
    storage: &RaftStorage,
    restore: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    restore(image)?;
    if meta.index >= storage.first_index() {
        let mut snap = Snapshot::default();
        snap.set_metadata(meta.clone());
        storage.apply_snapshot(&snap)?;
    }
    storage.checkpoint()?;
    fs::remove_file(dir.marker())?;
    sync_dir(&dir.path)?;
    dir.remove_others(image);
    tracing::info!(index = meta.index, term = meta.term, "snapshot installed");
    Ok(())
}
