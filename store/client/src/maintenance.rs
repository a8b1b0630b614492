//! Maintenance: thin calls of etcd's `etcdserverpb.Maintenance` service
//! (status, hashes, alarms, defragment, snapshot, move-leader).
//!
//! These are usually aimed at one member (see [`Client::pinned`]); reads are
//! retried like other reads, the rest are not. [`Client::snapshot`] returns
//! the server's stream as it comes: the caller writes and checks the file.

use crate::auth::AuthChannel;
use keel_proto::etcdserverpb::maintenance_client::MaintenanceClient;
pub use keel_proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType,
    DefragmentRequest, DefragmentResponse, HashKvRequest, HashKvResponse, HashRequest,
    HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse,
    StatusRequest, StatusResponse,
};

use crate::{Client, Result};

fn raw(ch: AuthChannel) -> MaintenanceClient<AuthChannel> {
    MaintenanceClient::new(ch)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

impl Client {
    /// The member's status (version, db size, leader, Raft indexes).
    pub async fn status(&self) -> Result<StatusResponse> {
        self.call_on(
            true,
            |ch| async move { raw(ch).status(StatusRequest {}).await },
        )
        .await
    }

    /// The hash of the member's key-value history up to `revision` (0 = all).
    pub async fn hash_kv(&self, revision: i64) -> Result<HashKvResponse> {
        self.call_on(true, |ch| async move {
            raw(ch).hash_kv(HashKvRequest { revision }).await
        })
        .await
    }

    /// Lists, raises or clears alarms.
    pub async fn alarm(&self, req: AlarmRequest) -> Result<AlarmResponse> {
        self.call_on(req.action == AlarmAction::Get as i32, |ch| async move {
            raw(ch).alarm(req).await
        })
        .await
    }

    /// Defragments the member's backend.
    pub async fn defragment(&self) -> Result<DefragmentResponse> {
        self.call_on(false, |ch| async move {
            raw(ch).defragment(DefragmentRequest {}).await
        })
        .await
    }

    /// Asks the leader to hand leadership to `target_id`.
    pub async fn move_leader(&self, target_id: u64) -> Result<MoveLeaderResponse> {
        self.call_on(false, |ch| async move {
            raw(ch).move_leader(MoveLeaderRequest { target_id }).await
        })
        .await
    }

    /// The member's backend snapshot, as a stream of chunks.
    pub async fn snapshot(&self) -> Result<tonic::Streaming<SnapshotResponse>> {
        self.call_on(false, |ch| async move {
            raw(ch).snapshot(SnapshotRequest {}).await
        })
        .await
    }
}
