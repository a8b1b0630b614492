//! keel-store: keel's replicated MVCC store, speaking the etcd v3 API.
//!
//! Map (see `ARCHITECTURE.md` beside this crate): [`server`] assembles a member;
//! [`consensus`] owns raft-rs; [`raftlog`] keeps its log in sled; [`apply`] turns
//! committed requests into [`mvcc`] operations; [`kv`] is the KV API's logic and
//! [`service`] its thin gRPC adapter; [`transport`] carries Raft traffic; [`http`]
//! serves /health, /version and /metrics; [`config`] parses etcd's flags;
//! [`lease`] is the lessor and the Lease API; [`concurrency`] serves Lock and
//! Election from leases, txns and watches; [`membership`] is the replicated
//! member list and the Cluster API; [`maintenance`] is the Maintenance
//! API, alarms, the backend quota, automatic compaction and the corruption
//! check;
//! [`bench`] is `keel bench`, a load generator for any etcd-API endpoint;
//! [`backup`] writes and checks the files of `snapshot save` / `restore`;
//! [`auth`] is users, roles, tokens and the one permission check;
//! [`tls`] is TLS on the client and peer ports; [`coalesce`] gathers a
//! connection's replies into fewer writes.
//! [`admin`] is keel's own admin API (Raft status for `keelctl inspect`).

pub mod admin;
pub mod apply;
pub mod auth;
pub mod authority;
pub mod backup;
pub mod bench;
pub mod coalesce;
pub mod concurrency;
pub mod config;
pub mod consensus;
pub mod error;
pub mod http;
pub mod kv;
pub mod lane;
pub mod lease;
pub mod maintenance;
pub mod membership;
pub mod metrics;
pub mod mvcc;
pub mod raftlog;
pub mod server;
pub mod service;
pub mod tls;
pub mod transport;
pub mod watch;

pub use error::{Error, Result};

/// Helpers shared by unit tests.
#[cfg(test)]
pub(crate) mod testutil {
    use std::path::Path;
    use std::time::{Duration, Instant};

    /// Opens a sled database at `path`, waiting while a database just dropped
    /// in this process still holds the directory's lock: sled's background
    /// threads let go of it shortly after the last handle is dropped, so an
    /// immediate reopen can meet `WouldBlock`.
    pub fn open_sled(path: &Path) -> sled::Db {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match sled::open(path) {
                Ok(db) => return db,
                Err(e) if crate::server::is_lock_conflict(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("cannot open sled at {}: {e}", path.display()),
            }
        }
    }
}
