//! Thin gRPC adapters: `v3lockpb.Lock` and `v3electionpb.Election`.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use keel_proto::v3electionpb::election_server::Election;
use keel_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use keel_proto::v3lockpb::lock_server::Lock;
use keel_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{Needs, Recipes};
use crate::auth::Credentials;

/// `v3lockpb.Lock`.
pub struct LockService(pub Recipes);

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let r = request.get_ref();
        self.0
            .check(&Credentials::of(&request), Needs::Contend(&r.name))?;
        Ok(Response::new(self.0.lock(request.into_inner()).await?))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let r = request.get_ref();
        self.0
            .check(&Credentials::of(&request), Needs::Key(&r.key))?;
        Ok(Response::new(self.0.unlock(request.into_inner()).await?))
    }
}

/// `v3electionpb.Election`.
pub struct ElectionService(pub Recipes);

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let r = request.get_ref();
        self.0
            .check(&Credentials::of(&request), Needs::Contend(&r.name))?;
        Ok(Response::new(self.0.campaign(request.into_inner()).await?))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let key = request.get_ref().leader.as_ref().map(|l| l.key.as_slice());
        self.0.check(
            &Credentials::of(&request),
            Needs::Key(key.unwrap_or_default()),
        )?;
        Ok(Response::new(self.0.proclaim(request.into_inner()).await?))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let r = request.get_ref();
        self.0
            .check(&Credentials::of(&request), Needs::Watch(&r.name))?;
        Ok(Response::new(self.0.leader(request.into_inner()).await?))
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let r = request.get_ref();
        self.0
            .check(&Credentials::of(&request), Needs::Watch(&r.name))?;
        let (tx, rx) = mpsc::channel(16);
        let recipes = self.0.clone();
        let req = request.into_inner();
        tokio::spawn(async move { recipes.observe(req, tx).await });
        let stream = ReceiverStream::new(rx).map(|r| r.map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let key = request.get_ref().leader.as_ref().map(|l| l.key.as_slice());
        self.0.check(
            &Credentials::of(&request),
            Needs::Key(key.unwrap_or_default()),
        )?;
        Ok(Response::new(self.0.resign(request.into_inner()).await?))
    }
}
