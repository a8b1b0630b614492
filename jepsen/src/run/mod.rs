//! One test run, start to verdict: lay out the run folder, start the cluster,
//! run the workload's clients and the nemesis schedule for the time limit, stop
//! and heal everything, let the workload do its final reads on every member
//! (recovery), check the history, write the report.
//!
//! Threads: the clients are tasks on a small tokio runtime; the nemesis
//! schedule runs on its own thread (its work is blocking: processes, HTTP);
//! the progress line on another. Ctrl-C stops the run in order (faults healed,
//! members killed); a second Ctrl-C kills the members and exits at once.

pub mod folder;
pub mod progress;
pub mod summary;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cluster::{self, Cluster};
use crate::db::{etcd::Etcd, keel::Keel, Db};
use crate::error::harness;
use crate::nemesis::schedule::{self, Fault, Schedule};
use crate::recorder::Recorder;
use crate::workload::{self, Check, ClientCtx, FinalCtx, Recovery};
use crate::Result;

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    Keel,
    Etcd,
}

/// Everything a run needs.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub db: DbKind,
    /// The db's binary (default: found on PATH, or keel beside this program).
    pub binary: Option<PathBuf>,
    pub workload: String,
    /// Comma-separated nemeses (see [`crate::nemesis`]); empty or `none`.
    pub nemesis: String,
    pub time_limit: Duration,
    pub nodes: usize,
    pub netns: bool,
    pub seed: u64,
    pub unsafe_stale_reads: bool,
    pub schedule: ScheduleKind,
    pub interval: Duration,
    pub heal_after: Duration,
    pub clients_per_node: usize,
    /// Target operations per second over all clients.
    pub rate: f64,
    pub op_timeout: Duration,
    pub heartbeat_interval: u64,
    pub election_timeout: u64,
    pub runs_dir: PathBuf,
    /// How long the cluster has to answer the final reads.
    pub recovery_timeout: Duration,
    /// Show the live progress line (only drawn on a terminal).
    pub progress: bool,
}

/// The schedule's kind, for the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Interval,
    Random,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db: DbKind::Keel,
            binary: None,
            workload: "register".into(),
            nemesis: "kill,partition".into(),
            time_limit: Duration::from_secs(60),
            nodes: 3,
            netns: false,
            seed: 0,
            unsafe_stale_reads: false,
            schedule: ScheduleKind::Interval,
            interval: Duration::from_secs(10),
            heal_after: Duration::from_secs(5),
            clients_per_node: 2,
            rate: 200.0,
            op_timeout: Duration::from_secs(2),
            heartbeat_interval: 100,
            election_timeout: 1000,
            runs_dir: PathBuf::from("runs"),
            recovery_timeout: Duration::from_secs(30),
            progress: true,
        }
    }
}

/// What a run found.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub dir: PathBuf,
    pub checks: Vec<Check>,
    pub recovery: Recovery,
    pub faults: Vec<Fault>,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// Faults skipped and heal errors: the run still counts, but say so.
    pub warnings: Vec<String>,
    /// Members that exited without being killed (a crash fails the run).
    pub crashes: Vec<String>,
    pub interrupted: bool,
    pub seconds: f64,
}

impl Outcome {
    /// Every checker valid, no member crashed, and the cluster recovered.
    pub fn valid(&self) -> bool {
        self.recovery.ok && self.crashes.is_empty() && self.checks.iter().all(|c| c.valid)
    }
}

fn db_for(cfg: &Config) -> Result<Arc<dyn Db>> {
    Ok(match cfg.db {
        DbKind::Keel => {
            let binary = cfg
                .binary
                .clone()
                .or_else(crate::db::keel::find_binary)
                .ok_or_else(|| {
                    harness("keel binary not found: give --keel-bin or build it (cargo build --release --bin keel)")
                })?;
            Arc::new(Keel {
                binary,
                unsafe_stale_reads: cfg.unsafe_stale_reads,
            })
        }
        DbKind::Etcd => {
            let binary = cfg
                .binary
                .clone()
                .or_else(|| crate::db::on_path("etcd"))
                .ok_or_else(|| harness("etcd not found on PATH; apt-get install etcd-server"))?;
            Arc::new(Etcd { binary })
        }
    })
}

/// Runs one test.
pub fn run(cfg: &Config) -> Result<Outcome> {
    let started = Instant::now();
    let work = workload::by_name(&cfg.workload).ok_or_else(|| {
        harness(format!(
            "unknown workload {:?} (known: {})",
            cfg.workload,
            workload::NAMES.join(", ")
        ))
    })?;
    let db = db_for(cfg)?;
    let dir = folder::create(&cfg.runs_dir, &cfg.workload)?;
    let config_json = serde_json::to_string_pretty(cfg).expect("config serializes");
    std::fs::write(dir.join("config.json"), config_json).map_err(harness)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(harness)?;
    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    let cluster = Arc::new(Cluster::start(
        db,
        &cluster::Options {
            nodes: cfg.nodes,
            heartbeat_interval: cfg.heartbeat_interval,
            election_timeout: cfg.election_timeout,
            netns: cfg.netns,
            dir: dir.clone(),
        },
    )?);
    {
        // A weak handle: the members must die when the run drops the cluster.
        let (stop, interrupted) = (stop.clone(), interrupted.clone());
        let cluster = Arc::downgrade(&cluster);
        rt.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "\nkeel-jepsen: interrupted; healing and stopping (Ctrl-C again to kill now)"
                );
                interrupted.store(true, Ordering::SeqCst);
                stop.store(true, Ordering::SeqCst);
                if tokio::signal::ctrl_c().await.is_ok() {
                    if let Some(cluster) = cluster.upgrade() {
                        for i in 0..cluster.len() {
                            cluster.kill(i);
                        }
                    }
                    std::process::exit(2);
                }
            }
        });
    }
    let (mut nemeses, mut warnings) = crate::nemesis::parse(&cfg.nemesis, &cluster)?;
    let recorder = Arc::new(Recorder::create(&dir.join("history.jsonl"))?);

    // Clients, pinned round robin to members.
    let n_clients = cfg.nodes * cfg.clients_per_node.max(1);
    let pace = Duration::from_secs_f64(n_clients as f64 / cfg.rate.max(0.1));
    // One attempt per call: keel-client retries a call whose error looks like
    // a connection problem, and a write whose connection was reset after it was
    // sent may have been applied; the workload must see that first error to
    // record it as unknown, not a later "connection refused" as a failure.
    let opts = keel_client::Options {
        dial_timeout: Duration::from_secs(1),
        request_timeout: cfg.op_timeout,
        max_attempts: 1,
        ..Default::default()
    };
    let mut clients = Vec::new();
    for p in 0..n_clients {
        let m = &cluster.members()[p % cfg.nodes];
        let ctx = ClientCtx {
            process: p as u64,
            node: m.name.clone(),
            client: client_for(&rt, m.endpoint(), &opts)?,
            recorder: recorder.clone(),
            stop: stop.clone(),
            seed: cfg.seed.wrapping_mul(1000).wrapping_add(p as u64),
            op_timeout: cfg.op_timeout,
            pace,
        };
        clients.push(rt.spawn(work.clone().run_client(ctx)));
    }

    // Faults.
    let sched = Schedule {
        mode: match cfg.schedule {
            ScheduleKind::Interval => schedule::Mode::Interval,
            ScheduleKind::Random => schedule::Mode::Random,
        },
        interval: cfg.interval,
        heal_after: cfg.heal_after,
        seed: cfg.seed,
    };
    let nemesis_thread = {
        let (cluster, recorder, stop) = (cluster.clone(), recorder.clone(), stop.clone());
        std::thread::spawn(move || schedule::run(&mut nemeses, &cluster, &recorder, &stop, &sched))
    };
    let progress = (cfg.progress && std::io::stderr().is_terminal()).then(|| {
        progress::spawn(
            recorder.clone(),
            stop.clone(),
            cfg.time_limit,
            cluster.members().len(),
        )
    });

    let until = Instant::now() + cfg.time_limit;
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    let faults = nemesis_thread
        .join()
        .map_err(|_| harness("the nemesis thread panicked"))?;
    for c in clients {
        let _ = rt.block_on(c);
    }
    if let Some(p) = progress {
        let _ = p.join();
    }
    let crashes = cluster.crashes();
    if let Err(e) = cluster.heal_all() {
        warnings.push(format!("final heal: {e}"));
    }
    for f in &faults {
        warnings.extend(f.errors.iter().map(|e| format!("{}: {e}", f.nemesis)));
    }
    let was_interrupted = interrupted.load(Ordering::SeqCst);
    let recovery = if was_interrupted {
        Recovery {
            ok: false,
            detail: "interrupted before the final reads".into(),
        }
    } else {
        let members = cluster
            .members()
            .iter()
            .map(|m| Ok((m.name.clone(), client_for(&rt, m.endpoint(), &opts)?)))
            .collect::<Result<Vec<_>>>()?;
        rt.block_on(work.clone().finish(FinalCtx {
            members,
            recorder: recorder.clone(),
            first_process: n_clients as u64,
            timeout: cfg.recovery_timeout,
        }))
    };
    recorder.flush()?;
    // The members are no longer needed: stop them before checking, which
    // wants both cores.
    drop(cluster);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let checks = work.check(&dir.join("history.jsonl"), threads)?;
    let outcome = Outcome {
        dir: dir.clone(),
        checks,
        recovery,
        faults,
        ok: recorder.counts.ok.load(Ordering::Relaxed),
        fail: recorder.counts.fail.load(Ordering::Relaxed),
        info: recorder.counts.info.load(Ordering::Relaxed),
        warnings,
        crashes,
        interrupted: was_interrupted,
        seconds: started.elapsed().as_secs_f64(),
    };
    summary::write_files(cfg, &outcome, &recorder.records())?;
    Ok(outcome)
}

fn client_for(
    rt: &tokio::runtime::Runtime,
    endpoint: String,
    opts: &keel_client::Options,
) -> Result<keel_client::Client> {
    // Channels are made inside the runtime (tonic needs its reactor).
    let _guard = rt.enter();
    keel_client::Client::new([endpoint], opts.clone()).map_err(harness)
}
