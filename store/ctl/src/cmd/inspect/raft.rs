//! `inspect raft`: asks every member (from the member list) for its Raft
//! state through keel's admin API (`keel.admin.Admin/RaftStatus`), and
//! shows the leader's view of each member's replication.

use keel_proto::admin::admin_client::AdminClient;
use keel_proto::admin::{RaftStatusRequest, RaftStatusResponse};
use serde_json::json;

use super::{print_table, Style};
use crate::error::{status_text, CtlError, Result};
use crate::global::Ctx;

/// One member's answer, or why there is none.
struct Row {
    id: u64,
    name: String,
    endpoint: String,
    status: std::result::Result<RaftStatusResponse, String>,
}

async fn ask(ctx: &Ctx, ep: &str) -> std::result::Result<RaftStatusResponse, String> {
    let c = ctx
        .client_for(&[ep.to_string()])
        .map_err(|e| e.msg.clone())?;
    let call = async {
        let ch = c.channel().await.map_err(|e| match e {
            keel_client::Error::Status(s) | keel_client::Error::Authenticate(s) => s,
            other => tonic::Status::unavailable(other.to_string()),
        })?;
        AdminClient::new(ch).raft_status(RaftStatusRequest {}).await
    };
    match tokio::time::timeout(ctx.g.command_timeout, call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => {
            Err("no keel admin API (not a keel member?)".into())
        }
        Ok(Err(s)) => Err(status_text(&s)),
        Err(_) => Err("context deadline exceeded".into()),
    }
}

pub async fn run(ctx: &Ctx) -> Result<()> {
    let style = super::style(ctx)?;
    let c = ctx.client()?;
    let members = ctx.timed(c.member_list()).await?;
    let mut rows = Vec::new();
    for m in &members.members {
        let endpoint = m.client_ur_ls.first().cloned().unwrap_or_default();
        let status = if endpoint.is_empty() {
            Err("not started".to_string())
        } else {
            ask(ctx, &endpoint).await
        };
        rows.push(Row {
            id: m.id,
            name: m.name.clone(),
            endpoint,
            status,
        });
    }
    let leader = rows
        .iter()
        .filter_map(|r| r.status.as_ref().ok())
        .find(|s| s.role == "leader")
        .cloned();
    let name_of = |id: u64| {
        rows.iter()
            .find(|r| r.id == id)
            .map(|r| r.name.clone())
            .unwrap_or_default()
    };
    match style {
        Style::Json => {
            let members: Vec<_> = rows
                .iter()
                .map(|r| match &r.status {
                    Ok(s) => json!({
                        "id": format!("{:x}", r.id), "name": r.name, "endpoint": r.endpoint,
                        "role": s.role, "term": s.term, "leader": format!("{:x}", s.leader),
                        "commit": s.commit, "applied": s.applied,
                        "first_index": s.first_index, "last_index": s.last_index,
                        "snapshot_index": s.snapshot_index,
                        "pending_proposals": s.pending_proposals, "pending_reads": s.pending_reads,
                    }),
                    Err(e) => json!({
                        "id": format!("{:x}", r.id), "name": r.name, "endpoint": r.endpoint,
                        "error": e,
                    }),
                })
                .collect();
            let progress: Vec<_> = leader
                .iter()
                .flat_map(|l| l.progress.iter())
                .map(|p| {
                    json!({
                        "id": format!("{:x}", p.id), "name": name_of(p.id), "match": p.r#match,
                        "next": p.next, "state": p.state, "inflight": p.inflight,
                        "paused": p.paused, "recent_active": p.recent_active,
                        "pending_snapshot": p.pending_snapshot, "learner": p.is_learner,
                    })
                })
                .collect();
            crate::outln!("{}", json!({"members": members, "progress": progress}));
        }
        Style::Table => {
            let hdr = [
                "ID",
                "Name",
                "Endpoint",
                "Role",
                "Term",
                "Leader",
                "Commit",
                "Applied",
                "First Index",
                "Last Index",
                "Snapshot Index",
                "Pending Proposals",
                "Pending Reads",
                "Error",
            ];
            let t: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let mut v = vec![format!("{:x}", r.id), r.name.clone(), r.endpoint.clone()];
                    match &r.status {
                        Ok(s) => v.extend([
                            s.role.clone(),
                            s.term.to_string(),
                            format!("{:x}", s.leader),
                            s.commit.to_string(),
                            s.applied.to_string(),
                            s.first_index.to_string(),
                            s.last_index.to_string(),
                            s.snapshot_index.to_string(),
                            s.pending_proposals.to_string(),
                            s.pending_reads.to_string(),
                            String::new(),
                        ]),
                        Err(e) => {
                            v.extend(std::iter::repeat_n(String::new(), 10));
                            v.push(e.clone());
                        }
                    }
                    v
                })
                .collect();
            print_table("Members", &hdr, &t);
            let hdr = [
                "ID",
                "Name",
                "Match",
                "Next",
                "State",
                "Inflight",
                "Paused",
                "Active",
                "Pending Snapshot",
                "Learner",
            ];
            let t: Vec<Vec<String>> = leader
                .iter()
                .flat_map(|l| l.progress.iter())
                .map(|p| {
                    vec![
                        format!("{:x}", p.id),
                        name_of(p.id),
                        p.r#match.to_string(),
                        p.next.to_string(),
                        p.state.clone(),
                        p.inflight.to_string(),
                        p.paused.to_string(),
                        p.recent_active.to_string(),
                        p.pending_snapshot.to_string(),
                        p.is_learner.to_string(),
                    ]
                })
                .collect();
            let title = match &leader {
                Some(l) => format!("Progress (leader {:x})", l.member_id),
                None => "Progress (no leader answered)".to_string(),
            };
            print_table(&title, &hdr, &t);
        }
    }
    if rows.iter().all(|r| r.status.is_err()) {
        return Err(CtlError::error("no member answered keel's admin API"));
    }
    Ok(())
}
