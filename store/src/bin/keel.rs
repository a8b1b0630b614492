//! The `keel` binary: `keel server` (the all-in-one single-member default) and
//! `keel store` (one member of a store cluster, with etcd's flags).

use std::ffi::OsString;

use anyhow::Context;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use keel_store::config::{config_file_args, StoreFlags};
use keel_store::server::Server;

/// mimalloc instead of glibc's malloc: the write path allocates per request
/// (gRPC buffers, protobuf messages, sled nodes) on several threads, and
/// glibc's per-thread arenas kept what was freed (after 300k puts, six 64 MiB
/// arenas, fully resident).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "keel",
    version,
    about = "keel: a Raft-replicated, etcd-compatible key-value store"
)]
#[command(args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// All-in-one: a single-member store on 127.0.0.1:2379 with data in ./keel-data
    /// (the same flags as `keel store`, with that data dir as default).
    Server(StoreFlags),
    /// Run one member of a store cluster (etcd's flags).
    Store(StoreFlags),
    /// Load generator for any etcd-API endpoint (keel or etcd), after etcd's benchmark tool.
    ///
    /// `keel bench [--endpoints E --conns N --clients N ...] put|range|txn-put|watch|watch-latency|fsync`.
    Bench(keel_store::bench::BenchArgs),
    /// Backups: `keel snapshot restore FILE` builds a data dir for a member of a
    /// new cluster from a file `etcdctl snapshot save` wrote from keel.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// A small CA for trying TLS out: `keel cert ca`, then `keel cert issue NAME`.
    #[command(subcommand)]
    Cert(keel_store::tls::certs::CertCmd),
}

#[derive(Subcommand, Debug)]
enum SnapshotCmd {
    /// Restore a snapshot file into a new data dir (etcdctl snapshot restore's flags:
    /// --name, --data-dir, --initial-cluster, --initial-cluster-token,
    /// --initial-advertise-peer-urls, --skip-hash-check).
    Restore(Box<RestoreArgs>),
    /// Check a snapshot file and print what it holds.
    Status {
        /// The snapshot file.
        file: std::path::PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct RestoreArgs {
    /// The snapshot file.
    file: std::path::PathBuf,
    /// Ignore the snapshot's sha256 (needed for a file copied from a data dir).
    #[arg(long)]
    skip_hash_check: bool,
    #[command(flatten)]
    store: StoreFlags,
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let cli = parse_with_config_file(argv)?;
    let (flags, default_dir) = match cli.cmd {
        Cmd::Bench(args) => return keel_store::bench::run(args),
        Cmd::Snapshot(cmd) => return snapshot(cmd),
        Cmd::Cert(cmd) => {
            let done = cmd.run().map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("{done}");
            return Ok(());
        }
        Cmd::Server(f) => (f, Some("keel-data")),
        Cmd::Store(f) => (f, None),
    };
    init_tracing(&flags.log_level);
    let mut flags = flags;
    if flags.data_dir.is_none() {
        if let Some(d) = default_dir {
            flags.data_dir = Some(d.into());
        }
    }
    let cfg = flags.into_config().map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("keel")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let server = Server::new(cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
        server
            .serve(shutdown_signal())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    })
}

/// Parses the command line; with `--config-file`, parses again with the file's
/// keys added for every flag the command line and environment left at default.
fn parse_with_config_file(argv: Vec<OsString>) -> anyhow::Result<Cli> {
    let matches = Cli::command().get_matches_from(argv.clone());
    let (name, sub) = matches.subcommand().context("a subcommand is required")?;
    if name == "bench" || name == "snapshot" || name == "cert" {
        return Cli::from_arg_matches(&matches).map_err(|e| e.exit());
    }
    let Some(path) = sub.get_one::<std::path::PathBuf>("config_file").cloned() else {
        return Cli::from_arg_matches(&matches).map_err(|e| e.exit());
    };
    let pairs = config_file_args(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut extra: Vec<OsString> = Vec::new();
    let known: Vec<String> = Cli::command()
        .find_subcommand("store")
        .map(|c| c.get_arguments().map(|a| a.get_id().to_string()).collect())
        .unwrap_or_default();
    for (key, value) in pairs {
        let id = key.replace('-', "_");
        if !known.contains(&id) {
            anyhow::bail!("--config-file {}: unknown key {key:?}", path.display());
        }
        if from_default(sub, &id) {
            extra.push(format!("--{key}={value}").into());
        }
    }
    let mut argv2 = argv;
    argv2.extend(extra);
    let matches = Cli::command().get_matches_from(argv2);
    Cli::from_arg_matches(&matches).map_err(|e| e.exit())
}

fn snapshot(cmd: SnapshotCmd) -> anyhow::Result<()> {
    match cmd {
        SnapshotCmd::Restore(args) => {
            init_tracing(&args.store.log_level);
            let cfg = args
                .store
                .into_config()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let summary = keel_store::server::restore(&cfg, &args.file, args.skip_hash_check)
                .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
            eprintln!(
                "restored snapshot {} (revision {}, {} records) into {}",
                args.file.display(),
                summary.revision,
                summary.records,
                cfg.data_dir.display()
            );
            Ok(())
        }
        SnapshotCmd::Status { file } => {
            let s = keel_store::backup::verify_backup(&file, false)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            println!(
                "revision: {}\ncompact revision: {}\nraft index: {}\nrecords: {}\nimage bytes: {}",
                s.revision, s.compact_revision, s.consistent_index, s.records, s.bytes
            );
            Ok(())
        }
    }
}

fn from_default(m: &ArgMatches, id: &str) -> bool {
    matches!(
        m.value_source(id),
        None | Some(clap::parser::ValueSource::DefaultValue)
    )
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{level},raft=warn,h2=warn,tower=warn,hyper=warn"
        ))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down");
}
