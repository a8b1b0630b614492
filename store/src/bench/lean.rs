//! A lean unary gRPC client for the request workloads (`put`, `range`,
//! `txn-put`, and `watch`'s puts) on plain-HTTP endpoints: each request goes
//! from its client task straight into an HTTP/2 stream ([`h2`]), and the
//! connection task writes what is ready ([`crate::coalesce`]).
//!
//! Why: the load generator shares the two cores with the server it measures.
//! Through a tonic `Channel` each request also crosses tower's `Buffer` (a
//! queue and a worker task) and hyper's dispatch queue, with a future boxed
//! and a body polled through tonic's encoder. At put 100/1000 that cost the
//! generator about as much CPU per request as the keel member it loaded
//! (docs/benchmarks.md, "A leaner load generator"), CPU taken from whichever
//! server runs beside it. The bytes on the wire are the same gRPC: POST
//! `/etcdserverpb.KV/Put`, `content-type: application/grpc`, `te: trailers`,
//! one length-prefixed message each way, the status in the trailers (or in
//! the headers of a trailers-only answer).
//!
//! Leaves out: TLS (a `https` endpoint uses tonic), compression (neither keel
//! nor etcd compresses unless asked), deadlines, and retries: an error
//! counts, as with tonic.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::client::SendRequest;
use prost::Message;
use tonic::codegen::http::uri::{Authority, PathAndQuery, Scheme};
use tonic::codegen::http::{self, HeaderMap, HeaderValue, Method, Request, Uri};
use tonic::{Code, Status};

/// Per-stream receive window, as hyper's client (tonic's) starts with.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
/// Connection receive window, as hyper's client.
const CONN_WINDOW: u32 = 5 * 1024 * 1024;

/// One HTTP/2 connection; clones share it.
#[derive(Clone)]
pub struct Lean {
    send: SendRequest<Bytes>,
    /// The endpoint's `host:port`; each request's URI is `http://`, it, and
    /// the method's path.
    authority: Authority,
    /// The run's auth token, sent as the `token` header.
    token: Option<HeaderValue>,
}

/// A unary method: its request and response messages and its path.
pub trait Unary: Message + Sized {
    type Response: Message + Default;
    const PATH: &'static str;
}

impl Lean {
    /// Connects to `url` (`http://host:port`) within `timeout`.
    pub async fn connect(
        url: &str,
        timeout: Duration,
        token: Option<&str>,
    ) -> anyhow::Result<Lean> {
        let uri = Uri::from_str(url).with_context(|| format!("invalid endpoint {url}"))?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "{url}: the lean client speaks plain HTTP/2 only"
        );
        let authority = uri
            .authority()
            .cloned()
            .with_context(|| format!("{url}: no host:port"))?;
        let tcp = tokio::time::timeout(timeout, crate::coalesce::connect(uri))
            .await
            .with_context(|| format!("connecting to {url}: timed out"))?
            .with_context(|| format!("connecting to {url}"))?;
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONN_WINDOW)
            .handshake::<_, Bytes>(tcp.into_inner())
            .await
            .with_context(|| format!("HTTP/2 handshake with {url}"))?;
        let at = url.to_string();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(endpoint = %at, "bench connection closed: {e}");
            }
        });
        let token = token
            .map(HeaderValue::from_str)
            .transpose()
            .context("the token is not a valid header value")?;
        Ok(Lean {
            send,
            authority,
            token,
        })
    }

    /// Sends `req` and waits for its answer.
    pub async fn call<M: Unary>(&self, req: &M) -> Result<M::Response, Status> {
        let mut request = Request::new(());
        *request.method_mut() = Method::POST;
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = Some(PathAndQuery::from_static(M::PATH));
        *request.uri_mut() =
            Uri::from_parts(uri).map_err(|e| Status::internal(format!("request URI: {e}")))?;
        let h = request.headers_mut();
        h.insert(http::header::CONTENT_TYPE, GRPC.clone());
        h.insert(http::header::TE, TRAILERS.clone());
        if let Some(t) = &self.token {
            h.insert("token", t.clone());
        }
        let mut send = self.send.clone().ready().await.map_err(h2_status)?;
        let (answer, mut body) = send.send_request(request, false).map_err(h2_status)?;
        body.send_data(frame(req), true).map_err(h2_status)?;
        let answer = answer.await.map_err(h2_status)?;
        let (head, mut recv) = answer.into_parts();
        if head.status != http::StatusCode::OK {
            return Err(Status::new(
                Code::Unknown,
                format!("HTTP status {}", head.status),
            ));
        }
        // A trailers-only answer (an error, usually) has its status here.
        if let Some(s) = status_of(&head.headers) {
            s?;
        }
        let mut data = BytesMut::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.map_err(h2_status)?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let trailers = recv.trailers().await.map_err(h2_status)?;
        match trailers.as_ref().and_then(status_of) {
            Some(s) => s?,
            None => return Err(Status::internal("the answer carries no grpc-status")),
        }
        unframe(data.freeze())
    }
}

static GRPC: HeaderValue = HeaderValue::from_static("application/grpc");
static TRAILERS: HeaderValue = HeaderValue::from_static("trailers");

/// `msg` as one gRPC message: uncompressed flag, big-endian length, bytes.
fn frame<M: Message>(msg: &M) -> Bytes {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    msg.encode(&mut buf).expect("the buffer has room");
    buf.freeze()
}

/// The one message of a unary answer's body.
fn unframe<R: Message + Default>(mut data: Bytes) -> Result<R, Status> {
    if data.len() < 5 {
        return Err(Status::internal("the answer carries no message"));
    }
    if data.get_u8() != 0 {
        return Err(Status::internal("compressed answer (none was asked for)"));
    }
    let len = data.get_u32() as usize;
    if data.len() != len {
        return Err(Status::internal(format!(
            "the answer's message is {} bytes, its prefix says {len}",
            data.len()
        )));
    }
    R::decode(data).map_err(|e| Status::internal(format!("decoding the answer: {e}")))
}

/// The gRPC status in `headers`, if they carry one: `Ok(())` for OK.
fn status_of(headers: &HeaderMap) -> Option<Result<(), Status>> {
    let code = Code::from_bytes(headers.get("grpc-status")?.as_bytes());
    if code == Code::Ok {
        return Some(Ok(()));
    }
    let message = headers
        .get("grpc-message")
        .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
        .unwrap_or_default();
    Some(Err(Status::new(code, message)))
}

/// An HTTP/2 failure as the status tonic would report for it.
fn h2_status(e: h2::Error) -> Status {
    match e.reason() {
        Some(h2::Reason::CANCEL) => Status::cancelled(e.to_string()),
        Some(h2::Reason::REFUSED_STREAM) => Status::unavailable(e.to_string()),
        Some(_) => Status::internal(e.to_string()),
        None => Status::unavailable(e.to_string()),
    }
}

mod methods {
    use keel_proto::etcdserverpb::{
        PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
    };

    use super::Unary;

    impl Unary for PutRequest {
        type Response = PutResponse;
        const PATH: &'static str = "/etcdserverpb.KV/Put";
    }
    impl Unary for RangeRequest {
        type Response = RangeResponse;
        const PATH: &'static str = "/etcdserverpb.KV/Range";
    }
    impl Unary for TxnRequest {
        type Response = TxnResponse;
        const PATH: &'static str = "/etcdserverpb.KV/Txn";
    }
}

#[cfg(test)]
mod tests {
    use keel_proto::etcdserverpb::PutRequest;

    use super::*;

    #[test]
    fn frames_round_trip() {
        let req = PutRequest {
            key: b"k".to_vec(),
            value: vec![7; 300],
            ..Default::default()
        };
        let f = frame(&req);
        assert_eq!(f[0], 0);
        assert_eq!(
            u32::from_be_bytes([f[1], f[2], f[3], f[4]]) as usize,
            f.len() - 5
        );
        let back: PutRequest = unframe(f.clone()).unwrap();
        assert_eq!(back, req);
        let short = unframe::<PutRequest>(f.slice(..f.len() - 1)).unwrap_err();
        assert_eq!(short.code(), Code::Internal);
        let mut compressed = BytesMut::from(&f[..]);
        compressed[0] = 1;
        assert!(unframe::<PutRequest>(compressed.freeze()).is_err());
    }

    #[test]
    fn statuses_from_headers() {
        let mut h = HeaderMap::new();
        assert!(status_of(&h).is_none());
        h.insert("grpc-status", HeaderValue::from_static("0"));
        assert!(matches!(status_of(&h), Some(Ok(()))));
        h.insert("grpc-status", HeaderValue::from_static("9"));
        h.insert(
            "grpc-message",
            HeaderValue::from_static("etcdserver: mvcc: required revision has been compacted"),
        );
        let s = status_of(&h).unwrap().unwrap_err();
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(s.message().contains("compacted"));
    }
}
