//! The Cluster API's logic (etcd's `EtcdServer.AddMember`, `RemoveMember`,
//! `UpdateMember`, `PromoteMember` and `publish`, re-written here).
//!
//! - MemberList answers from this member's applied list (no ReadIndex, as
//!   etcd).
//! - MemberAdd, MemberRemove and MemberPromote are Raft conf changes whose
//!   context ([`ConfChangeContext`]) carries the member and the request id;
//!   apply checks them against the list and answers with the list after the
//!   change. One conf change at a time leaves this member (Raft ignores a
//!   second one proposed before the first is applied).
//! - MemberUpdate is a normal entry (Raft's configuration does not change).
//! - With `--strict-reconfig-check` (default on, as etcd) a change that
//!   would leave fewer started voters than a quorum is refused ("not enough
//!   started members"), and so is one made while this member has not been
//!   connected for [`HEALTH_INTERVAL`] to the peers the change needs
//!   ("unhealthy cluster").
//! - MemberPromote needs the leader's replication progress: the learner's
//!   match index must be at least 90% of the leader's. A follower forwards it
//!   to the leader's peer port (`keel.peer.MembershipPeer`).
//! - [`Members::publish`]: after start, a member records its name and client
//!   URLs through Raft until the list shows them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest,
    MemberUpdateResponse, ResponseHeader,
};
use keel_proto::peer::membership_peer_client::MembershipPeerClient;
use keel_proto::peer::{internal_request, ConfChangeContext};
use prost::Message as _;
use tonic::transport::Channel;

use super::{parse_peer_urls, Member, Membership};
use crate::apply::Response;
use crate::config::MemberId;
use crate::consensus::{ConfChange, ConfChangeKind, Replication};
use crate::error::{Error, Result};
use crate::kv::Kv;
use crate::tls::Dialer;
use crate::transport::Activity;

/// How long a peer must have been connected to count for the strict
/// reconfiguration checks (etcd's `HealthInterval`).
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// A learner may be promoted once its match index is this share of the
/// leader's (etcd's `readyPercent`).
pub const READY_PERCENT: f64 = 0.9;

/// The Cluster API. Cheap to clone.
#[derive(Clone)]
pub struct Members {
    kv: Kv,
    membership: Arc<Membership>,
    activity: Arc<Activity>,
    strict: bool,
    request_timeout: Duration,
    /// One conf change at a time from this member.
    conf_lock: Arc<tokio::sync::Mutex<()>>,
    /// Channels to peers' MembershipPeer service, by peer URL.
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// Builds the endpoints of peer URLs (TLS).
    dialer: Dialer,
}

impl Members {
    /// The auth store (for the Cluster service's permission checks).
    pub fn auth(&self) -> &Arc<crate::auth::AuthStore> {
        self.kv.auth()
    }

    pub fn new(
        kv: Kv,
        membership: Arc<Membership>,
        activity: Arc<Activity>,
        strict: bool,
        request_timeout: Duration,
    ) -> Members {
        Members {
            kv,
            membership,
            activity,
            strict,
            request_timeout,
            conf_lock: Arc::new(tokio::sync::Mutex::new(())),
            channels: Arc::new(Mutex::new(HashMap::new())),
            dialer: Dialer::default(),
        }
    }

    /// Dials peers with `dialer` (peer TLS).
    pub fn with_peer_dialer(mut self, dialer: Dialer) -> Members {
        self.dialer = dialer;
        self
    }

    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    /// etcd's cluster response header: no revision.
    fn header(&self) -> ResponseHeader {
        self.kv.header_at(0)
    }

    pub fn list(&self) -> MemberListResponse {
        MemberListResponse {
            header: Some(self.header()),
            members: to_api(&self.membership.members()),
        }
    }

    pub async fn add(&self, r: MemberAddRequest) -> Result<MemberAddResponse> {
        let peer_urls = parse_peer_urls(&r.peer_ur_ls)?;
        let id = self
            .membership
            .new_member_id(&peer_urls, self.kv.identity().cluster_id);
        let member = Member {
            id,
            name: String::new(),
            peer_urls,
            client_urls: Vec::new(),
            is_learner: r.is_learner,
        };
        self.may_add(&member)?;
        let kind = if member.is_learner {
            ConfChangeKind::AddLearner
        } else {
            ConfChangeKind::AddVoter
        };
        let members = self.configure(kind, &member, false).await?;
        Ok(MemberAddResponse {
            header: Some(self.header()),
            member: Some(member.to_api()),
            members: to_api(&members),
        })
    }

    pub async fn remove(&self, r: MemberRemoveRequest) -> Result<MemberRemoveResponse> {
        self.may_remove(r.id)?;
        let member = Member {
            id: r.id,
            ..Member::default()
        };
        let members = self
            .configure(ConfChangeKind::Remove, &member, false)
            .await?;
        Ok(MemberRemoveResponse {
            header: Some(self.header()),
            members: to_api(&members),
        })
    }

    pub async fn update(&self, r: MemberUpdateRequest) -> Result<MemberUpdateResponse> {
        match self
            .kv
            .propose(internal_request::Request::MemberUpdate(r))
            .await?
        {
            Response::Members(members) => Ok(MemberUpdateResponse {
                header: Some(self.header()),
                members: to_api(&members),
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Promotes a learner: here if this member leads, else on the leader.
    pub async fn promote(&self, r: MemberPromoteRequest) -> Result<MemberPromoteResponse> {
        let members = match self.promote_here(r.id).await {
            Err(Error::NotLeader) => self.promote_on_leader(r.id).await?,
            other => other?,
        };
        Ok(MemberPromoteResponse {
            header: Some(self.header()),
            members: to_api(&members),
        })
    }

    /// Promotes a learner if this member is the leader ("not leader"
    /// otherwise): the learner must be in sync, then a conf change.
    pub async fn promote_here(&self, id: MemberId) -> Result<Vec<Member>> {
        let progress = self.kv.node().replication().await?;
        let Some(progress) = progress else {
            return Err(Error::NotLeader);
        };
        learner_ready(&progress, id)?;
        if self.strict && !self.membership.ready_to_promote() {
            tracing::warn!(
                member = format!("{id:x}"),
                "rejecting member promote request; not enough healthy members"
            );
            return Err(Error::NotEnoughStartedMembers);
        }
        let member = Member {
            id,
            ..Member::default()
        };
        self.configure(ConfChangeKind::AddVoter, &member, true)
            .await
    }

    /// Forwards a promote to the leader's peer port until it answers or the
    /// request times out (etcd's `promoteMemberHTTP` loop).
    async fn promote_on_leader(&self, id: MemberId) -> Result<Vec<Member>> {
        let deadline = Instant::now() + self.request_timeout;
        while Instant::now() < deadline {
            let leader = self.kv.node().status().leader();
            if leader == self.membership.local_id() {
                // Leadership moved here meanwhile.
                match self.promote_here(id).await {
                    Err(Error::NotLeader) => {}
                    other => return other,
                }
            }
            let urls = if leader == 0 || leader == self.membership.local_id() {
                Vec::new()
            } else {
                self.membership.peer_urls(leader).unwrap_or_default()
            };
            for url in urls {
                let mut client = MembershipPeerClient::new(self.channel(&url)?);
                match client.member_promote(MemberPromoteRequest { id }).await {
                    Ok(resp) => {
                        let members = resp.into_inner().members;
                        return Ok(members
                            .into_iter()
                            .map(|m| Member {
                                id: m.id,
                                name: m.name,
                                peer_urls: m.peer_ur_ls,
                                client_urls: m.client_ur_ls,
                                is_learner: m.is_learner,
                            })
                            .collect());
                    }
                    Err(status) => {
                        let final_answer = [
                            Error::LearnerNotReady,
                            Error::MemberNotFound,
                            Error::MemberNotLearner,
                        ]
                        .iter()
                        .any(|e| e.to_string() == status.message());
                        if final_answer {
                            return Err(Error::Forwarded {
                                code: status.code(),
                                message: status.message().to_string(),
                            });
                        }
                        tracing::debug!(leader = format!("{leader:x}"), %url, error = %status, "forwarding member promote failed");
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::Timeout)
    }

    fn channel(&self, url: &str) -> Result<Channel> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ch) = channels.get(url) {
            return Ok(ch.clone());
        }
        let ch = self
            .dialer
            .endpoint(url)?
            .connect_timeout(Duration::from_secs(1))
            .timeout(self.request_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert(url.to_string(), ch.clone());
        Ok(ch)
    }

    /// Proposes a conf change for `member` and waits for the list after it.
    async fn configure(
        &self,
        kind: ConfChangeKind,
        member: &Member,
        is_promote: bool,
    ) -> Result<Vec<Member>> {
        let _one_at_a_time = self.conf_lock.lock().await;
        let node = self.kv.node();
        let id = node.next_id();
        let context = ConfChangeContext {
            member: Some(member.to_proto()),
            request_id: id,
            is_promote,
        };
        let change = ConfChange {
            kind,
            node: member.id,
            context: context.encode_to_vec(),
        };
        match node.propose_conf_change(id, change).await?? {
            Response::Members(members) => Ok(members),
            other => Err(unexpected(other)),
        }
    }

    /// Whether `id` has been connected since before `since` (this member
    /// always is).
    fn connected_before(&self, id: MemberId, since: Instant) -> bool {
        id == self.membership.local_id()
            || self.activity.active_since(id).is_some_and(|t| t < since)
    }

    fn healthy_since(&self) -> Instant {
        let now = Instant::now();
        now.checked_sub(HEALTH_INTERVAL).unwrap_or(now)
    }

    /// etcd's `mayAddMember`.
    fn may_add(&self, member: &Member) -> Result<()> {
        if !self.strict {
            return Ok(());
        }
        if !member.is_learner && !self.membership.ready_to_add_voting() {
            tracing::warn!("rejecting member add request; not enough healthy members");
            return Err(Error::NotEnoughStartedMembers);
        }
        let since = self.healthy_since();
        let voters = self.membership.voting_ids();
        if !voters.iter().all(|id| self.connected_before(*id, since)) {
            tracing::warn!(
                "rejecting member add request; local member has not been connected to all peers, reconfigure breaks active quorum"
            );
            return Err(Error::Unhealthy);
        }
        Ok(())
    }

    /// etcd's `mayRemoveMember`.
    fn may_remove(&self, id: MemberId) -> Result<()> {
        if !self.strict {
            return Ok(());
        }
        if self.membership.member(id).is_some_and(|m| m.is_learner) {
            return Ok(());
        }
        if !self.membership.ready_to_remove_voting(id) {
            tracing::warn!(
                member = format!("{id:x}"),
                "rejecting member remove request; not enough healthy members"
            );
            return Err(Error::NotEnoughStartedMembers);
        }
        // A member that is down is not part of the active quorum.
        if id != self.membership.local_id() && self.activity.active_since(id).is_none() {
            return Ok(());
        }
        let since = self.healthy_since();
        let voters = self.membership.voting_ids();
        let active = voters
            .iter()
            .filter(|v| self.connected_before(**v, since))
            .count() as i64;
        if active - 1 < 1 + (voters.len() as i64 - 1) / 2 {
            tracing::warn!(
                member = format!("{id:x}"),
                active,
                "rejecting member remove request; local member has not been connected to all peers, reconfigure breaks active quorum"
            );
            return Err(Error::Unhealthy);
        }
        Ok(())
    }

    /// Records this member's name and client URLs through Raft, retrying
    /// until the list shows them, this member is removed, or `stop`.
    pub async fn publish(
        self,
        name: String,
        client_urls: Vec<String>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<()> {
        let me = self.membership.local_id();
        loop {
            if self.membership.local_removed() {
                return Ok(());
            }
            match self.membership.member(me) {
                Some(m) if m.name == name && m.client_urls == client_urls => {
                    tracing::info!(
                        member = format!("{me:x}"),
                        %name,
                        ?client_urls,
                        "published local member to cluster through raft"
                    );
                    self.membership.mark_published();
                    return Ok(());
                }
                Some(_) => {
                    let attributes = keel_proto::peer::Member {
                        id: me,
                        name: name.clone(),
                        client_urls: client_urls.clone(),
                        ..Default::default()
                    };
                    let r = self
                        .kv
                        .propose(internal_request::Request::MemberAttributes(attributes))
                        .await;
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "failed to publish local member; retrying");
                    } else {
                        continue;
                    }
                }
                // A joining member before its first snapshot: the list is not here yet.
                None => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
    }
}

/// etcd's `isLearnerReady`: a member the leader tracks must have matched at
/// least [`READY_PERCENT`] of the leader's log. A member the leader does not
/// track passes here (apply refuses it: not found, or not a learner).
pub fn learner_ready(progress: &Replication, id: MemberId) -> Result<()> {
    let Some(matched) = progress.matched.get(&id) else {
        return Ok(());
    };
    let leader = progress.matched.get(&progress.leader).copied().unwrap_or(0);
    if (*matched as f64) < (leader as f64) * READY_PERCENT {
        return Err(Error::LearnerNotReady);
    }
    Ok(())
}

fn to_api(members: &[Member]) -> Vec<keel_proto::etcdserverpb::Member> {
    members.iter().map(Member::to_api).collect()
}

fn unexpected(r: Response) -> Error {
    Error::InvalidArgument(format!("etcdserver: unexpected response {r:?}"))
}
