//! Thin gRPC adapters: `etcdserverpb.Maintenance` (client port) and
//! `keel.peer.MaintenancePeer` (peer port: the hash the leader's corruption
//! check asks for).
//!
//! Auth: as etcd 3.4, Defragment, Hash, HashKV and Snapshot need the root
//! role and fail with its auth package's untranslated error (code Unknown,
//! "auth: permission denied"); Alarm, Status and MoveLeader need nothing.

use std::pin::Pin;

use futures::Stream;
use keel_proto::etcdserverpb::maintenance_server::Maintenance as MaintenanceApi;
use keel_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, HashKvRequest,
    HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse,
    SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use keel_proto::peer::maintenance_peer_server::MaintenancePeer;
use tonic::{Request, Response, Status};

use super::Maintenance;
use crate::auth::{self, Access};

/// `etcdserverpb.Maintenance`.
pub struct MaintenanceService(pub Maintenance);

impl MaintenanceService {
    /// etcd's `authMaintenanceServer.isAuthenticated`.
    fn admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let store = self.0.kv().auth();
        let caller = store.caller_of(request).map_err(auth::untranslated)?;
        store
            .check(&caller, Access::Admin)
            .map_err(auth::untranslated)?;
        Ok(())
    }
}

type SnapshotStream =
    Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl MaintenanceApi for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        // No permission is needed (etcd 3.4), but a bad token is refused.
        self.0.kv().auth().caller_of(&request)?;
        Ok(Response::new(self.0.alarm(request.into_inner()).await?))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(self.0.status()?))
    }

    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.admin(&request)?;
        Ok(Response::new(self.0.defragment().await?))
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.admin(&request)?;
        Ok(Response::new(self.0.hash().await?))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        self.admin(&request)?;
        Ok(Response::new(
            self.0.hash_kv(request.into_inner().revision).await?,
        ))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.admin(&request)?;
        Ok(Response::new(Box::pin(self.0.snapshot())))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        Ok(Response::new(
            self.0.move_leader(request.into_inner().target_id).await?,
        ))
    }
}

/// `keel.peer.MaintenancePeer`.
pub struct MaintenancePeerService(pub Maintenance);

#[tonic::async_trait]
impl MaintenancePeer for MaintenancePeerService {
    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        Ok(Response::new(
            self.0.hash_kv(request.into_inner().revision).await?,
        ))
    }
}
