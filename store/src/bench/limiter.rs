//! `--rate`: one pacer shared by every client of a run. Each request takes the
//! next free slot, `1/rate` after the previous one, and sleeps until it; a pacer
//! left idle does not bank slots, so there are no bursts after a pause.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Spaces requests `1/rate` apart across all clients.
#[derive(Debug)]
pub struct Limiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Limiter {
    /// A pacer for `rate` requests per second; `None` when `rate` is 0 (no limit).
    pub fn new(rate: u64) -> Option<Limiter> {
        (rate > 0).then(|| Limiter {
            interval: Duration::from_nanos((1_000_000_000 / rate).max(1)),
            next: Mutex::new(Instant::now()),
        })
    }

    /// Takes the next slot: the instant the caller may send.
    pub fn reserve(&self) -> Instant {
        let now = Instant::now();
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let at = (*next).max(now);
        *next = at + self.interval;
        at
    }

    /// Waits for the next slot.
    pub async fn wait(&self) {
        let at = self.reserve();
        if at > Instant::now() {
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_unlimited() {
        assert!(Limiter::new(0).is_none());
    }

    #[test]
    fn slots_are_spaced_by_the_interval() {
        let l = Limiter::new(100).unwrap();
        let a = l.reserve();
        let b = l.reserve();
        let c = l.reserve();
        assert_eq!(b - a, Duration::from_millis(10));
        assert_eq!(c - b, Duration::from_millis(10));
    }

    #[tokio::test]
    async fn paces_a_run() {
        let l = std::sync::Arc::new(Limiter::new(200).unwrap());
        let start = Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move {
                    for _ in 0..10 {
                        l.wait().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // 40 slots at 200/s: the last starts 195 ms after the first.
        assert!(
            start.elapsed() >= Duration::from_millis(190),
            "{:?}",
            start.elapsed()
        );
    }
}
