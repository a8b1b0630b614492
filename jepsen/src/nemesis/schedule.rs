//! When faults happen. Two schedules, both seeded:
//!
//! - `interval`: wait `interval - heal_after` (at least 1 s), inject the next
//!   nemesis in turn, wait `heal_after`, heal; again until stopped.
//! - `random`: the same cycle, but each quiet time and fault duration is drawn
//!   uniformly from half to one and a half of its nominal value, and the
//!   nemesis is drawn at random.
//!
//! One fault at a time, so every heal undoes exactly what was injected. When
//! the run stops, an active fault is healed at once. Each start and end goes
//! into the history as a nemesis line and into the returned [`Fault`] list.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Nemesis;
use crate::cluster::Cluster;
use crate::recorder::Recorder;

/// The schedule's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Interval,
    Random,
}

/// The schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub mode: Mode,
    pub interval: Duration,
    pub heal_after: Duration,
    pub seed: u64,
}

/// One fault as it happened (times in ns since the run started).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fault {
    pub nemesis: String,
    pub detail: String,
    pub start: u64,
    pub end: Option<u64>,
    /// Errors while injecting or healing.
    pub errors: Vec<String>,
}

/// Sleeps up to `d`, returning early (false) when `stop` is set.
fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
    }
    !stop.load(Ordering::Relaxed)
}

fn jitter(d: Duration, mode: Mode, rng: &mut StdRng) -> Duration {
    match mode {
        Mode::Interval => d,
        Mode::Random => d.mul_f64(rng.gen_range(0.5..1.5)),
    }
}

/// Runs the schedule until `stop`; returns every fault injected.
pub fn run(
    nemeses: &mut [Box<dyn Nemesis>],
    cluster: &Cluster,
    recorder: &Recorder,
    stop: &AtomicBool,
    s: &Schedule,
) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(s.seed);
    let mut faults = Vec::new();
    if nemeses.is_empty() {
        return faults;
    }
    let quiet = s
        .interval
        .saturating_sub(s.heal_after)
        .max(Duration::from_secs(1));
    let mut turn = 0;
    loop {
        if !nap(jitter(quiet, s.mode, &mut rng), stop) {
            return faults;
        }
        let i = match s.mode {
            Mode::Interval => turn % nemeses.len(),
            Mode::Random => rng.gen_range(0..nemeses.len()),
        };
        turn += 1;
        let n = &mut nemeses[i];
        let start = recorder.now();
        let mut fault = Fault {
            nemesis: n.name().to_string(),
            detail: String::new(),
            start,
            end: None,
            errors: Vec::new(),
        };
        match n.inject(cluster, &mut rng) {
            Ok(d) => fault.detail = d,
            Err(e) => fault.errors.push(format!("inject: {e}")),
        }
        recorder.nemesis("start", n.name(), &fault.detail);
        nap(jitter(s.heal_after, s.mode, &mut rng), stop);
        let healed = match n.heal(cluster) {
            Ok(d) => d,
            Err(e) => {
                fault.errors.push(format!("heal: {e}"));
                format!("heal failed: {e}")
            }
        };
        recorder.nemesis("stop", n.name(), &healed);
        fault.end = Some(recorder.now());
        faults.push(fault);
    }
}
