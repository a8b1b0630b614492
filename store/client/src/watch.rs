//! Watch: a stream of changes that survives the loss of a member.
//!
//! [`Client::watch`] opens one watcher in a background task. When its stream
//! breaks (member killed, partitioned away: the request carries etcd's
//! `hasleader` metadata, so a member without a leader ends it), the task
//! reconnects to the next endpoint and re-creates the watcher from the first
//! revision not yet delivered, so the caller sees every revision exactly once.
//! Fragmented responses are reassembled. If the resume point has been
//! compacted, the caller gets [`WatchMessage::Compacted`] and the watch ends:
//! the events in between are gone and only the caller can decide what to do
//! (typically: list again, then watch from the list's revision).

use std::time::Duration;

use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::{
    watch_request, WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest,
};
pub use keel_proto::mvccpb::{event::EventType, Event};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{Client, Result};

/// How to watch.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// etcd's range_end: empty = one key, `[0]` = every key from `key` on.
    pub range_end: Vec<u8>,
    /// First revision to deliver; 0 = changes after now.
    pub start_revision: i64,
    pub prev_kv: bool,
    pub progress_notify: bool,
    /// Skip puts (etcd's NOPUT filter).
    pub no_put: bool,
    /// Skip deletes (etcd's NODELETE filter).
    pub no_delete: bool,
    /// Let the server split large responses (reassembled here).
    pub fragment: bool,
}

impl WatchOptions {
    /// Every key with `prefix`.
    pub fn prefix(prefix: &[u8]) -> WatchOptions {
        WatchOptions {
            range_end: crate::prefix_end(prefix),
            ..Default::default()
        }
    }
    pub fn from_revision(mut self, rev: i64) -> Self {
        self.start_revision = rev;
        self
    }
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }

    /// The request that creates this watch on `key` from `start_revision`
    /// (0: changes after now).
    pub fn create_request(&self, key: &[u8], start_revision: i64) -> WatchRequest {
        let mut filters = Vec::new();
        if self.no_put {
            filters.push(0);
        }
        if self.no_delete {
            filters.push(1);
        }
        WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: key.to_vec(),
                    range_end: self.range_end.clone(),
                    start_revision,
                    progress_notify: self.progress_notify,
                    filters,
                    prev_kv: self.prev_kv,
                    watch_id: 0,
                    fragment: self.fragment,
                },
            )),
        }
    }
}

/// The request side and the responses of a raw watch stream.
pub type RawStream = (
    mpsc::Sender<WatchRequest>,
    tonic::Streaming<keel_proto::etcdserverpb::WatchResponse>,
);

/// Opens a raw Watch stream on `channel` with `first` as its first request,
/// for callers that drive the stream themselves (keel-client's own watch,
/// test harnesses). It carries etcd's `hasleader` metadata: a member
/// without a leader ends the stream.
pub async fn open_raw(
    channel: crate::auth::AuthChannel,
    first: WatchRequest,
) -> std::result::Result<RawStream, tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(first)
        .await
        .map_err(|_| tonic::Status::cancelled("watch request stream closed"))?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request.metadata_mut().insert(
        "hasleader",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    let stream = WatchClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .watch(request)
        .await?
        .into_inner();
    Ok((tx, stream))
}

/// What a watch delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchMessage {
    /// The events of one response (all events of each revision together).
    Events {
        header_revision: i64,
        events: Vec<Event>,
    },
    /// Every event up to `revision` has been delivered.
    Progress { revision: i64 },
    /// The revision to resume from was compacted; the watch has ended.
    Compacted { compact_revision: i64 },
    /// The server canceled the watch (e.g. permission, bad range); it has ended.
    Canceled { reason: String },
}

/// A running watch. Dropping it cancels the watch.
pub struct WatchStream {
    rx: mpsc::Receiver<WatchMessage>,
    ctl: mpsc::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl WatchStream {
    /// The next message; `None` once the watch has ended.
    pub async fn next(&mut self) -> Option<WatchMessage> {
        self.rx.recv().await
    }

    /// Asks the server for a progress notification.
    pub async fn request_progress(&self) {
        let _ = self.ctl.send(()).await;
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Watches `key` (and the range in `opts`) until the returned stream is
    /// dropped, resuming on another member when one is lost.
    pub async fn watch(&self, key: impl Into<Vec<u8>>, opts: WatchOptions) -> Result<WatchStream> {
        let (tx, rx) = mpsc::channel(256);
        let (ctl, ctl_rx) = mpsc::channel(4);
        let client = self.clone();
        let key = key.into();
        let task = tokio::spawn(async move { run(client, key, opts, tx, ctl_rx).await });
        Ok(WatchStream { rx, ctl, task })
    }
}

enum Ended {
    /// The watch is over (compacted, canceled, or the caller went away).
    Done,
    /// The stream broke; resume elsewhere.
    Broken,
}

async fn run(
    client: Client,
    key: Vec<u8>,
    opts: WatchOptions,
    tx: mpsc::Sender<WatchMessage>,
    mut ctl: mpsc::Receiver<()>,
) {
    // The first revision not yet delivered (0: not known until created).
    let mut next_rev = opts.start_revision;
    let mut attempt: u64 = 0;
    loop {
        let outcome = match client.channel_for_attempt(attempt as usize).await {
            Ok(channel) => run_once(channel, &key, &opts, &mut next_rev, &tx, &mut ctl).await,
            Err(_) => Ended::Broken,
        };
        match outcome {
            Ended::Done => return,
            Ended::Broken => {
                attempt += 1;
                client.advance(attempt as usize);
                let n = client.endpoints().len() as u64;
                if attempt.is_multiple_of(n) {
                    tokio::time::sleep(Duration::from_millis(100 * (attempt / n).min(10))).await;
                }
            }
        }
    }
}

async fn run_once(
    channel: crate::auth::AuthChannel,
    key: &[u8],
    opts: &WatchOptions,
    next_rev: &mut i64,
    tx: &mpsc::Sender<WatchMessage>,
    ctl: &mut mpsc::Receiver<()>,
) -> Ended {
    let (req_tx, mut stream) = match open_raw(channel, opts.create_request(key, *next_rev)).await {
        Ok(opened) => opened,
        Err(_) => return Ended::Broken,
    };
    let mut watch_id = None;
    let mut partial: Vec<Event> = Vec::new();
    loop {
        tokio::select! {
            msg = stream.message() => {
                let resp = match msg {
                    Ok(Some(r)) => r,
                    _ => return Ended::Broken,
                };
                let header_rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
                if resp.created {
                    if resp.canceled {
                        let _ = tx.send(WatchMessage::Canceled { reason: resp.cancel_reason }).await;
                        return Ended::Done;
                    }
                    watch_id = Some(resp.watch_id);
                    if *next_rev == 0 {
                        *next_rev = header_rev + 1;
                    }
                    continue;
                }
                if resp.compact_revision != 0 {
                    let _ = tx.send(WatchMessage::Compacted { compact_revision: resp.compact_revision }).await;
                    return Ended::Done;
                }
                if resp.canceled {
                    let _ = tx.send(WatchMessage::Canceled { reason: resp.cancel_reason }).await;
                    return Ended::Done;
                }
                if resp.events.is_empty() && !resp.fragment {
                    if partial.is_empty() {
                        *next_rev = (*next_rev).max(header_rev + 1);
                        if tx.send(WatchMessage::Progress { revision: header_rev }).await.is_err() {
                            return Ended::Done;
                        }
                    }
                    continue;
                }
                partial.extend(resp.events);
                if resp.fragment {
                    continue;
                }
                let events = std::mem::take(&mut partial);
                if let Some(last) = events.last().and_then(|e| e.kv.as_ref()) {
                    *next_rev = last.mod_revision + 1;
                }
                if tx.send(WatchMessage::Events { header_revision: header_rev, events }).await.is_err() {
                    return Ended::Done;
                }
            }
            c = ctl.recv() => {
                match c {
                    Some(()) => {
                        let _ = req_tx.send(WatchRequest {
                            request_union: Some(watch_request::RequestUnion::ProgressRequest(WatchProgressRequest {})),
                        }).await;
                    }
                    None => {
                        if let Some(id) = watch_id {
                            let _ = req_tx.send(WatchRequest {
                                request_union: Some(watch_request::RequestUnion::CancelRequest(WatchCancelRequest { watch_id: id })),
                            }).await;
                        }
                        return Ended::Done;
                    }
                }
            }
        }
    }
}
