//! keel-client: a typed async client for any etcd v3 API endpoint (keel or a
//! real etcd), used by keel's own tests, `keel bench`, the jepsen harness and
//! (later) the control plane.
//!
//! It holds a list of endpoints and fails over between them: a call that cannot
//! reach its endpoint (connection refused, reset, dial timeout) moves to the
//! next one and retries; reads are also retried when a member answers that it
//! has no leader or timed out, writes are not (their outcome is unknown, so the
//! caller decides; see [`Error::is_indeterminate`]).
//!
//! Watch ([`watch`]) resumes on another member from the last revision seen.
//!
//! Leases ([`lease`]): grant, revoke, time-to-live, list, and a background
//! keep-alive that resumes on another member. Lock and election
//! ([`concurrency`]): etcd's `Lock` and `Election` services.
//!
//! Left out for now: auth and TLS (later issues extend this client).

pub mod concurrency;
pub mod lease;
pub mod watch;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keel_proto::etcdserverpb::kv_client::KvClient;
pub use keel_proto::etcdserverpb::{
    compare, request_op, response_op, CompactionRequest, CompactionResponse, Compare,
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
pub use keel_proto::mvccpb::KeyValue;
pub use lease::{KeepAlive, KeepAliveEvent};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
pub use watch::{Event, EventType, WatchMessage, WatchOptions, WatchStream};

/// keel-client's error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid endpoint {0:?}: {1}")]
    InvalidEndpoint(String, String),
    #[error("no endpoints given")]
    NoEndpoints,
    /// The server (or the transport) answered with this status.
    #[error("{}", .0.message())]
    Status(#[from] Status),
}

impl Error {
    /// The gRPC status, if the failure came from a call.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Error::Status(s) => Some(s),
            _ => None,
        }
    }

    /// True when a write may or may not have taken effect (timeouts, lost
    /// connections, leader changes): Jepsen's `:info`.
    pub fn is_indeterminate(&self) -> bool {
        match self {
            Error::Status(s) => matches!(
                s.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
            ),
            _ => false,
        }
    }
}

/// keel-client's result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long to wait for a TCP connection (etcdctl's --dial-timeout, 2 s).
    pub dial_timeout: Duration,
    /// A deadline for each call (etcdctl's --command-timeout, 5 s).
    pub request_timeout: Duration,
    /// How many endpoint attempts one call may make before giving up.
    pub max_attempts: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dial_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(15),
            max_attempts: 8,
        }
    }
}

/// A client over a list of endpoints. Cheap to clone (channels are shared).
#[derive(Clone)]
pub struct Client {
    endpoints: Vec<String>,
    channels: Vec<Channel>,
    current: std::sync::Arc<AtomicUsize>,
    opts: Options,
}

impl Client {
    /// A client for `endpoints` (`host:port` or `http://host:port`). Connections
    /// are made lazily, so this succeeds even while members are down.
    pub fn new<I, S>(endpoints: I, opts: Options) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut eps = Vec::new();
        let mut channels = Vec::new();
        for e in endpoints {
            let e: String = e.into();
            let url = if e.contains("://") {
                e.clone()
            } else {
                format!("http://{e}")
            };
            let ep = Endpoint::from_shared(url.clone())
                .map_err(|err| Error::InvalidEndpoint(e.clone(), err.to_string()))?
                .connect_timeout(opts.dial_timeout)
                .timeout(opts.request_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5));
            channels.push(ep.connect_lazy());
            eps.push(url);
        }
        if eps.is_empty() {
            return Err(Error::NoEndpoints);
        }
        Ok(Client {
            endpoints: eps,
            channels,
            current: std::sync::Arc::new(AtomicUsize::new(0)),
            opts,
        })
    }

    /// The endpoints, as URLs.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// A raw KV client on the current endpoint, for calls this API lacks.
    pub fn kv_client(&self) -> KvClient<Channel> {
        let i = self.current.load(Ordering::Relaxed) % self.channels.len();
        raw_kv(self.channels[i].clone())
    }

    /// A client pinned to one endpoint (no failover), e.g. to read one member.
    pub fn pinned(&self, index: usize) -> Client {
        Client {
            endpoints: vec![self.endpoints[index].clone()],
            channels: vec![self.channels[index].clone()],
            current: std::sync::Arc::new(AtomicUsize::new(0)),
            opts: self.opts.clone(),
        }
    }

    /// The channel of the current endpoint.
    pub(crate) fn channel_for_attempt(&self, _attempt: usize) -> Channel {
        let i = self.current.load(Ordering::Relaxed) % self.channels.len();
        self.channels[i].clone()
    }

    /// Moves on to the next endpoint.
    pub(crate) fn advance(&self, _attempt: usize) {
        let n = self.channels.len();
        let i = self.current.load(Ordering::Relaxed);
        let _ = self
            .current
            .compare_exchange(i, (i + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Puts `key` = `value`.
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<PutResponse> {
        self.put_request(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })
        .await
    }

    pub async fn put_request(&self, req: PutRequest) -> Result<PutResponse> {
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.put(req).await }
        })
        .await
    }

    /// Gets one key (linearizable).
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<KeyValue>> {
        let resp = self
            .range(RangeRequest {
                key: key.into(),
                ..Default::default()
            })
            .await?;
        Ok(resp.kvs.into_iter().next())
    }

    /// Every key with `prefix`, in key order.
    pub async fn get_prefix(&self, prefix: impl Into<Vec<u8>>) -> Result<RangeResponse> {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        self.range(RangeRequest {
            key,
            range_end,
            ..Default::default()
        })
        .await
    }

    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        self.call(true, |mut c| {
            let req = req.clone();
            async move { c.range(req).await }
        })
        .await
    }

    pub async fn delete(&self, req: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.delete_range(req).await }
        })
        .await
    }

    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        self.call(false, |mut c| {
            let req = req.clone();
            async move { c.txn(req).await }
        })
        .await
    }

    pub async fn compact(&self, revision: i64, physical: bool) -> Result<CompactionResponse> {
        self.call(false, |mut c| async move {
            c.compact(CompactionRequest { revision, physical }).await
        })
        .await
    }

    /// Runs `f` against the current endpoint, moving on to the next one when the
    /// endpoint cannot be reached (and, for `repeatable` calls, when it answers
    /// that it cannot serve right now).
    async fn call<T, F, Fut>(&self, repeatable: bool, f: F) -> Result<T>
    where
        F: Fn(KvClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        self.call_on(repeatable, |ch| f(raw_kv(ch))).await
    }

    /// Like `call`, for any service on the endpoint's channel.
    pub(crate) async fn call_on<T, F, Fut>(&self, repeatable: bool, f: F) -> Result<T>
    where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        let n = self.channels.len();
        let mut last = None;
        for attempt in 0..self.opts.max_attempts.max(1) {
            let i = self.current.load(Ordering::Relaxed) % n;
            match f(self.channels[i].clone()).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) => {
                    let retry = unreachable(&s) || (repeatable && server_busy(&s));
                    if !retry {
                        return Err(Error::Status(s));
                    }
                    tracing::debug!(endpoint = %self.endpoints[i], error = %s, "endpoint failed; trying the next one");
                    let _ = self.current.compare_exchange(
                        i,
                        (i + 1) % n,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    last = Some(s);
                    if (attempt + 1) % n == 0 {
                        tokio::time::sleep(Duration::from_millis(
                            100 * (attempt as u64 / n as u64 + 1),
                        ))
                        .await;
                    }
                }
            }
        }
        Err(Error::Status(last.unwrap_or_else(|| {
            Status::unavailable("no endpoint answered")
        })))
    }
}

fn raw_kv(ch: Channel) -> KvClient<Channel> {
    KvClient::new(ch)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

/// The call never reached a server (so even a write can be retried safely).
fn unreachable(s: &Status) -> bool {
    s.code() == Code::Unavailable && !s.message().starts_with("etcdserver:") && is_connect_error(s)
}

fn is_connect_error(s: &Status) -> bool {
    let text = format!("{s:?}").to_lowercase();
    text.contains("connect") || text.contains("connection refused") || text.contains("dns error")
}

/// The member answered but could not serve now (no leader, timeout, stopping).
fn server_busy(s: &Status) -> bool {
    s.code() == Code::Unavailable
}

/// The range end that selects every key with `prefix` (etcd's GetPrefixRangeEnd).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_as_etcd() {
        assert_eq!(prefix_end(b"abc"), b"abd".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[tokio::test]
    async fn bad_endpoints_are_refused() {
        assert!(matches!(
            Client::new(Vec::<String>::new(), Options::default()),
            Err(Error::NoEndpoints)
        ));
        assert!(matches!(
            Client::new(["http://bad host:1"], Options::default()),
            Err(Error::InvalidEndpoint(..))
        ));
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_fails_with_unavailable() {
        // A port nothing listens on: bind one and drop it.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let c = Client::new(
            [format!("127.0.0.1:{port}")],
            Options {
                max_attempts: 2,
                ..Options::default()
            },
        )
        .unwrap();
        let e = c.put("k", "v").await.unwrap_err();
        assert_eq!(e.status().unwrap().code(), Code::Unavailable);
        assert!(e.is_indeterminate());
    }
}
