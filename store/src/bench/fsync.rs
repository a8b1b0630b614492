//! `fsync`: the disk's fdatasync latency, the floor under every durable write.
//! A scratch file in `--path` is first filled and synced (so that, as with a
//! preallocated WAL, later syncs carry data only), then `--count` times a block
//! of `--block-size` bytes is written in place and `File::sync_data` (fdatasync
//! on Linux) is timed. The scratch file is removed afterwards.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Context};
use indicatif::ProgressBar;
use rand::SeedableRng;

use super::args::FsyncArgs;
use super::keys::random_bytes;
use super::report::Outcome;
use super::run::micros;

/// Removes the scratch file when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            tracing::warn!("removing {}: {e}", self.0.display());
        }
    }
}

/// Measures `args.count` write + fdatasync rounds; latencies are of fdatasync.
pub fn run(args: &FsyncArgs, progress: ProgressBar) -> anyhow::Result<Outcome> {
    ensure!(args.count >= 1, "--count must be at least 1");
    ensure!(args.block_size >= 1, "--block-size must be at least 1");
    let path = args
        .path
        .join(format!(".keel-bench-fsync-{}", std::process::id()));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let scratch = Scratch(path);
    preallocate(&mut file, args.count * args.block_size as u64)
        .with_context(|| format!("filling {}", scratch.0.display()))?;
    let block = random_bytes(args.block_size, &mut rand::rngs::StdRng::from_entropy());
    let mut outcome = Outcome::new();
    let start = Instant::now();
    for i in 0..args.count {
        file.seek(SeekFrom::Start(i * args.block_size as u64))?;
        file.write_all(&block)?;
        let t = Instant::now();
        file.sync_data().context("fdatasync")?;
        outcome.hist.saturating_record(micros(t.elapsed()));
        progress.inc(1);
    }
    outcome.elapsed = start.elapsed();
    progress.finish_and_clear();
    drop(scratch);
    Ok(outcome)
}

/// Bytes per write when zero-filling: one page. The page cache sizes a
/// folio by the write that creates it (ext4 has large folios since Linux
/// 6.x), and a folio is written back whole: after a fill in 1 MiB writes,
/// every later `fdatasync` of a 460-byte WAL record wrote 1 MiB to the disk
/// (`write_bytes` in /proc/PID/io), where etcd's WAL, preallocated with
/// `fallocate`, writes a page or two.
const FILL_CHUNK: usize = 4096;

/// Writes `len` zero bytes and syncs them, data and metadata (also how the
/// Raft WAL prepares its segments), a page per write (see [`FILL_CHUNK`]).
pub(crate) fn preallocate(file: &mut File, len: u64) -> std::io::Result<()> {
    let chunk = [0u8; FILL_CHUNK];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let args = FsyncArgs {
            path: dir.path().to_path_buf(),
            count: 5,
            block_size: 4096,
        };
        let o = run(&args, ProgressBar::hidden()).unwrap();
        assert_eq!(o.hist.len(), 5);
        assert!(o.errors.is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "scratch file removed"
        );
    }

    #[test]
    fn missing_dir_is_an_error() {
        let args = FsyncArgs {
            path: "/nonexistent/keel-bench".into(),
            count: 1,
            block_size: 4096,
        };
        assert!(run(&args, ProgressBar::hidden()).is_err());
    }
}
