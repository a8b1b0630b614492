//! `-w fields`: one `"Name" : value` line per field, as etcdctl's fields
//! printer (strings quoted with Go's `%q`).
//!
//! Where etcdctl dereferences a header the server left out (etcd answers an
//! alarm list without one) it crashes with a nil-pointer panic and exit
//! code 2; keelctl exits the same way with the panic's first line, so a
//! script sees the same result.

use keel_proto::etcdserverpb::{
    response_op, AlarmResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseKeepAliveResponse,
    LeaseLeasesResponse, LeaseTimeToLiveResponse, Member, MemberAddResponse, MemberListResponse,
    PutResponse, RangeResponse, ResponseHeader, TxnResponse, WatchResponse,
};
use keel_proto::mvccpb::KeyValue;

use super::go::{self, quote};
use super::simple::{alarm_name, event_type};
use super::{DbStatus, EpHashKv, EpHealth, EpStatus};
use crate::error::{CtlError, ExitCode};
use crate::outln;

type Res = Result<(), CtlError>;

fn nil_header() -> CtlError {
    CtlError::raw(
        ExitCode::Panic,
        "panic: runtime error: invalid memory address or nil pointer dereference",
    )
}

fn kv(pfx: &str, kv: &KeyValue) {
    outln!("\"{pfx}Key\" : {}", quote(&kv.key));
    outln!("\"{pfx}CreateRevision\" : {}", kv.create_revision);
    outln!("\"{pfx}ModRevision\" : {}", kv.mod_revision);
    outln!("\"{pfx}Version\" : {}", kv.version);
    outln!("\"{pfx}Value\" : {}", quote(&kv.value));
    outln!("\"{pfx}Lease\" : {}", kv.lease);
}

fn hdr(h: Option<&ResponseHeader>) -> Res {
    let h = h.ok_or_else(nil_header)?;
    outln!("\"ClusterID\" : {}", h.cluster_id);
    outln!("\"MemberID\" : {}", h.member_id);
    outln!("\"Revision\" : {}", h.revision);
    outln!("\"RaftTerm\" : {}", h.raft_term);
    Ok(())
}

pub fn header_only(h: Option<&ResponseHeader>) -> Res {
    hdr(h)
}

pub fn del(r: &DeleteRangeResponse) -> Res {
    hdr(r.header.as_ref())?;
    outln!("\"Deleted\" : {}", r.deleted);
    for x in &r.prev_kvs {
        kv("Prev", x);
    }
    Ok(())
}

pub fn get(r: &RangeResponse) -> Res {
    hdr(r.header.as_ref())?;
    for x in &r.kvs {
        kv("", x);
    }
    outln!("\"More\" : {}", r.more);
    outln!("\"Count\" : {}", r.count);
    Ok(())
}

pub fn put(r: &PutResponse) -> Res {
    hdr(r.header.as_ref())?;
    if let Some(prev) = &r.prev_kv {
        kv("Prev", prev);
    }
    Ok(())
}

pub fn txn(r: &TxnResponse) -> Res {
    hdr(r.header.as_ref())?;
    outln!("\"Succeeded\" : {}", r.succeeded);
    for op in &r.responses {
        match &op.response {
            Some(response_op::Response::ResponseDeleteRange(d)) => del(d)?,
            Some(response_op::Response::ResponsePut(x)) => put(x)?,
            Some(response_op::Response::ResponseRange(g)) => get(g)?,
            other => outln!("\"Unknown\" : {}", quote(format!("{other:?}").as_bytes())),
        }
    }
    Ok(())
}

pub fn watch(r: &WatchResponse) {
    let h = r.header.unwrap_or_default();
    let _ = hdr(Some(&h));
    for e in &r.events {
        outln!("\"Type\" : {}", event_type(e.r#type));
        if let Some(prev) = &e.prev_kv {
            kv("Prev", prev);
        }
        kv("", e.kv.as_ref().unwrap_or(&KeyValue::default()));
    }
}

pub fn grant(r: &LeaseGrantResponse) -> Res {
    hdr(r.header.as_ref())?;
    outln!("\"ID\" : {}", r.id);
    outln!("\"TTL\" : {}", r.ttl);
    Ok(())
}

pub fn keep_alive(r: &LeaseKeepAliveResponse) -> Res {
    hdr(r.header.as_ref())?;
    outln!("\"ID\" : {}", r.id);
    outln!("\"TTL\" : {}", r.ttl);
    Ok(())
}

pub fn time_to_live(r: &LeaseTimeToLiveResponse) -> Res {
    hdr(r.header.as_ref())?;
    outln!("\"ID\" : {}", r.id);
    outln!("\"TTL\" : {}", r.ttl);
    outln!("\"GrantedTTL\" : {}", r.granted_ttl);
    for k in &r.keys {
        outln!("\"Key\" : {}", quote(k));
    }
    Ok(())
}

pub fn leases(r: &LeaseLeasesResponse) -> Res {
    hdr(r.header.as_ref())?;
    for l in &r.leases {
        outln!("\"ID\" : {}", l.id);
    }
    Ok(())
}

fn members(ms: &[Member]) {
    for m in ms {
        outln!("\"ID\" : {}", m.id);
        outln!("\"Name\" : {}", quote(m.name.as_bytes()));
        for u in &m.peer_ur_ls {
            outln!("\"PeerURL\" : {}", quote(u.as_bytes()));
        }
        for u in &m.client_ur_ls {
            outln!("\"ClientURL\" : {}", quote(u.as_bytes()));
        }
        outln!("\"IsLearner\" : {}", m.is_learner);
        outln!();
    }
}

pub fn member_list(r: &MemberListResponse) -> Res {
    members_resp(r.header.as_ref(), &r.members)
}

pub fn members_resp(h: Option<&ResponseHeader>, ms: &[Member]) -> Res {
    hdr(h)?;
    members(ms);
    Ok(())
}

pub fn member_add(r: &MemberAddResponse) -> Res {
    members_resp(r.header.as_ref(), &r.members)
}

pub fn endpoint_health(hs: &[EpHealth]) {
    for h in hs {
        outln!("\"Endpoint\" : {}", quote(h.ep.as_bytes()));
        outln!("\"Health\" : {}", h.health);
        outln!("\"Took\" : {}", go::duration(h.took));
        outln!("\"Error\" : {}", h.error);
        outln!();
    }
}

pub fn endpoint_status(s: &[EpStatus]) -> Res {
    for e in s {
        let r = &e.resp;
        hdr(r.header.as_ref())?;
        outln!("\"Version\" : {}", quote(r.version.as_bytes()));
        outln!("\"DBSize\" : {}", r.db_size);
        outln!("\"Leader\" : {}", r.leader);
        outln!("\"IsLearner\" : {}", r.is_learner);
        outln!("\"RaftIndex\" : {}", r.raft_index);
        outln!("\"RaftTerm\" : {}", r.raft_term);
        outln!("\"RaftAppliedIndex\" : {}", r.raft_applied_index);
        outln!("\"Errors\" : [{}]", r.errors.join(" "));
        outln!("\"Endpoint\" : {}", quote(e.ep.as_bytes()));
        outln!();
    }
    Ok(())
}

pub fn endpoint_hashkv(s: &[EpHashKv]) -> Res {
    for e in s {
        hdr(e.resp.header.as_ref())?;
        outln!("\"Endpoint\" : {}", quote(e.ep.as_bytes()));
        outln!("\"Hash\" : {}", e.resp.hash);
        outln!();
    }
    Ok(())
}

pub fn alarm(r: &AlarmResponse) -> Res {
    hdr(r.header.as_ref())?;
    for a in &r.alarms {
        outln!("\"MemberID\" : {}", a.member_id);
        outln!("\"AlarmType\" : {}", alarm_name(a.alarm));
        outln!();
    }
    Ok(())
}

pub fn db_status(s: &DbStatus) {
    outln!("\"Hash\" : {}", s.hash);
    outln!("\"Revision\" : {}", s.revision);
    outln!("\"Keys\" : {}", s.total_key);
    outln!("\"Size\" : {}", s.total_size);
}
