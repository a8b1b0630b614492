//! Thin gRPC adapters: `etcdserverpb.Cluster` on the client port and
//! `keel.peer.MembershipPeer` on the peer port.
//!
//! Auth: as etcd 3.4, adding, removing, updating and promoting members need
//! the root role; MemberList needs nothing.

use keel_proto::etcdserverpb::cluster_server::Cluster;
use keel_proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use keel_proto::peer::membership_peer_server::MembershipPeer;
use keel_proto::peer::{MembersRequest, MembersResponse};
use tonic::{Request, Response, Status};

use super::Members;
use crate::auth::Access;

/// `etcdserverpb.Cluster`.
pub struct ClusterService(pub Members);

impl ClusterService {
    /// The root role check of the calls that change the member list.
    fn admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let auth = self.0.auth();
        let caller = auth.caller_of(request)?;
        auth.check(&caller, Access::Admin)?;
        Ok(())
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        self.admin(&request)?;
        Ok(Response::new(self.0.add(request.into_inner()).await?))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        self.admin(&request)?;
        Ok(Response::new(self.0.remove(request.into_inner()).await?))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        self.admin(&request)?;
        Ok(Response::new(self.0.update(request.into_inner()).await?))
    }

    async fn member_list(
        &self,
        _request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        Ok(Response::new(self.0.list()))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.admin(&request)?;
        Ok(Response::new(self.0.promote(request.into_inner()).await?))
    }
}

/// `keel.peer.MembershipPeer`.
pub struct MembershipPeerService {
    pub members: Members,
    pub cluster_id: u64,
}

#[tonic::async_trait]
impl MembershipPeer for MembershipPeerService {
    async fn members(
        &self,
        _request: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(MembersResponse {
            cluster_id: self.cluster_id,
            members: self
                .members
                .membership()
                .members()
                .iter()
                .map(|m| m.to_proto())
                .collect(),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let members = self.members.promote_here(request.into_inner().id).await?;
        Ok(Response::new(MemberPromoteResponse {
            header: None,
            members: members.iter().map(|m| m.to_api()).collect(),
        }))
    }
}
