//! `check perf`: etcdctl's performance check. Puts 256-byte keys with
//! 1 KiB values under `--prefix` from many clients at the load's rate for
//! 60 seconds, then judges throughput (over 90% of the target), the
//! slowest request (at most 0.5 s) and the latency's standard deviation (at
//! most 0.1 s), and deletes the keys (`--auto-compact`, `--auto-defrag`
//! tidy up after). The progress bar is drawn only on a terminal.
//!
//! `check datascale` is not implemented.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{ArgAction, Args, Subcommand};
use keel_client::{DeleteRangeRequest, PutRequest, RangeRequest};

use crate::error::{CtlError, ExitCode, Result};
use crate::global::{go_bool, Ctx};
use crate::outln;

/// commands for checking properties of the etcd cluster
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(subcommand)]
    pub cmd: CheckCmd,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CheckCmd {
    /// Check the performance of the etcd cluster
    Perf(PerfArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PerfArgs {
    /// The performance check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
    #[arg(long, default_value = "s")]
    pub load: String,
    /// The prefix for writing the performance check's keys.
    #[arg(
        long,
        default_value = "/etcdctl-check-perf/",
        help = "The prefix for writing the performance check's keys."
    )]
    pub prefix: String,
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool,
          help = "Compact storage with last revision after test is finished.")]
    pub auto_compact: bool,
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool,
          help = "Defragment storage after test is finished.")]
    pub auto_defrag: bool,
    /// Seconds to run (etcdctl always runs 60; keelctl's tests use less)
    #[arg(long, default_value = "60", hide = true)]
    pub duration: u64,
}

/// A workload: target writes per second and clients.
pub fn load(name: &str) -> Option<(u64, usize)> {
    match name {
        "s" | "small" => Some((150, 50)),
        "m" | "medium" => Some((1000, 200)),
        "l" | "large" => Some((8000, 500)),
        "xl" | "xLarge" => Some((15000, 1000)),
        _ => None,
    }
}

/// Latency statistics in seconds: (requests per second, slowest, stddev).
pub fn stats(lats: &[f64], total: Duration) -> (f64, f64, f64) {
    if lats.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let n = lats.len() as f64;
    let avg = lats.iter().sum::<f64>() / n;
    let var = lats.iter().map(|l| (l - avg) * (l - avg)).sum::<f64>() / n;
    let slowest = lats.iter().cloned().fold(0.0, f64::max);
    (n / total.as_secs_f64().max(1e-9), slowest, var.sqrt())
}

pub async fn run(ctx: &Ctx, a: CheckArgs) -> Result<()> {
    let CheckCmd::Perf(p) = a.cmd;
    let Some((limit, clients)) = load(&p.load) else {
        return Err(CtlError::new(
            ExitCode::BadFeature,
            format!("unknown load option {}", p.load),
        ));
    };
    let first = ctx.client()?;
    let existing = ctx
        .timed(first.range(RangeRequest {
            key: p.prefix.as_bytes().to_vec(),
            range_end: keel_client::prefix_end(p.prefix.as_bytes()),
            limit: 1,
            ..Default::default()
        }))
        .await?;
    if !existing.kvs.is_empty() {
        return Err(CtlError::new(
            ExitCode::InvalidInput,
            format!(
                "prefix {} has keys. Delete with etcdctl del --prefix {} first",
                crate::output::go::quote(p.prefix.as_bytes()),
                p.prefix
            ),
        ));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(clients);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let (res_tx, mut res_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let c = ctx.client()?;
        let rx = rx.clone();
        let res_tx = res_tx.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let key = { rx.lock().await.recv().await };
                let Some(key) = key else { return };
                let st = Instant::now();
                let r = c
                    .put_request(PutRequest {
                        key,
                        value: vec![0; 1024],
                        ..Default::default()
                    })
                    .await;
                let _ = res_tx.send((st, Instant::now(), r.err().map(|e| CtlError::from(e).msg)));
            }
        }));
    }
    drop(res_tx);
    let secs = p.duration;
    let start = Instant::now();
    let prefix = p.prefix.clone();
    let producer = tokio::spawn(async move {
        let mut i: u64 = 0;
        let end = start + Duration::from_secs(secs);
        loop {
            let at = start + Duration::from_secs_f64(i as f64 / limit as f64);
            if at >= end {
                return;
            }
            tokio::time::sleep_until(at.into()).await;
            let mut k = prefix.as_bytes().to_vec();
            let mut suffix = vec![0u8; 256];
            let r: u64 = rand_u64(i) >> 1;
            put_varint(&mut suffix, r as i64);
            k.extend_from_slice(&suffix);
            if tx.send(k).await.is_err() {
                return;
            }
            i += 1;
        }
    });
    let bar = std::io::stdout().is_terminal();
    let ticker = tokio::spawn(async move {
        for s in 1..=secs {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if bar {
                crate::output::out(format!(
                    "\r{s} / {secs} {:.2}%",
                    s as f64 * 100.0 / secs as f64
                ));
            }
        }
        if bar {
            crate::output::out("\n");
        }
    });
    let _ = producer.await;
    for w in workers {
        let _ = w.await;
    }
    ticker.abort();
    let mut lats = Vec::new();
    let mut errors: std::collections::BTreeMap<String, u64> = Default::default();
    let (mut first_st, mut last_end) = (None::<Instant>, None::<Instant>);
    while let Some((st, end, err)) = res_rx.recv().await {
        first_st = Some(first_st.map_or(st, |f| f.min(st)));
        last_end = Some(last_end.map_or(end, |l| l.max(end)));
        match err {
            None => lats.push((end - st).as_secs_f64()),
            Some(e) => *errors.entry(e).or_default() += 1,
        }
    }
    let total = match (first_st, last_end) {
        (Some(a), Some(b)) => b - a,
        _ => Duration::ZERO,
    };
    let (rps, slowest, stddev) = stats(&lats, total);
    // Clean up: delete the keys, then compact and defragment if asked.
    let del = first
        .delete(DeleteRangeRequest {
            key: p.prefix.as_bytes().to_vec(),
            range_end: keel_client::prefix_end(p.prefix.as_bytes()),
            ..Default::default()
        })
        .await?;
    if p.auto_compact {
        let rev = del.header.map(|h| h.revision).unwrap_or(0);
        first.compact(rev, false).await?;
    }
    if p.auto_defrag {
        for ep in &ctx.g.endpoints {
            let c = ctx.client_for(std::slice::from_ref(ep))?;
            if let Err(e) = c.defragment().await {
                eprintln!(
                    "Failed to defragment etcd member[{ep}] ({})",
                    CtlError::from(e).msg
                );
            }
        }
    }
    let mut ok = true;
    if !errors.is_empty() {
        outln!("FAIL: too many errors");
        for (e, n) in &errors {
            outln!("FAIL: ERROR({e}) -> {n}");
        }
        ok = false;
    }
    if rps / limit as f64 <= 0.9 {
        outln!("FAIL: Throughput too low: {} writes/s", rps as i64 + 1);
        ok = false;
    } else {
        outln!("PASS: Throughput is {} writes/s", rps as i64 + 1);
    }
    if slowest > 0.5 {
        outln!("Slowest request took too long: {slowest:.6}s");
        ok = false;
    } else {
        outln!("PASS: Slowest request took {slowest:.6}s");
    }
    if stddev > 0.1 {
        outln!("Stddev too high: {stddev:.6}s");
        ok = false;
    } else {
        outln!("PASS: Stddev is {stddev:.6}s");
    }
    if ok {
        outln!("PASS");
        Ok(())
    } else {
        outln!("FAIL");
        Err(CtlError::exit(ExitCode::Error))
    }
}

/// Go's `binary.PutVarint`: zig-zag, then 7 bits a byte.
pub fn put_varint(buf: &mut [u8], v: i64) -> usize {
    let mut ux = (v as u64) << 1;
    if v < 0 {
        ux = !ux;
    }
    let mut i = 0;
    while ux >= 0x80 {
        buf[i] = (ux as u8) | 0x80;
        ux >>= 7;
        i += 1;
    }
    buf[i] = ux as u8;
    i + 1
}

/// A well-mixed 64-bit number from a counter and the clock (splitmix64).
fn rand_u64(i: u64) -> u64 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: CheckArgs,
    }

    #[test]
    fn parses_as_etcdctl() {
        let t = T::try_parse_from(["check", "perf", "--load=m", "--auto-compact"]).unwrap();
        let CheckCmd::Perf(p) = t.a.cmd;
        assert_eq!(
            (p.load.as_str(), p.auto_compact, p.auto_defrag),
            ("m", true, false)
        );
        assert_eq!(
            (p.prefix.as_str(), p.duration),
            ("/etcdctl-check-perf/", 60)
        );
        assert_eq!(load("xLarge"), Some((15000, 1000)));
        assert_eq!(load("huge"), None);
    }

    #[test]
    fn varints_and_stats() {
        let mut b = [0u8; 10];
        assert_eq!(put_varint(&mut b, 1), 1);
        assert_eq!(b[0], 2);
        assert_eq!(put_varint(&mut b, 300), 2);
        assert_eq!(&b[..2], &[0xd8, 0x04]);
        let (rps, slowest, sd) = stats(&[0.1, 0.3], Duration::from_secs(1));
        assert_eq!((rps, slowest), (2.0, 0.3));
        assert!((sd - 0.1).abs() < 1e-9);
    }
}
