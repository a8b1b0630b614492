//! The databases under test, behind one trait: [`Db`] says how to start one
//! member of a cluster (binary and flags) and what test hooks it has.
//!
//! Two implementations: [`keel::Keel`] (the `keel store` binary, always with its
//! hidden `--unsafe-fault-hooks` so that partitions work on loopback) and
//! [`etcd::Etcd`] (etcd 3.4 from PATH; the same flag names, no fault hooks).
//! Process control (spawning, signals, health) is the cluster's job, not the
//! Db's: a Db only describes.
//!
//! Membership changes need nothing more from a Db: both take etcd's Cluster
//! API and `--initial-cluster-state existing` ([`ClusterSpec::existing`]) for a
//! member that joins a running cluster.

pub mod etcd;
pub mod keel;

use std::path::PathBuf;

/// One member as the cluster lays it out.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub name: String,
    /// `http://host:port` for clients.
    pub client_url: String,
    /// `http://host:port` for peers.
    pub peer_url: String,
    pub data_dir: PathBuf,
}

/// What every member shares.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// `name=peer_url,...`
    pub initial_cluster: String,
    pub token: String,
    /// Milliseconds.
    pub heartbeat_interval: u64,
    /// Milliseconds.
    pub election_timeout: u64,
    /// `--initial-cluster-state existing` (a member joining a running
    /// cluster after MemberAdd) instead of `new`.
    pub existing: bool,
}

/// A database the harness can run.
pub trait Db: Send + Sync {
    /// `keel` or `etcd`.
    fn name(&self) -> &'static str;
    /// The program to run.
    fn binary(&self) -> PathBuf;
    /// Its arguments for one member.
    fn args(&self, member: &MemberSpec, cluster: &ClusterSpec) -> Vec<String>;
    /// Extra environment for the process.
    fn env(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Whether the members serve `/debug/fault/cut` and `/heal` (partitions
    /// without network namespaces).
    fn fault_hooks(&self) -> bool;
}

/// The etcd flags both databases share (keel uses etcd's names).
pub fn common_args(m: &MemberSpec, c: &ClusterSpec) -> Vec<String> {
    let pairs = [
        ("--name", m.name.clone()),
        ("--data-dir", m.data_dir.display().to_string()),
        ("--listen-client-urls", m.client_url.clone()),
        ("--advertise-client-urls", m.client_url.clone()),
        ("--listen-peer-urls", m.peer_url.clone()),
        ("--initial-advertise-peer-urls", m.peer_url.clone()),
        ("--initial-cluster", c.initial_cluster.clone()),
        ("--initial-cluster-token", c.token.clone()),
        (
            "--initial-cluster-state",
            if c.existing { "existing" } else { "new" }.to_string(),
        ),
        ("--heartbeat-interval", c.heartbeat_interval.to_string()),
        ("--election-timeout", c.election_timeout.to_string()),
    ];
    pairs
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v])
        .collect()
}

/// Finds `tool` on PATH.
pub fn on_path(tool: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|p| p.join(tool))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joining_member_starts_with_existing_state() {
        let m = MemberSpec {
            name: "m1".into(),
            client_url: "http://127.0.0.1:1".into(),
            peer_url: "http://127.0.0.1:2".into(),
            data_dir: PathBuf::from("/tmp/m1"),
        };
        let mut c = ClusterSpec {
            initial_cluster: "m1=http://127.0.0.1:2".into(),
            token: "t".into(),
            heartbeat_interval: 100,
            election_timeout: 1000,
            existing: false,
        };
        let state = |c: &ClusterSpec| {
            let a = common_args(&m, c);
            let i = a
                .iter()
                .position(|x| x == "--initial-cluster-state")
                .unwrap();
            a[i + 1].clone()
        };
        assert_eq!(state(&c), "new");
        c.existing = true;
        assert_eq!(state(&c), "existing");
    }
}
