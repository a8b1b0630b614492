//! The closed-loop driver of request workloads: `--clients` tasks, client `c` on
//! channel `c mod conns`, each with one request in flight; request numbers
//! `0..total` are handed out from one shared counter, paced by the shared
//! `--rate` limiter; every client records its latencies in its own HDR
//! histogram (microseconds) and errors by gRPC code, merged at the end.
//!
//! A request workload says how to send request `i` ([`Workload`]), and may set
//! each client up before the clock starts (every client is set up before any
//! sends) and clean up after it stops; the run's time is from the first client's
//! start to the last one's end. The stream workloads (`watch`,
//! `watch-latency`) have a driver of their own (`super::watch`) and report
//! through the same [`Outcome`](super::report::Outcome).

use std::future::Future;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::{BenchChannel as Channel, Conn};
use super::lean::Lean;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::{
    PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::task::JoinSet;
use tonic::Status;

use super::limiter::Limiter;
use super::report::Outcome;

/// Largest response a client accepts (etcd's client allows 2 GiB).
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// One requester: its KV stub (on a shared connection), its own random
/// numbers, and whatever per-client state its workload prepared.
pub struct Client {
    pub kv: Kv,
    pub rng: StdRng,
    pub channel: Channel,
    /// `lease-keepalive`: this client's lease and keep-alive stream.
    pub keepalive: Option<super::workloads::KeepAliveStream>,
}

impl Client {
    /// A client on `conn`: its unary KV calls go through the lean client if
    /// the connection has one.
    pub fn new(conn: Conn) -> Client {
        let kv = match conn.lean {
            Some(lean) => Kv::Lean(lean),
            None => Kv::Tonic(
                KvClient::new(conn.channel.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES),
            ),
        };
        Client {
            kv,
            rng: StdRng::from_entropy(),
            channel: conn.channel,
            keepalive: None,
        }
    }
}

/// The unary KV calls of the workloads, over either client.
pub enum Kv {
    Lean(Lean),
    Tonic(KvClient<Channel>),
}

impl Kv {
    pub async fn put(&mut self, req: PutRequest) -> Result<PutResponse, Status> {
        match self {
            Kv::Lean(l) => l.call(&req).await,
            Kv::Tonic(t) => t.put(req).await.map(tonic::Response::into_inner),
        }
    }

    pub async fn range(&mut self, req: RangeRequest) -> Result<RangeResponse, Status> {
        match self {
            Kv::Lean(l) => l.call(&req).await,
            Kv::Tonic(t) => t.range(req).await.map(tonic::Response::into_inner),
        }
    }

    pub async fn txn(&mut self, req: TxnRequest) -> Result<TxnResponse, Status> {
        match self {
            Kv::Lean(l) => l.call(&req).await,
            Kv::Tonic(t) => t.txn(req).await.map(tonic::Response::into_inner),
        }
    }
}

/// A request workload: how to send request number `i` of the run.
pub trait Workload: Send + Sync + 'static {
    /// Sets `client` up before the clock starts (every client is prepared
    /// before any sends its first request).
    fn prepare(&self, _client: &mut Client) -> impl Future<Output = Result<(), Status>> + Send {
        async { Ok(()) }
    }
    /// Sends request `i` with `client` and waits for its answer.
    fn call(&self, client: &mut Client, i: u64) -> impl Future<Output = Result<(), Status>> + Send;
    /// Cleans up after the clock stopped.
    fn finish(&self, _client: &mut Client) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// How many requests, from how many clients, how fast.
pub struct Plan {
    pub total: u64,
    pub clients: usize,
    pub limiter: Option<Limiter>,
}

/// Runs `plan` of `workload` over `conns`; ticks `progress` per request.
pub async fn drive<W: Workload>(
    workload: Arc<W>,
    conns: &[Conn],
    plan: Plan,
    progress: ProgressBar,
) -> Outcome {
    assert!(!conns.is_empty(), "at least one connection");
    let next = Arc::new(AtomicU64::new(0));
    let limiter = plan.limiter.map(Arc::new);
    let total = plan.total;
    let clients = plan.clients.max(1);
    let ready = Arc::new(tokio::sync::Barrier::new(clients));
    let mut tasks = JoinSet::new();
    for c in 0..clients {
        let mut client = Client::new(conns[c % conns.len()].clone());
        let (workload, next, limiter, progress, ready) = (
            workload.clone(),
            next.clone(),
            limiter.clone(),
            progress.clone(),
            ready.clone(),
        );
        tasks.spawn(async move {
            let mut out = Outcome::new();
            let prepared = workload.prepare(&mut client).await;
            ready.wait().await;
            let began = Instant::now();
            if let Err(status) = prepared {
                tracing::error!(%status, "a bench client could not be set up");
                *out.errors
                    .entry(format!("{:?}", status.code()))
                    .or_default() += 1;
                return (out, began);
            }
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if let Some(l) = &limiter {
                    l.wait().await;
                }
                let sent = Instant::now();
                let result = workload.call(&mut client, i).await;
                match result {
                    Ok(()) => out.hist.saturating_record(micros(sent.elapsed())),
                    Err(status) => {
                        *out.errors
                            .entry(format!("{:?}", status.code()))
                            .or_default() += 1
                    }
                }
                progress.inc(1);
            }
            let ended = Instant::now();
            workload.finish(&mut client).await;
            out.elapsed = ended - began;
            (out, began)
        });
    }
    let mut outcome = Outcome::new();
    let mut start: Option<Instant> = None;
    let mut end: Option<Instant> = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((o, began)) => {
                outcome.merge(&o);
                start = Some(start.map_or(began, |s| s.min(began)));
                let ended = began + o.elapsed;
                end = Some(end.map_or(ended, |e| e.max(ended)));
            }
            Err(e) => tracing::error!("a bench client failed: {e}"),
        }
    }
    outcome.elapsed = match (start, end) {
        (Some(s), Some(e)) => e - s,
        _ => Duration::ZERO,
    };
    progress.finish_and_clear();
    outcome
}

/// A latency in whole microseconds, at least 1 (the histogram's lowest value).
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Whether to draw a progress bar: stderr is a terminal and the report is text.
pub fn show_progress(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// A progress bar of `total` steps on stderr, or a hidden one.
pub fn progress_bar(total: u64, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}
