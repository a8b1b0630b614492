//! etcd 3.4 as a [`Db`] (Debian's etcd-server): the same flag names as keel.
//! It has no fault hooks, so on loopback only process faults (kill, pause)
//! apply; partitions, delay and loss need `--netns`.

use std::path::PathBuf;

use super::{common_args, ClusterSpec, Db, MemberSpec};

/// The etcd binary.
#[derive(Debug, Clone)]
pub struct Etcd {
    pub binary: PathBuf,
}

impl Db for Etcd {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn binary(&self) -> PathBuf {
        self.binary.clone()
    }

    fn args(&self, m: &MemberSpec, c: &ClusterSpec) -> Vec<String> {
        let mut a = common_args(m, c);
        a.extend(["--logger".to_string(), "zap".to_string()]);
        a
    }

    fn fault_hooks(&self) -> bool {
        false
    }
}
