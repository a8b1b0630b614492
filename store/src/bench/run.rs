//! The closed-loop driver of request workloads: `--clients` tasks, client `c` on
//! channel `c mod conns`, each with one request in flight; request numbers
//! `0..total` are handed out from one shared counter, paced by the shared
//! `--rate` limiter; every client records its latencies in its own HDR
//! histogram (microseconds) and errors by gRPC code, merged at the end.
//!
//! A request workload only says how to send request `i` ([`Workload`]). Stream
//! workloads still to come (`watch`, `watch-latency`, `lease-keepalive`) will have
//! drivers of their own beside this one and report through the same
//! [`Outcome`](super::report::Outcome).

use std::future::Future;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keel_proto::etcdserverpb::kv_client::KvClient;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::task::JoinSet;
use tonic::transport::Channel;
use tonic::Status;

use super::limiter::Limiter;
use super::report::Outcome;

/// Largest response a client accepts (etcd's client allows 2 GiB).
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// One requester: its KV stub (on a shared channel) and its own random numbers.
pub struct Client {
    pub kv: KvClient<Channel>,
    pub rng: StdRng,
}

impl Client {
    /// A client on `channel`.
    pub fn new(channel: Channel) -> Client {
        Client {
            kv: KvClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES),
            rng: StdRng::from_entropy(),
        }
    }
}

/// A request workload: how to send request number `i` of the run.
pub trait Workload: Send + Sync + 'static {
    /// Sends request `i` with `client` and waits for its answer.
    fn call(&self, client: &mut Client, i: u64) -> impl Future<Output = Result<(), Status>> + Send;
}

/// How many requests, from how many clients, how fast.
pub struct Plan {
    pub total: u64,
    pub clients: usize,
    pub limiter: Option<Limiter>,
}

/// Runs `plan` of `workload` over `channels`; ticks `progress` per request.
pub async fn drive<W: Workload>(
    workload: Arc<W>,
    channels: &[Channel],
    plan: Plan,
    progress: ProgressBar,
) -> Outcome {
    assert!(!channels.is_empty(), "at least one channel");
    let next = Arc::new(AtomicU64::new(0));
    let limiter = plan.limiter.map(Arc::new);
    let total = plan.total;
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for c in 0..plan.clients.max(1) {
        let mut client = Client::new(channels[c % channels.len()].clone());
        let (workload, next, limiter, progress) = (
            workload.clone(),
            next.clone(),
            limiter.clone(),
            progress.clone(),
        );
        tasks.spawn(async move {
            let mut out = Outcome::new();
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
            out
        });
    }
    let mut outcome = Outcome::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(o) => outcome.merge(&o),
            Err(e) => tracing::error!("a bench client failed: {e}"),
        }
    }
    outcome.elapsed = start.elapsed();
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
