//! Accepts the `:authority` etcdctl 3.4 sends when it dials one member.
//!
//! etcdctl 3.4 (the grpc-go of its day) dials single members for `endpoint
//! status|hashkv` (and their `--cluster` forms, with the client URLs from
//! MemberList) with the member's URL, scheme included, as the HTTP/2
//! `:authority`: `http://127.0.0.1:2379`. That is not a valid authority, and
//! the h2 crate under tonic resets such a stream with PROTOCOL_ERROR, while
//! etcd's Go server accepts it.
//!
//! [`FixAuthority`] wraps an accepted client connection, below hyper. It looks
//! at the client's first HTTP/2 header block: when its `:authority` holds a
//! scheme, it rewrites every header block of the connection (decoding each
//! with the client's HPACK state, dropping the scheme, encoding again with
//! its own encoder, whose state the server's decoder then follows);
//! otherwise it steps aside and the rest of the connection passes
//! unexamined. HTTP/1 connections, and anything that does not start with the
//! HTTP/2 preface (e.g. a TLS handshake), pass through untouched. Only what
//! the client sends is looked at; the server's side is not touched.
//!
//! TLS connections are not wrapped (see `crate::tls::serve`): over TLS
//! etcdctl 3.4 sends the host alone as the `:authority`.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The smallest SETTINGS_MAX_FRAME_SIZE a peer may set, so always allowed.
const MAX_FRAME: usize = 16_384;
/// A header block larger than this closes the connection.
const MAX_BLOCK: usize = 1 << 20;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Not yet known whether the connection speaks HTTP/2.
    Preface,
    /// HTTP/2, up to the end of the first header block.
    Inspect,
    /// Every header block is rewritten.
    Rewrite,
    /// Bytes pass unexamined.
    Passthrough,
}

/// A header block being gathered from HEADERS and CONTINUATION frames.
struct Block {
    stream: u32,
    /// END_STREAM of the HEADERS frame.
    end_stream: bool,
    /// The 5 bytes of the HEADERS frame's priority field, if it had one.
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    /// The frames as received, for [`Mode::Inspect`] to pass on unchanged.
    raw: Vec<u8>,
}

/// A client connection with the `:authority` fix; see the module docs.
pub struct FixAuthority<S> {
    inner: S,
    mode: Mode,
    /// Received, not yet handled.
    pending: BytesMut,
    /// Handled, ready for the reader.
    out: BytesMut,
    block: Option<Block>,
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
    eof: bool,
}

impl<S> FixAuthority<S> {
    pub fn new(inner: S) -> FixAuthority<S> {
        FixAuthority {
            inner,
            mode: Mode::Preface,
            pending: BytesMut::new(),
            out: BytesMut::new(),
            block: None,
            decoder: loona_hpack::Decoder::new(),
            encoder: loona_hpack::Encoder::new(),
            eof: false,
        }
    }

    /// Whether the connection's header blocks are being rewritten.
    pub fn rewriting(&self) -> bool {
        self.mode == Mode::Rewrite
    }

    /// Moves what can be handled from `pending` to `out`.
    fn process(&mut self) -> io::Result<()> {
        if self.mode == Mode::Preface {
            let n = self.pending.len().min(PREFACE.len());
            if self.pending[..n] != PREFACE[..n] {
                self.mode = Mode::Passthrough;
            } else if n == PREFACE.len() {
                self.out.put(self.pending.split_to(n));
                self.mode = Mode::Inspect;
            } else {
                return Ok(());
            }
        }
        while matches!(self.mode, Mode::Inspect | Mode::Rewrite) {
            if self.pending.len() < FRAME_HEADER {
                return Ok(());
            }
            let len =
                u32::from_be_bytes([0, self.pending[0], self.pending[1], self.pending[2]]) as usize;
            if self.pending.len() < FRAME_HEADER + len {
                return Ok(());
            }
            let frame = self.pending.split_to(FRAME_HEADER + len);
            self.frame(&frame)?;
        }
        if self.mode == Mode::Passthrough {
            let rest = self.pending.split();
            self.out.put(rest);
        }
        Ok(())
    }

    fn frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let (kind, flags) = (frame[3], frame[4]);
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEADER..];
        match (kind, self.block.as_mut()) {
            (HEADERS, None) => {
                let mut body = payload;
                let mut pad = 0;
                if flags & PADDED != 0 {
                    pad = *body.first().ok_or_else(|| malformed("short HEADERS"))? as usize;
                    body = &body[1..];
                }
                let mut priority = None;
                if flags & PRIORITY != 0 {
                    let p: [u8; 5] = body
                        .get(..5)
                        .and_then(|p| p.try_into().ok())
                        .ok_or_else(|| malformed("short HEADERS"))?;
                    priority = Some(p);
                    body = &body[5..];
                }
                let fragment = body
                    .get(
                        ..body
                            .len()
                            .checked_sub(pad)
                            .ok_or_else(|| malformed("padding"))?,
                    )
                    .ok_or_else(|| malformed("padding"))?;
                self.block = Some(Block {
                    stream,
                    end_stream: flags & END_STREAM != 0,
                    priority,
                    fragment: fragment.to_vec(),
                    raw: frame.to_vec(),
                });
            }
            (CONTINUATION, Some(block)) if block.stream == stream => {
                block.fragment.extend_from_slice(payload);
                block.raw.extend_from_slice(frame);
                if block.raw.len() > MAX_BLOCK {
                    return Err(malformed("header block too large"));
                }
            }
            (_, Some(_)) => return Err(malformed("header block interrupted")),
            (_, None) => {
                self.out.extend_from_slice(frame);
                return Ok(());
            }
        }
        if flags & END_HEADERS != 0 {
            let block = self.block.take().expect("a block was just gathered");
            self.finish(block)?;
        }
        Ok(())
    }

    fn finish(&mut self, block: Block) -> io::Result<()> {
        let mut headers = self
            .decoder
            .decode(&block.fragment)
            .map_err(|e| malformed(&format!("hpack: {e:?}")))?;
        let mut fixed = false;
        for (name, value) in headers.iter_mut() {
            if name.as_slice() == b":authority" {
                if let Some(at) = value.windows(3).position(|w| w == b"://") {
                    value.drain(..at + 3);
                    while value.last() == Some(&b'/') {
                        value.pop();
                    }
                    fixed = true;
                }
            }
        }
        if self.mode == Mode::Inspect {
            if !fixed {
                self.out.extend_from_slice(&block.raw);
                self.mode = Mode::Passthrough;
                return Ok(());
            }
            tracing::debug!("client sends a URL as :authority; rewriting its header blocks");
            self.mode = Mode::Rewrite;
        }
        let encoded = self
            .encoder
            .encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let mut rest = &encoded[..];
        let mut first = true;
        loop {
            let mut flags = 0;
            let mut head = Vec::new();
            if first {
                if block.end_stream {
                    flags |= END_STREAM;
                }
                if let Some(p) = block.priority {
                    flags |= PRIORITY;
                    head.extend_from_slice(&p);
                }
            }
            let take = rest.len().min(MAX_FRAME - head.len());
            if take == rest.len() {
                flags |= END_HEADERS;
            }
            let len = (head.len() + take) as u32;
            self.out.put_slice(&len.to_be_bytes()[1..]);
            self.out.put_u8(if first { HEADERS } else { CONTINUATION });
            self.out.put_u8(flags);
            self.out.put_u32(block.stream);
            self.out.put_slice(&head);
            self.out.put_slice(&rest[..take]);
            rest = &rest[take..];
            first = false;
            if flags & END_HEADERS != 0 {
                return Ok(());
            }
        }
    }
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("http/2: {what}"))
}

impl<S: AsyncRead + Unpin> AsyncRead for FixAuthority<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.mode == Mode::Passthrough || this.eof {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // The client is done: what is left goes as it came.
                this.eof = true;
                let rest = this.pending.split();
                this.out.put(rest);
                continue;
            }
            this.pending.extend_from_slice(read.filled());
            this.process()?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FixAuthority<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for FixAuthority<S>
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.push(kind);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn request(authority: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/etcdserverpb.Maintenance/Status"),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
    }

    /// What a client sends: preface, SETTINGS, then per request a header
    /// block (the second split into HEADERS + CONTINUATION, with padding and
    /// priority) and a DATA frame.
    fn client_bytes(authority: &str) -> Vec<u8> {
        let mut enc = loona_hpack::Encoder::new();
        let mut out = PREFACE.to_vec();
        out.extend(frame(0x4, 0, 0, &[]));
        let h = request(authority);
        let block = enc.encode(h.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        out.extend(frame(HEADERS, END_HEADERS, 1, &block));
        out.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0"));
        let block = enc.encode(h.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let (a, b) = block.split_at(block.len() / 2);
        let mut first = vec![2u8]; // pad length
        first.extend_from_slice(&[0, 0, 0, 1, 16]); // priority
        first.extend_from_slice(a);
        first.extend_from_slice(&[0, 0]);
        out.extend(frame(HEADERS, PADDED | PRIORITY, 3, &first));
        out.extend(frame(CONTINUATION, END_HEADERS, 3, b));
        out.extend(frame(0x0, END_STREAM, 3, b"\0\0\0\0\0"));
        out
    }

    /// Reads `input` through the fix, a few bytes at a time.
    async fn through(input: Vec<u8>) -> Vec<u8> {
        let (mut tx, rx) = tokio::io::duplex(7);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            tx.write_all(&input).await.unwrap();
        });
        let mut fix = FixAuthority::new(rx);
        let mut got = Vec::new();
        fix.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        got
    }

    /// (kind, flags, stream, payload) of each frame after the preface.
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        assert!(bytes.starts_with(PREFACE));
        bytes = &bytes[PREFACE.len()..];
        let mut all = Vec::new();
        while !bytes.is_empty() {
            let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
            let stream = u32::from_be_bytes(bytes[5..9].try_into().unwrap());
            all.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
            bytes = &bytes[9 + len..];
        }
        all
    }

    #[tokio::test]
    async fn a_url_authority_loses_its_scheme_in_every_block() {
        let got = through(client_bytes("http://127.0.0.1:2379")).await;
        let frames = frames(&got);
        let kinds: Vec<u8> = frames.iter().map(|f| f.0).collect();
        assert_eq!(kinds, vec![0x4, HEADERS, 0x0, HEADERS, 0x0]);
        let mut dec = loona_hpack::Decoder::new();
        for (i, stream) in [(1, 1), (3, 3)] {
            let (_, flags, s, payload) = &frames[i];
            assert_eq!(*s, stream);
            let mut block = &payload[..];
            if stream == 3 {
                // The priority is kept; the padding is gone.
                assert_eq!(*flags, PRIORITY | END_HEADERS);
                assert_eq!(&block[..5], &[0, 0, 0, 1, 16]);
                block = &block[5..];
            } else {
                assert_eq!(*flags, END_HEADERS);
            }
            let headers = dec.decode(block).unwrap();
            assert_eq!(headers, request("127.0.0.1:2379"));
        }
        // DATA frames pass unchanged.
        assert_eq!(frames[2].3, b"\0\0\0\0\0");
        assert_eq!(frames[4].1, END_STREAM);
    }

    #[tokio::test]
    async fn a_valid_authority_passes_byte_for_byte() {
        let input = client_bytes("127.0.0.1:2379");
        assert_eq!(through(input.clone()).await, input);
    }

    #[tokio::test]
    async fn http1_and_other_bytes_pass_byte_for_byte() {
        for input in [
            b"GET /health HTTP/1.1\r\nHost: http://x\r\n\r\n".to_vec(),
            b"PRI * HT".to_vec(),
            vec![0x16, 0x03, 0x01, 0x00, 0x10],
        ] {
            assert_eq!(through(input.clone()).await, input);
        }
    }

    #[tokio::test]
    async fn a_long_rewritten_block_is_split_into_continuations() {
        let mut enc = loona_hpack::Encoder::new();
        let mut h = request("http://127.0.0.1:2379");
        h.push((b"x-big".to_vec(), vec![b'v'; 40_000]));
        let block = enc.encode(h.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let mut input = PREFACE.to_vec();
        for (i, chunk) in block.chunks(10_000).enumerate() {
            let last = (i + 1) * 10_000 >= block.len();
            let kind = if i == 0 { HEADERS } else { CONTINUATION };
            let flags = if last { END_HEADERS } else { 0 } | if i == 0 { END_STREAM } else { 0 };
            input.extend(frame(kind, flags, 5, chunk));
        }
        let got = frames(&through(input).await);
        assert!(got.len() >= 3);
        assert_eq!(got[0].0, HEADERS);
        assert_eq!(got[0].1, END_STREAM);
        assert!(got[1..].iter().all(|f| f.0 == CONTINUATION));
        assert!(got.iter().all(|f| f.3.len() <= MAX_FRAME));
        assert_eq!(got.last().unwrap().1, END_HEADERS);
        let block: Vec<u8> = got.iter().flat_map(|f| f.3.clone()).collect();
        let mut want = request("127.0.0.1:2379");
        want.push((b"x-big".to_vec(), vec![b'v'; 40_000]));
        assert_eq!(loona_hpack::Decoder::new().decode(&block).unwrap(), want);
    }
}
