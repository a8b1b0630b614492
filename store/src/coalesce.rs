//! Gathers the writes of a connection so that replies ready together leave in
//! one system call.
//!
//! hyper's HTTP/2 connection task flushes every time it runs, and tokio runs
//! it right after the task that woke it (the worker's LIFO slot). When the
//! Raft thread answers a batch of fifty proposals at once, their fifty
//! request tasks each hand hyper a reply and wake the connection task, which
//! then writes each reply on its own: one `writev` and one loopback TCP
//! segment per request, about a fifth of a worker's time at put 10/100
//! (docs/benchmarks.md, "Coalescing writes"). grpc-go, under etcd, batches
//! the frames that are ready before it flushes.
//!
//! [`Coalesce`] takes every write into its buffer at once, and at the first
//! flush of a burst lets every other task that is ready run first (tokio's
//! `yield_now`, which defers the wake-up until the worker's queue is empty);
//! the next flush writes what has gathered by then. A lone request pays one
//! trip through the scheduler; the buffer is written out early once it holds
//! [`HIGH_WATER`] bytes, and freed once written if a burst grew it past
//! 16 KiB. Reads pass through untouched.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes held before a write goes out without waiting for a flush.
pub const HIGH_WATER: usize = 256 * 1024;

/// Buffer capacity kept once everything is written; a larger one is freed.
const KEEP: usize = 16 * 1024;

/// A connection whose writes are gathered until other ready tasks have run;
/// see the module docs.
pub struct Coalesce<S> {
    inner: S,
    /// Accepted from the writer, not yet written to `inner`.
    pending: BytesMut,
    /// The yield of the flush in progress, once started.
    yielding: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The flush in progress has yielded already: write, do not wait again.
    yielded: bool,
}

impl<S> Coalesce<S> {
    pub fn new(inner: S) -> Coalesce<S> {
        Coalesce {
            inner,
            pending: BytesMut::new(),
            yielding: None,
            yielded: false,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes `pending` to the connection until it is empty.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.advance(n);
        }
        // An idle connection (a watch stream waits for hours) does not keep
        // the buffer of its largest burst.
        if self.pending.capacity() > KEEP {
            self.pending = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }

    /// Makes room before taking more: past [`HIGH_WATER`], writes out first.
    fn room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending.len() >= HIGH_WATER {
            ready!(self.drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.room(cx))?;
        let mut n = 0;
        for b in bufs {
            this.pending.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pending.is_empty() && !this.yielded {
            let y = this
                .yielding
                .get_or_insert_with(|| Box::pin(tokio::task::yield_now()));
            ready!(y.as_mut().poll(cx));
            this.yielding = None;
            this.yielded = true;
        }
        ready!(this.drain(cx))?;
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Coalesce<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Dials `uri` for tonic (`Endpoint::connect_with_connector(
/// tower::service_fn(coalesce::connect))`): TCP with TCP_NODELAY, writes
/// gathered. TLS, when the endpoint has it, goes on top.
pub async fn connect(
    uri: tonic::codegen::http::Uri,
) -> io::Result<hyper_util::rt::TokioIo<Coalesce<tokio::net::TcpStream>>> {
    let host = uri.host().unwrap_or("127.0.0.1").trim_matches(['[', ']']);
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    let tcp = tokio::net::TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    Ok(hyper_util::rt::TokioIo::new(Coalesce::new(tcp)))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A writer that counts the writes that reach it.
    struct Counting {
        writes: Arc<AtomicUsize>,
        data: Vec<u8>,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.writes.fetch_add(1, Ordering::SeqCst);
            this.data.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn writes_before_a_flush_leave_in_one_write() {
        let writes = Arc::new(AtomicUsize::new(0));
        let mut c = Coalesce::new(Counting {
            writes: writes.clone(),
            data: Vec::new(),
        });
        for part in [&b"one "[..], b"two ", b"three"] {
            c.write_all(part).await.unwrap();
        }
        assert_eq!(
            writes.load(Ordering::SeqCst),
            0,
            "nothing written before the flush"
        );
        c.flush().await.unwrap();
        assert_eq!(writes.load(Ordering::SeqCst), 1);
        assert_eq!(c.get_ref().data, b"one two three");
        c.flush().await.unwrap();
        assert_eq!(
            writes.load(Ordering::SeqCst),
            1,
            "an empty flush writes nothing"
        );
    }

    #[tokio::test]
    async fn a_full_buffer_is_written_without_a_flush() {
        let writes = Arc::new(AtomicUsize::new(0));
        let mut c = Coalesce::new(Counting {
            writes: writes.clone(),
            data: Vec::new(),
        });
        let chunk = vec![7u8; 64 * 1024];
        for _ in 0..(HIGH_WATER / chunk.len() + 1) {
            c.write_all(&chunk).await.unwrap();
        }
        assert_eq!(
            writes.load(Ordering::SeqCst),
            1,
            "written at the high-water mark"
        );
        c.shutdown().await.unwrap();
        assert_eq!(
            c.get_ref().data.len(),
            (HIGH_WATER / chunk.len() + 1) * chunk.len()
        );
        assert!(c.pending.capacity() <= KEEP, "the burst's buffer is freed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replies_of_many_tasks_each_arrive_whole() {
        // Eight tasks share one connection and flush after each reply, as
        // hyper's connection task does for its streams.
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let conn = Arc::new(tokio::sync::Mutex::new(Coalesce::new(a)));
        let gate = Arc::new(tokio::sync::Barrier::new(8));
        let mut tasks = Vec::new();
        for i in 0..8u8 {
            let (conn, gate) = (conn.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                gate.wait().await;
                let mut c = conn.lock().await;
                c.write_all(&[i; 16]).await.unwrap();
                c.flush().await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut got = vec![0u8; 8 * 16];
        b.read_exact(&mut got).await.unwrap();
        let mut counts = [0usize; 8];
        for reply in got.chunks(16) {
            assert!(
                reply.iter().all(|&x| x == reply[0]),
                "a reply was split: {reply:?}"
            );
            counts[reply[0] as usize] += 16;
        }
        assert_eq!(counts, [16; 8], "every reply arrives whole");
    }
}
