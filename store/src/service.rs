//! Thin gRPC adapters: decode, resolve the caller (see [`crate::auth`]),
//! call the domain, encode. Errors become `tonic::Status` here and nowhere
//! else (`Error::to_status`).

use keel_proto::etcdserverpb::kv_server::Kv as KvApi;
use keel_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use crate::kv::Kv;

/// `etcdserverpb.KV`.
pub struct KvService(pub Kv);

#[tonic::async_trait]
impl KvApi for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let caller = self.0.auth().caller_of(&request)?;
        Ok(Response::new(
            self.0.range(&caller, request.into_inner()).await?,
        ))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let caller = self.0.auth().caller_of(&request)?;
        Ok(Response::new(
            self.0.put(&caller, request.into_inner()).await?,
        ))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let caller = self.0.auth().caller_of(&request)?;
        Ok(Response::new(
            self.0.delete_range(&caller, request.into_inner()).await?,
        ))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let caller = self.0.auth().caller_of(&request)?;
        Ok(Response::new(
            self.0.txn(&caller, request.into_inner()).await?,
        ))
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        // etcd 3.4 checks no permission for Compact; a bad token still fails.
        self.0.auth().caller_of(&request)?;
        Ok(Response::new(self.0.compact(request.into_inner()).await?))
    }
}
