//! The workloads, after etcd's published performance page scaled to 2 cores,
//! each one `keel bench` command line, and what a run of one yields.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// What a workload is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Puts, txns and ranges: keel ≥ 1.5× etcd's requests/s, p99 no worse.
    Throughput,
    /// Watch delivery and lease keep-alives: reported beside, no ratio target.
    Other,
}

/// One workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Short name, as in the tables and the chart.
    pub name: &'static str,
    pub class: Class,
    pub conns: u32,
    pub clients: u32,
    /// Send every request to the leader.
    pub target_leader: bool,
    /// The `keel bench` subcommand and its flags.
    pub args: Vec<String>,
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// The workloads; `quick` shrinks every total so that a run takes seconds.
pub fn all(quick: bool) -> Vec<Workload> {
    let n = |full: u64, small: u64| if quick { small } else { full };
    let put = |total: u64, seq: bool| {
        words(&format!(
            "put --key-size 8 --val-size 256 --key-space-size 100000 --total {total}{}",
            if seq { " --sequential-keys" } else { "" }
        ))
    };
    let range =
        |c: &str, total: u64| words(&format!("range foo --consistency {c} --total {total}"));
    let w = |name, class, conns, clients, target_leader, args| Workload {
        name,
        class,
        conns,
        clients,
        target_leader,
        args,
    };
    use Class::*;
    // Put totals as etcd's performance page (10,000 at 1/1, 100,000 at
    // 100/1000; 10/100 is ours, for two cores): a run of a second or two
    // weighs its ramp-up against the faster server.
    vec![
        w("put 1/1", Throughput, 1, 1, true, put(n(10000, 50), true)),
        w("put 10/100", Throughput, 10, 100, true, put(n(60000, 300), false)),
        w("put 100/1000", Throughput, 100, 1000, true, put(n(100000, 1000), false)),
        w("range l 1/1", Throughput, 1, 1, false, range("l", n(10000, 50))),
        w("range l 10/100", Throughput, 10, 100, false, range("l", n(60000, 500))),
        w("range s 1/1", Throughput, 1, 1, false, range("s", n(20000, 50))),
        w("range s 10/100", Throughput, 10, 100, false, range("s", n(100000, 500))),
        w(
            "txn-put 10/100",
            Throughput,
            10,
            100,
            true,
            words(&format!(
                "txn-put --key-size 8 --val-size 256 --txn-ops 1 --key-space-size 100000 --total {}",
                n(30000, 300)
            )),
        ),
        w(
            "watch 100×100",
            Other,
            10,
            10,
            true,
            if quick {
                words("watch --streams 10 --watch-per-stream 10 --watched-key-total 10 --put-total 100 --put-rate 100 --key-size 8 --val-size 256")
            } else {
                words("watch --streams 100 --watch-per-stream 100 --watched-key-total 100 --put-total 10000 --put-rate 1000 --key-size 8 --val-size 256")
            },
        ),
        w(
            "lease keep-alive 10/100",
            Other,
            10,
            100,
            true,
            words(&format!("lease-keepalive --total {}", n(100000, 500))),
        ),
    ]
}

/// What one run of a workload yielded.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    /// Requests per second (for watch: events delivered per second).
    pub rate: f64,
    /// p99 latency in ms (for watch: delivery latency).
    pub p99: f64,
    pub p50: f64,
}

/// Runs `keel bench` with `w` against `endpoints` and reads its JSON report.
/// A run with errors (or, for watch, a missing or duplicated event) fails.
pub fn run(keel: &Path, endpoints: &str, w: &Workload) -> Result<Figures> {
    let mut cmd = Command::new(keel);
    cmd.arg("bench")
        .arg("--endpoints")
        .arg(endpoints)
        .arg("--conns")
        .arg(w.conns.to_string())
        .arg("--clients")
        .arg(w.clients.to_string())
        .arg("--json");
    if w.target_leader {
        cmd.arg("--target-leader");
    }
    cmd.args(&w.args);
    let v = run_json(cmd).with_context(|| format!("workload {}", w.name))?;
    let errors = v["errors"].as_u64().unwrap_or(0);
    if errors > 0 {
        bail!(
            "workload {}: {errors} errors: {}",
            w.name,
            v["errors_by_code"]
        );
    }
    if let Some(watch) = v.get("watch") {
        for bad in [
            "events_missing",
            "events_duplicate",
            "events_unexpected",
            "put_errors",
        ] {
            let k = watch[bad].as_u64().unwrap_or(0);
            if k > 0 {
                bail!("workload {}: {bad} = {k}", w.name);
            }
        }
    }
    let l = &v["latency_ms"];
    let f = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
    let rate = match v.get("watch") {
        Some(watch) => f(&watch["events_per_sec"]),
        None => f(&v["requests_per_sec"]),
    };
    Ok(Figures {
        rate,
        p99: f(&l["p99"]),
        p50: f(&l["p50"]),
    })
}

/// How long one `keel bench` run may take: a member that stops answering
/// (e.g. a storage deadlock) must fail the comparison, not hang it.
const RUN_LIMIT: Duration = Duration::from_secs(20 * 60);

/// Runs a `keel bench ... --json` command and parses its one JSON line.
pub fn run_json(mut cmd: Command) -> Result<Value> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run keel bench")?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} did not finish in {RUN_LIMIT:?} (a member stopped answering?)");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = out_reader.join().unwrap_or_default();
    let errors = err_reader.join().unwrap_or_default();
    if !status.success() {
        bail!("{cmd:?} failed ({status}): {}", errors.trim());
    }
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("no JSON report from {cmd:?}: {text}"))?;
    serde_json::from_str(line).with_context(|| format!("parse the report of {cmd:?}"))
}

/// Puts `keys` keys of 8 bytes with 256-byte values (sequential keys, so
/// every key is distinct), with 10 connections and 100 clients.
pub fn load(keel: &Path, endpoints: &str, keys: u64) -> Result<f64> {
    let w = Workload {
        name: "load keys",
        class: Class::Other,
        conns: 10,
        clients: 100,
        target_leader: true,
        args: words(&format!(
            "put --key-size 8 --val-size 256 --sequential-keys --key-space-size {keys} --total {keys}"
        )),
    };
    Ok(run(keel, endpoints, &w)?.rate)
}

/// The disk's fdatasync latency under `dir`: (p50, p99) in ms.
pub fn fsync(keel: &Path, dir: &Path, count: u64) -> Result<(f64, f64)> {
    let mut cmd = Command::new(keel);
    cmd.args(["bench", "fsync", "--json", "--path"])
        .arg(dir)
        .arg("--count")
        .arg(count.to_string());
    let v = run_json(cmd).context("measure fdatasync")?;
    let l = &v["latency_ms"];
    Ok((
        l["p50"].as_f64().unwrap_or(f64::NAN),
        l["p99"].as_f64().unwrap_or(f64::NAN),
    ))
}
