//! keel as a [`Db`]: `keel store` with etcd's flags, plus the hidden test flags
//! `--unsafe-fault-hooks` (always: the harness partitions through them on
//! loopback) and, when asked, `--unsafe-stale-reads` (a deliberately broken
//! mode that serves linearizable reads from local state, to prove the harness
//! catches stale reads).

use std::path::PathBuf;

use super::{common_args, ClusterSpec, Db, MemberSpec};

/// The keel binary and its mode.
#[derive(Debug, Clone)]
pub struct Keel {
    pub binary: PathBuf,
    pub unsafe_stale_reads: bool,
}

impl Db for Keel {
    fn name(&self) -> &'static str {
        "keel"
    }

    fn binary(&self) -> PathBuf {
        self.binary.clone()
    }

    fn args(&self, m: &MemberSpec, c: &ClusterSpec) -> Vec<String> {
        let mut a = vec!["store".to_string()];
        a.extend(common_args(m, c));
        a.push("--unsafe-fault-hooks".into());
        if self.unsafe_stale_reads {
            a.push("--unsafe-stale-reads".into());
        }
        a
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("RUST_LOG".into(), "info".into())]
    }

    fn fault_hooks(&self) -> bool {
        true
    }
}

/// Where the keel binary is, when not given: `$KEEL_BIN`, then `keel` beside
/// this program (both live in the same target dir), then on PATH.
pub fn find_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KEEL_BIN") {
        return Some(PathBuf::from(p));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("keel")))
        .filter(|p| p.is_file());
    beside.or_else(|| super::on_path("keel"))
}
