//! The stream workloads `watch` and `watch-latency`, after etcd 3.4's benchmark
//! tool: `--streams` gRPC Watch streams (stream `s` on channel `s mod conns`),
//! each with `--watch-per-stream` watchers, watcher `i` on watched key
//! `i mod --watched-key-total` from the current revision; once every watcher is
//! created, `--put-total` puts (put `j` to watched key `j mod
//! --watched-key-total`) from `--clients` clients through the request driver,
//! paced by `--put-rate`, over a connection of their own as with etcd's tool
//! (`--shared-conns`: over the streams' connections). `watch-latency` is the
//! same with one watched key and one put client.
//!
//! Latency of an event: from the moment its put was sent to the moment the
//! response carrying the event was read off the stream. Puts record their send
//! time and, from the put response, their revision; streams record each event's
//! revision, watcher and arrival time. The two are joined by revision after the
//! run ([`tally`]), which also checks the key, and counts what every watcher
//! should have seen: an event missing, seen twice, or not from one of the run's
//! puts is an error. A put whose answer was lost (an error) is not expected.
//!
//! Memory on the client side: one [`Arrival`] (24 bytes) per event received,
//! kept until the end of the run.
//!
//! `--hold` keeps every stream open after the puts (for measuring the server's
//! memory with the watchers in place); the run says on stderr when it starts
//! holding (`keel bench watch: holding ...`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::{BenchChannel as Channel, Conn};
use anyhow::{anyhow, ensure};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::{
    watch_request, PutRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use rand::SeedableRng;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch as signal};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::args::WatchArgs;
use super::keys::{random_bytes, KeyGen};
use super::limiter::Limiter;
use super::report::{new_histogram, Latency, Outcome};
use super::run::{drive, Client, Plan, Workload};

/// How long creating every watcher of the run may take.
const CREATE_TIMEOUT: Duration = Duration::from_secs(120);
/// After the puts, stop waiting for the remaining events once none has arrived
/// for this long.
const DRAIN_QUIET: Duration = Duration::from_secs(5);
/// Create requests queued for one stream at a time.
const REQUEST_QUEUE: usize = 64;
/// Largest response a stream accepts (etcd's client allows 2 GiB).
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// Nanoseconds since `clock`.
fn ns_since(clock: Instant) -> u64 {
    u64::try_from(clock.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A put of the run that the server acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutRecord {
    /// The revision the put created.
    pub rev: i64,
    /// The watched key's index (`j mod --watched-key-total`).
    pub key: u64,
    /// When the put was sent, in nanoseconds since the run's clock.
    pub sent_ns: u64,
}

/// An event as one stream received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// The event's `mod_revision`.
    pub rev: i64,
    /// The watcher's index within its stream (its create request's position).
    pub watcher: u32,
    /// Whether the event's key is the key that watcher watches.
    pub key_ok: bool,
    /// When its response was read, in nanoseconds since the run's clock.
    pub at_ns: u64,
}

/// How many of a stream's `per_stream` watchers watch key `key` when watcher
/// `i` watches key `i mod keys`.
pub fn watchers_on_key(key: u64, per_stream: u64, keys: u64) -> u64 {
    if keys == 0 || key >= keys {
        return 0;
    }
    per_stream / keys + u64::from(key < per_stream % keys)
}

/// The join of puts and arrivals.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Delivery latency of each expected event received, in microseconds.
    pub hist: Histogram<u64>,
    /// Events the watchers should have received.
    pub expected: u64,
    /// Expected events received (once each).
    pub received: u64,
    /// Expected events received again by the same watcher.
    pub duplicate: u64,
    /// Events from no acknowledged put of the run, or on a key the watcher does not watch.
    pub unexpected: u64,
    /// The first put's send time and the last expected event's arrival (ns).
    pub first_sent_ns: Option<u64>,
    pub last_arrival_ns: Option<u64>,
}

impl Tally {
    /// Expected events never received.
    pub fn missing(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }
}

/// Joins the acknowledged `puts` with what each of `streams` streams received
/// (`arrivals[s]`; a stream without an entry received nothing), matching each
/// event to its put by revision and checking it is on the watcher's key.
pub fn tally(
    puts: &[PutRecord],
    arrivals: &[Vec<Arrival>],
    streams: u64,
    per_stream: u64,
    keys: u64,
) -> Tally {
    let by_rev: HashMap<i64, &PutRecord> = puts.iter().map(|p| (p.rev, p)).collect();
    let per_put: u64 = puts
        .iter()
        .map(|p| watchers_on_key(p.key, per_stream, keys))
        .sum();
    let mut t = Tally {
        hist: new_histogram(),
        expected: per_put * streams,
        received: 0,
        duplicate: 0,
        unexpected: 0,
        first_sent_ns: puts.iter().map(|p| p.sent_ns).min(),
        last_arrival_ns: None,
    };
    for stream in arrivals {
        let mut seen: HashSet<(i64, u32)> = HashSet::with_capacity(stream.len());
        for a in stream {
            let Some(put) = by_rev.get(&a.rev) else {
                t.unexpected += 1;
                continue;
            };
            if !a.key_ok || keys == 0 || u64::from(a.watcher) % keys != put.key {
                t.unexpected += 1;
                continue;
            }
            if !seen.insert((a.rev, a.watcher)) {
                t.duplicate += 1;
                continue;
            }
            let us = (a.at_ns.saturating_sub(put.sent_ns) / 1000).max(1);
            t.hist.saturating_record(us);
            t.received += 1;
            t.last_arrival_ns = t.last_arrival_ns.max(Some(a.at_ns));
        }
    }
    t
}

/// The puts of a run: put `j` to watched key `j mod keys`, recording its send
/// time and revision for [`tally`].
pub struct WatchPuts {
    keys: KeyGen,
    key_count: u64,
    value: Vec<u8>,
    clock: Instant,
    sent_ns: Vec<AtomicU64>,
    revs: Vec<AtomicI64>,
}

impl WatchPuts {
    fn new(keys: KeyGen, key_count: u64, val_size: usize, total: u64, clock: Instant) -> Self {
        let n = usize::try_from(total).unwrap_or(usize::MAX);
        WatchPuts {
            keys,
            key_count,
            value: random_bytes(val_size, &mut rand::rngs::StdRng::from_entropy()),
            clock,
            sent_ns: (0..n).map(|_| AtomicU64::new(0)).collect(),
            revs: (0..n).map(|_| AtomicI64::new(0)).collect(),
        }
    }

    /// The puts the server acknowledged with a revision.
    fn records(&self) -> Vec<PutRecord> {
        (0..self.revs.len())
            .filter_map(|j| {
                let rev = self.revs[j].load(Ordering::Relaxed);
                (rev > 0).then(|| PutRecord {
                    rev,
                    key: j as u64 % self.key_count,
                    sent_ns: self.sent_ns[j].load(Ordering::Relaxed),
                })
            })
            .collect()
    }
}

impl Workload for WatchPuts {
    fn call(&self, c: &mut Client, i: u64) -> impl Future<Output = Result<(), Status>> + Send {
        let req = PutRequest {
            key: self.keys.key(i),
            value: self.value.clone(),
            ..Default::default()
        };
        async move {
            let j = usize::try_from(i).unwrap_or(usize::MAX);
            self.sent_ns[j].store(ns_since(self.clock), Ordering::Relaxed);
            let resp = c.kv.put(req).await?;
            let rev = resp.header.map(|h| h.revision).unwrap_or(0);
            self.revs[j].store(rev, Ordering::Relaxed);
            Ok(())
        }
    }
}

/// The `watch` figures beyond the event latency, printed with the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WatchStats {
    pub streams: u64,
    pub watchers_per_stream: u64,
    /// Watchers in all.
    pub watchers: u64,
    pub watched_keys: u64,
    /// Time from opening the first stream to the last watcher's `created`.
    pub create_sec: f64,
    /// Puts acknowledged.
    pub puts: u64,
    pub put_errors: u64,
    pub puts_per_sec: f64,
    pub put_latency_ms: Latency,
    pub events_expected: u64,
    pub events_received: u64,
    pub events_missing: u64,
    pub events_duplicate: u64,
    pub events_unexpected: u64,
    /// Expected events received per second, from the first put sent to the last
    /// event received.
    pub events_per_sec: f64,
    /// How long the streams were held open after the puts.
    pub hold_sec: f64,
}

impl WatchStats {
    /// The report's "Watch:" section.
    pub fn write_text(&self, out: &mut String, f: impl Fn(f64) -> String) {
        let p = &self.put_latency_ms;
        let _ = writeln!(out, "\nWatch:");
        let _ = writeln!(
            out,
            "  Streams:\t{} x {} watchers = {} watchers on {} keys, created in {} secs.",
            self.streams,
            self.watchers_per_stream,
            self.watchers,
            self.watched_keys,
            f(self.create_sec)
        );
        let _ = writeln!(
            out,
            "  Puts:\t{} ok, {} errors, {} puts/s; put latency ms avg {} p50 {} p99 {}",
            self.puts,
            self.put_errors,
            f(self.puts_per_sec),
            f(p.avg),
            f(p.p50),
            f(p.p99)
        );
        let _ = writeln!(
            out,
            "  Events:\t{} expected, {} received, {} missing, {} duplicate, {} unexpected; {} events/s",
            self.events_expected,
            self.events_received,
            self.events_missing,
            self.events_duplicate,
            self.events_unexpected,
            f(self.events_per_sec)
        );
    }
}

/// What one stream's task brings back.
#[derive(Debug, Default)]
struct StreamResult {
    arrivals: Vec<Arrival>,
    errors: BTreeMap<String, u64>,
}

/// Runs `watch` (or `watch-latency`, as `watch` with one key): streams over
/// `channels`, puts from `clients` clients over `put_conns`; `progress`
/// ticks per put.
pub async fn run(
    args: &WatchArgs,
    channels: &[Channel],
    put_conns: &[Conn],
    clients: usize,
    progress: ProgressBar,
) -> anyhow::Result<(Outcome, WatchStats)> {
    ensure!(!channels.is_empty() && !put_conns.is_empty(), "no channels");
    ensure!(args.streams >= 1, "--streams must be at least 1");
    ensure!(
        (1..=u64::from(u32::MAX)).contains(&args.watch_per_stream),
        "--watch-per-stream must be at least 1"
    );
    let key_count = args.watched_keys();
    let keys = KeyGen::new(args.key_size, key_count, true)?;
    let watcher_keys: Arc<Vec<Vec<u8>>> =
        Arc::new((0..args.watch_per_stream).map(|i| keys.key(i)).collect());
    let clock = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = signal::channel(false);

    let mut tasks = JoinSet::new();
    let mut readies = Vec::new();
    for s in 0..args.streams {
        let (ready, ready_rx) = oneshot::channel();
        readies.push(ready_rx);
        let channel = channels[(s % channels.len() as u64) as usize].clone();
        let task = stream_task(
            channel,
            watcher_keys.clone(),
            clock,
            received.clone(),
            ready,
            stopped.clone(),
        );
        tasks.spawn(async move { (s, task.await) });
    }
    let deadline = tokio::time::Instant::now() + CREATE_TIMEOUT;
    for (s, ready) in readies.into_iter().enumerate() {
        let failed = match tokio::time::timeout_at(deadline, ready).await {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(reason))) => Some(format!("stream {s}: creating its watchers: {reason}")),
            Ok(Err(_)) => Some(format!("stream {s} ended while creating its watchers")),
            Err(_) => Some(format!(
                "creating the watchers took over {CREATE_TIMEOUT:?} ({s} of {} streams ready)",
                args.streams
            )),
        };
        if let Some(why) = failed {
            let _ = stop.send(true);
            tasks.shutdown().await;
            return Err(anyhow!(why));
        }
    }
    let create_sec = clock.elapsed().as_secs_f64();
    tracing::info!(create_sec, "every watcher created");

    let puts = Arc::new(WatchPuts::new(
        keys,
        key_count,
        args.val_size,
        args.put_total,
        clock,
    ));
    let plan = Plan {
        total: args.put_total,
        clients,
        limiter: Limiter::new(args.put_rate),
    };
    let put_outcome = drive(puts.clone(), put_conns, plan, progress).await;
    let records = puts.records();
    let per_put: u64 = records
        .iter()
        .map(|p| watchers_on_key(p.key, args.watch_per_stream, key_count))
        .sum();
    drain(&received, per_put * args.streams).await;

    if !args.hold.is_zero() {
        eprintln!(
            "keel bench watch: holding {} streams, {} watchers for {:?}",
            args.streams,
            args.streams * args.watch_per_stream,
            args.hold
        );
        tokio::time::sleep(args.hold).await;
    }
    let _ = stop.send(true);
    let mut arrivals = Vec::with_capacity(args.streams as usize);
    let mut outcome = Outcome::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((_, r)) => {
                arrivals.push(r.arrivals);
                for (what, n) in r.errors {
                    *outcome.errors.entry(what).or_default() += n;
                }
            }
            Err(e) => {
                tracing::error!("a watch stream task failed: {e}");
                *outcome
                    .errors
                    .entry("stream task failed".into())
                    .or_default() += 1;
            }
        }
    }

    let t = tally(
        &records,
        &arrivals,
        args.streams,
        args.watch_per_stream,
        key_count,
    );
    for (what, n) in [
        ("missing event", t.missing()),
        ("duplicate event", t.duplicate),
        ("unexpected event", t.unexpected),
    ] {
        if n > 0 {
            *outcome.errors.entry(what.into()).or_default() += n;
        }
    }
    for (code, n) in &put_outcome.errors {
        *outcome.errors.entry(format!("put {code}")).or_default() += n;
    }
    outcome.elapsed = match (t.first_sent_ns, t.last_arrival_ns) {
        (Some(a), Some(b)) if b > a => Duration::from_nanos(b - a),
        _ => put_outcome.elapsed,
    };
    let per_sec = |n: u64, d: Duration| {
        if d.is_zero() {
            0.0
        } else {
            n as f64 / d.as_secs_f64()
        }
    };
    let stats = WatchStats {
        streams: args.streams,
        watchers_per_stream: args.watch_per_stream,
        watchers: args.streams * args.watch_per_stream,
        watched_keys: key_count,
        create_sec,
        puts: records.len() as u64,
        put_errors: put_outcome.errors.values().sum(),
        puts_per_sec: per_sec(put_outcome.hist.len(), put_outcome.elapsed),
        put_latency_ms: Latency::of(&put_outcome.hist),
        events_expected: t.expected,
        events_received: t.received,
        events_missing: t.missing(),
        events_duplicate: t.duplicate,
        events_unexpected: t.unexpected,
        events_per_sec: per_sec(t.received, outcome.elapsed),
        hold_sec: args.hold.as_secs_f64(),
    };
    outcome.hist = t.hist;
    Ok((outcome, stats))
}

/// Waits until `expected` events have arrived, or none has for [`DRAIN_QUIET`].
async fn drain(received: &AtomicU64, expected: u64) {
    let mut last = received.load(Ordering::Relaxed);
    let mut since = Instant::now();
    loop {
        let now = received.load(Ordering::Relaxed);
        if now >= expected {
            return;
        }
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= DRAIN_QUIET {
            tracing::warn!(received = now, expected, "events stopped arriving");
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One Watch stream: creates a watcher on each of `keys` (in order; the n-th
/// `created` answers the n-th create), says so on `ready`, then records every
/// event until `stop`.
async fn stream_task(
    channel: Channel,
    keys: Arc<Vec<Vec<u8>>>,
    clock: Instant,
    received: Arc<AtomicU64>,
    ready: oneshot::Sender<Result<(), String>>,
    mut stop: signal::Receiver<bool>,
) -> StreamResult {
    let mut out = StreamResult::default();
    let mut ready = Some(ready);
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    let creates = keys.clone();
    // Sends the creates, then holds the request side open: closing it would end
    // the stream.
    let feeder = tokio::spawn(async move {
        for key in creates.iter() {
            let create = WatchCreateRequest {
                key: key.clone(),
                ..Default::default()
            };
            let req = WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
            };
            if tx.send(req).await.is_err() {
                return;
            }
        }
        std::future::pending::<()>().await;
    });
    let mut client = WatchClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);
    let opened = tokio::select! {
        r = client.watch(ReceiverStream::new(rx)) => Some(r),
        _ = stop.wait_for(|s| *s) => None,
    };
    let mut stream = match opened {
        Some(Ok(resp)) => Some(resp.into_inner()),
        Some(Err(status)) => {
            *out.errors
                .entry(format!("stream {:?}", status.code()))
                .or_default() += 1;
            fail(&mut ready, format!("opening the stream: {status}"));
            None
        }
        None => None,
    };
    let mut ids: HashMap<i64, u32> = HashMap::with_capacity(keys.len());
    while let Some(s) = stream.as_mut() {
        let msg = tokio::select! {
            m = s.message() => m,
            _ = stop.wait_for(|s| *s) => break,
        };
        let resp = match msg {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                *out.errors.entry("stream ended".into()).or_default() += 1;
                fail(&mut ready, "the server ended the stream".into());
                break;
            }
            Err(status) => {
                *out.errors
                    .entry(format!("stream {:?}", status.code()))
                    .or_default() += 1;
                fail(&mut ready, format!("stream error: {status}"));
                break;
            }
        };
        if resp.created {
            if resp.canceled {
                *out.errors.entry("create refused".into()).or_default() += 1;
                fail(&mut ready, format!("refused: {}", resp.cancel_reason));
                break;
            }
            ids.insert(resp.watch_id, ids.len() as u32);
            if ids.len() == keys.len() {
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                }
            }
            continue;
        }
        record(&resp, &ids, &keys, clock, &mut out);
        received.fetch_add(resp.events.len() as u64, Ordering::Relaxed);
    }
    fail(&mut ready, "the stream ended".into());
    feeder.abort();
    out
}

/// Records the events of a (non-created) response, or its cancellation.
fn record(
    resp: &WatchResponse,
    ids: &HashMap<i64, u32>,
    keys: &[Vec<u8>],
    clock: Instant,
    out: &mut StreamResult,
) {
    if resp.canceled {
        let why = format!("watch canceled: {}", resp.cancel_reason);
        *out.errors.entry(why).or_default() += 1;
    }
    if resp.events.is_empty() {
        return;
    }
    let at_ns = ns_since(clock);
    let Some(&watcher) = ids.get(&resp.watch_id) else {
        *out.errors
            .entry("event for an unknown watch id".into())
            .or_default() += resp.events.len() as u64;
        return;
    };
    for ev in &resp.events {
        let (rev, key) = ev
            .kv
            .as_ref()
            .map(|kv| (kv.mod_revision, kv.key.as_slice()))
            .unwrap_or((0, &[]));
        out.arrivals.push(Arrival {
            rev,
            watcher,
            key_ok: keys.get(watcher as usize).map(Vec::as_slice) == Some(key),
            at_ns,
        });
    }
}

/// Says on `ready`, if nobody has yet, that the stream failed.
fn fail(ready: &mut Option<oneshot::Sender<Result<(), String>>>, why: String) {
    if let Some(r) = ready.take() {
        let _ = r.send(Err(why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(rev: i64, key: u64, sent_ms: u64) -> PutRecord {
        PutRecord {
            rev,
            key,
            sent_ns: sent_ms * 1_000_000,
        }
    }

    fn got(rev: i64, watcher: u32, at_ms: u64) -> Arrival {
        Arrival {
            rev,
            watcher,
            key_ok: true,
            at_ns: at_ms * 1_000_000,
        }
    }

    #[test]
    fn watchers_per_key() {
        // 10 watchers on 4 keys: keys 0 and 1 have 3 (i = 0,4,8 and 1,5,9), 2 and 3 have 2.
        let n: Vec<u64> = (0..5).map(|k| watchers_on_key(k, 10, 4)).collect();
        assert_eq!(n, [3, 3, 2, 2, 0]);
        assert_eq!(watchers_on_key(0, 3, 10), 1);
        assert_eq!(watchers_on_key(5, 3, 10), 0, "more keys than watchers");
        assert_eq!(
            (0..10).map(|k| watchers_on_key(k, 100, 10)).sum::<u64>(),
            100
        );
    }

    #[test]
    fn every_event_matched_by_revision_and_key() {
        // 2 streams x 2 watchers on 2 keys; puts at revisions 5 (key 0) and 6 (key 1).
        let puts = [put(5, 0, 10), put(6, 1, 20)];
        let s0 = vec![got(5, 0, 13), got(6, 1, 21)];
        let s1 = vec![got(6, 1, 30), got(5, 0, 12)];
        let t = tally(&puts, &[s0, s1], 2, 2, 2);
        assert_eq!((t.expected, t.received, t.missing()), (4, 4, 0));
        assert_eq!((t.duplicate, t.unexpected), (0, 0));
        assert_eq!(t.hist.min(), 1000, "µs from send");
        assert!(t.hist.equivalent(t.hist.max(), 10_000), "{}", t.hist.max());
        assert_eq!(t.hist.len(), 4);
        assert_eq!(t.first_sent_ns, Some(10_000_000));
        assert_eq!(t.last_arrival_ns, Some(30_000_000));
    }

    #[test]
    fn missing_duplicate_and_unexpected_events() {
        // 2 streams x 3 watchers on 2 keys: key 0 has watchers 0 and 2.
        let puts = [put(7, 0, 0)];
        let stream0 = vec![
            got(7, 0, 1),
            got(7, 0, 2),  // the same watcher again
            got(7, 1, 1),  // watcher 1 watches key 1
            got(99, 2, 1), // no put of the run
            Arrival {
                key_ok: false, // not the watcher's key
                ..got(7, 2, 1)
            },
        ];
        let t = tally(&puts, &[stream0], 2, 3, 2);
        assert_eq!(t.expected, 4, "2 streams x 2 watchers on key 0");
        assert_eq!((t.received, t.duplicate, t.unexpected), (1, 1, 3));
        assert_eq!(t.missing(), 3, "watcher 2 of stream 0 and all of stream 1");
    }

    #[test]
    fn events_before_the_put_answer_still_match() {
        // The event may arrive before the put's answer: only the send time counts,
        // and an arrival "before" the send (clock skew between tasks) is 1 µs.
        let t = tally(&[put(3, 0, 5)], &[vec![got(3, 0, 4)]], 1, 1, 1);
        assert_eq!((t.received, t.hist.max()), (1, 1));
    }

    #[test]
    fn no_puts_no_events() {
        let t = tally(&[], &[vec![], vec![]], 2, 10, 10);
        assert_eq!((t.expected, t.received, t.missing()), (0, 0, 0));
        assert!(t.hist.is_empty() && t.first_sent_ns.is_none());
    }

    #[test]
    fn watch_text_section() {
        let s = WatchStats {
            streams: 4,
            watchers_per_stream: 10,
            watchers: 40,
            watched_keys: 10,
            events_expected: 400,
            events_received: 399,
            events_missing: 1,
            ..Default::default()
        };
        let mut out = String::new();
        s.write_text(&mut out, |x| format!("{x}"));
        assert!(
            out.contains("4 x 10 watchers = 40 watchers on 10 keys"),
            "{out}"
        );
        assert!(
            out.contains("400 expected, 399 received, 1 missing"),
            "{out}"
        );
    }
}
