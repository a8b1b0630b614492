//! The gRPC server for `etcdserverpb.Watch`, in place of the generated
//! `WatchServer`: the same route and message limits, with a prost codec whose
//! per-stream buffers start small.
//!
//! tonic allocates one encode and one decode buffer per call, at the codec's
//! `buffer_size` (8 KiB by default), and keeps both for the life of a stream. A
//! watch stream is long-lived and mostly idle, and its requests and most of
//! its responses are a few hundred bytes, so those two buffers were most of a
//! stream's memory (`docs/benchmarks.md`, issue 3). Here they start at
//! [`CODEC_BUFFER`] and grow on demand as before; the batching of ready
//! responses into one write (the yield threshold) is tonic's default.
//!
//! Left out, as in the generated server: compression (none is enabled).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use keel_proto::etcdserverpb::watch_server::Watch;
use keel_proto::etcdserverpb::{WatchRequest, WatchResponse};
use prost::Message as _;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};

use super::stream::WatchService;

/// Initial size of a stream's encode and decode buffers (tonic's default:
/// 8 KiB): room for a create request or a small response. Larger messages and
/// batches grow the buffer as needed (at 1 KiB or more, `bytes` would also
/// regrow every later buffer of the stream to at least this size).
const CODEC_BUFFER: usize = 256;
/// Ready responses batched into one write, at most (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

const PATH: &str = "/etcdserverpb.Watch/Watch";

/// `etcdserverpb.Watch` as a tower service, for `Routes::add_service`.
#[derive(Clone)]
pub struct WatchServer {
    svc: Arc<WatchService>,
    max_decoding_message_size: usize,
}

impl WatchServer {
    /// Serves `svc`, refusing requests over `max_decoding_message_size`.
    pub fn new(svc: WatchService, max_decoding_message_size: usize) -> Self {
        WatchServer {
            svc: Arc::new(svc),
            max_decoding_message_size,
        }
    }
}

impl NamedService for WatchServer {
    const NAME: &'static str = "etcdserverpb.Watch";
}

impl<B> Service<http::Request<B>> for WatchServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != PATH {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let method = Method(self.svc.clone());
        let mut grpc = Grpc::new(WatchCodec)
            .apply_max_message_size_config(Some(self.max_decoding_message_size), None);
        Box::pin(async move { Ok(grpc.streaming(method, req).await) })
    }
}

struct Method(Arc<WatchService>);

impl StreamingService<WatchRequest> for Method {
    type Response = WatchResponse;
    type ResponseStream = <WatchService as Watch>::WatchStream;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<WatchRequest>>) -> Self::Future {
        let svc = self.0.clone();
        Box::pin(async move { svc.watch(request).await })
    }
}

/// prost encoding of the Watch messages, with [`CODEC_BUFFER`]-sized buffers.
#[derive(Clone, Copy, Default)]
pub struct WatchCodec;

fn buffer_settings() -> BufferSettings {
    BufferSettings::new(CODEC_BUFFER, YIELD_THRESHOLD)
}

impl Codec for WatchCodec {
    type Encode = WatchResponse;
    type Decode = WatchRequest;
    type Encoder = WatchCodec;
    type Decoder = WatchCodec;

    fn encoder(&mut self) -> Self::Encoder {
        WatchCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        WatchCodec
    }
}

impl Encoder for WatchCodec {
    type Item = WatchResponse;
    type Error = Status;

    fn encode(&mut self, item: WatchResponse, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        // EncodeBuf grows on demand, so prost never runs out of room.
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding a watch response: {e}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffer_settings()
    }
}

impl Decoder for WatchCodec {
    type Item = WatchRequest;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<WatchRequest>, Status> {
        // As tonic's prost codec: a malformed message is INTERNAL.
        WatchRequest::decode(buf)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffer_settings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use futures::StreamExt;
    use keel_proto::etcdserverpb::{watch_request, WatchCreateRequest};
    use tonic::codec::Streaming;

    /// Requests framed as gRPC messages (flag byte, big-endian length, body).
    fn framed(reqs: &[WatchRequest]) -> BytesMut {
        let mut buf = BytesMut::new();
        for r in reqs {
            let body = r.encode_to_vec();
            buf.put_u8(0);
            buf.put_u32(body.len() as u32);
            buf.put_slice(&body);
        }
        buf
    }

    #[tokio::test]
    async fn decodes_requests_larger_than_the_initial_buffer() {
        let create = |key: Vec<u8>| WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key,
                    ..Default::default()
                },
            )),
        };
        let reqs = vec![
            create(b"a".to_vec()),
            create(vec![b'k'; 10 * CODEC_BUFFER]),
            create(b"b".to_vec()),
        ];
        let body = axum::body::Body::from(framed(&reqs).freeze());
        let mut stream = Streaming::new_request(WatchCodec, body, None, Some(1 << 20));
        let mut got = Vec::new();
        while let Some(r) = stream.next().await {
            got.push(r.unwrap());
        }
        assert_eq!(got, reqs);
    }
}
