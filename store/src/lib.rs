//! keel-store: keel's replicated MVCC store, speaking the etcd v3 API.
//!
//! Map (see `ARCHITECTURE.md` beside this crate): [`server`] assembles a member;
//! [`consensus`] owns raft-rs; [`raftlog`] keeps its log in sled; [`apply`] turns
//! committed requests into [`mvcc`] operations; [`kv`] is the KV API's logic and
//! [`service`] its thin gRPC adapter; [`transport`] carries Raft traffic; [`http`]
//! serves /health, /version and /metrics; [`config`] parses etcd's flags;
//! [`lease`] is the lessor and the Lease API; [`concurrency`] serves Lock and
//! Election from leases, txns and watches;
//! [`bench`] is `keel bench`, a load generator for any etcd-API endpoint.

pub mod apply;
pub mod bench;
pub mod concurrency;
pub mod config;
pub mod consensus;
pub mod error;
pub mod http;
pub mod kv;
pub mod lease;
pub mod metrics;
pub mod mvcc;
pub mod raftlog;
pub mod server;
pub mod service;
pub mod transport;
pub mod watch;

pub use error::{Error, Result};
