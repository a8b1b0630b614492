//! Lock and election: thin calls of etcd's `v3lockpb.Lock` and
//! `v3electionpb.Election` services.
//!
//! `lock` and `campaign` wait on the server until the lock is held or the
//! election won, for at most the client's request timeout; they are not
//! retried on another member (their outcome is unknown), except when the
//! endpoint could not be reached at all. Observe is a plain stream of the
//! member it was opened on.

use keel_proto::v3electionpb::election_client::ElectionClient;
pub use keel_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use keel_proto::v3lockpb::lock_client::LockClient;
pub use keel_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

use crate::{Client, Result};

impl Client {
    /// Waits until `lease` holds lock `name`; returns the lock's key (pass it
    /// to [`Client::unlock`]).
    pub async fn lock(&self, name: impl Into<Vec<u8>>, lease: i64) -> Result<LockResponse> {
        let name = name.into();
        self.call_on(false, |ch| {
            let name = name.clone();
            async move { LockClient::new(ch).lock(LockRequest { name, lease }).await }
        })
        .await
    }

    /// Releases the lock held through `key`.
    pub async fn unlock(&self, key: impl Into<Vec<u8>>) -> Result<UnlockResponse> {
        let key = key.into();
        self.call_on(false, |ch| {
            let key = key.clone();
            async move { LockClient::new(ch).unlock(UnlockRequest { key }).await }
        })
        .await
    }

    /// Waits until `lease` leads election `name`, proposing `value`.
    pub async fn campaign(
        &self,
        name: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        lease: i64,
    ) -> Result<CampaignResponse> {
        let req = CampaignRequest {
            name: name.into(),
            lease,
            value: value.into(),
        };
        self.call_on(false, |ch| {
            let req = req.clone();
            async move { ElectionClient::new(ch).campaign(req).await }
        })
        .await
    }

    /// Sets the leader's value (fails with "election: not leader" otherwise).
    pub async fn proclaim(
        &self,
        leader: LeaderKey,
        value: impl Into<Vec<u8>>,
    ) -> Result<ProclaimResponse> {
        let req = ProclaimRequest {
            leader: Some(leader),
            value: value.into(),
        };
        self.call_on(false, |ch| {
            let req = req.clone();
            async move { ElectionClient::new(ch).proclaim(req).await }
        })
        .await
    }

    /// The current leader of election `name` ("election: no leader" if none).
    pub async fn leader(&self, name: impl Into<Vec<u8>>) -> Result<LeaderResponse> {
        let name = name.into();
        self.call_on(true, |ch| {
            let name = name.clone();
            async move { ElectionClient::new(ch).leader(LeaderRequest { name }).await }
        })
        .await
    }

    /// Streams the leaders of election `name` (and each value they proclaim).
    pub async fn observe(
        &self,
        name: impl Into<Vec<u8>>,
    ) -> Result<tonic::Streaming<LeaderResponse>> {
        let name = name.into();
        self.call_on(true, |ch| {
            let name = name.clone();
            async move {
                ElectionClient::new(ch)
                    .observe(LeaderRequest { name })
                    .await
            }
        })
        .await
    }

    /// Gives up leadership.
    pub async fn resign(&self, leader: LeaderKey) -> Result<ResignResponse> {
        let req = ResignRequest {
            leader: Some(leader),
        };
        self.call_on(false, |ch| {
            let req = req.clone();
            async move { ElectionClient::new(ch).resign(req).await }
        })
        .await
    }
}
