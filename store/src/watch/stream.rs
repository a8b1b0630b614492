//! One gRPC `Watch` stream, with etcd 3.4's behaviour (its v3rpc `watch.go`):
//!
//! - create: an empty key means `\0`; `range_end` `\0` means "from key"; start
//!   revision 0 means "after the current revision". The created response carries
//!   the revision current before the watcher was registered; a taken watch id or
//!   an empty range answers created + canceled with etcd's cancel reason and
//!   watch id -1.
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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keel_proto::etcdserverpb::watch_create_request::FilterType;
use keel_proto::etcdserverpb::watch_server::Watch;
use keel_proto::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest, WatchResponse};
use keel_proto::mvccpb;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{Hub, Out, StreamId, WatchId};
use crate::apply::to_pb;
use crate::kv::Kv;
use crate::mvcc::{Event, EventKind, KeyRange};

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
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let requires_leader = request
            .metadata()
            .get("hasleader")
            .map(|v| v.as_bytes() == b"true")
            .unwrap_or(false);
        if requires_leader && !self.kv.node().status().has_leader() {
            return Err(Status::unavailable("etcdserver: no leader"));
        }
        let (tx, rx) = mpsc::channel(16);
        let (hub_tx, hub_rx) = mpsc::channel(STREAM_QUEUE);
        let sid = self.hub.open_stream(hub_tx);
        let stream = Stream {
            hub: self.hub.clone(),
            kv: self.kv.clone(),
            sid,
            tx,
            specs: HashMap::new(),
            quiet: HashMap::new(),
            max_bytes: self.max_request_bytes,
        };
        let interval = self.progress_interval;
        let leader_every = if requires_leader {
            Some(self.election_timeout)
        } else {
            None
        };
        tokio::spawn(stream.run(request.into_inner(), hub_rx, interval, leader_every));
        Ok(Response::new(ReceiverStream::new(rx)))
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
}

struct Stream {
    hub: Arc<Hub>,
    kv: Kv,
    sid: StreamId,
    tx: mpsc::Sender<Result<WatchResponse, Status>>,
    specs: HashMap<WatchId, Spec>,
    /// progress_notify watchers: true while no events were sent since the last
    /// progress tick (etcd's `sws.progress`).
    quiet: HashMap<WatchId, bool>,
    max_bytes: usize,
}

impl Stream {
    async fn run(
        mut self,
        mut requests: Streaming<WatchRequest>,
        mut hub_rx: mpsc::Receiver<Out>,
        progress_interval: Duration,
        leader_every: Option<Duration>,
    ) {
        let mut progress = tokio::time::interval_at(
            tokio::time::Instant::now() + progress_interval,
            progress_interval,
        );
        let leader_period = leader_every.unwrap_or(Duration::from_secs(3600));
        let mut leader_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + leader_period, leader_period);
        let mut no_leader = 0;
        loop {
            tokio::select! {
                req = requests.message() => match req {
                    Ok(Some(req)) => {
                        if !self.on_request(req).await {
                            break;
                        }
                    }
                    _ => break,
                },
                Some(out) = hub_rx.recv() => {
                    if !self.on_out(out).await {
                        break;
                    }
                }
                _ = progress.tick() => {
                    for (id, quiet) in self.quiet.iter_mut() {
                        if *quiet {
                            self.hub.progress(self.sid, *id);
                        }
                        *quiet = true;
                    }
                }
                _ = leader_tick.tick(), if leader_every.is_some() => {
                    if self.kv.node().status().has_leader() {
                        no_leader = 0;
                    } else {
                        no_leader += 1;
                        if no_leader >= 3 {
                            let _ = self.tx.send(Err(Status::unavailable("etcdserver: no leader"))).await;
                            break;
                        }
                    }
                }
            }
        }
        self.hub.close_stream(self.sid);
    }

    async fn send(&self, r: WatchResponse) -> bool {
        self.tx.send(Ok(r)).await.is_ok()
    }

    fn header(&self, rev: i64) -> Option<keel_proto::etcdserverpb::ResponseHeader> {
        Some(self.kv.header_at(rev))
    }

    async fn on_request(&mut self, req: WatchRequest) -> bool {
        match req.request_union {
            Some(watch_request::RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(watch_request::RequestUnion::CancelRequest(c)) => {
                if self.hub.cancel(self.sid, c.watch_id) {
                    self.specs.remove(&c.watch_id);
                    self.quiet.remove(&c.watch_id);
                    let rev = self.hub.notified_revision();
                    return self
                        .send(WatchResponse {
                            header: self.header(rev),
                            watch_id: c.watch_id,
                            canceled: true,
                            ..Default::default()
                        })
                        .await;
                }
                true
            }
            Some(watch_request::RequestUnion::ProgressRequest(_)) => {
                self.hub.progress_all(self.sid);
                true
            }
            None => true,
        }
    }

    async fn create(&mut self, c: WatchCreateRequest) -> bool {
        let key = if c.key.is_empty() { vec![0] } else { c.key };
        let range_end = c.range_end;
        let current = self.hub.notified_revision();
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
                    },
                );
                if c.progress_notify {
                    self.quiet.insert(id, true);
                }
                if !self.send(resp).await {
                    return false;
                }
                self.hub.activate(self.sid, id);
                true
            }
            Err(reason) => {
                resp.watch_id = -1;
                resp.canceled = true;
                resp.cancel_reason = reason.to_string();
                self.send(resp).await
            }
        }
    }

    async fn on_out(&mut self, out: Out) -> bool {
        match out {
            Out::Events {
                watch_id,
                rev,
                events,
            } => {
                let Some(spec) = self.specs.get(&watch_id) else {
                    return true; // canceled meanwhile
                };
                let evs = select_events(spec, &events);
                if evs.is_empty() {
                    return true;
                }
                let fragment = spec.fragment;
                let resp = WatchResponse {
                    header: self.header(rev),
                    watch_id,
                    events: evs,
                    ..Default::default()
                };
                if let Some(q) = self.quiet.get_mut(&watch_id) {
                    *q = false;
                }
                if fragment {
                    for part in fragments(resp, self.max_bytes) {
                        if !self.send(part).await {
                            return false;
                        }
                    }
                    true
                } else {
                    self.send(resp).await
                }
            }
            Out::Compacted {
                watch_id,
                compact_rev,
            } => {
                self.specs.remove(&watch_id);
                self.quiet.remove(&watch_id);
                self.send(WatchResponse {
                    header: self.header(0),
                    watch_id,
                    compact_revision: compact_rev,
                    canceled: true,
                    ..Default::default()
                })
                .await
            }
            Out::Progress { watch_id, rev } => {
                if watch_id != -1 && !self.specs.contains_key(&watch_id) {
                    return true;
                }
                self.send(WatchResponse {
                    header: self.header(rev),
                    watch_id,
                    ..Default::default()
                })
                .await
            }
        }
    }
}

/// The events a watcher gets: its range (the hub already matched it, but a
/// revision's events may touch other keys too), its filters, prev_kv if asked.
fn select_events(spec: &Spec, events: &[Event]) -> Vec<mvccpb::Event> {
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
                e.prev_kv.clone().map(to_pb)
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
        let spec = |no_put, no_delete, prev_kv| Spec {
            key: b"a".to_vec(),
            range_end: b"c".to_vec(),
            no_put,
            no_delete,
            prev_kv,
            fragment: false,
        };
        let all = select_events(&spec(false, false, false), &events);
        assert_eq!(all.len(), 2, "z is out of range");
        assert!(all.iter().all(|e| e.prev_kv.is_none()));
        let puts = select_events(&spec(false, true, true), &events);
        assert_eq!(puts.len(), 1);
        assert_eq!(puts[0].prev_kv.as_ref().unwrap().value, b"1");
        let dels = select_events(&spec(true, false, false), &events);
        assert_eq!((dels.len(), dels[0].r#type), (1, 1));
    }
}
