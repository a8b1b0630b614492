//! Times the checker on Porcupine's histories (`keel-jepsen bench-checker`).
//!
//! Five cases, with Porcupine's own time on the same 2-core machine as the
//! target: all 102 `jepsen/` register histories together, `kv/c50-{ok,bad}`
//! split by key, and `kv/c10-{ok,bad}` not split. Parsing is not timed (as in
//! Porcupine's benchmarks); every run also checks the verdict against
//! `expected.tsv`. Meaningful only in a release build.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Error, History, ModelKind, Options, Result};

/// Environment variable naming the Porcupine data directory.
pub const DATA_ENV: &str = "KEEL_PORCUPINE_DATA";

/// The data directory: `explicit`, else `$KEEL_PORCUPINE_DATA`, else
/// `../../shared/data/porcupine` from this crate's source. Must exist.
pub fn data_dir(explicit: Option<PathBuf>) -> Result<PathBuf> {
    let dir = explicit
        .or_else(|| std::env::var_os(DATA_ENV).map(PathBuf::from))
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/porcupine")
        });
    if dir.join("expected.tsv").is_file() {
        Ok(dir)
    } else {
        Err(Error::Invalid(format!(
            "no Porcupine data at {} (set {DATA_ENV})",
            dir.display()
        )))
    }
}

/// The rows of `expected.tsv`: (relative path, linearizable).
pub fn expected(dir: &Path) -> Result<Vec<(String, bool)>> {
    let path = dir.join("expected.tsv");
    let text = std::fs::read_to_string(&path).map_err(|error| Error::Io { path, error })?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let mut cols = line.split('\t');
        let (Some(file), Some(ok)) = (cols.next(), cols.next()) else {
            continue;
        };
        let ok = match ok.trim() {
            "true" => true,
            "false" => false,
            _ => return Err(Error::input(i + 1, line, "expected true or false")),
        };
        rows.push((file.to_string(), ok));
    }
    Ok(rows)
}

/// The model for a file of the Porcupine data, by its folder.
pub fn model_for(file: &str) -> ModelKind {
    if file.starts_with("kv/") {
        ModelKind::Kv
    } else {
        ModelKind::Register
    }
}

/// One benchmark case.
pub struct Case {
    pub name: &'static str,
    pub partition: bool,
    /// Porcupine's time on the reference machine.
    pub porcupine: Duration,
    histories: Vec<(ModelKind, History, bool)>,
}

/// Timings of one case.
pub struct Timing {
    pub name: &'static str,
    pub porcupine: Duration,
    pub best: Duration,
    pub median: Duration,
}

/// Loads the five cases from `dir`.
pub fn cases(dir: &Path) -> Result<Vec<Case>> {
    let rows = expected(dir)?;
    let load = |pred: &dyn Fn(&str) -> bool| -> Result<Vec<(ModelKind, History, bool)>> {
        rows.iter()
            .filter(|(f, _)| pred(f))
            .map(|(f, ok)| Ok((model_for(f), History::read(&dir.join(f))?, *ok)))
            .collect()
    };
    let ms = Duration::from_millis;
    Ok(vec![
        Case {
            name: "jepsen/etcd_*.log (102, register)",
            partition: true,
            porcupine: ms(350),
            histories: load(&|f| f.starts_with("jepsen/"))?,
        },
        Case {
            name: "kv/c50-ok (by key)",
            partition: true,
            porcupine: ms(115),
            histories: load(&|f| f == "kv/c50-ok.txt")?,
        },
        Case {
            name: "kv/c50-bad (by key)",
            partition: true,
            porcupine: ms(18),
            histories: load(&|f| f == "kv/c50-bad.txt")?,
        },
        Case {
            name: "kv/c10-ok (not split)",
            partition: false,
            porcupine: ms(1600),
            histories: load(&|f| f == "kv/c10-ok.txt")?,
        },
        Case {
            name: "kv/c10-bad (not split)",
            partition: false,
            porcupine: ms(1900),
            histories: load(&|f| f == "kv/c10-bad.txt")?,
        },
    ])
}

/// Runs `case` `runs` times; errors if a verdict disagrees with the expected one.
pub fn time(case: &Case, runs: usize, threads: usize) -> Result<Timing> {
    let opts = Options {
        partition: case.partition,
        threads,
    };
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        for (model, history, expected) in &case.histories {
            let verdict = model.check(history, &opts)?;
            if verdict.linearizable != *expected {
                return Err(Error::Invalid(format!("{}: wrong verdict", case.name)));
            }
        }
        times.push(start.elapsed());
    }
    times.sort();
    Ok(Timing {
        name: case.name,
        porcupine: case.porcupine,
        best: times[0],
        median: times[times.len() / 2],
    })
}
