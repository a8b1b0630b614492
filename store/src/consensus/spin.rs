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
//! spins without yielding. Members that share a machine (three on a
//! laptop, or on the 2-core machine keel is measured on) then do not take
//! CPU from each other: an earlier version that spun on every member,
//! without yielding, cut put 1/1 on three co-located members from 1,118 to
//! 754/s, and one that spun on the leader whatever it waited for raised
//! their p99. Alone,
//! yielding costs about 5% of put 1/1 (a yield that lets another thread run
//! gets the core back late).
//!
//! The request's side ([`wait_reply`]): on a lone member, the tokio task that
//! sent a proposal polls for its reply (yielding to its worker between polls)
//! instead of parking, while it is the only request waiting and for at most
//! the Raft thread's current spin budget. The worker then stays awake through
//! the fsync and the apply, and the reply reaches it without a wake-up: put
//! 1/1 on one member went from 2,991-3,308/s to 3,726-4,385/s
//! (docs/benchmarks.md, "Polling for the reply on a lone member"). The
//! Raft thread is busy with the proposal meanwhile (it spins only while
//! none is in flight), and the client waits, so the two spins take turns on
//! one core. With followers it does not poll: an early version that did
//! halved put 1/1 on three co-located members.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Status;

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

/// Waits for a reply from the driver; `None` if the driver dropped the
/// sender. While `status` allows a reply spin (see the module doc) and no
/// other request waits, polls `rx` between yields of its task, up to that
/// long, then awaits it as usual.
pub async fn wait_reply<T>(mut rx: oneshot::Receiver<T>, status: &Status) -> Option<T> {
    struct Waiting<'a>(&'a Status);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            self.0.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let others = status.waiting.fetch_add(1, Ordering::Relaxed);
    let _waiting = Waiting(status);
    let limit = status.reply_spin_nanos.load(Ordering::Relaxed);
    if limit == 0 || others > 0 {
        return rx.await.ok();
    }
    let until = Instant::now() + Duration::from_nanos(limit);
    loop {
        match rx.try_recv() {
            Ok(v) => return Some(v),
            Err(oneshot::error::TryRecvError::Closed) => return None,
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        if Instant::now() >= until || status.waiting.load(Ordering::Relaxed) > 1 {
            return rx.await.ok();
        }
        // tokio polls its IO driver before it runs a yielded task again.
        tokio::task::yield_now().await;
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wait_reply_gets_the_reply_spinning_or_not() {
        let status = Status::default();
        for (spin, delay) in [(0, 1), (500_000, 0), (500_000, 1), (50_000, 20)] {
            status.reply_spin_nanos.store(spin, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            let sender = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(delay));
                tx.send(delay).unwrap();
            });
            // (A spin of 50 us gives up long before the 20 ms reply.)
            assert_eq!(wait_reply(rx, &status).await, Some(delay), "spin {spin}");
            sender.join().unwrap();
            assert_eq!(status.waiting.load(Ordering::Relaxed), 0);
        }
        for spin in [0, 500_000] {
            status.reply_spin_nanos.store(spin, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel::<u32>();
            drop(tx);
            assert_eq!(wait_reply(rx, &status).await, None, "driver gone");
            assert_eq!(status.waiting.load(Ordering::Relaxed), 0);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_waiters_each_get_their_reply() {
        let status = std::sync::Arc::new(Status::default());
        status
            .reply_spin_nanos
            .store(60_000_000_000, Ordering::Relaxed);
        let (tx1, rx1) = oneshot::channel::<u32>();
        let first = tokio::spawn({
            let status = status.clone();
            async move { wait_reply(rx1, &status).await }
        });
        while status.waiting.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        // The first waiter may spin (up to a minute); the second comes while
        // it waits, and is answered first.
        let (tx2, rx2) = oneshot::channel::<u32>();
        let second = tokio::spawn({
            let status = status.clone();
            async move { wait_reply(rx2, &status).await }
        });
        while status.waiting.load(Ordering::Relaxed) < 2 {
            tokio::task::yield_now().await;
        }
        tx2.send(2).unwrap();
        assert_eq!(second.await.unwrap(), Some(2));
        tx1.send(1).unwrap();
        assert_eq!(first.await.unwrap(), Some(1));
        assert_eq!(status.waiting.load(Ordering::Relaxed), 0);
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
