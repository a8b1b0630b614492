//! `-w simple` (the default): etcdctl's human-readable lines.

use keel_proto::etcdserverpb::{
    response_op, AlarmResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseKeepAliveResponse,
    LeaseLeasesResponse, LeaseTimeToLiveResponse, MemberAddResponse, MemberListResponse,
    PutResponse, RangeResponse, ResponseHeader, TxnResponse, WatchResponse,
};
use keel_proto::mvccpb::{event::EventType, KeyValue};

use super::go;
use super::table;
use super::{DbStatus, EpHashKv, EpHealth, EpStatus, Printer};
use crate::outln;

/// `\x..` for every byte, as etcdctl's `--hex`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("\\x{x:02x}")).collect()
}

fn kv(p: &Printer, kv: &KeyValue) {
    let (k, v) = if p.hex {
        (hex(&kv.key).into_bytes(), hex(&kv.value).into_bytes())
    } else {
        (kv.key.clone(), kv.value.clone())
    };
    if !p.value_only {
        super::out([k.as_slice(), b"\n"].concat());
    }
    super::out([v.as_slice(), b"\n"].concat());
}

pub fn get(p: &Printer, r: &RangeResponse) {
    for x in &r.kvs {
        kv(p, x);
    }
}

pub fn put(p: &Printer, r: &PutResponse) {
    outln!("OK");
    if let Some(prev) = &r.prev_kv {
        kv(p, prev);
    }
}

pub fn del(p: &Printer, r: &DeleteRangeResponse) {
    outln!("{}", r.deleted);
    for x in &r.prev_kvs {
        kv(p, x);
    }
}

pub fn txn(p: &Printer, r: &TxnResponse) {
    outln!("{}", if r.succeeded { "SUCCESS" } else { "FAILURE" });
    for op in &r.responses {
        outln!();
        match &op.response {
            Some(response_op::Response::ResponseDeleteRange(d)) => del(p, d),
            Some(response_op::Response::ResponsePut(x)) => put(p, x),
            Some(response_op::Response::ResponseRange(g)) => get(p, g),
            other => outln!("unexpected response {other:?}"),
        }
    }
}

pub fn event_type(t: i32) -> &'static str {
    if t == EventType::Delete as i32 {
        "DELETE"
    } else {
        "PUT"
    }
}

pub fn watch(p: &Printer, r: &WatchResponse) {
    for e in &r.events {
        outln!("{}", event_type(e.r#type));
        if let Some(prev) = &e.prev_kv {
            kv(p, prev);
        }
        kv(p, e.kv.as_ref().unwrap_or(&KeyValue::default()));
    }
}

pub fn grant(r: &LeaseGrantResponse) {
    outln!("lease {:016x} granted with TTL({}s)", r.id, r.ttl);
}

pub fn revoke(id: i64) {
    outln!("lease {id:016x} revoked");
}

pub fn keep_alive(r: &LeaseKeepAliveResponse) {
    outln!("lease {:016x} keepalived with TTL({})", r.id, r.ttl);
}

pub fn time_to_live(r: &LeaseTimeToLiveResponse, keys: bool) {
    if r.granted_ttl == 0 && r.ttl == -1 {
        outln!("lease {:016x} already expired", r.id);
        return;
    }
    let mut txt = format!(
        "lease {:016x} granted with TTL({}s), remaining({}s)",
        r.id, r.granted_ttl, r.ttl
    );
    if keys {
        let ks: Vec<String> = r.keys.iter().map(|k| go::lossy(k)).collect();
        txt.push_str(&format!(", attached keys([{}])", ks.join(" ")));
    }
    outln!("{txt}");
}

pub fn leases(r: &LeaseLeasesResponse) {
    outln!("found {} leases", r.leases.len());
    for l in &r.leases {
        outln!("{:016x}", l.id);
    }
}

fn cluster_id(h: Option<&ResponseHeader>) -> u64 {
    h.map(|h| h.cluster_id).unwrap_or(0)
}

pub fn member_add(r: &MemberAddResponse) {
    // etcdctl 3.4 says "added to cluster" for learners too.
    let m = r.member.clone().unwrap_or_default();
    outln!(
        "Member {:16x} added to cluster {:16x}",
        m.id,
        cluster_id(r.header.as_ref())
    );
}

pub fn member_change(id: u64, verb: &str, h: Option<&ResponseHeader>) {
    outln!("Member {id:16x} {verb} cluster {:16x}", cluster_id(h));
}

pub fn member_list(r: &MemberListResponse) {
    for row in table::member_rows(r) {
        outln!("{}", row.join(", "));
    }
}

/// etcdctl 3.4 writes both the healthy and the unhealthy lines to stderr.
pub fn endpoint_health(hs: &[EpHealth]) {
    for h in hs {
        if h.error.is_empty() {
            eprintln!(
                "{} is healthy: successfully committed proposal: took = {}",
                h.ep,
                go::duration(h.took)
            );
        } else {
            eprintln!(
                "{} is unhealthy: failed to commit proposal: {}",
                h.ep, h.error
            );
        }
    }
}

pub fn endpoint_status(s: &[EpStatus]) {
    for row in table::status_rows(s) {
        outln!("{}", row.join(", "));
    }
}

pub fn endpoint_hashkv(s: &[EpHashKv]) {
    for row in table::hashkv_rows(s) {
        outln!("{}", row.join(", "));
    }
}

/// `%+v` of a gogo `AlarmMember`: its compact text form.
pub fn alarm(r: &AlarmResponse) {
    for a in &r.alarms {
        let mut s = String::new();
        if a.member_id != 0 {
            s.push_str(&format!("memberID:{} ", a.member_id));
        }
        if a.alarm != 0 {
            s.push_str(&format!("alarm:{} ", alarm_name(a.alarm)));
        }
        outln!("{s}");
    }
}

pub fn alarm_name(a: i32) -> &'static str {
    match a {
        1 => "NOSPACE",
        2 => "CORRUPT",
        _ => "NONE",
    }
}

pub fn db_status(s: &DbStatus) {
    for row in table::db_status_rows(s) {
        outln!("{}", row.join(", "));
    }
}

pub fn move_leader(leader: u64, target: u64) {
    outln!("Leadership transferred from {leader:x} to {target:x}");
}
