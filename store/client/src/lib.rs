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
//! ([`concurrency`]): etcd's `Lock` and `Election` services. Membership
//! ([`cluster`]) and maintenance calls ([`maintenance`]): thin calls of etcd's
//! `Cluster` and `Maintenance` services, for keelctl.
//!
//! Auth ([`auth`]): user and password, as etcdctl's `--user`
//! ([`Client::with_user`]); the token rides on every call.
//!
//! TLS ([`tls`]): `https://` endpoints, a CA, a client certificate, as
//! etcdctl's `--cacert`, `--cert`, `--key` (see [`Options::tls`]).

pub mod auth;
pub mod cluster;
pub mod concurrency;
pub mod lease;
pub mod maintenance;
pub mod tls;
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
use tonic::transport::Channel;
use tonic::{Code, Status};
pub use watch::{Event, EventType, WatchMessage, WatchOptions, WatchStream};

/// keel-client's error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid endpoint {0:?}: {1}")]
    InvalidEndpoint(String, String),
    #[error("no endpoints given")]
    NoEndpoints,
    /// TLS settings that cannot be used (a file missing, a key without its certificate).
    #[error("tls: {0}")]
    Tls(String),
    /// The server (or the transport) answered with this status.
    #[error("{}", .0.message())]
    Status(#[from] Status),
    /// Authenticating the client's user failed (a wrong password, an
    /// unknown user): etcd's clientv3 fails when it connects, before any call.
    #[error("{}", .0.message())]
    Authenticate(Status),
}

impl Error {
    /// The error of a failed Authenticate: [`Error::Authenticate`] when the
    /// server refused the user, else (unreachable, busy) the status.
    pub(crate) fn of_authenticate(s: Status) -> Error {
        if unreachable(&s) || server_busy(&s) || broken_connection(&s) {
            Error::Status(s)
        } else {
            Error::Authenticate(s)
        }
    }

    /// The gRPC status, if the failure came from a call.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Error::Status(s) | Error::Authenticate(s) => Some(s),
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
    /// TLS: when set, endpoints without a scheme are dialled with TLS
    /// (`https://` ones always are); see [`tls`].
    pub tls: Option<tls::TlsOptions>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dial_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(15),
            max_attempts: 8,
            tls: None,
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
    auth: auth::AuthState,
}

impl Client {
    /// A client for `endpoints` (`host:port`, `http://host:port` or
    /// `https://host:port`). Connections are made lazily, so this succeeds even
    /// while members are down.
    pub fn new<I, S>(endpoints: I, opts: Options) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut eps = Vec::new();
        let mut channels = Vec::new();
        for e in endpoints {
            let e: String = e.into();
            let url = tls::endpoint_url(&e, opts.tls.as_ref());
            let ep = tls::endpoint(&url, opts.tls.as_ref())
                .map_err(|err| match err {
                    Error::InvalidEndpoint(_, why) => Error::InvalidEndpoint(e.clone(), why),
                    other => other,
                })?
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
            auth: auth::AuthState::default(),
        })
    }

    /// The endpoints, as URLs.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// A raw KV client on the current endpoint, for calls this API lacks
    /// (with the token if the client has authenticated).
    pub fn kv_client(&self) -> KvClient<auth::AuthChannel> {
        let i = self.current.load(Ordering::Relaxed) % self.channels.len();
        raw_kv(self.auth.wrap(self.channels[i].clone()))
    }

    /// The channel of the current endpoint, for calls of services or
    /// streams this client does not wrap (keelctl's watch and keep-alive
    /// printers need the servers' whole responses). With a user, it
    /// authenticates first and the channel carries the token.
    pub async fn channel(&self) -> Result<auth::AuthChannel> {
        self.channel_for_attempt(0)
            .await
            .map_err(Error::of_authenticate)
    }

    /// A client pinned to one endpoint (no failover), e.g. to read one member.
    pub fn pinned(&self, index: usize) -> Client {
        Client {
            endpoints: vec![self.endpoints[index].clone()],
            channels: vec![self.channels[index].clone()],
            current: std::sync::Arc::new(AtomicUsize::new(0)),
            opts: self.opts.clone(),
            auth: self.auth.clone(),
        }
    }

    /// The channel of the current endpoint, authenticated first when the
    /// client has a user and no token yet.
    pub(crate) async fn channel_for_attempt(
        &self,
        _attempt: usize,
    ) -> std::result::Result<auth::AuthChannel, Status> {
        let i = self.current.load(Ordering::Relaxed) % self.channels.len();
        let ch = self.channels[i].clone();
        self.auth.ensure_token(&ch).await?;
        Ok(self.auth.wrap(ch))
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
        F: Fn(KvClient<auth::AuthChannel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        self.call_on(repeatable, |ch| f(raw_kv(ch))).await
    }

    /// Like `call`, for any service on the endpoint's channel.
    pub(crate) async fn call_on<T, F, Fut>(&self, repeatable: bool, f: F) -> Result<T>
    where
        F: Fn(auth::AuthChannel) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        let n = self.channels.len();
        let mut last = None;
        let mut refreshed = false;
        for attempt in 0..self.opts.max_attempts.max(1) {
            let i = self.current.load(Ordering::Relaxed) % n;
            let ch = self.channels[i].clone();
            let called = match self.auth.ensure_token(&ch).await {
                Ok(()) => f(self.auth.wrap(ch)).await,
                Err(s) => match Error::of_authenticate(s) {
                    Error::Status(s) => Err(s),
                    refused => return Err(refused),
                },
            };
            match called {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if !refreshed && self.auth.refresh_on(&s) => {
                    // A new token, then the same call again (once).
                    refreshed = true;
                    last = Some(s);
                }
                Err(s) => {
                    let retry = unreachable(&s)
                        || (repeatable && (server_busy(&s) || broken_connection(&s)));
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

fn raw_kv(ch: auth::AuthChannel) -> KvClient<auth::AuthChannel> {
    KvClient::new(ch)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

/// The call never reached a server (so even a write can be retried safely).
fn unreachable(s: &Status) -> bool {
    (s.code() == Code::Unavailable
        && !s.message().starts_with("etcdserver:")
        && is_connect_error(s))
        || never_sent(s)
}

/// hyper gave the request back unsent: its connection closed before the
/// request was written ("operation was canceled", a transport error, not a
/// status the server sent). Seen when a connection fails at once, e.g. plain
/// text to a TLS port on a busy machine.
fn never_sent(s: &Status) -> bool {
    s.code() == Code::Cancelled
        && s.message() == "operation was canceled"
        && std::error::Error::source(s).is_some()
}

fn is_connect_error(s: &Status) -> bool {
    let text = format!("{s:?}").to_lowercase();
    text.contains("connect") || text.contains("connection refused") || text.contains("dns error")
}

/// The connection failed below gRPC (an HTTP/2 protocol error, e.g. plain
/// text spoken to a TLS port, then tonic's "transport error" on it). A read is retried, as grpc-go reconnects
/// until the deadline; a write's fate is unknown, so it is not.
fn broken_connection(s: &Status) -> bool {
    (s.code() == Code::Internal && s.message().starts_with("h2 protocol error"))
        || (s.code() == Code::Unknown && s.message() == "transport error")
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
