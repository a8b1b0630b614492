//! One tokio worker while the member serves one request at a time.
//!
//! A member's runtime has a worker per core, and with a lone client that
//! costs more than it gives. Each time a worker that slept finds a task,
//! tokio wakes another worker to look for more (its "searching" hand-off),
//! and the reply poll of [`crate::consensus::spin::wait_reply`] gives it
//! one such occasion per turn: over 10,000 sequential puts the two workers
//! switched 80,000 times each and each burned most of a core, where one
//! worker (`TOKIO_WORKER_THREADS=1`) switched a few hundred times, and put
//! 1/1 was 10-15 % faster. One worker caps a hundred clients at one core,
//! though (put 100/1000 fell by a sixth; docs/benchmarks.md, "One worker
//! while the load is light").
//!
//! So the runtime keeps its workers, and [`Workers`] holds all but one of
//! them while the load is light: a thread of its own (`worker-hold`)
//! spawns a task that blocks the worker running it until the load rises.
//! A worker inside a task is not among tokio's idle workers, so nobody
//! wakes it; the other worker does everything meanwhile. Two details keep
//! the runtime whole:
//! - The hold is a task, not tokio's `on_thread_park` hook. A worker runs
//!   that hook while tokio still counts it as searching for work, and tokio
//!   wakes nobody for new tasks while a worker searches: a first version
//!   that blocked there stalled the member.
//! - Once the holder blocks, the thread spawns an empty task from outside
//!   the runtime. That wakes a worker that sleeps on its condvar (it found
//!   the IO driver taken when it parked), which would otherwise stay asleep
//!   with nobody polling IO or timers; it runs the task and then parks on
//!   the driver, and steals anything left in the held worker's queue.
//!
//! "Light" means at most one request in flight, and no request that found
//! another in flight for [`QUIET`]. [`LoadLayer`] counts the requests on
//! the client port, a stream from its call until its response body is
//! dropped; the peer port counts each open Raft stream. The first request
//! that finds another in flight releases the held workers at once, and
//! they stay free until the load has been light for [`QUIET`] again.
//! `--experimental-one-worker-when-light=false` turns the hold off.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tower::{Layer, Service};

/// How long the load must stay light before workers are held again.
pub const QUIET: Duration = Duration::from_millis(100);

/// How often the holding thread looks at the load.
const LOOK: Duration = Duration::from_millis(10);

/// The hold on spare workers, shared by the holding thread, the holder
/// tasks and the request counter.
#[derive(Debug)]
pub struct Workers {
    /// Workers that may be held: all but one.
    spare: usize,
    /// Client requests (and open streams) in flight.
    in_flight: AtomicUsize,
    /// Requests that started while another was in flight.
    crowded: AtomicU64,
    /// Holder tasks blocking a worker now.
    held: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    stopped: AtomicBool,
}

impl Workers {
    /// A hold for a runtime of `workers` workers; `enabled: false` (or one
    /// worker) never holds any.
    pub fn new(workers: usize, enabled: bool) -> Arc<Workers> {
        Arc::new(Workers {
            spare: if enabled {
                workers.saturating_sub(1)
            } else {
                0
            },
            in_flight: AtomicUsize::new(0),
            crowded: AtomicU64::new(0),
            held: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            stopped: AtomicBool::new(false),
        })
    }

    /// Starts the holding thread for the runtime behind `rt` (nothing when
    /// there is no spare worker).
    pub fn start_holding(
        self: &Arc<Self>,
        rt: tokio::runtime::Handle,
    ) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
        if self.spare == 0 {
            return Ok(None);
        }
        let me = self.clone();
        std::thread::Builder::new()
            .name("worker-hold".into())
            .spawn(move || me.hold_loop(&rt))
            .map(Some)
    }

    /// Every [`LOOK`]: once the load has been light for [`QUIET`], holds
    /// the spare workers, one holder task each.
    fn hold_loop(self: &Arc<Self>, rt: &tokio::runtime::Handle) {
        let mut seen = self.crowded.load(Ordering::Relaxed);
        let mut since = Instant::now();
        while !self.stopped.load(Ordering::Relaxed) {
            std::thread::sleep(LOOK);
            let crowded = self.crowded.load(Ordering::Relaxed);
            if crowded != seen || self.in_flight.load(Ordering::Relaxed) > 1 {
                seen = crowded;
                since = Instant::now();
                continue;
            }
            if since.elapsed() < QUIET || self.held.load(Ordering::Relaxed) >= self.spare {
                continue;
            }
            let holding = Arc::new(AtomicBool::new(false));
            let me = self.clone();
            let flag = holding.clone();
            drop(rt.spawn(async move { me.hold(crowded, &flag) }));
            // Until the holder runs (or the load rises first), then wake a
            // worker asleep on its condvar (see the module doc).
            while !holding.load(Ordering::Acquire)
                && self.crowded.load(Ordering::Relaxed) == crowded
                && !self.stopped.load(Ordering::Relaxed)
            {
                std::thread::sleep(Duration::from_micros(100));
            }
            drop(rt.spawn(async {}));
        }
    }

    /// The holder task's body: blocks this worker until a request finds
    /// another in flight after `crowded` was counted, or [`Workers::stop`].
    fn hold(&self, crowded: u64, holding: &AtomicBool) {
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.held.fetch_add(1, Ordering::Relaxed);
        holding.store(true, Ordering::Release);
        tracing::trace!(held = self.held.load(Ordering::Relaxed), "worker held");
        while !self.stopped.load(Ordering::Relaxed)
            && self.crowded.load(Ordering::Relaxed) == crowded
        {
            guard = match self.wake.wait_timeout(guard, QUIET) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        self.held.fetch_sub(1, Ordering::Relaxed);
        drop(guard);
        tracing::trace!("worker released");
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        if before > 0 {
            self.crowded.fetch_add(1, Ordering::Relaxed);
            if self.held.load(Ordering::Relaxed) > 0 {
                self.release();
            }
        }
        InFlight(self.clone())
    }

    /// Workers held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Requests (and open streams) counted in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Releases every held worker for good (before the runtime shuts down).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.release();
    }

    fn release(&self) {
        // Taking the lock orders this wake-up after a holder's last check.
        drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()));
        self.wake.notify_all();
    }
}

/// One request in flight (see [`Workers::start`]).
#[derive(Debug)]
pub struct InFlight(Arc<Workers>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts each request of a router in flight, until its response body is
/// dropped (so a stream counts while it is open).
#[derive(Clone)]
pub struct LoadLayer(pub Arc<Workers>);

impl<S> Layer<S> for LoadLayer {
    type Service = Load<S>;

    fn layer(&self, inner: S) -> Load<S> {
        Load {
            workers: self.0.clone(),
            inner,
        }
    }
}

/// See [`LoadLayer`].
#[derive(Clone)]
pub struct Load<S> {
    workers: Arc<Workers>,
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for Load<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
{
    type Response = http::Response<Guarded<R>>;
    type Error = S::Error;
    type Future = Counted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        Counted {
            guard: Some(self.workers.start()),
            inner: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's future, with the request's [`InFlight`] guard
    /// that it moves into the response body.
    pub struct Counted<F> {
        guard: Option<InFlight>,
        #[pin]
        inner: F,
    }
}

impl<F, R, E> Future for Counted<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
{
    type Output = Result<http::Response<Guarded<R>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        let guard = this.guard.take();
        Poll::Ready(out.map(|resp| {
            resp.map(|body| Guarded {
                body,
                _guard: guard,
            })
        }))
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted until it is dropped.
    pub struct Guarded<B> {
        #[pin]
        body: B,
        _guard: Option<InFlight>,
    }
}

impl<B: http_body::Body> http_body::Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests;
