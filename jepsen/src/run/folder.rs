//! The run folder: `<runs>/<UTC timestamp>-<workload>/`, created fresh for
//! each run (a suffix `-2`, `-3` ... if the name is taken).
//!
//! ```text
//! runs/20261123T051500Z-register/
//!   config.json     the run's settings
//!   history.jsonl   every client op and fault (checker format)
//!   verdict.txt     each checker's full text (the anomaly window)
//!   results.json    verdicts, recovery, faults, counts
//!   report.html     the self-contained report
//!   members/m0.log  each member's stderr, appended across restarts
//!   members/m0.data each member's data dir
//! ```

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::harness;
use crate::Result;

/// Creates the folder for a run of `workload` under `runs`.
pub fn create(runs: &Path, workload: &str) -> Result<PathBuf> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = format!("{}-{workload}", timestamp(secs));
    std::fs::create_dir_all(runs).map_err(|e| harness(format!("{}: {e}", runs.display())))?;
    for n in 1.. {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = runs.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(harness(format!("{}: {e}", dir.display()))),
        }
    }
    unreachable!("some suffix is free")
}

/// `YYYYMMDDTHHMMSSZ` for seconds since the Unix epoch (UTC). The date is
/// Howard Hinnant's `civil_from_days` algorithm ("chrono-Compatible Low-Level
/// Date Algorithms").
pub fn timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps() {
        assert_eq!(super::timestamp(0), "19700101T000000Z");
        assert_eq!(super::timestamp(951_782_400), "20000229T000000Z");
        assert_eq!(super::timestamp(1_795_410_000), "20261123T050000Z");
    }
}
