//! `keel-jepsen`: the command line of keel's linearizability tooling.
//!
//! `check` reads a history (format detected from its content) and prints the
//! verdict: exit 0 when linearizable, 1 when not, 2 when the input cannot be
//! read. `bench-checker` times the checker on Porcupine's data.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use keel_jepsen::{bench, History, ModelKind, Options};

#[derive(Parser)]
#[command(
    name = "keel-jepsen",
    version,
    about = "Linearizability checking for keel and etcd"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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

#[derive(Clone, Copy, ValueEnum)]
enum ModelArg {
    Register,
    Kv,
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
        Command::Check {
            model,
            no_partition,
            json,
            threads,
            file,
        } => {
            let history = History::read(&file)?;
            let model = match model {
                ModelArg::Register => ModelKind::Register,
                ModelArg::Kv => ModelKind::Kv,
            };
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
