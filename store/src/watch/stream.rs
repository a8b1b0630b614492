//! One gRPC `Watch` stream, with etcd 3.4's behaviour (its v3rpc `watch.go`):
//!
//! - create: an empty key means `\0`; `range_end` `\0` means "from key"; start
//!   revision 0 means "after the current revision". The created response carries
//!   the revision current before the watcher was registered; a taken watch id or
//!   an empty range answers created + canceled with etcd's cancel reason and
//!   watch id -1.
//! - auth: each create is checked for read access to its range, as the
//!   stream's credentials (its `token` metadata) stand at that moment; a
//!   refused create answers created + canceled with the cancel reason
//!   "rpc error: code = PermissionDenied desc = etcdserver: permission
//!   denied" (etcd 3.4 sends the gRPC error's text), whatever the cause
//!   (unknown token, no user, no permission). Watchers already created keep
//!   running after a permission change, as in etcd.
//! - cancel: answered `canceled` only for a watcher that exists.
//! - progress request: one response with watch id -1 once every watcher of the
//!   stream is synced, at the last notified revision.
//! - periodic progress (`--experimental-watch-progress-notify-interval`): for each
//!   `progress_notify` watcher that received no events since the last tick, an
//!   empty response with its watch id, if it is synced.
//! - compacted start: `compact_revision` set, `canceled` true, header revision 0.
//! - `fragment`: a response over `--max-request-bytes` with at least two events
//!   is split; every part but the last has `fragment` true.
//! - `hasleader` metadata: refused with "etcdserver: no leader" when the member
//!   has no leader, and ended with it after three election timeouts without one.
//!
//! A stream is not a task: [`WatchStream`] is the response stream itself, a
//! state machine that hyper's stream task drives (see its doc), which keeps
//! the memory of an open stream small.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream as _;
use keel_proto::etcdserverpb::watch_create_request::FilterType;
use keel_proto::etcdserverpb::watch_server::Watch;
use keel_proto::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest, WatchResponse};
use keel_proto::mvccpb;
use prost::Message as _;
use tokio::time::{interval_at, Instant, Interval};
use tonic::{Request, Response, Status, Streaming};

use super::queue::Receiver;
use super::{Hub, Out, StreamId, WatchId};
use crate::apply::to_pb;
use crate::auth::Access;
use crate::kv::Kv;
use crate::mvcc::{Event, EventKind, KeyRange, KeyValue, Store};

/// The cancel reason of a refused create: etcd 3.4 sends the text of its
/// gRPC error.
const PERMISSION_DENIED: &str =
    "rpc error: code = PermissionDenied desc = etcdserver: permission denied";

/// Messages the hub may queue for one stream before its watchers fall behind
/// into the catch-up path.
const STREAM_QUEUE: usize = 128;

/// The `etcdserverpb.Watch` service.
pub struct WatchService {
    hub: Arc<Hub>,
    kv: Kv,
    max_request_bytes: usize,
    progress_interval: Duration,
    election_timeout: Duration,
}

impl WatchService {
    pub fn new(
        hub: Arc<Hub>,
        kv: Kv,
        max_request_bytes: usize,
        progress_interval: Duration,
        election_timeout: Duration,
    ) -> Self {
        WatchService {
            hub,
            kv,
            max_request_bytes,
            progress_interval,
            election_timeout,
        }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<WatchStream>, Status> {
        let requires_leader = request
            .metadata()
            .get("hasleader")
            .map(|v| v.as_bytes() == b"true")
            .unwrap_or(false);
        if requires_leader && !self.kv.node().status().has_leader() {
            return Err(Status::unavailable("etcdserver: no leader"));
        }
        let creds = crate::auth::Credentials::of(&request);
        let (sid, hub_rx) = self.hub.open_queue_stream(STREAM_QUEUE);
        let now = Instant::now();
        let every = self.progress_interval;
        let leader = requires_leader.then(|| LeaderCheck {
            tick: interval_at(now + self.election_timeout, self.election_timeout),
            misses: 0,
        });
        Ok(Response::new(WatchStream {
            hub: self.hub.clone(),
            kv: self.kv.clone(),
            creds,
            sid,
            requests: request.into_inner(),
            hub_rx,
            specs: HashMap::new(),
            outbox: VecDeque::new(),
            max_bytes: self.max_request_bytes,
            progress: interval_at(now + every, every),
            leader,
            ended: false,
        }))
    }
}

/// What a stream remembers of each of its watchers.
struct Spec {
    key: Vec<u8>,
    range_end: Vec<u8>,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    /// For a progress_notify watcher: true while no events were sent since the
    /// last progress tick (etcd's `sws.progress`).
    quiet: bool,
}

/// The `hasleader` rule: the stream ends after three election timeouts in a
/// row without a leader.
struct LeaderCheck {
    tick: Interval,
    misses: u32,
}

/// One Watch stream: the response stream that tonic sends, which itself reads
/// the stream's requests and the hub's queue for it, and runs its tickers.
///
/// It is a hand-written state machine rather than a spawned task that feeds a
/// channel, so that an open stream costs no task and no response channel;
/// hyper's stream task drives it by polling the response body (idle streams
/// dominate, see `docs/benchmarks.md`, issue 3). Each input handled turns into
/// zero or more responses in `outbox`, and no further input is read until
/// they are all taken: when the client reads slowly, HTTP/2 flow control stops
/// the polling, the hub's queue fills, and the watchers fall back to the
/// catch-up path, as they did behind a full channel.
///
/// Dropping it (the stream ended, or the client went away) closes the stream in
/// the hub.
pub struct WatchStream {
    hub: Arc<Hub>,
    kv: Kv,
    /// Who opened the stream, resolved again at each create.
    creds: crate::auth::Credentials,
    sid: StreamId,
    requests: Streaming<WatchRequest>,
    hub_rx: Receiver,
    specs: HashMap<WatchId, Spec>,
    /// Responses not yet taken, in order.
    outbox: VecDeque<Result<WatchResponse, Status>>,
    max_bytes: usize,
    /// The periodic progress ticker.
    progress: Interval,
    leader: Option<LeaderCheck>,
    /// No more input: the stream ends once `outbox` is empty.
    ended: bool,
}

impl futures::Stream for WatchStream {
    type Item = Result<WatchResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(r) = this.outbox.pop_front() {
                return Poll::Ready(Some(r));
            }
            if this.ended || !this.poll_input(cx) {
                return if this.ended {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                };
            }
        }
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.hub.close_stream(self.sid);
    }
}

impl WatchStream {
    /// Handles one ready input: a request, a message from the hub or a tick.
    /// False when none is ready (each registered `cx` for a wake-up).
    fn poll_input(&mut self, cx: &mut Context<'_>) -> bool {
        match Pin::new(&mut self.requests).poll_next(cx) {
            Poll::Ready(Some(Ok(req))) => {
                self.on_request(req);
                return true;
            }
            // The client closed its side or the stream broke.
            Poll::Ready(Some(Err(_)) | None) => {
                self.ended = true;
                return true;
            }
            Poll::Pending => {}
        }
        if let Poll::Ready(out) = self.hub_rx.poll_recv(cx) {
            self.on_out(out);
            return true;
        }
        if self.progress.poll_tick(cx).is_ready() {
            for (id, spec) in self.specs.iter_mut().filter(|(_, s)| s.progress_notify) {
                if spec.quiet {
                    self.hub.progress(self.sid, *id);
                }
                spec.quiet = true;
            }
            return true;
        }
        if let Some(check) = &mut self.leader {
            if check.tick.poll_tick(cx).is_ready() {
                if self.kv.node().status().has_leader() {
                    check.misses = 0;
                } else {
                    check.misses += 1;
                    if check.misses >= 3 {
                        self.outbox
                            .push_back(Err(Status::unavailable("etcdserver: no leader")));
                        self.ended = true;
                    }
                }
                return true;
            }
        }
        false
    }

    fn send(&mut self, r: WatchResponse) {
        self.outbox.push_back(Ok(r));
    }

    fn header(&self, rev: i64) -> Option<keel_proto::etcdserverpb::ResponseHeader> {
        Some(self.kv.header_at(rev))
    }

    fn on_request(&mut self, req: WatchRequest) {
        match req.request_union {
            Some(watch_request::RequestUnion::CreateRequest(c)) => self.create(c),
            Some(watch_request::RequestUnion::CancelRequest(c)) => self.cancel(c.watch_id),
            Some(watch_request::RequestUnion::ProgressRequest(_)) => {
                self.hub.progress_all(self.sid);
            }
            None => {}
        }
    }

    /// Whether the stream's caller may read `[key, range_end)` now.
    fn permitted(&self, key: &[u8], range_end: &[u8]) -> bool {
        let auth = self.kv.auth();
        auth.caller(&self.creds)
            .and_then(|caller| auth.check(&caller, Access::read(key, range_end)))
            .is_ok()
    }

    /// Answered only for a watcher of this stream.
    fn cancel(&mut self, watch_id: WatchId) {
        if !self.hub.cancel(self.sid, watch_id) {
            return;
        }
        self.specs.remove(&watch_id);
        let rev = self.hub.notified_revision();
        self.send(WatchResponse {
            header: self.header(rev),
            watch_id,
            canceled: true,
            ..Default::default()
        });
    }

    fn create(&mut self, c: WatchCreateRequest) {
        let key = if c.key.is_empty() { vec![0] } else { c.key };
        let range_end = c.range_end;
        let current = self.hub.notified_revision();
        if !self.permitted(&key, &range_end) {
            self.send(WatchResponse {
                header: self.header(current),
                watch_id: c.watch_id,
                created: true,
                canceled: true,
                cancel_reason: PERMISSION_DENIED.into(),
                ..Default::default()
            });
            return;
        }
        let start = if c.start_revision == 0 {
            current + 1
        } else {
            c.start_revision
        };
        let registered =
            self.hub
                .register(self.sid, c.watch_id, key.clone(), range_end.clone(), start);
        let mut resp = WatchResponse {
            header: self.header(current),
            created: true,
            ..Default::default()
        };
        match registered {
            Ok(id) => {
                resp.watch_id = id;
                self.specs.insert(
                    id,
                    Spec {
                        key,
                        range_end,
                        no_put: c.filters.contains(&(FilterType::Noput as i32)),
                        no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
                        prev_kv: c.prev_kv,
                        fragment: c.fragment,
                        progress_notify: c.progress_notify,
                        quiet: true,
                    },
                );
                // "created" is queued before the hub may queue the watcher's
                // first events, and goes out first.
                self.send(resp);
                self.hub.activate(self.sid, id);
            }
            Err(reason) => {
                resp.watch_id = -1;
                resp.canceled = true;
                resp.cancel_reason = reason.to_string();
                self.send(resp);
            }
        }
    }

    fn on_out(&mut self, out: Out) {
        match out {
            Out::Events {
                watch_id,
                rev,
                events,
            } => {
                let Some(spec) = self.specs.get_mut(&watch_id) else {
                    return; // canceled meanwhile
                };
                let store = self.kv.store();
                let evs = select_events(spec, &events, |e| prev_kv_of(store, e));
                if evs.is_empty() {
                    return;
                }
                spec.quiet = false;
                let fragment = spec.fragment;
                let resp = WatchResponse {
                    header: self.header(rev),
                    watch_id,
                    events: evs,
                    ..Default::default()
                };
                if fragment {
                    for part in fragments(resp, self.max_bytes) {
                        self.send(part);
                    }
                } else {
                    self.send(resp);
                }
            }
            Out::Compacted {
                watch_id,
                compact_rev,
            } => {
                self.specs.remove(&watch_id);
                self.send(WatchResponse {
                    header: self.header(0),
                    watch_id,
                    compact_revision: compact_rev,
                    canceled: true,
                    ..Default::default()
                });
            }
            Out::Progress { watch_id, rev } => {
                if watch_id != -1 && !self.specs.contains_key(&watch_id) {
                    return;
                }
                self.send(WatchResponse {
                    header: self.header(rev),
                    watch_id,
                    ..Default::default()
                });
            }
        }
    }
}

/// The value an event replaced, for a watcher that asked for prev_kv: read
/// from the store when the event left it out (see [`Event`]). As in etcd's
/// watch server, a value compacted meanwhile, or a failed read, leaves it out.
fn prev_kv_of(store: &Store, e: &Event) -> Option<KeyValue> {
    store.prev_kv(e).unwrap_or_else(|err| {
        tracing::warn!(key = %String::from_utf8_lossy(&e.kv.key), rev = e.kv.mod_revision, error = %err, "watch: reading prev_kv");
        None
    })
}

/// The events a watcher gets: its range (the hub already matched it, but a
/// revision's events may touch other keys too), its filters, prev_kv if asked
/// (from `prev`).
fn select_events(
    spec: &Spec,
    events: &[Event],
    prev: impl Fn(&Event) -> Option<KeyValue>,
) -> Vec<mvccpb::Event> {
    let range = KeyRange::new(&spec.key, &spec.range_end);
    events
        .iter()
        .filter(|e| range.contains(&e.kv.key))
        .filter(|e| match e.kind {
            EventKind::Put => !spec.no_put,
            EventKind::Delete => !spec.no_delete,
        })
        .map(|e| mvccpb::Event {
            r#type: match e.kind {
                EventKind::Put => mvccpb::event::EventType::Put as i32,
                EventKind::Delete => mvccpb::event::EventType::Delete as i32,
            },
            kv: Some(to_pb(e.kv.clone())),
            prev_kv: if spec.prev_kv {
                prev(e).map(to_pb)
            } else {
                None
            },
        })
        .collect()
}

/// Splits a response into parts under `max_bytes` each (at least one event per
/// part); every part but the last has `fragment` set (etcd's sendFragments).
fn fragments(resp: WatchResponse, max_bytes: usize) -> Vec<WatchResponse> {
    if resp.encoded_len() < max_bytes || resp.events.len() < 2 {
        return vec![resp];
    }
    let mut parts = Vec::new();
    let mut template = resp.clone();
    template.events = Vec::new();
    template.fragment = true;
    let base = template.encoded_len();
    let mut cur = template.clone();
    let mut size = base;
    for ev in resp.events {
        let n = ev.encoded_len() + 2 + prost::length_delimiter_len(ev.encoded_len());
        if !cur.events.is_empty() && size + n >= max_bytes {
            parts.push(std::mem::replace(&mut cur, template.clone()));
            size = base;
        }
        size += n;
        cur.events.push(ev);
    }
    cur.fragment = false;
    parts.push(cur);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(key: &str, size: usize) -> mvccpb::Event {
        mvccpb::Event {
            r#type: 0,
            kv: Some(mvccpb::KeyValue {
                key: key.into(),
                value: vec![b'x'; size],
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn fragments_split_large_responses_and_keep_order() {
        let resp = WatchResponse {
            watch_id: 7,
            events: (0..10).map(|i| ev(&format!("k{i}"), 100)).collect(),
            ..Default::default()
        };
        let parts = fragments(resp.clone(), 350);
        assert!(parts.len() > 1);
        assert!(parts[..parts.len() - 1].iter().all(|p| p.fragment));
        assert!(!parts.last().unwrap().fragment);
        let joined: Vec<_> = parts.iter().flat_map(|p| p.events.clone()).collect();
        assert_eq!(joined, resp.events);
        for p in &parts {
            assert!(
                p.events.len() == 1 || p.encoded_len() < 350,
                "{}",
                p.encoded_len()
            );
        }
        // Small responses and single events are never split.
        assert_eq!(fragments(resp.clone(), 1 << 20).len(), 1);
        let one = WatchResponse {
            events: vec![ev("big", 10_000)],
            ..Default::default()
        };
        assert_eq!(fragments(one, 100).len(), 1);
    }

    #[test]
    fn filters_and_prev_kv() {
        use crate::mvcc::KeyValue;
        let kv = |k: &str, v: &str, rev: i64| KeyValue {
            key: k.into(),
            value: v.into(),
            create_revision: 2,
            mod_revision: rev,
            version: 1,
            lease: 0,
        };
        let events = vec![
            Event {
                kind: EventKind::Put,
                kv: kv("a", "2", 3),
                prev_kv: Some(kv("a", "1", 2)),
            },
            Event {
                kind: EventKind::Delete,
                kv: kv("b", "", 3),
                prev_kv: Some(kv("b", "1", 2)),
            },
            Event {
                kind: EventKind::Put,
                kv: kv("z", "1", 3),
                prev_kv: None,
            },
        ];
        let no_read = |e: &Event| e.prev_kv.clone();
        let spec = |no_put, no_delete, prev_kv| Spec {
            key: b"a".to_vec(),
            range_end: b"c".to_vec(),
            no_put,
            no_delete,
            prev_kv,
            fragment: false,
            progress_notify: false,
            quiet: true,
        };
        let all = select_events(&spec(false, false, false), &events, no_read);
        assert_eq!(all.len(), 2, "z is out of range");
        assert!(all.iter().all(|e| e.prev_kv.is_none()));
        let puts = select_events(&spec(false, true, true), &events, no_read);
        assert_eq!(puts.len(), 1);
        assert_eq!(puts[0].prev_kv.as_ref().unwrap().value, b"1");
        let dels = select_events(&spec(true, false, false), &events, no_read);
        assert_eq!((dels.len(), dels[0].r#type), (1, 1));
    }
}
