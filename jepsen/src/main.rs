//! `keel-jepsen`: the command line of keel's chaos and linearizability tooling.
//!
//! `test` runs a cluster under a workload and faults and prints the verdict
//! table: exit 0 when every checker is valid and the cluster recovered, 1 when
//! not, 2 when the harness itself failed (or was interrupted). `check` reads a history (format detected from its content) and prints the
//! verdict: exit 0 when linearizable, 1 when not, 2 when the input cannot be
//! read. `bench-checker` times the checker on Porcupine's data.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use keel_jepsen::{bench, run, History, ModelKind, Options};

#[derive(Parser)]
#[command(
    name = "keel-jepsen",
    version,
    about = "Chaos and linearizability testing for keel and etcd"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a test: a cluster, a workload, faults; then check and report.
    Test(TestArgs),
    /// Check a history for linearizability.
    Check {
        /// The sequential model to check against.
        #[arg(long, value_enum)]
        model: ModelArg,
        /// Do not split the history by key.
        #[arg(long)]
        no_partition: bool,
        /// Print the verdict as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Worker threads (default: the number of CPUs).
        #[arg(long)]
        threads: Option<usize>,
        /// History file: keel JSON lines, a Jepsen log or EDN lines.
        file: PathBuf,
    },
    /// Time the checker on Porcupine's histories (build with --release).
    BenchChecker {
        /// Porcupine data directory (default: $KEEL_PORCUPINE_DATA, then
        /// shared/data/porcupine next to the repository).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Runs per case; the best and the median are shown.
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
}

#[derive(clap::Args)]
struct TestArgs {
    /// The database under test.
    #[arg(long, value_enum, default_value = "keel")]
    db: DbArg,
    /// The workload.
    #[arg(long, default_value = "register")]
    workload: String,
    /// Faults, comma-separated: kill, pause, partition, delay, loss, member
    /// (each with an optional target, e.g. kill:leader, partition:ring,
    /// member:leader), all, or none.
    #[arg(long, default_value = "kill,partition")]
    nemesis: String,
    /// Seconds of workload.
    #[arg(long, default_value_t = 60.0)]
    time_limit: f64,
    /// Cluster size.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Each member in its own network namespace (root; partitions by iptables, delay and loss by tc).
    #[arg(long)]
    netns: bool,
    /// Seed for the schedule and the clients (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// The keel binary (default: $KEEL_BIN, keel beside this program, PATH).
    #[arg(long)]
    keel_bin: Option<PathBuf>,
    /// The etcd binary (default: PATH).
    #[arg(long)]
    etcd_bin: Option<PathBuf>,
    /// Start keel with its deliberately unsafe stale-read mode.
    #[arg(long)]
    unsafe_stale_reads: bool,
    /// Fault schedule.
    #[arg(long, value_enum, default_value = "interval")]
    schedule: ScheduleArg,
    /// Seconds from one fault's start to the next.
    #[arg(long, default_value_t = 10.0)]
    interval: f64,
    /// Seconds each fault lasts (default: half the interval).
    #[arg(long)]
    heal_after: Option<f64>,
    /// Clients per member.
    #[arg(long, default_value_t = 2)]
    clients_per_node: usize,
    /// Target operations per second, all clients together.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Seconds before a call counts as unknown (info).
    #[arg(long, default_value_t = 2.0)]
    op_timeout: f64,
    /// Raft heartbeat, ms (both dbs).
    #[arg(long, default_value_t = 100)]
    heartbeat_interval: u64,
    /// Raft election timeout, ms (both dbs).
    #[arg(long, default_value_t = 1000)]
    election_timeout: u64,
    /// Where run folders go.
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    /// Seconds the healed cluster has to answer the final reads.
    #[arg(long, default_value_t = 30.0)]
    recovery_timeout: f64,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum DbArg {
    Keel,
    Etcd,
}

#[derive(Clone, Copy, ValueEnum)]
enum ScheduleArg {
    Interval,
    Random,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn test(a: TestArgs) -> anyhow::Result<ExitCode> {
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let db = match a.db {
        DbArg::Keel => run::DbKind::Keel,
        DbArg::Etcd => run::DbKind::Etcd,
    };
    let cfg = run::Config {
        db,
        binary: match db {
            run::DbKind::Keel => a.keel_bin,
            run::DbKind::Etcd => a.etcd_bin,
        },
        workload: a.workload,
        nemesis: a.nemesis,
        time_limit: secs(a.time_limit),
        nodes: a.nodes,
        netns: a.netns,
        seed,
        unsafe_stale_reads: a.unsafe_stale_reads,
        schedule: match a.schedule {
            ScheduleArg::Interval => run::ScheduleKind::Interval,
            ScheduleArg::Random => run::ScheduleKind::Random,
        },
        interval: secs(a.interval),
        heal_after: secs(a.heal_after.unwrap_or(a.interval / 2.0)),
        clients_per_node: a.clients_per_node,
        rate: a.rate,
        op_timeout: secs(a.op_timeout),
        heartbeat_interval: a.heartbeat_interval,
        election_timeout: a.election_timeout,
        runs_dir: a.runs_dir,
        recovery_timeout: secs(a.recovery_timeout),
        progress: !a.quiet,
    };
    anyhow::ensure!(cfg.nodes >= 1, "--nodes must be at least 1");
    anyhow::ensure!(
        !(cfg.unsafe_stale_reads && db == run::DbKind::Etcd),
        "--unsafe-stale-reads is a keel mode; etcd has none"
    );
    anyhow::ensure!(cfg.rate > 0.0, "--rate must be positive");
    let outcome = run::run(&cfg)?;
    print!("{}", run::summary::table(&cfg, &outcome));
    Ok(ExitCode::from(if outcome.interrupted {
        2
    } else if outcome.valid() {
        0
    } else {
        1
    }))
}

#[derive(Clone, Copy, ValueEnum)]
enum ModelArg {
    Register,
    Kv,
    /// acquire/release of locks, per lock name (the lock workload).
    Mutex,
    /// list-append transactions, checked Elle-style for strict serializability.
    ListAppend,
    /// the watch workload's streams and writes, checked by etcd's watch rules.
    Watch,
}

/// `check --model watch`: exit 0 when every rule holds, 1 when one does not.
fn check_watch(file: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let report = keel_jepsen::watchcheck::check(&keel_jepsen::workload::read_events(file)?)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("watch guarantees hold: {}", report.valid());
        print!("{}", report.text());
    }
    Ok(ExitCode::from(if report.valid() { 0 } else { 1 }))
}

/// `check --model list-append`: exit 0 strict-serializable, 1 not.
fn check_list_append(file: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let txns = keel_jepsen::elle::txns(&keel_jepsen::workload::read_events(file)?)?;
    let report = keel_jepsen::elle::check(&txns);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("strict-serializable: {}", report.valid());
        println!("{} txns, {} committed", report.txns, report.committed);
        for a in &report.anomalies {
            println!("{}: {}", a.kind, a.explanation);
        }
    }
    Ok(ExitCode::from(if report.valid() { 0 } else { 1 }))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keel-jepsen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Test(args) => test(args),
        Command::Check {
            model,
            no_partition,
            json,
            threads,
            file,
        } => {
            let model = match model {
                ModelArg::Register => ModelKind::Register,
                ModelArg::Kv => ModelKind::Kv,
                ModelArg::Mutex => ModelKind::Mutex,
                ModelArg::ListAppend => return check_list_append(&file, json),
                ModelArg::Watch => return check_watch(&file, json),
            };
            let history = History::read(&file)?;
            let mut opts = Options {
                partition: !no_partition,
                ..Options::default()
            };
            opts.threads = threads.unwrap_or(opts.threads);
            let verdict = model
                .check(&history, &opts)
                .with_context(|| format!("{}", file.display()))?;
            let text = if json {
                serde_json::to_string_pretty(&verdict)? + "\n"
            } else {
                verdict.to_string()
            };
            // A closed pipe (`| head`) is not an error: the verdict is the exit code.
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(e.into());
                }
            }
            Ok(ExitCode::from(if verdict.linearizable { 0 } else { 1 }))
        }
        Command::BenchChecker { data, runs } => {
            let dir = bench::data_dir(data)?;
            let threads = Options::default().threads;
            println!(
                "checker benchmark: {runs} runs per case, {threads} threads, data {}",
                dir.display()
            );
            println!(
                "{:<38} {:>10} {:>10} {:>10}",
                "case", "best", "median", "porcupine"
            );
            for case in bench::cases(&dir)? {
                let t = bench::time(&case, runs, threads)?;
                println!(
                    "{:<38} {:>8.1}ms {:>8.1}ms {:>8.0}ms",
                    t.name,
                    t.best.as_secs_f64() * 1e3,
                    t.median.as_secs_f64() * 1e3,
                    t.porcupine.as_secs_f64() * 1e3
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
