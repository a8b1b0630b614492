//! `-w protobuf`: the response's protobuf encoding, as etcdctl 3.4.23 prints
//! it (`fmt.Print(string(bytes))`): the bytes as they are, a `%` included,
//! and no newline after them. (Some etcd builds used `fmt.Printf`, which
//! turned a `%` into a formatting verb; Debian's 3.4.23 does not.)
//!
//! For the lease responses etcdctl hands clientv3's own structs to the
//! marshaller, whose only `Marshal` method is the embedded header's: it
//! prints the header alone ([`header_only`]).

use keel_proto::etcdserverpb::{ResponseHeader, WatchResponse};
use prost::Message;

pub fn print_bytes(b: &[u8]) {
    super::out(b);
}

pub fn print<M: Message>(m: &M) {
    print_bytes(&m.encode_to_vec());
}

pub fn header_only(h: Option<&ResponseHeader>) {
    print(&h.cloned().unwrap_or_default());
}

/// pb.WatchResponse rebuilt from clientv3's: header, events, compact
/// revision, canceled, created (no watch id, reason or fragment flag).
pub fn watch(r: &WatchResponse) {
    let w = WatchResponse {
        header: Some(r.header.unwrap_or_default()),
        events: r.events.clone(),
        compact_revision: r.compact_revision,
        canceled: r.canceled,
        created: r.created,
        ..Default::default()
    };
    print(&w);
}
