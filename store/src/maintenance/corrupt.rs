//! The periodic corruption check (`--experimental-corrupt-check-time`, off by
//! default), after etcd 3.4's `checkHashKV`.
//!
//! Every interval, on the leader only: hash the local history at the current
//! revision; ask every other member for its hash at that revision over the
//! peer port (`keel.peer.MaintenancePeer/HashKV`); wait for a linearizable
//! read; hash again. Then raise CORRUPT (for member 0: which member is wrong
//! is not known, as in etcd) when
//! - the two local hashes differ at the same revision and compact revision;
//! - a member reports a revision or a compact revision above the leader's;
//! - a member with the leader's first compact revision reports another hash.
//!
//! A member that cannot answer (down, lagging: "future revision", or already
//! compacted past the revision) is skipped. The members asked are those of
//! the replicated member list at each pass.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keel_proto::etcdserverpb::alarm_request::AlarmAction;
use keel_proto::etcdserverpb::{AlarmRequest, AlarmType, HashKvRequest, HashKvResponse};
use keel_proto::peer::maintenance_peer_client::MaintenancePeerClient;

use crate::error::{Error, Result};
use crate::kv::Kv;
use crate::membership::Membership;
use crate::mvcc::KvHash;
use crate::tls::Dialer;

/// A member's answer, or why there is none.
struct PeerHash {
    id: u64,
    resp: Result<HashKvResponse>,
}

/// Runs the check every `interval` until `stop` turns true.
pub async fn run(
    kv: Kv,
    membership: Arc<Membership>,
    interval: Duration,
    timeout: Duration,
    dialer: Dialer,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    tracing::info!(?interval, "enabled corruption checking");
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
        if !kv.node().status().is_leader() {
            continue;
        }
        let peers: HashMap<u64, Vec<String>> = membership.peers().into_iter().collect();
        if let Err(e) = check(&kv, &peers, timeout, &dialer).await {
            tracing::warn!(error = %e, "failed to check hash KV");
        }
    }
}

async fn local_hash(kv: &Kv) -> Result<KvHash> {
    let store = kv.store().clone();
    tokio::task::spawn_blocking(move || store.hash_kv(0))
        .await
        .map_err(|e| Error::Transport(format!("hash task: {e}")))?
}

/// One pass of the check; raises CORRUPT on a mismatch.
pub async fn check(
    kv: &Kv,
    peers: &HashMap<u64, Vec<String>>,
    timeout: Duration,
    dialer: &Dialer,
) -> Result<()> {
    let me = kv.identity().member_id;
    let first = local_hash(kv).await?;
    let answers = peer_hashes(me, peers, first.revision, timeout, dialer).await;
    tokio::time::timeout(timeout, kv.node().read_index())
        .await
        .map_err(|_| Error::Timeout)??;
    let second = local_hash(kv).await?;

    let mut mismatch = Vec::new();
    if first.hash != second.hash
        && first.revision == second.revision
        && first.compact_revision == second.compact_revision
    {
        tracing::warn!(
            revision = first.revision,
            compact_revision = first.compact_revision,
            hash_1 = first.hash,
            hash_2 = second.hash,
            "found hash mismatch"
        );
        mismatch.push(me);
    }
    let mut checked = 0;
    for p in answers {
        let resp = match p.resp {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(
                    peer = format!("{:x}", p.id),
                    revision = first.revision,
                    error = %e,
                    "cannot fetch hash from remote peer"
                );
                continue;
            }
        };
        checked += 1;
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        let peer = format!("{:x}", p.id);
        if revision > second.revision {
            tracing::warn!(leader_revision = second.revision, follower_revision = revision, follower = %peer, "revision from follower must be less than or equal to leader's");
            mismatch.push(p.id);
        }
        if resp.compact_revision > second.compact_revision {
            tracing::warn!(leader_compact_revision = second.compact_revision, follower_compact_revision = resp.compact_revision, follower = %peer, "compact revision from follower must be less than or equal to leader's");
            mismatch.push(p.id);
        }
        if resp.compact_revision == first.compact_revision && resp.hash != first.hash {
            tracing::warn!(leader_compact_revision = first.compact_revision, leader_hash = first.hash, follower_hash = resp.hash, follower = %peer, revision = first.revision, "same compact revision then hashes must match");
            mismatch.push(p.id);
        }
    }
    tracing::info!(peers_checked = checked, "finished peer corruption check");
    if !mismatch.is_empty() {
        let raise = AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: 0,
            alarm: AlarmType::Corrupt as i32,
        };
        kv.alarm(raise).await?;
    }
    Ok(())
}

/// Every other member's HashKV at `rev`, trying each of its peer URLs.
async fn peer_hashes(
    me: u64,
    peers: &HashMap<u64, Vec<String>>,
    rev: i64,
    timeout: Duration,
    dialer: &Dialer,
) -> Vec<PeerHash> {
    let mut out = Vec::new();
    let mut ids: Vec<u64> = peers.keys().copied().filter(|id| *id != me).collect();
    ids.sort_unstable();
    for id in ids {
        let mut last = Err(Error::Transport(format!("no peer URL for {id:x}")));
        for url in &peers[&id] {
            last = peer_hash(url, rev, timeout, dialer).await;
            if last.is_ok() {
                break;
            }
        }
        out.push(PeerHash { id, resp: last });
    }
    out
}

async fn peer_hash(
    url: &str,
    rev: i64,
    timeout: Duration,
    dialer: &Dialer,
) -> Result<HashKvResponse> {
    let channel = dialer
        .endpoint(url)?
        .connect_timeout(Duration::from_secs(1))
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| Error::Transport(format!("{url}: {e}")))?;
    MaintenancePeerClient::new(channel)
        .hash_kv(HashKvRequest { revision: rev })
        .await
        .map(|r| r.into_inner())
        .map_err(|s| Error::Transport(s.message().to_string()))
}
