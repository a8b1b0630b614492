//! Leases: grant, revoke, time-to-live, list, and a keep-alive that survives
//! the loss of a member.
//!
//! [`Client::keep_alive`] runs a background task holding one `LeaseKeepAlive`
//! stream: it sends a keep-alive every third of the lease's TTL (at least every
//! 500 ms), and when the stream breaks (member killed or without a leader) it
//! opens a new one on the next endpoint at once. It stops when the lease is
//! gone (the server answers TTL 0: [`KeepAliveEvent::Lost`]) or when the
//! [`KeepAlive`] handle is dropped.

use std::time::{Duration, Instant};

use keel_proto::etcdserverpb::lease_client::LeaseClient;
pub use keel_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::auth::AuthChannel;
use crate::{Client, Result};

fn lease_client(ch: AuthChannel) -> LeaseClient<AuthChannel> {
    LeaseClient::new(ch)
}

impl Client {
    /// Grants a lease of `ttl` seconds; `id` 0 lets the server choose.
    pub async fn lease_grant(&self, ttl: i64, id: i64) -> Result<LeaseGrantResponse> {
        self.call_on(false, |ch| async move {
            lease_client(ch)
                .lease_grant(LeaseGrantRequest { ttl, id })
                .await
        })
        .await
    }

    /// Revokes a lease, deleting every key attached to it.
    pub async fn lease_revoke(&self, id: i64) -> Result<LeaseRevokeResponse> {
        self.call_on(false, |ch| async move {
            lease_client(ch)
                .lease_revoke(LeaseRevokeRequest { id })
                .await
        })
        .await
    }

    /// A lease's remaining and granted TTL (TTL -1: no such lease), and its
    /// keys when `keys` is set.
    pub async fn lease_time_to_live(&self, id: i64, keys: bool) -> Result<LeaseTimeToLiveResponse> {
        self.call_on(true, |ch| async move {
            lease_client(ch)
                .lease_time_to_live(LeaseTimeToLiveRequest { id, keys })
                .await
        })
        .await
    }

    /// Every lease.
    pub async fn lease_leases(&self) -> Result<LeaseLeasesResponse> {
        self.call_on(true, |ch| async move {
            lease_client(ch).lease_leases(LeaseLeasesRequest {}).await
        })
        .await
    }

    /// One keep-alive; returns the renewed TTL (0: the lease does not exist).
    pub async fn lease_keep_alive_once(&self, id: i64) -> Result<i64> {
        self.call_on(true, |ch| async move {
            let (tx, rx) = mpsc::channel(1);
            let _ = tx.send(LeaseKeepAliveRequest { id }).await;
            let mut stream = lease_client(ch)
                .lease_keep_alive(ReceiverStream::new(rx))
                .await?
                .into_inner();
            let resp = stream
                .message()
                .await?
                .ok_or_else(|| tonic::Status::unavailable("keep-alive stream ended"))?;
            drop(tx);
            Ok(tonic::Response::new(resp.ttl))
        })
        .await
    }

    /// Keeps lease `id` alive in the background until the handle is dropped.
    pub fn keep_alive(&self, id: i64) -> KeepAlive {
        let (tx, rx) = mpsc::channel(64);
        let client = self.clone();
        let task = tokio::spawn(async move { run_keep_alive(client, id, tx).await });
        KeepAlive { id, rx, task }
    }
}

/// What a background keep-alive reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepAliveEvent {
    /// The lease was renewed with this TTL.
    Renewed { ttl: i64 },
    /// The lease is gone (expired or revoked); keep-alives have stopped.
    Lost,
}

/// A running background keep-alive; dropping it stops the keep-alives.
pub struct KeepAlive {
    id: i64,
    rx: mpsc::Receiver<KeepAliveEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl KeepAlive {
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The next event; `None` once the keep-alive has stopped.
    pub async fn next(&mut self) -> Option<KeepAliveEvent> {
        self.rx.recv().await
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run_keep_alive(client: Client, id: i64, tx: mpsc::Sender<KeepAliveEvent>) {
    let mut attempt = 0usize;
    loop {
        let (req_tx, req_rx) = mpsc::channel(2);
        // The first keep-alive goes in before the call is awaited: a Go gRPC
        // server (etcd) sends the stream's response headers only with its
        // first answer, so waiting for them first would wait for ever.
        let mut sent = Instant::now();
        if req_tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
            return;
        }
        let opened = match client.channel_for_attempt(attempt).await {
            Ok(ch) => lease_client(ch),
            Err(e) => {
                tracing::debug!(error = %e, "cannot authenticate for keep-alive");
                attempt += 1;
                client.advance(attempt);
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        }
        .lease_keep_alive(ReceiverStream::new(req_rx))
        .await;
        let mut stream = match opened {
            Ok(s) => s.into_inner(),
            Err(e) => {
                tracing::debug!(error = %e, "keep-alive stream failed to open");
                attempt += 1;
                client.advance(attempt);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let mut first = true;
        loop {
            if !first {
                sent = Instant::now();
                if req_tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                    break;
                }
            }
            first = false;
            match tokio::time::timeout(Duration::from_secs(2), stream.message()).await {
                Ok(Ok(Some(resp))) => {
                    if resp.ttl <= 0 {
                        let _ = tx.try_send(KeepAliveEvent::Lost);
                        return;
                    }
                    if tx.is_closed() {
                        return;
                    }
                    let _ = tx.try_send(KeepAliveEvent::Renewed { ttl: resp.ttl });
                    let every = Duration::from_millis((resp.ttl as u64 * 1000 / 3).max(500));
                    tokio::time::sleep(every.saturating_sub(sent.elapsed())).await;
                }
                _ => break,
            }
        }
        attempt += 1;
        client.advance(attempt);
    }
}
