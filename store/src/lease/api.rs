//! The Lease API's logic, between the gRPC adapters and the Raft node.
//!
//! - Grant and revoke are Raft proposals (`InternalRequest.lease_grant` /
//!   `lease_revoke`), applied by [`crate::apply`] on every member. A grant
//!   without an id gets a fresh positive one here, before proposing (as etcd).
//! - Keep-alive and time-to-live need the deadlines, which only the leader
//!   keeps: the leader answers them itself; a follower forwards them to the
//!   leader's peer port (`keel.peer.LeasePeer`), retrying while there is no
//!   leader, until the request timeout. This is etcd's design (it forwards over
//!   its peer HTTP port); it keeps keep-alives out of the Raft log.
//! - The expiry task ([`Leases::run_expiry`]) runs on every member; every
//!   [`EXPIRY_TICK`] it follows this member's Raft role (promoting or demoting
//!   the lessor) and, on the leader, proposes a revoke for each expired lease,
//!   at most [`REVOKES_PER_TICK`] per tick, so a mass expiry cannot starve
//!   client writes (etcd: 1000 revokes/s, the same rate).
//!
//! A keep-alive for a lease past its deadline waits until its revoke is applied
//! (then: not found), or until this member loses leadership (then: forwarded),
//! as etcd's `Renew` does; so a client never hears "renewed" for a lease that
//! is about to go.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseLeasesResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};
use keel_proto::peer::internal_request;
use keel_proto::peer::lease_peer_client::LeasePeerClient;
use tonic::transport::Channel;

use super::{LeaseId, Lessor, Renew, MAX_LEASE_TTL};
use crate::apply::Response;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::kv::Kv;
use crate::maintenance::quota::LEASE_OVERHEAD;
use crate::membership::Membership;
use crate::tls::Dialer;

/// How often the expiry task looks for expired leases.
pub const EXPIRY_TICK: Duration = Duration::from_millis(50);
/// Most revokes the expiry task proposes per tick (1000 per second).
pub const REVOKES_PER_TICK: usize = 50;

/// The Lease API. Cheap to clone.
#[derive(Clone)]
pub struct Leases {
    kv: Kv,
    lessor: Arc<Lessor>,
    /// Where the members' peer URLs are found.
    membership: Arc<Membership>,
    /// Channels to the leader's LeasePeer service, by peer URL.
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// How much a new leader extends every lease by (the election timeout).
    extend: Duration,
    request_timeout: Duration,
    /// Builds the endpoints of peer URLs (TLS).
    dialer: Dialer,
}

impl Leases {
    pub fn new(
        kv: Kv,
        lessor: Arc<Lessor>,
        membership: Arc<Membership>,
        extend: Duration,
        request_timeout: Duration,
    ) -> Leases {
        Leases {
            kv,
            lessor,
            membership,
            channels: Arc::new(Mutex::new(HashMap::new())),
            extend,
            request_timeout,
            dialer: Dialer::default(),
        }
    }

    /// Dials the leader's peer URL with `dialer` (peer TLS).
    pub fn with_peer_dialer(mut self, dialer: Dialer) -> Leases {
        self.dialer = dialer;
        self
    }

    pub fn kv(&self) -> &Kv {
        &self.kv
    }

    pub fn lessor(&self) -> &Arc<Lessor> {
        &self.lessor
    }

    pub async fn grant(&self, mut r: LeaseGrantRequest) -> Result<LeaseGrantResponse> {
        self.kv.check_quota(LEASE_OVERHEAD).await?;
        while r.id == 0 {
            r.id = (self.kv.node().next_id() & (i64::MAX as u64)) as i64;
        }
        if r.ttl > MAX_LEASE_TTL {
            return Err(Error::LeaseTtlTooLarge);
        }
        match self
            .kv
            .propose(internal_request::Request::LeaseGrant(r))
            .await?
        {
            Response::LeaseGrant(mut resp) => {
                resp.header = Some(self.kv.header(0));
                Ok(resp)
            }
            other => Err(Error::InvalidArgument(format!(
                "etcdserver: unexpected response {other:?}"
            ))),
        }
    }

    /// Revokes a lease; apply checks that `caller` may write every key it
    /// holds (expiry revokes as [`Caller::system`]).
    pub async fn revoke(
        &self,
        caller: &Caller,
        r: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse> {
        match self
            .kv
            .propose_as(caller, internal_request::Request::LeaseRevoke(r))
            .await?
        {
            Response::LeaseRevoke(mut resp) => {
                let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
                resp.header = Some(self.kv.header(rev));
                Ok(resp)
            }
            other => Err(Error::InvalidArgument(format!(
                "etcdserver: unexpected response {other:?}"
            ))),
        }
    }

    /// Promotes or demotes the lessor to match this member's Raft role.
    pub fn sync_role(&self) {
        let leader = self.kv.node().status().is_leader();
        if leader != self.lessor.is_primary() {
            if leader {
                self.lessor.promote(self.extend);
            } else {
                self.lessor.demote();
            }
        }
    }

    /// Renews lease `id` wherever the leader is; returns the granted TTL.
    pub async fn renew(&self, id: LeaseId) -> Result<i64> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            match self.renew_local(id).await {
                Err(Error::NotLeader) => {}
                other => return other,
            }
            match self.forward_renew(id).await {
                Err(Error::NotLeader) | Err(Error::Transport(_)) => {}
                other => return other,
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout);
            }
            tokio::time::sleep(EXPIRY_TICK).await;
        }
    }

    /// Renews lease `id` here, if this member is the leader; else `NotLeader`.
    pub async fn renew_local(&self, id: LeaseId) -> Result<i64> {
        let deadline = Instant::now() + self.request_timeout;
        let mut caught_up = false;
        loop {
            self.sync_role();
            match self.lessor.renew(id) {
                Renew::Renewed(ttl) => return Ok(ttl),
                Renew::NotPrimary => return Err(Error::NotLeader),
                Renew::NotFound if !caught_up => {
                    // Granted but maybe not yet applied here: catch up once.
                    self.kv.node().read_index().await?;
                    caught_up = true;
                }
                Renew::NotFound => return Err(Error::LeaseNotFound),
                Renew::Expired => {
                    if Instant::now() >= deadline {
                        return Err(Error::Timeout);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    async fn forward_renew(&self, id: LeaseId) -> Result<i64> {
        let mut c = self.leader_client()?;
        match c.lease_renew(LeaseKeepAliveRequest { id }).await {
            Ok(r) => Ok(r.into_inner().ttl),
            Err(s) => Err(from_status(&s)),
        }
    }

    /// Lease `id`'s remaining time, as the leader sees it.
    pub async fn time_to_live(&self, r: LeaseTimeToLiveRequest) -> Result<LeaseTimeToLiveResponse> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            match self.time_to_live_local(&r).await {
                Err(Error::NotLeader) => {}
                other => return other,
            }
            let fwd = match self.leader_client() {
                Ok(mut c) => match c.lease_time_to_live(r).await {
                    Ok(resp) => Ok(resp.into_inner()),
                    Err(s) => Err(from_status(&s)),
                },
                Err(e) => Err(e),
            };
            match fwd {
                Err(Error::NotLeader) | Err(Error::Transport(_)) => {}
                Ok(mut resp) => {
                    resp.header = Some(self.kv.header(0));
                    return Ok(resp);
                }
                other => return other,
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout);
            }
            tokio::time::sleep(EXPIRY_TICK).await;
        }
    }

    /// Time-to-live answered here, if this member is the leader.
    pub async fn time_to_live_local(
        &self,
        r: &LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse> {
        self.sync_role();
        if !self.lessor.is_primary() {
            return Err(Error::NotLeader);
        }
        if !self.lessor.exists(r.id) {
            self.kv.node().read_index().await?;
        }
        let info = self
            .lessor
            .lookup(r.id, r.keys)
            .ok_or(Error::LeaseNotFound)?;
        Ok(LeaseTimeToLiveResponse {
            header: Some(self.kv.header(0)),
            id: r.id,
            ttl: info.remaining,
            granted_ttl: info.granted_ttl,
            keys: info.keys,
        })
    }

    /// Every lease this member knows.
    pub fn leases(&self) -> LeaseLeasesResponse {
        LeaseLeasesResponse {
            header: Some(self.kv.header(0)),
            leases: self
                .lessor
                .leases()
                .into_iter()
                .map(|id| LeaseStatus { id })
                .collect(),
        }
    }

    /// A LeasePeer client of the current leader.
    fn leader_client(&self) -> Result<LeasePeerClient<Channel>> {
        let leader = self.kv.node().status().leader();
        if leader == 0 || leader == self.kv.identity().member_id {
            return Err(Error::NotLeader);
        }
        let url = self
            .membership
            .peer_urls(leader)
            .and_then(|u| u.first().cloned())
            .ok_or_else(|| Error::Transport(format!("no peer URL for {leader:x}")))?;
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let ch = match channels.get(&url) {
            Some(ch) => ch.clone(),
            None => {
                let ch = self
                    .dialer
                    .endpoint(&url)?
                    .connect_timeout(Duration::from_secs(1))
                    .timeout(self.request_timeout)
                    .tcp_nodelay(true)
                    .connect_lazy();
                channels.insert(url, ch.clone());
                ch
            }
        };
        Ok(LeasePeerClient::new(ch))
    }

    /// The expiry task: runs until `stop` turns true.
    pub async fn run_expiry(self, mut stop: tokio::sync::watch::Receiver<bool>) -> Result<()> {
        let mut tick = tokio::time::interval(EXPIRY_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
            self.sync_role();
            for id in self.lessor.expired(Instant::now(), REVOKES_PER_TICK) {
                let me = self.clone();
                tokio::spawn(async move {
                    tracing::debug!(lease = format!("{id:x}"), "lease expired; revoking");
                    if let Err(e) = me
                        .revoke(&Caller::system(), LeaseRevokeRequest { id })
                        .await
                    {
                        tracing::debug!(lease = format!("{id:x}"), error = %e, "revoke of an expired lease failed");
                    }
                });
            }
        }
    }
}

/// The error a forwarded call's status stands for.
fn from_status(s: &tonic::Status) -> Error {
    match s.code() {
        tonic::Code::NotFound => Error::LeaseNotFound,
        tonic::Code::FailedPrecondition | tonic::Code::Unavailable
            if s.message() == Error::NotLeader.to_string() =>
        {
            Error::NotLeader
        }
        _ => Error::Transport(s.message().to_string()),
    }
}
