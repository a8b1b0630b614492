//! A stream's queue: the bounded, single-consumer queue through which the hub
//! hands a stream its messages, in revision order.
//!
//! It replaces a `tokio::sync::mpsc` channel, which costs about 1.5 KB per
//! stream before the first message (its shared state and a first block of 32
//! slots); an idle stream's queue here is one small allocation, and its buffer
//! grows only with the messages actually waiting (`docs/benchmarks.md`,
//! issue 3). The hub pushes under its own lock, so pushes never race each
//! other; the lock here only separates the hub from the stream that pops.
//!
//! Left out: a closed state. The stream removes itself from the hub (which
//! drops the [`Sender`]) before its [`Receiver`] goes away, and the hub never
//! closes a stream it still holds.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::Out;

struct Shared {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    items: VecDeque<Out>,
    /// The stream waiting for an item, if it found none.
    waker: Option<Waker>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The hub's end.
#[derive(Clone)]
pub struct Sender(Arc<Shared>);

/// The stream's end.
pub struct Receiver(Arc<Shared>);

/// A queue that holds at most `capacity` messages.
pub fn queue(capacity: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        capacity,
        inner: Mutex::default(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl Sender {
    /// Queues `out`, or gives it back when the queue is full. Never waits.
    pub fn try_send(&self, out: Out) -> Result<(), Out> {
        let mut g = self.0.lock();
        if g.items.len() >= self.0.capacity {
            return Err(out);
        }
        g.items.push_back(out);
        let waker = g.waker.take();
        drop(g);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Whether a message would be accepted now.
    pub fn has_room(&self) -> bool {
        self.0.lock().items.len() < self.0.capacity
    }
}

impl Receiver {
    /// The oldest message, or `Pending` (and a wake-up on the next send).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Out> {
        let mut g = self.0.lock();
        match g.items.pop_front() {
            Some(out) => Poll::Ready(out),
            None => {
                match &mut g.waker {
                    Some(w) => w.clone_from(cx.waker()),
                    None => g.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    fn progress(rev: i64) -> Out {
        Out::Progress { watch_id: 1, rev }
    }

    fn rev(out: Out) -> i64 {
        match out {
            Out::Progress { rev, .. } => rev,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn bounded_fifo_that_wakes_its_receiver() {
        let (tx, mut rx) = queue(2);
        assert!(tx.has_room());
        tx.try_send(progress(1)).unwrap();
        tx.try_send(progress(2)).unwrap();
        assert!(!tx.has_room());
        assert_eq!(rev(tx.try_send(progress(3)).unwrap_err()), 3);
        assert_eq!(rev(poll_fn(|cx| rx.poll_recv(cx)).await), 1);
        assert!(tx.has_room());
        assert_eq!(rev(poll_fn(|cx| rx.poll_recv(cx)).await), 2);
        // Empty: the receiver waits, and a send from another task wakes it.
        let sender = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            tx.try_send(progress(4)).unwrap();
            tx
        });
        assert_eq!(rev(poll_fn(|cx| rx.poll_recv(cx)).await), 4);
        sender.await.unwrap();
    }
}
