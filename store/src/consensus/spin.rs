//! Adaptive spinning before the Raft thread sleeps on its command queue.
//!
//! Every client request crosses from a tokio worker to the Raft thread and
//! back. When the Raft thread sleeps on the queue, each crossing costs a futex
//! wake on the sender's side and a scheduler wake-up on the receiver's; on the
//! virtual machines keel is measured on, the two cost tens of microseconds.
//! A leader serving one client at a time waits only 0.2–0.3 ms between
//! proposals (or ReadIndex requests), so it can watch the queue instead of
//! sleeping on it (docs/benchmarks.md, "Spinning on the Raft thread").
//!
//! The spin is adaptive: [`Spin`] keeps a moving average of how long the
//! thread waited for its next command, and spins only while that average is
//! below the limit (`--experimental-raft-spin`). An idle member, whose waits
//! end at the next tick, does not spin at all. Nor does a busy one: [`Spin`]
//! also averages the client requests each wake-up found queued, and from two
//! on it does not spin (many clients keep the queue full on their own, and a
//! spin would only take a core from the workers serving them). The driver
//! spins as a leader with no proposal in flight: while it waits for a
//! client's next request or for the heartbeat replies of a ReadIndex, not
//! while its followers fsync; and as a follower only while it waits for the
//! leader's answer to a ReadIndex. A leader with followers yields the core
//! to any other runnable thread at each turn of the spin; a lone member
//! spins without yielding. Members that share a machine (three on a laptop, or on the
//! 2-core machine keel is measured on) then do not take CPU from each
//! other: an earlier version that spun on every member, without yielding,
//! cut put 1/1 on three co-located members from 1,118 to 754/s, and one that
//! spun on the leader whatever it waited for raised their p99. Alone,
//! yielding costs about 5% of put 1/1 (a yield that lets another thread run
//! gets the core back late).

use std::time::{Duration, Instant};

/// Weight of the newest wait in the moving average.
const WEIGHT: f64 = 0.2;

/// Client requests per wake-up (moving average) from which the thread stops
/// spinning: several clients keep the queue busy on their own.
const BUSY_BATCH: f64 = 2.0;

/// The spin policy and what it has seen.
#[derive(Debug, Clone)]
pub struct Spin {
    limit: Duration,
    /// Moving average of the waits for a command, in seconds.
    average: f64,
    /// Moving average of the client requests handled per wake-up.
    batch: f64,
}

impl Spin {
    /// Spins for at most `limit`; zero turns spinning off.
    pub fn new(limit: Duration) -> Spin {
        Spin {
            limit,
            // Start as if idle: no spin until short waits are seen.
            average: 1.0,
            batch: 1.0,
        }
    }

    /// How long to spin before sleeping, given the waits seen so far.
    pub fn budget(&self) -> Duration {
        if self.limit.is_zero()
            || self.average >= self.limit.as_secs_f64()
            || self.batch >= BUSY_BATCH
        {
            Duration::ZERO
        } else {
            self.limit
        }
    }

    /// Records that a wait for the next command took `waited`.
    pub fn observe(&mut self, waited: Duration) {
        self.average = self.average * (1.0 - WEIGHT) + waited.as_secs_f64() * WEIGHT;
    }

    /// Records that one wake-up handled `requests` client requests
    /// (proposals and reads).
    pub fn observe_batch(&mut self, requests: usize) {
        self.batch = self.batch * (1.0 - WEIGHT) + requests as f64 * WEIGHT;
    }

    /// Polls `rx` until something arrives or `budget` has passed. With
    /// `polite`, each turn yields the core to any runnable thread first.
    pub fn poll<T>(
        rx: &crossbeam_channel::Receiver<T>,
        budget: Duration,
        polite: bool,
    ) -> Option<T> {
        let until = Instant::now() + budget;
        loop {
            if let Ok(v) = rx.try_recv() {
                return Some(v);
            }
            if Instant::now() >= until {
                return None;
            }
            if polite {
                std::thread::yield_now();
            } else {
                for _ in 0..64 {
                    std::hint::spin_loop();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spins_only_after_short_waits() {
        let mut s = Spin::new(Duration::from_micros(500));
        assert_eq!(s.budget(), Duration::ZERO, "idle at start");
        for _ in 0..40 {
            s.observe(Duration::from_micros(250));
        }
        assert_eq!(s.budget(), Duration::from_micros(500));
        // One wait that ended at a tick (100 ms) stops the spinning...
        s.observe(Duration::from_millis(100));
        assert_eq!(s.budget(), Duration::ZERO);
        // ...until short waits bring the average back down.
        for _ in 0..40 {
            s.observe(Duration::from_micros(250));
        }
        assert_eq!(s.budget(), Duration::from_micros(500));
    }

    #[test]
    fn many_requests_per_wake_up_stop_the_spinning() {
        let mut s = Spin::new(Duration::from_micros(500));
        for _ in 0..40 {
            s.observe(Duration::from_micros(50));
            s.observe_batch(1);
        }
        assert_eq!(s.budget(), Duration::from_micros(500), "one client spins");
        for _ in 0..10 {
            s.observe(Duration::from_micros(50));
            s.observe_batch(20);
        }
        assert_eq!(s.budget(), Duration::ZERO, "many clients do not");
        for _ in 0..40 {
            s.observe_batch(1);
        }
        assert_eq!(s.budget(), Duration::from_micros(500));
    }

    #[test]
    fn zero_limit_never_spins() {
        let mut s = Spin::new(Duration::ZERO);
        for _ in 0..40 {
            s.observe(Duration::ZERO);
        }
        assert_eq!(s.budget(), Duration::ZERO);
    }

    #[test]
    fn poll_returns_what_arrives_or_gives_up() {
        for polite in [false, true] {
            let (tx, rx) = crossbeam_channel::unbounded();
            assert_eq!(
                Spin::poll(&rx, Duration::from_micros(200), polite),
                None::<u32>
            );
            let sender = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2));
                tx.send(7u32).unwrap();
            });
            assert_eq!(Spin::poll(&rx, Duration::from_secs(10), polite), Some(7));
            sender.join().unwrap();
        }
    }
}
