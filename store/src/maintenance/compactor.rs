//! Automatic compaction (`--auto-compaction-mode`, `--auto-compaction-retention`),
//! with etcd 3.4's schedules (its `v3compactor` package, re-written here).
//!
//! The task runs on every member; only the leader compacts (a follower's
//! compactor is paused, as etcd pauses it on leadership changes), by proposing
//! an ordinary compaction through Raft, so every member compacts at the same
//! revision. A compaction that finds the revision already compacted counts as
//! done.
//!
//! - Periodic, retention `P`: every `P/10` (at most 6 minutes) the current
//!   revision is sampled, keeping the samples of the last `P`; the first
//!   compaction comes `P` after start, at the oldest sample (the revision of
//!   `P` ago), then one every `min(P, 1h)` after the last success. Samples are
//!   taken while paused too, so a new leader knows the history.
//! - Revision, retention `N`: every 5 minutes, compact at `current - N` if
//!   that is positive and not the revision compacted last.
//!
//! The schedules are pure state machines ([`Periodic`], [`Revisions`]) driven
//! by [`run`], so tests can drive them with their own clock.

use std::collections::VecDeque;
use std::time::Duration;

use keel_proto::etcdserverpb::CompactionRequest;
use tokio::time::Instant;

use crate::error::Error;
use crate::kv::Kv;

/// How automatic compaction is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep this much time of history.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

/// etcd's `retryDivisor`: the periodic compactor samples 10 times per period.
const RETRY_DIVISOR: u32 = 10;

/// The periodic schedule.
#[derive(Debug)]
pub struct Periodic {
    period: Duration,
    /// `min(period, 1h)`: the time between compactions after the first.
    compact_interval: Duration,
    /// How many samples cover one period.
    retentions: usize,
    revs: VecDeque<i64>,
    last_success: Instant,
    /// Time to wait after the last success: `period` before the first
    /// compaction, `compact_interval` after.
    base_interval: Duration,
}

impl Periodic {
    /// A schedule started at `now`, when the revision is `rev`.
    pub fn new(period: Duration, now: Instant, rev: i64) -> Periodic {
        let compact_interval = period.min(Duration::from_secs(3600));
        let retry = compact_interval / RETRY_DIVISOR;
        let retentions = (period.as_nanos() / retry.as_nanos().max(1)) as usize + 1;
        let mut revs = VecDeque::new();
        revs.push_back(rev);
        Periodic {
            period,
            compact_interval,
            retentions,
            revs,
            last_success: now,
            base_interval: period,
        }
    }

    /// Time between two ticks.
    pub fn tick_interval(&self) -> Duration {
        self.compact_interval / RETRY_DIVISOR
    }

    /// One tick: the revision to compact at, if it is time (on the leader).
    pub fn tick(&mut self, now: Instant, leader: bool) -> Option<i64> {
        if !leader || now.duration_since(self.last_success) < self.base_interval {
            return None;
        }
        self.base_interval = self.compact_interval;
        self.revs.front().copied()
    }

    /// Records how the compaction `tick` asked for went.
    pub fn done(&mut self, now: Instant, ok: bool) {
        if ok {
            self.last_success = now;
        }
    }

    /// Takes the current revision as a sample (after each tick).
    pub fn sample(&mut self, rev: i64) {
        self.revs.push_back(rev);
        while self.revs.len() > self.retentions {
            self.revs.pop_front();
        }
    }

    pub fn period(&self) -> Duration {
        self.period
    }
}

/// The revision schedule.
#[derive(Debug)]
pub struct Revisions {
    retention: i64,
    /// The revision compacted last (0: none).
    prev: i64,
}

impl Revisions {
    pub fn new(retention: i64) -> Revisions {
        Revisions { retention, prev: 0 }
    }

    /// One tick: the revision to compact at, if any (on the leader).
    pub fn tick(&self, current: i64, leader: bool) -> Option<i64> {
        let rev = current - self.retention;
        (leader && rev > 0 && rev != self.prev).then_some(rev)
    }

    /// Records how the compaction at `rev` went.
    pub fn done(&mut self, rev: i64, ok: bool) {
        if ok {
            self.prev = rev;
        }
    }
}

/// Proposes a compaction at `rev`; true when it is done (or was already).
async fn compact(kv: &Kv, rev: i64, what: &str) -> bool {
    let started = std::time::Instant::now();
    tracing::info!(revision = rev, mode = what, "starting auto compaction");
    match kv
        .compact(CompactionRequest {
            revision: rev,
            physical: false,
        })
        .await
    {
        Ok(_) | Err(Error::Compacted) => {
            tracing::info!(revision = rev, mode = what, took = ?started.elapsed(), "completed auto compaction");
            true
        }
        Err(e) => {
            tracing::warn!(revision = rev, mode = what, error = %e, "failed auto compaction");
            false
        }
    }
}

/// Runs automatic compaction until `stop` turns true. `revision_interval` is
/// the revision mode's period (etcd: 5 minutes).
pub async fn run(
    kv: Kv,
    mode: AutoCompaction,
    revision_interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> crate::Result<()> {
    let is_leader = || kv.node().status().is_leader();
    match mode {
        AutoCompaction::Periodic(period) => {
            let mut p = Periodic::new(period, Instant::now(), kv.store().current_revision());
            tracing::info!(retention = ?p.period(), "auto compaction: periodic");
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(p.tick_interval()) => {}
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                }
                if let Some(rev) = p.tick(Instant::now(), is_leader()) {
                    let ok = compact(&kv, rev, "periodic").await;
                    p.done(Instant::now(), ok);
                }
                p.sample(kv.store().current_revision());
            }
        }
        AutoCompaction::Revision(retention) => {
            let mut r = Revisions::new(retention);
            tracing::info!(retention, interval = ?revision_interval, "auto compaction: revision");
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(revision_interval) => {}
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                }
                if let Some(rev) = r.tick(kv.store().current_revision(), is_leader()) {
                    let ok = compact(&kv, rev, "revision").await;
                    r.done(rev, ok);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_compacts_at_the_revision_of_one_period_ago() {
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        let mut p = Periodic::new(hour, t0, 1);
        let tick = p.tick_interval();
        assert_eq!(tick, Duration::from_secs(360));
        // Ten revisions per tick; nothing for the first hour.
        let mut rev = 1;
        let mut compactions = Vec::new();
        for i in 1..=25u32 {
            let now = t0 + tick * i;
            if let Some(r) = p.tick(now, true) {
                compactions.push((i, r));
                p.done(now, true);
            }
            rev += 10;
            p.sample(rev);
        }
        // At 1h the oldest sample is from start; then one per hour, each at the
        // revision sampled an hour (ten ticks) before.
        assert_eq!(compactions, vec![(10, 1), (20, 91)]);
    }

    #[test]
    fn periodic_longer_than_an_hour_compacts_hourly_after_the_first() {
        let t0 = Instant::now();
        let mut p = Periodic::new(Duration::from_secs(2 * 3600), t0, 1);
        let tick = p.tick_interval();
        assert_eq!(tick, Duration::from_secs(360));
        let mut compactions = Vec::new();
        for i in 1..=40u32 {
            let now = t0 + tick * i;
            if let Some(r) = p.tick(now, true) {
                compactions.push((i, r));
                p.done(now, true);
            }
            p.sample(i64::from(i) + 1);
        }
        // First after 2h (20 ticks) at the start revision, then hourly at the
        // revision of two hours before.
        assert_eq!(compactions, vec![(20, 1), (30, 10), (40, 20)]);
    }

    #[test]
    fn periodic_waits_while_paused_and_retries_failures() {
        let t0 = Instant::now();
        let mut p = Periodic::new(Duration::from_secs(10), t0, 5);
        let tick = p.tick_interval();
        for i in 1..=12u32 {
            assert_eq!(p.tick(t0 + tick * i, false), None);
            p.sample(5 + i64::from(i));
        }
        // Leader now: compacts at the oldest sample of the last period.
        let now = t0 + tick * 13;
        assert_eq!(p.tick(now, true), Some(7));
        p.done(now, false);
        p.sample(18);
        // A failure is retried at the next tick.
        assert_eq!(p.tick(now + tick, true), Some(8));
    }

    #[test]
    fn revision_mode_keeps_the_last_n_revisions() {
        let mut r = Revisions::new(100);
        assert_eq!(r.tick(50, true), None);
        assert_eq!(r.tick(150, false), None);
        assert_eq!(r.tick(150, true), Some(50));
        r.done(50, false);
        assert_eq!(r.tick(150, true), Some(50));
        r.done(50, true);
        assert_eq!(r.tick(150, true), None);
        assert_eq!(r.tick(151, true), Some(51));
    }
}
