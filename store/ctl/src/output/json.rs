//! `-w json`: what Go's `json.Marshal` makes of the response structs
//! etcdctl prints: gogo-protobuf messages (snake_case or camelCase tags as in
//! etcd's .proto, `omitempty`, bytes as base64) and, for leases and watch,
//! clientv3's own structs (an embedded header's fields at the top level,
//! Go field names where there is no tag).

use keel_proto::etcdserverpb::{
    response_op, AlarmResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseKeepAliveResponse,
    LeaseLeasesResponse, LeaseTimeToLiveResponse, Member, MemberAddResponse, MemberListResponse,
    PutResponse, RangeResponse, ResponseHeader, StatusResponse, TxnResponse, WatchResponse,
};
use keel_proto::mvccpb::{Event, KeyValue};

use super::go::{json_string, Obj};
use super::{DbStatus, EpHashKv, EpHealth, EpStatus};
use crate::outln;

pub fn print(s: &str) {
    outln!("{s}");
}

fn header_fields(h: &ResponseHeader) -> Obj {
    let mut o = Obj::new();
    o.num("cluster_id", h.cluster_id, true)
        .num("member_id", h.member_id, true)
        .num("revision", h.revision, true)
        .num("raft_term", h.raft_term, true);
    o
}

pub fn header(h: &ResponseHeader) -> String {
    header_fields(h).done()
}

fn hdr(h: Option<&ResponseHeader>) -> Option<String> {
    h.map(header)
}

pub fn kv(kv: &KeyValue) -> String {
    Obj::new()
        .bytes("key", &kv.key, true)
        .num("create_revision", kv.create_revision, true)
        .num("mod_revision", kv.mod_revision, true)
        .num("version", kv.version, true)
        .bytes("value", &kv.value, true)
        .num("lease", kv.lease, true)
        .done()
}

pub fn range(r: &RangeResponse) -> String {
    Obj::new()
        .obj("header", hdr(r.header.as_ref()), true)
        .list("kvs", r.kvs.iter().map(kv).collect(), true, true)
        .bool("more", r.more, true)
        .num("count", r.count, true)
        .done()
}

pub fn put(r: &PutResponse) -> String {
    Obj::new()
        .obj("header", hdr(r.header.as_ref()), true)
        .obj("prev_kv", r.prev_kv.as_ref().map(kv), true)
        .done()
}

pub fn del(r: &DeleteRangeResponse) -> String {
    Obj::new()
        .obj("header", hdr(r.header.as_ref()), true)
        .num("deleted", r.deleted, true)
        .list("prev_kvs", r.prev_kvs.iter().map(kv).collect(), true, true)
        .done()
}

pub fn txn(r: &TxnResponse) -> String {
    let ops = r
        .responses
        .iter()
        .map(|op| {
            let inner = match &op.response {
                Some(response_op::Response::ResponseRange(x)) => {
                    Some(Obj::new().raw("ResponseRange", &range(x)).done())
                }
                Some(response_op::Response::ResponsePut(x)) => {
                    Some(Obj::new().raw("ResponsePut", &put(x)).done())
                }
                Some(response_op::Response::ResponseDeleteRange(x)) => {
                    Some(Obj::new().raw("ResponseDeleteRange", &del(x)).done())
                }
                Some(response_op::Response::ResponseTxn(x)) => {
                    Some(Obj::new().raw("ResponseTxn", &txn(x)).done())
                }
                None => None,
            };
            Obj::new().obj("Response", inner, false).done()
        })
        .collect();
    Obj::new()
        .obj("header", hdr(r.header.as_ref()), true)
        .bool("succeeded", r.succeeded, true)
        .list("responses", ops, true, true)
        .done()
}

fn event(e: &Event) -> String {
    Obj::new()
        .num("type", e.r#type, true)
        .obj("kv", e.kv.as_ref().map(kv), true)
        .obj("prev_kv", e.prev_kv.as_ref().map(kv), true)
        .done()
}

/// clientv3.WatchResponse: no json tags, a header value (not a pointer).
pub fn watch(r: &WatchResponse) -> String {
    let h = r.header.unwrap_or_default();
    Obj::new()
        .raw("Header", &header(&h))
        .list("Events", r.events.iter().map(event).collect(), false, false)
        .num("CompactRevision", r.compact_revision, false)
        .bool("Canceled", r.canceled, false)
        .bool("Created", r.created, false)
        .done()
}

/// A clientv3 struct embedding `*pb.ResponseHeader`: its fields at the top.
fn embedded(h: Option<&ResponseHeader>) -> Obj {
    h.map(header_fields).unwrap_or_default()
}

pub fn grant(r: &LeaseGrantResponse) -> String {
    Obj::new()
        .embed(embedded(r.header.as_ref()))
        .num("ID", r.id, false)
        .num("TTL", r.ttl, false)
        .str("Error", &r.error, false)
        .done()
}

pub fn keep_alive(r: &LeaseKeepAliveResponse) -> String {
    Obj::new()
        .embed(embedded(r.header.as_ref()))
        .num("ID", r.id, false)
        .num("TTL", r.ttl, false)
        .done()
}

pub fn time_to_live(r: &LeaseTimeToLiveResponse) -> String {
    Obj::new()
        .embed(embedded(r.header.as_ref()))
        .num("id", r.id, false)
        .num("ttl", r.ttl, false)
        .num("granted-ttl", r.granted_ttl, false)
        .list(
            "keys",
            r.keys
                .iter()
                .map(|k| json_string(&super::go::base64(k)))
                .collect(),
            false,
            true,
        )
        .done()
}

pub fn leases(r: &LeaseLeasesResponse) -> String {
    Obj::new()
        .embed(embedded(r.header.as_ref()))
        .list(
            "leases",
            r.leases
                .iter()
                .map(|l| Obj::new().num("id", l.id, false).done())
                .collect(),
            false,
            false,
        )
        .done()
}

/// A response that is only a header (`{"header":{...}}`).
pub fn header_resp(h: Option<&ResponseHeader>) -> String {
    Obj::new().obj("header", hdr(h), true).done()
}

pub fn member(m: &Member) -> String {
    let q = |v: &[String]| v.iter().map(|s| json_string(s)).collect::<Vec<_>>();
    Obj::new()
        .num("ID", m.id, true)
        .str("name", &m.name, true)
        .list("peerURLs", q(&m.peer_ur_ls), true, true)
        .list("clientURLs", q(&m.client_ur_ls), true, true)
        .bool("isLearner", m.is_learner, true)
        .done()
}

pub fn member_list(r: &MemberListResponse) -> String {
    members_resp(r.header.as_ref(), &r.members)
}

pub fn members_resp(h: Option<&ResponseHeader>, members: &[Member]) -> String {
    Obj::new()
        .obj("header", hdr(h), true)
        .list("members", members.iter().map(member).collect(), true, true)
        .done()
}

pub fn member_add(r: &MemberAddResponse) -> String {
    Obj::new()
        .obj("header", hdr(r.header.as_ref()), true)
        .obj("member", r.member.as_ref().map(member), true)
        .list(
            "members",
            r.members.iter().map(member).collect(),
            true,
            true,
        )
        .done()
}

pub fn status(r: &StatusResponse) -> String {
    Obj::new()
        .obj("header", hdr(r.header.as_ref()), true)
        .str("version", &r.version, true)
        .num("dbSize", r.db_size, true)
        .num("leader", r.leader, true)
        .num("raftIndex", r.raft_index, true)
        .num("raftTerm", r.raft_term, true)
        .num("raftAppliedIndex", r.raft_applied_index, true)
        .list(
            "errors",
            r.errors.iter().map(|e| json_string(e)).collect(),
            true,
            true,
        )
        .num("dbSizeInUse", r.db_size_in_use, true)
        .bool("isLearner", r.is_learner, true)
        .done()
}

pub fn endpoint_health(hs: &[EpHealth]) -> String {
    let items: Vec<String> = hs
        .iter()
        .map(|h| {
            Obj::new()
                .str("endpoint", &h.ep, false)
                .bool("health", h.health, false)
                .str("took", &super::go::duration(h.took), false)
                .str("error", &h.error, true)
                .done()
        })
        .collect();
    format!("[{}]", items.join(","))
}

pub fn endpoint_status(s: &[EpStatus]) -> String {
    let items: Vec<String> = s
        .iter()
        .map(|e| {
            Obj::new()
                .str("Endpoint", &e.ep, false)
                .raw("Status", &status(&e.resp))
                .done()
        })
        .collect();
    format!("[{}]", items.join(","))
}

pub fn endpoint_hashkv(s: &[EpHashKv]) -> String {
    let items: Vec<String> = s
        .iter()
        .map(|e| {
            let h = Obj::new()
                .obj("header", hdr(e.resp.header.as_ref()), true)
                .num("hash", e.resp.hash, true)
                .num("compact_revision", e.resp.compact_revision, true)
                .done();
            Obj::new()
                .str("Endpoint", &e.ep, false)
                .raw("HashKV", &h)
                .done()
        })
        .collect();
    format!("[{}]", items.join(","))
}

pub fn alarm(r: &AlarmResponse) -> String {
    let items = r
        .alarms
        .iter()
        .map(|a| {
            Obj::new()
                .num("memberID", a.member_id, true)
                .num("alarm", a.alarm, true)
                .done()
        })
        .collect();
    Obj::new()
        .obj("header", hdr(r.header.as_ref()), true)
        .list("alarms", items, true, true)
        .done()
}

pub fn db_status(s: &DbStatus) -> String {
    Obj::new()
        .num("hash", s.hash, false)
        .num("revision", s.revision, false)
        .num("totalKey", s.total_key, false)
        .num("totalSize", s.total_size, false)
        .done()
}
