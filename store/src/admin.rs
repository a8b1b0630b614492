//! keel's own admin API (`keel.admin.Admin`), served on the client port
//! beside etcd's services: a thin adapter over what only keel can tell
//! (today the Raft state of the member and, on the leader, each member's
//! replication progress, for `keelctl inspect raft`).

use keel_proto::admin::admin_server::Admin;
use keel_proto::admin::{RaftStatusRequest, RaftStatusResponse};
use tonic::{Request, Response, Status};

use crate::kv::Kv;

/// `keel.admin.Admin`.
pub struct AdminService(pub Kv);

#[tonic::async_trait]
impl Admin for AdminService {
    async fn raft_status(
        &self,
        _request: Request<RaftStatusRequest>,
    ) -> Result<Response<RaftStatusResponse>, Status> {
        Ok(Response::new(self.0.node().raft_report().await?))
    }
}
