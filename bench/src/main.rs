//! `keel-compare` (run it as `bench/compare`): keel and etcd 3.4.23 side by
//! side on one machine, measured in the same run with the same load
//! generator (`keel bench`).
//!
//! For each cluster size (1 and 3 members on loopback) and each round, it
//! starts a fresh etcd cluster, runs every workload, stops it, then does the
//! same with a fresh keel cluster: etcd, keel, etcd, keel... Both servers get
//! the same heartbeat and election timeouts, snapshot count and quota, fsync
//! on every write, and data on the same disk (`--data`). Then, on one member
//! each, it loads a million keys and reads the resident memory, and times a
//! restart to ready. The disk's fdatasync latency is measured beside them.
//!
//! It prints a markdown section (medians, keel / etcd ratios, the targets of
//! issue 8), splices it into `docs/benchmarks.md` between
//! `<!-- compare:begin -->` and `<!-- compare:end -->`, and draws the ratios
//! into a PNG. `--quick` shrinks everything to a smoke run of seconds (the
//! test suite runs it so that the comparison cannot rot).

mod cluster;
mod report;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Parser;

use cluster::{Cluster, Kind, Servers};
use report::{Memory, Row, RunInfo};

#[derive(Parser, Debug)]
#[command(name = "keel-compare", about = "keel and etcd 3.4 side by side")]
struct Args {
    /// Rounds of every workload on each server (medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Cluster sizes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    members: Vec<usize>,
    /// Only the workloads whose name contains one of these (comma separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Keys loaded for the memory and restart figures (0: skip them).
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// A smoke run: 1 round, 1 member, tiny totals, 2,000 keys; writes the
    /// document and chart only where --doc and --chart say.
    #[arg(long)]
    quick: bool,
    /// The keel binary (default: target/release/keel beside this binary).
    #[arg(long)]
    keel: Option<PathBuf>,
    /// The etcd binary (default: `etcd` on PATH, installed from Debian's
    /// etcd-server when missing and running as root).
    #[arg(long)]
    etcd: Option<PathBuf>,
    /// Where the servers keep their data (the disk being measured); emptied
    /// before and removed after.
    #[arg(long, default_value = "bench-data/compare")]
    data: PathBuf,
    /// The document to splice the section into (default docs/benchmarks.md;
    /// none with --quick).
    #[arg(long)]
    doc: Option<PathBuf>,
    /// The PNG chart (default docs/compare.png; none with --quick).
    #[arg(long)]
    chart: Option<PathBuf>,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("keel-compare: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.rounds = 1;
        args.members = vec![1];
        if args.keys == 1_000_000 {
            args.keys = 2_000;
        }
    } else {
        args.doc.get_or_insert_with(|| "docs/benchmarks.md".into());
        args.chart.get_or_insert_with(|| "docs/compare.png".into());
    }
    let command = std::iter::once("bench/compare".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let servers = Servers {
        keel: match &args.keel {
            Some(k) => k.clone(),
            None => default_keel()?,
        },
        etcd: match &args.etcd {
            Some(e) => e.clone(),
            None => find_or_install_etcd()?,
        },
        data: std::path::absolute(&args.data)?,
    };
    let _ = std::fs::remove_dir_all(&servers.data);
    std::fs::create_dir_all(&servers.data)?;
    let etcd_version = first_line(Command::new(&servers.etcd).arg("--version"))?;
    let load_before = load_average();

    let (fsync_p50, fsync_p99) = workloads::fsync(
        &servers.keel,
        &servers.data,
        if args.quick { 20 } else { 300 },
    )?;
    eprintln!("fdatasync p50 {fsync_p50:.3} ms, p99 {fsync_p99:.3} ms");

    let chosen: Vec<_> = workloads::all(args.quick)
        .into_iter()
        .filter(|w| args.only.is_empty() || args.only.iter().any(|o| w.name.contains(o.as_str())))
        .collect();
    if chosen.is_empty() {
        bail!("no workload matches --only {:?}", args.only);
    }
    let mut rows: Vec<Row> = Vec::new();
    for &n in &args.members {
        let first = rows.len();
        for w in &chosen {
            rows.push(Row {
                members: n,
                name: w.name,
                class: w.class,
                etcd: Vec::new(),
                keel: Vec::new(),
            });
        }
        for round in 1..=args.rounds {
            for kind in [Kind::Etcd, Kind::Keel] {
                let tag = format!("{}-{n}-r{round}", kind.name());
                let cluster = Cluster::start(&servers, kind, n, &tag)?;
                for (i, w) in chosen.iter().enumerate() {
                    let f = workloads::run(&servers.keel, &cluster.endpoints(), w).with_context(
                        || format!("{} with {n} member(s), round {round}", kind.name()),
                    )?;
                    eprintln!(
                        "{n} member(s), round {round}, {:>4}: {:<24} {:>9.0} /s  p50 {:>7.2} ms  p99 {:>7.2} ms",
                        kind.name(),
                        w.name,
                        f.rate,
                        f.p50,
                        f.p99
                    );
                    let row = &mut rows[first + i];
                    match kind {
                        Kind::Etcd => row.etcd.push(f),
                        Kind::Keel => row.keel.push(f),
                    }
                }
                cluster.stop();
                let _ = std::fs::remove_dir_all(servers.data.join(&tag));
            }
        }
    }

    let mut memory = Vec::new();
    if args.keys > 0 {
        for kind in [Kind::Etcd, Kind::Keel] {
            memory.push(memory_and_restart(&servers, kind, args.keys)?);
        }
    }

    let info = RunInfo {
        command,
        date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        machine: machine(),
        etcd_version,
        keel_commit: keel_commit(),
        load_before,
        load_after: load_average(),
        fsync_p50,
        fsync_p99,
        rounds: args.rounds,
        chart: args.chart.as_ref().and_then(|c| {
            let doc_dir = args.doc.as_ref()?.parent()?;
            let rel = c.strip_prefix(doc_dir).unwrap_or(c);
            Some(rel.display().to_string())
        }),
    };
    let section = report::markdown(&info, &rows, &memory);
    println!("{section}");
    if let Some(chart) = &args.chart {
        report::chart(chart, &rows)?;
        eprintln!("chart: {}", chart.display());
    }
    if let Some(doc) = &args.doc {
        let old = std::fs::read_to_string(doc).unwrap_or_default();
        let new = report::splice(
            &old,
            &section,
            "## Issue 8: keel and etcd side by side (`bench/compare`)",
        );
        std::fs::write(doc, new).with_context(|| format!("write {}", doc.display()))?;
        eprintln!("updated {}", doc.display());
    }
    let _ = std::fs::remove_dir_all(&servers.data);
    Ok(())
}

/// Loads `keys` keys into a fresh 1-member cluster, reads its memory, then
/// restarts it and times how long it takes to be ready again.
fn memory_and_restart(servers: &Servers, kind: Kind, keys: u64) -> Result<Memory> {
    let tag = format!("{}-memory", kind.name());
    let mut cluster = Cluster::start(servers, kind, 1, &tag)?;
    let load_rate = workloads::load(&servers.keel, &cluster.endpoints(), keys)?;
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (rss, peak) = cluster.memory(0)?;
    let disk = cluster.data_size(0);
    let restart = cluster.restart(0)?;
    let (rss_after_restart, _) = cluster.memory(0)?;
    eprintln!(
        "{}: {keys} keys at {load_rate:.0} puts/s; RSS {} MiB (peak {} MiB); restart to ready {:.2} s",
        kind.name(),
        rss >> 20,
        peak >> 20,
        restart.as_secs_f64()
    );
    cluster.stop();
    let _ = std::fs::remove_dir_all(servers.data.join(&tag));
    Ok(Memory {
        server: kind.name(),
        keys,
        load_rate,
        rss,
        peak,
        disk,
        restart_sec: restart.as_secs_f64(),
        rss_after_restart,
    })
}

/// target/release/keel beside this binary.
fn default_keel() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let keel = me.with_file_name("keel");
    if !keel.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release --bin keel`, or pass --keel",
            keel.display()
        );
    }
    Ok(keel)
}

fn on_path(tool: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|p| p.join(tool))
        .find(|p| p.is_file())
}

/// `etcd` on PATH; when missing, installs Debian's etcd-server (as root).
fn find_or_install_etcd() -> Result<PathBuf> {
    if let Some(e) = on_path("etcd") {
        return Ok(e);
    }
    let uid = first_line(Command::new("id").arg("-u")).unwrap_or_default();
    if uid != "0" {
        bail!("etcd not found: apt-get install etcd-server (as root), or pass --etcd");
    }
    eprintln!("etcd not found: installing Debian's etcd-server");
    for cmd in [
        vec!["apt-get", "update"],
        vec![
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            "etcd-server",
        ],
    ] {
        let st = Command::new(cmd[0])
            .args(&cmd[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .with_context(|| format!("run {}", cmd.join(" ")))?;
        if !st.success() {
            bail!("{} failed ({st})", cmd.join(" "));
        }
    }
    on_path("etcd").context("etcd-server installed but no etcd on PATH")
}

fn first_line(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".into())
}

/// Cores, CPU model, memory, kernel.
fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / (1024.0 * 1024.0))
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem_gib:.1} GiB memory, Linux {kernel}")
}

/// The commit of the working tree the keel binary was built from (best effort).
fn keel_commit() -> String {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rev =
        first_line(
            Command::new("git")
                .arg("-C")
                .arg(&here)
                .args(["rev-parse", "--short", "HEAD"]),
        )
        .unwrap_or_default();
    let dirty = Command::new("git")
        .arg("-C")
        .arg(&here)
        .args(["diff", "--quiet", "HEAD"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(false);
    match (rev.is_empty(), dirty) {
        (true, _) => "unknown commit".into(),
        (false, true) => format!("commit {rev} with local changes"),
        (false, false) => format!("commit {rev}"),
    }
}
