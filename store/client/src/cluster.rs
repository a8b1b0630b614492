//! Cluster: thin calls of etcd's `etcdserverpb.Cluster` service (member list,
//! add, remove, update, promote).
//!
//! Member list is a read and is retried on another member like other reads;
//! the changes are not retried once they reached a server (their outcome is
//! unknown), as for every write.

use keel_proto::etcdserverpb::cluster_client::ClusterClient;
pub use keel_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};

use crate::{Client, Result};

impl Client {
    /// Every member of the cluster .
    pub async fn member_list(&self) -> Result<MemberListResponse> {
        self.call_on(true, |ch| async move {
            ClusterClient::new(ch)
                .member_list(MemberListRequest {})
                .await
        })
        .await
    }

    /// Adds a member with `peer_urls`, as a learner when `is_learner`.
    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<MemberAddResponse> {
        let req = MemberAddRequest {
            peer_ur_ls: peer_urls,
            is_learner,
        };
        self.call_on(false, |ch| {
            let req = req.clone();
            async move { ClusterClient::new(ch).member_add(req).await }
        })
        .await
    }

    /// Removes member `id`.
    pub async fn member_remove(&self, id: u64) -> Result<MemberRemoveResponse> {
        self.call_on(false, |ch| async move {
            ClusterClient::new(ch)
                .member_remove(MemberRemoveRequest { id })
                .await
        })
        .await
    }

    /// Replaces member `id`'s peer URLs.
    pub async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<MemberUpdateResponse> {
        let req = MemberUpdateRequest {
            id,
            peer_ur_ls: peer_urls,
        };
        self.call_on(false, |ch| {
            let req = req.clone();
            async move { ClusterClient::new(ch).member_update(req).await }
        })
        .await
    }

    /// Promotes learner `id` to a voting member.
    pub async fn member_promote(&self, id: u64) -> Result<MemberPromoteResponse> {
        self.call_on(false, |ch| async move {
            ClusterClient::new(ch)
                .member_promote(MemberPromoteRequest { id })
                .await
        })
        .await
    }
}
