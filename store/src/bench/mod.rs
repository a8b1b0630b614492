//! `keel bench`: a load generator for any etcd-API endpoint (keel or etcd),
//! after etcd 3.4's `benchmark` tool: the same global flags before the
//! subcommand (`--endpoints --conns --clients --target-leader --precise`), the
//! same workloads and flags, the same request shapes; figures from an HDR
//! histogram, as text or one JSON object (`--json`).
//!
//! Map: [`args`] holds the flags; [`conn`] opens the connections and finds
//! the leader; [`lean`] is the unary client of plain-HTTP connections;
//! [`keys`] makes keys and values; [`limiter`] paces `--rate`; [`run`]
//! drives request workloads, which [`workloads`] defines; [`watch`] drives the
//! stream workloads `watch` and `watch-latency` (its puts through [`run`]);
//! `lease-keepalive` is a request workload whose clients each hold a stream;
//! [`fsync`] measures the disk; [`report`] summarises and prints.

pub mod args;
pub mod conn;
pub mod fsync;
pub mod keys;
pub mod lean;
pub mod limiter;
pub mod report;
pub mod run;
pub mod watch;
pub mod workloads;

use std::io::Write;
use std::sync::Arc;

use anyhow::{ensure, Context};

pub use args::{
    BenchArgs, BenchCmd, Consistency, FsyncArgs, PutArgs, RangeArgs, TxnPutArgs, WatchArgs,
    WatchLatencyArgs,
};
pub use report::{Outcome, Report, RunMeta};

use limiter::Limiter;
use run::{drive, progress_bar, show_progress, Plan};

/// Runs `keel bench` and prints its report on stdout.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    init_tracing();
    let report = if let BenchCmd::Fsync(f) = &args.cmd {
        run_fsync(f, show_progress(args.json))?
    } else {
        // A request workload gets no more workers than clients: a lone
        // client's request and reply then never cross between threads (a
        // futex wake each way, about 7% of put 1/1; docs/benchmarks.md,
        // "Coalescing writes"). The watch workloads keep one per core.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = match args.cmd {
            BenchCmd::Watch(_) | BenchCmd::WatchLatency(_) => cores,
            _ => args.clients.clamp(1, cores),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .thread_name("keel-bench")
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(run_async(&args))?
    };
    let text = if args.json {
        report.to_json() + "\n"
    } else {
        report.to_text(args.precise)
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // A reader that went away (`| head`) is not a failure of the run.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing the report"),
    }
}

/// Runs the workload of `args` and returns its report (no printing).
pub async fn run_async(args: &BenchArgs) -> anyhow::Result<Report> {
    let show = show_progress(args.json);
    if let BenchCmd::Fsync(f) = &args.cmd {
        let f = f.clone();
        return tokio::task::spawn_blocking(move || run_fsync(&f, show)).await?;
    }
    ensure!(args.conns >= 1, "--conns must be at least 1");
    ensure!(args.clients >= 1, "--clients must be at least 1");
    let dial = conn::Dial {
        timeout: args.dial_timeout,
        tls: args.tls()?,
    };
    let mut urls = args
        .endpoints
        .iter()
        .map(|e| conn::endpoint_url(e, dial.tls.as_ref()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.target_leader {
        match conn::find_leader(&urls, &dial).await {
            Some(leader) => urls = vec![leader],
            None => {
                tracing::warn!("--target-leader: no endpoint says it leads; using every endpoint")
            }
        }
    }
    let token = conn::Token::for_user(args.user.as_deref(), &urls[0], &dial).await?;
    // Only the unary workloads get the lean client; the watch workloads'
    // connections carry streams (their puts get it in put_conns), and
    // lease-keepalive's carry a stream per client.
    let unary = matches!(
        args.cmd,
        BenchCmd::Put(_) | BenchCmd::Range(_) | BenchCmd::TxnPut(_)
    );
    let conns = conn::connect(
        &urls,
        args.conns,
        &dial,
        &token,
        !args.tonic_client && unary,
    )
    .await?;
    let channels: Vec<conn::BenchChannel> = conns.iter().map(|c| c.channel.clone()).collect();
    let meta = RunMeta {
        endpoints: urls,
        conns: conns.len(),
        clients: args.clients,
    };
    let plan = |total: u64, rate: u64| Plan {
        total,
        clients: args.clients,
        limiter: Limiter::new(rate),
    };
    let (outcome, params, watch) = match &args.cmd {
        BenchCmd::Put(p) => {
            let w = Arc::new(workloads::Put::new(p)?);
            let compactor = (!p.compact_interval.is_zero()).then(|| {
                workloads::spawn_compactor(
                    channels[0].clone(),
                    p.compact_interval,
                    p.compact_index_delta,
                )
            });
            let o = drive(
                w,
                &conns,
                plan(p.total, p.rate),
                progress_bar(p.total, show),
            )
            .await;
            if let Some(c) = compactor {
                c.abort();
            }
            (o, serde_json::to_value(p)?, None)
        }
        BenchCmd::Range(r) => {
            let w = Arc::new(workloads::Range::new(r));
            let o = drive(
                w,
                &conns,
                plan(r.total, r.rate),
                progress_bar(r.total, show),
            )
            .await;
            (o, serde_json::to_value(r)?, None)
        }
        BenchCmd::TxnPut(t) => {
            let w = Arc::new(workloads::TxnPut::new(t)?);
            let o = drive(
                w,
                &conns,
                plan(t.total, t.rate),
                progress_bar(t.total, show),
            )
            .await;
            (o, serde_json::to_value(t)?, None)
        }
        BenchCmd::Watch(w) => {
            let put_conns = put_conns(w, &conns, &meta.endpoints, args, &token).await?;
            let bar = progress_bar(w.put_total, show);
            let (o, stats) = watch::run(w, &channels, &put_conns, args.clients, bar).await?;
            (o, serde_json::to_value(w)?, Some(stats))
        }
        BenchCmd::WatchLatency(l) => {
            let w = WatchArgs::from(l);
            let put_conns = put_conns(&w, &conns, &meta.endpoints, args, &token).await?;
            let bar = progress_bar(w.put_total, show);
            let (o, stats) = watch::run(&w, &channels, &put_conns, 1, bar).await?;
            (o, serde_json::to_value(l)?, Some(stats))
        }
        BenchCmd::LeaseKeepalive(l) => {
            let w = Arc::new(workloads::LeaseKeepalive::new(l));
            let o = drive(w, &conns, plan(l.total, 0), progress_bar(l.total, show)).await;
            (o, serde_json::to_value(l)?, None)
        }
        BenchCmd::Fsync(_) => unreachable!("handled above"),
    };
    let mut report = Report::new(args.cmd.name(), &outcome, meta, params);
    report.watch = watch;
    Ok(report)
}

/// The connections `watch` puts over: the streams' own with `--shared-conns`
/// (through tonic, so on the streams' HTTP/2 connections), else one more
/// connection (etcd's tool puts over a connection of its own).
async fn put_conns(
    w: &WatchArgs,
    streams: &[conn::Conn],
    urls: &[String],
    args: &BenchArgs,
    token: &conn::Token,
) -> anyhow::Result<Vec<conn::Conn>> {
    if w.shared_conns {
        Ok(streams.to_vec())
    } else {
        let dial = conn::Dial {
            timeout: args.dial_timeout,
            tls: args.tls()?,
        };
        conn::connect(urls, 1, &dial, token, !args.tonic_client).await
    }
}

/// `fsync`, which needs no endpoint.
fn run_fsync(f: &FsyncArgs, show: bool) -> anyhow::Result<Report> {
    let outcome = fsync::run(f, progress_bar(f.count, show))?;
    let meta = RunMeta {
        endpoints: Vec::new(),
        conns: 0,
        clients: 1,
    };
    Ok(Report::new(
        "fsync",
        &outcome,
        meta,
        serde_json::to_value(f)?,
    ))
}

/// Diagnostics on stderr, `warn` and above unless RUST_LOG says otherwise; a
/// subscriber already installed (by an embedding program) is kept.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
