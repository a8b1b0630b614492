//! The report of a run: requests/s and latency (avg, p50, p90, p99, p99.9, max)
//! from an HDR histogram recorded in microseconds, errors by gRPC code, and a
//! latency histogram; printed as etcd's benchmark tool prints it, or as one JSON
//! object (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::watch::WatchStats;

/// The percentiles of the text report's "Latency distribution", as etcd's.
const DISTRIBUTION: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];
/// Buckets of the latency histogram (plus one for the slowest), as etcd's.
const BUCKETS: usize = 10;
/// Width of the longest histogram bar.
const BAR_WIDTH: u64 = 40;

/// A latency histogram in microseconds, 1 µs to 1 h, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// What a run measured, before it is summarised.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Latencies of the successful requests, in microseconds.
    pub hist: Histogram<u64>,
    /// Failed requests by gRPC code name (e.g. `Unavailable`).
    pub errors: BTreeMap<String, u64>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl Outcome {
    /// An empty outcome, to merge clients' outcomes into.
    pub fn new() -> Outcome {
        Outcome {
            hist: new_histogram(),
            errors: BTreeMap::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// Adds another client's latencies and errors to this one.
    pub fn merge(&mut self, other: &Outcome) {
        self.hist
            .add(&other.hist)
            .expect("histograms of the same bounds");
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
    }
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome::new()
    }
}

/// Who was measured, and how.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunMeta {
    /// Endpoints the requests went to.
    pub endpoints: Vec<String>,
    /// gRPC connections.
    pub conns: usize,
    /// Concurrent clients.
    pub clients: usize,
}

/// Latency figures, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub avg: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub stddev: f64,
}

impl Latency {
    /// The figures of a histogram in microseconds (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let q = |p: f64| ms(h.value_at_quantile(p) as f64);
        Latency {
            avg: ms(h.mean()),
            min: ms(h.min() as f64),
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p999: q(0.999),
            max: ms(h.max() as f64),
            stddev: ms(h.stdev()),
        }
    }
}

/// One bar of the latency histogram: requests at most `le_ms` (and above the
/// previous bar's bound).
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    pub le_ms: f64,
    pub count: u64,
}

/// The latency at one percentile.
#[derive(Debug, Clone, Serialize)]
pub struct Percentile {
    pub pct: f64,
    pub ms: f64,
}

/// The summary of one run; `--json` prints it as one object.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `put`, `range`, `txn-put`, `fsync`...
    pub workload: String,
    /// Requests completed, successful or not.
    pub total: u64,
    /// Failed requests.
    pub errors: u64,
    /// Failed requests by gRPC code name.
    pub errors_by_code: BTreeMap<String, u64>,
    /// Wall time of the run.
    pub elapsed_sec: f64,
    /// Successful requests per second of wall time.
    pub requests_per_sec: f64,
    /// Latency of the successful requests.
    pub latency_ms: Latency,
    /// Latency histogram (etcd's ten even buckets between fastest and slowest).
    pub histogram: Vec<Bucket>,
    /// Latency at etcd's percentiles (10, 25, 50, 75, 90, 95, 99, 99.9).
    pub distribution: Vec<Percentile>,
    /// Endpoints, connections and clients.
    #[serde(flatten)]
    pub meta: RunMeta,
    /// The workload's flags.
    pub params: serde_json::Value,
    /// `watch` and `watch-latency`: streams, puts and events (the latency above is
    /// then the events' delivery latency, and requests are events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchStats>,
}

fn ms(us: f64) -> f64 {
    us / 1000.0
}

impl Report {
    /// Summarises `outcome` of `workload`.
    pub fn new(
        workload: &str,
        outcome: &Outcome,
        meta: RunMeta,
        params: serde_json::Value,
    ) -> Report {
        let h = &outcome.hist;
        let ok = h.len();
        let errors: u64 = outcome.errors.values().sum();
        let secs = outcome.elapsed.as_secs_f64();
        let q = |p: f64| ms(h.value_at_quantile(p) as f64);
        let latency = Latency::of(h);
        Report {
            workload: workload.to_string(),
            total: ok + errors,
            errors,
            errors_by_code: outcome.errors.clone(),
            elapsed_sec: secs,
            requests_per_sec: if secs > 0.0 { ok as f64 / secs } else { 0.0 },
            latency_ms: latency,
            histogram: buckets(h),
            distribution: if ok == 0 {
                Vec::new()
            } else {
                DISTRIBUTION
                    .iter()
                    .map(|&pct| Percentile {
                        pct,
                        ms: q(pct / 100.0),
                    })
                    .collect()
            },
            meta,
            params,
            watch: None,
        }
    }

    /// The one-line JSON object of `--json`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report serialises")
    }

    /// The text report, in etcd's benchmark tool's layout (seconds), headed by
    /// the figures in milliseconds.
    pub fn to_text(&self, precise: bool) -> String {
        let f = |x: f64| {
            if precise {
                format!("{x}")
            } else {
                format!("{x:4.4}")
            }
        };
        let s = |ms: f64| f(ms / 1000.0);
        let l = &self.latency_ms;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {} requests, {} errors, {} conns, {} clients, {}",
            self.workload,
            self.total,
            self.errors,
            self.meta.conns,
            self.meta.clients,
            if self.meta.endpoints.is_empty() {
                "-".to_string()
            } else {
                self.meta.endpoints.join(",")
            }
        );
        let _ = writeln!(
            out,
            "latency ms: avg {} p50 {} p90 {} p99 {} p99.9 {} max {}; {} requests/s",
            f(l.avg),
            f(l.p50),
            f(l.p90),
            f(l.p99),
            f(l.p999),
            f(l.max),
            f(self.requests_per_sec)
        );
        let _ = writeln!(out, "\nSummary:");
        let _ = writeln!(out, "  Total:\t{} secs.", f(self.elapsed_sec));
        let _ = writeln!(out, "  Slowest:\t{} secs.", s(l.max));
        let _ = writeln!(out, "  Fastest:\t{} secs.", s(l.min));
        let _ = writeln!(out, "  Average:\t{} secs.", s(l.avg));
        let _ = writeln!(out, "  Stddev:\t{} secs.", s(l.stddev));
        let _ = writeln!(out, "  Requests/sec:\t{}", f(self.requests_per_sec));
        if !self.histogram.is_empty() {
            let _ = writeln!(out, "\nResponse time histogram:");
            let top = self
                .histogram
                .iter()
                .map(|b| b.count)
                .max()
                .unwrap_or(0)
                .max(1);
            for b in &self.histogram {
                let bar = "∎".repeat((b.count * BAR_WIDTH / top) as usize);
                let _ = writeln!(out, "  {} [{}]\t|{}", s(b.le_ms), b.count, bar);
            }
            let _ = writeln!(out, "\nLatency distribution:");
            for p in &self.distribution {
                let _ = writeln!(out, "  {}% in {} secs.", p.pct, s(p.ms));
            }
        }
        if let Some(w) = &self.watch {
            w.write_text(&mut out, f);
        }
        if !self.errors_by_code.is_empty() {
            let _ = writeln!(out, "\nError distribution:");
            for (code, n) in &self.errors_by_code {
                let _ = writeln!(out, "  [{n}]\t{code}");
            }
        }
        out
    }
}

/// etcd's histogram: ten even buckets from the fastest to the slowest request,
/// plus one at the slowest; each request counts in the first bucket whose bound
/// is at least its latency.
fn buckets(h: &Histogram<u64>) -> Vec<Bucket> {
    if h.is_empty() {
        return Vec::new();
    }
    let (fastest, slowest) = (h.min() as f64, h.max() as f64);
    let step = (slowest - fastest) / BUCKETS as f64;
    let mut bounds: Vec<f64> = (0..BUCKETS).map(|i| fastest + step * i as f64).collect();
    bounds.push(slowest);
    let mut counts = vec![0u64; bounds.len()];
    for v in h.iter_recorded() {
        let lat = h.lowest_equivalent(v.value_iterated_to()) as f64;
        let i = bounds.iter().position(|&b| lat <= b).unwrap_or(BUCKETS);
        counts[i] += v.count_at_value();
    }
    bounds
        .into_iter()
        .zip(counts)
        .map(|(b, count)| Bucket {
            le_ms: ms(b.round()),
            count,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut o = Outcome::new();
        for us in [100u64, 200, 300, 400, 1000, 2000, 5000, 10_000] {
            o.hist.record(us).unwrap();
        }
        o.errors.insert("Unavailable".into(), 2);
        o.elapsed = Duration::from_secs(2);
        let meta = RunMeta {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            conns: 1,
            clients: 4,
        };
        Report::new("put", &o, meta, serde_json::json!({"key_size": 8}))
    }

    #[test]
    fn json_shape() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(v["workload"], "put");
        assert_eq!(v["total"], 10);
        assert_eq!(v["errors"], 2);
        assert_eq!(v["errors_by_code"]["Unavailable"], 2);
        assert_eq!(v["elapsed_sec"], 2.0);
        assert_eq!(v["requests_per_sec"], 4.0, "successes per second");
        for k in ["avg", "p50", "p90", "p99", "p999", "max", "min", "stddev"] {
            assert!(v["latency_ms"][k].is_f64(), "latency_ms.{k}: {v}");
        }
        let l = &v["latency_ms"];
        assert!((l["max"].as_f64().unwrap() - 10.0).abs() < 0.05, "{l}");
        assert!((l["p50"].as_f64().unwrap() - 0.4).abs() < 0.01, "{l}");
        assert_eq!(v["conns"], 1);
        assert_eq!(v["clients"], 4);
        assert_eq!(v["endpoints"][0], "http://127.0.0.1:2379");
        assert_eq!(v["params"]["key_size"], 8);
        let hist = v["histogram"].as_array().unwrap();
        assert_eq!(hist.len(), BUCKETS + 1);
        let n: u64 = hist.iter().map(|b| b["count"].as_u64().unwrap()).sum();
        assert_eq!(n, 8, "every success in one bucket");
        assert_eq!(
            v["distribution"].as_array().unwrap().len(),
            DISTRIBUTION.len()
        );
    }

    #[test]
    fn text_has_etcds_sections() {
        let t = sample().to_text(false);
        for part in [
            "Summary:",
            "Requests/sec:",
            "Response time histogram:",
            "Latency distribution:",
            "99.9% in",
            "Error distribution:",
            "[2]\tUnavailable",
            "∎",
        ] {
            assert!(t.contains(part), "{part:?} missing from\n{t}");
        }
    }

    #[test]
    fn empty_run() {
        let mut o = Outcome::new();
        o.errors.insert("DeadlineExceeded".into(), 3);
        let r = Report::new("range", &o, RunMeta::default(), serde_json::Value::Null);
        assert_eq!((r.total, r.errors, r.requests_per_sec), (3, 3, 0.0));
        assert!(r.histogram.is_empty());
        assert!(!r.to_text(true).contains("histogram"));
    }

    #[test]
    fn buckets_span_fastest_to_slowest() {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            h.record(us).unwrap();
        }
        let b = buckets(&h);
        assert_eq!(
            b.first().unwrap().count,
            1,
            "only the fastest is at the first bound"
        );
        assert!((b.last().unwrap().le_ms - 1.0).abs() < 0.01);
        let whole_us = |ms: f64| ((ms * 1000.0) - (ms * 1000.0).round()).abs() < 1e-6;
        assert!(
            b.iter().all(|b| whole_us(b.le_ms)),
            "bounds in whole microseconds"
        );
        assert_eq!(b.iter().map(|b| b.count).sum::<u64>(), 1000);
    }
}
