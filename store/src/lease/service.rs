//! Thin gRPC adapters of the Lease API: `etcdserverpb.Lease` (client port) and
//! `keel.peer.LeasePeer` (peer port, the calls followers forward to the leader).

use std::pin::Pin;

use futures::Stream;
use keel_proto::etcdserverpb::lease_server::Lease as LeaseApi;
use keel_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use keel_proto::peer::lease_peer_server::LeasePeer;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Leases;
use crate::error::Error;

/// `etcdserverpb.Lease`.
pub struct LeaseService(pub Leases);

type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl LeaseApi for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        // No permission is needed (etcd 3.4), but a bad token is refused.
        self.0.kv().auth().caller_of(&request)?;
        Ok(Response::new(self.0.grant(request.into_inner()).await?))
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let caller = self.0.kv().auth().caller_of(&request)?;
        Ok(Response::new(
            self.0.revoke(&caller, request.into_inner()).await?,
        ))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut input = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let leases = self.0.clone();
        tokio::spawn(async move {
            loop {
                let req = match input.message().await {
                    Ok(Some(r)) => r,
                    _ => return,
                };
                // The header is taken before renewing (as etcd), so its revision
                // is never past a revoke of this lease.
                let header = leases.kv().header(0);
                let ttl = match leases.renew(req.id).await {
                    Ok(ttl) => ttl,
                    Err(Error::LeaseNotFound) => 0,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_status())).await;
                        return;
                    }
                };
                let resp = LeaseKeepAliveResponse {
                    header: Some(header),
                    id: req.id,
                    ttl,
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let r = request.into_inner();
        match self.0.time_to_live(r).await {
            Ok(resp) => Ok(Response::new(resp)),
            // etcd answers an unknown lease with TTL -1, not an error.
            Err(Error::LeaseNotFound) => Ok(Response::new(LeaseTimeToLiveResponse {
                header: Some(self.0.kv().header(0)),
                id: r.id,
                ttl: -1,
                ..Default::default()
            })),
            Err(e) => Err(e.into()),
        }
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        Ok(Response::new(self.0.leases()))
    }
}

/// `keel.peer.LeasePeer`: answered only by the leader.
pub struct LeasePeerService(pub Leases);

#[tonic::async_trait]
impl LeasePeer for LeasePeerService {
    async fn lease_renew(
        &self,
        request: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        let id = request.into_inner().id;
        let ttl = self.0.renew_local(id).await?;
        Ok(Response::new(LeaseKeepAliveResponse {
            header: Some(self.0.kv().header(0)),
            id,
            ttl,
        }))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        Ok(Response::new(
            self.0.time_to_live_local(&request.into_inner()).await?,
        ))
    }
}
