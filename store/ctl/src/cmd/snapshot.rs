//! `snapshot save|status|restore`: etcdctl's snapshot commands.
//!
//! `save` streams the member's backup into `<file>.part`, syncs it and
//! renames it, as etcdctl. `status` and `restore` read keel's backup files
//! with keel-store's own code (`backup::verify_backup`,
//! `server::restore`); a file written by etcd (a bbolt database) is not
//! something keel can restore, and is refused by the check.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::error::{CtlError, ExitCode, Result};
use crate::global::{go_bool, Ctx};
use crate::outln;
use crate::output::DbStatus;

/// Manages etcd node snapshots
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub cmd: SnapshotCmd,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SnapshotCmd {
    /// Stores an etcd node backend snapshot to a given file
    Save {
        /// <filename>
        args: Vec<String>,
    },
    /// Restores an etcd member snapshot to an etcd directory
    Restore(RestoreArgs),
    /// Gets backend snapshot status of a given file
    Status {
        /// <filename>
        args: Vec<String>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// Path to the data directory
    #[arg(long, default_value = "")]
    pub data_dir: String,
    /// Path to the WAL directory (use --data-dir if none given)
    #[arg(long, default_value = "")]
    pub wal_dir: String,
    /// Initial cluster configuration for restore bootstrap
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Human-readable name for this member
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Ignore snapshot integrity hash value (required if copied from data directory)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub skip_hash_check: bool,
    /// <filename>
    pub args: Vec<String>,
}

pub async fn run(ctx: &Ctx, a: SnapshotArgs) -> Result<()> {
    match a.cmd {
        SnapshotCmd::Save { args } => save(ctx, args).await,
        SnapshotCmd::Status { args } => {
            if args.len() != 1 {
                return Err(CtlError::bad_args(
                    "snapshot status requires exactly one argument",
                ));
            }
            let p = ctx.printer()?;
            let s = status(Path::new(&args[0]))?;
            p.db_status(&s)
        }
        SnapshotCmd::Restore(r) => restore(r),
    }
}

async fn save(ctx: &Ctx, args: Vec<String>) -> Result<()> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("snapshot save expects one argument"));
    }
    ctx.check_config()?;
    if ctx.g.endpoints.len() != 1 {
        return Err(CtlError::bad_args(format!(
            "snapshot must be requested to one selected node, not multiple [{}]",
            ctx.g.endpoints.join(" ")
        )));
    }
    let c = ctx.client()?;
    let path = PathBuf::from(&args[0]);
    let part = PathBuf::from(format!("{}.part", args[0]));
    let interrupted = |e: String| CtlError::new(ExitCode::Interrupted, e);
    let result = async {
        let mut f = std::fs::File::create(&part).map_err(|e| interrupted(e.to_string()))?;
        let mut stream = c
            .snapshot()
            .await
            .map_err(|e| interrupted(CtlError::from(e).msg))?;
        while let Some(msg) = stream
            .message()
            .await
            .map_err(|e| interrupted(CtlError::from(e).msg))?
        {
            f.write_all(&msg.blob)
                .map_err(|e| interrupted(e.to_string()))?;
        }
        f.sync_all().map_err(|e| interrupted(e.to_string()))?;
        std::fs::rename(&part, &path).map_err(|e| {
            interrupted(format!(
                "could not rename {} to {} ({e})",
                part.display(),
                path.display()
            ))
        })
    }
    .await;
    let _ = std::fs::remove_file(&part);
    result?;
    outln!("Snapshot saved at {}", path.display());
    Ok(())
}

/// A keel backup file's status: the image's revision and record count, the
/// file's size and its CRC-32 (IEEE).
pub fn status(path: &Path) -> Result<DbStatus> {
    let s = keel_store::backup::verify_backup(path, false)
        .map_err(|e| CtlError::error(e.to_string()))?;
    let bytes = std::fs::read(path).map_err(|e| CtlError::error(e.to_string()))?;
    Ok(DbStatus {
        hash: crc32fast::hash(&bytes),
        revision: s.revision,
        total_key: s.records,
        total_size: bytes.len() as u64,
    })
}

#[derive(Parser)]
#[command(no_binary_name = true)]
struct StoreFlagsOnly {
    #[command(flatten)]
    flags: keel_store::config::StoreFlags,
}

fn restore(r: RestoreArgs) -> Result<()> {
    if r.args.len() != 1 {
        return Err(CtlError::bad_args(
            "snapshot restore requires exactly one argument",
        ));
    }
    let data_dir = if r.data_dir.is_empty() {
        format!("{}.etcd", r.name)
    } else {
        r.data_dir.clone()
    };
    let flags = StoreFlagsOnly::try_parse_from([
        "--name",
        &r.name,
        "--data-dir",
        &data_dir,
        "--initial-cluster",
        &r.initial_cluster,
        "--initial-cluster-token",
        &r.initial_cluster_token,
        "--initial-advertise-peer-urls",
        &r.initial_advertise_peer_urls,
    ])
    .map_err(|e| CtlError::error(e.to_string()))?;
    let cfg = flags
        .flags
        .into_config()
        .map_err(|e| CtlError::error(e.to_string()))?;
    keel_store::server::restore(&cfg, Path::new(&r.args[0]), r.skip_hash_check)
        .map_err(|e| CtlError::error(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: SnapshotArgs,
    }

    #[test]
    fn parses_as_etcdctl() {
        let t = T::try_parse_from(["snapshot", "save", "x.db"]).unwrap();
        assert!(matches!(t.a.cmd, SnapshotCmd::Save { ref args } if args == &["x.db"]));
        let t = T::try_parse_from([
            "snapshot",
            "restore",
            "x.db",
            "--name=m1",
            "--skip-hash-check",
            "--initial-cluster=m1=http://127.0.0.1:1",
            "--data-dir=/d",
        ])
        .unwrap();
        let SnapshotCmd::Restore(r) = t.a.cmd else {
            panic!()
        };
        assert_eq!((r.name.as_str(), r.data_dir.as_str()), ("m1", "/d"));
        assert!(r.skip_hash_check);
        assert_eq!(r.initial_cluster_token, "etcd-cluster");
        assert_eq!(r.initial_advertise_peer_urls, "http://localhost:2380");
    }

    #[test]
    fn restore_refuses_a_missing_file_and_a_used_dir() {
        let dir = tempfile::tempdir().unwrap();
        let r = |args: Vec<String>| RestoreArgs {
            data_dir: dir.path().join("d").display().to_string(),
            wal_dir: String::new(),
            initial_cluster: "default=http://localhost:2380".into(),
            initial_cluster_token: "etcd-cluster".into(),
            initial_advertise_peer_urls: "http://localhost:2380".into(),
            name: "default".into(),
            skip_hash_check: false,
            args,
        };
        assert_eq!(
            restore(r(vec![])).unwrap_err().msg,
            "snapshot restore requires exactly one argument"
        );
        assert!(restore(r(vec!["/nonexistent".into()])).is_err());
    }
}
