//! Checks a few wire facts of the generated types against etcd 3.4: field
//! numbers and wire types (read back from raw encoded bytes) and gRPC paths.

use keel_proto::{etcdserverpb as pb, mvccpb, peer, v3electionpb, v3lockpb};
use prost::Message;

/// Reads the top-level (field number, wire type) pairs of an encoded message.
fn tags(mut buf: &[u8]) -> Vec<(u32, u8)> {
    fn varint(buf: &mut &[u8]) -> u64 {
        let mut out = 0u64;
        let mut shift = 0;
        loop {
            let b = buf[0];
            *buf = &buf[1..];
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return out;
            }
            shift += 7;
        }
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf);
        let wire = (key & 7) as u8;
        out.push(((key >> 3) as u32, wire));
        match wire {
            0 => {
                varint(&mut buf);
            }
            1 => buf = &buf[8..],
            2 => {
                let len = varint(&mut buf) as usize;
                buf = &buf[len..];
            }
            5 => buf = &buf[4..],
            other => panic!("unexpected wire type {other}"),
        }
    }
    out
}

fn only_tag(msg: &impl Message) -> (u32, u8) {
    let t = tags(&msg.encode_to_vec());
    assert_eq!(t.len(), 1, "expected exactly one field, got {t:?}");
    t[0]
}

const VARINT: u8 = 0;
const LEN: u8 = 2;

#[test]
fn kv_field_numbers() {
    let r = pb::RangeRequest {
        keys_only: true,
        ..Default::default()
    };
    assert_eq!(only_tag(&r), (8, VARINT));
    let r = pb::RangeRequest {
        max_create_revision: 5,
        ..Default::default()
    };
    assert_eq!(only_tag(&r), (13, VARINT));

    let p = pb::PutResponse {
        prev_kv: Some(mvccpb::KeyValue {
            key: b"k".to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(only_tag(&p), (2, LEN));

    let t = pb::TxnRequest {
        success: vec![pb::RequestOp::default()],
        ..Default::default()
    };
    assert_eq!(only_tag(&t), (2, LEN));

    let op = pb::RequestOp {
        request: Some(pb::request_op::Request::RequestDeleteRange(
            pb::DeleteRangeRequest::default(),
        )),
    };
    assert_eq!(only_tag(&op), (3, LEN));

    let c = pb::Compare {
        range_end: b"z".to_vec(),
        ..Default::default()
    };
    assert_eq!(only_tag(&c), (64, LEN));

    let kv = mvccpb::KeyValue {
        lease: 7,
        ..Default::default()
    };
    assert_eq!(only_tag(&kv), (6, VARINT));
}

#[test]
fn watch_field_numbers() {
    let w = pb::WatchCreateRequest {
        fragment: true,
        ..Default::default()
    };
    assert_eq!(only_tag(&w), (8, VARINT));
    let w = pb::WatchResponse {
        fragment: true,
        ..Default::default()
    };
    assert_eq!(only_tag(&w), (7, VARINT));
    let w = pb::WatchResponse {
        events: vec![mvccpb::Event::default()],
        ..Default::default()
    };
    assert_eq!(only_tag(&w), (11, LEN));
    let w = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
            pb::WatchProgressRequest {},
        )),
    };
    assert_eq!(only_tag(&w), (3, LEN));
}

#[test]
fn maintenance_and_enums() {
    let s = pb::StatusResponse {
        db_size_in_use: 1,
        ..Default::default()
    };
    assert_eq!(only_tag(&s), (9, VARINT));
    let s = pb::StatusResponse {
        is_learner: true,
        ..Default::default()
    };
    assert_eq!(only_tag(&s), (10, VARINT));
    assert_eq!(pb::AlarmType::Corrupt as i32, 2);
    assert_eq!(pb::compare::CompareResult::NotEqual as i32, 3);
    assert_eq!(pb::compare::CompareTarget::Lease as i32, 4);
    assert_eq!(pb::range_request::SortTarget::Value as i32, 4);
    assert_eq!(mvccpb::event::EventType::Delete as i32, 1);
    let m = pb::MemberPromoteRequest { id: 3 };
    assert_eq!(only_tag(&m), (1, VARINT));
}

#[test]
fn peer_internal_request_roundtrip() {
    let req = peer::InternalRequest {
        header: Some(peer::RequestHeader {
            id: 42,
            username: "root".into(),
            auth_revision: 3,
        }),
        request: Some(peer::internal_request::Request::AuthRoleRevokePermission(
            pb::AuthRoleRevokePermissionRequest {
                role: "r".into(),
                ..Default::default()
            },
        )),
    };
    let bytes = req.encode_to_vec();
    assert_eq!(tags(&bytes), vec![(1, LEN), (20, LEN)]);
    assert_eq!(peer::InternalRequest::decode(&bytes[..]).unwrap(), req);
}

#[test]
fn grpc_paths() {
    assert_eq!(pb::kv_server::SERVICE_NAME, "etcdserverpb.KV");
    assert_eq!(pb::watch_server::SERVICE_NAME, "etcdserverpb.Watch");
    assert_eq!(pb::lease_server::SERVICE_NAME, "etcdserverpb.Lease");
    assert_eq!(pb::cluster_server::SERVICE_NAME, "etcdserverpb.Cluster");
    assert_eq!(
        pb::maintenance_server::SERVICE_NAME,
        "etcdserverpb.Maintenance"
    );
    assert_eq!(pb::auth_server::SERVICE_NAME, "etcdserverpb.Auth");
    assert_eq!(v3lockpb::lock_server::SERVICE_NAME, "v3lockpb.Lock");
    assert_eq!(
        v3electionpb::election_server::SERVICE_NAME,
        "v3electionpb.Election"
    );
    assert_eq!(peer::peer_server::SERVICE_NAME, "keel.peer.Peer");

    let generated = [
        include_str!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs")),
        include_str!(concat!(env!("OUT_DIR"), "/v3lockpb.rs")),
        include_str!(concat!(env!("OUT_DIR"), "/v3electionpb.rs")),
        include_str!(concat!(env!("OUT_DIR"), "/keel.peer.rs")),
    ]
    .concat();
    for path in [
        "/etcdserverpb.KV/Range",
        "/etcdserverpb.KV/Txn",
        "/etcdserverpb.Watch/Watch",
        "/etcdserverpb.Lease/LeaseKeepAlive",
        "/etcdserverpb.Cluster/MemberPromote",
        "/etcdserverpb.Maintenance/HashKV",
        "/etcdserverpb.Auth/RoleRevokePermission",
        "/v3lockpb.Lock/Lock",
        "/v3electionpb.Election/Campaign",
        "/v3electionpb.Election/Observe",
        "/keel.peer.Peer/Raft",
        "/keel.peer.Peer/Snapshot",
    ] {
        assert!(
            generated.contains(&format!("\"{path}\"")),
            "missing gRPC path {path}"
        );
    }
}
