//! Prometheus metrics served at `/metrics`, with etcd's names where the meaning
//! is the same (so etcd dashboards and alerts keep working).
//!
//! One [`Metrics`] per member, owning its own registry (no process globals, so
//! tests can run several members in one process).

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry, TextEncoder,
};

/// Every metric a member exports.
pub struct Metrics {
    registry: Registry,
    pub has_leader: IntGauge,
    pub is_leader: IntGauge,
    pub leader_changes: IntCounter,
    pub proposals_committed: Gauge,
    pub proposals_applied: IntCounter,
    pub proposals_pending: IntGauge,
    pub proposals_failed: IntCounter,
    pub wal_fsync_seconds: Histogram,
    pub db_total_size_bytes: IntGauge,
    pub db_total_size_in_use_bytes: IntGauge,
    pub quota_backend_bytes: IntGauge,
    pub mvcc_put_total: IntCounter,
    pub mvcc_delete_total: IntCounter,
    pub mvcc_range_total: IntCounter,
    pub mvcc_txn_total: IntCounter,
    pub snapshots_taken: IntCounter,
    pub snapshots_installed: IntCounter,
    pub snapshot_send_success: IntCounter,
    pub snapshot_send_failures: IntCounter,
    pub snapshot_receive_success: IntCounter,
    pub read_index_leased: IntCounter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
            r.register(Box::new(c.clone()))
                .expect("metric names are unique");
            c
        }
        let g = |name: &str, help: &str| {
            reg(
                &registry,
                IntGauge::with_opts(Opts::new(name, help)).expect("valid"),
            )
        };
        let c = |name: &str, help: &str| {
            reg(
                &registry,
                IntCounter::with_opts(Opts::new(name, help)).expect("valid"),
            )
        };
        let has_leader = g(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
        );
        let is_leader = g(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        );
        let leader_changes = c(
            "etcd_server_leader_changes_seen_total",
            "The number of leader changes seen.",
        );
        let proposals_committed = reg(
            &registry,
            Gauge::with_opts(Opts::new(
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            ))
            .expect("valid"),
        );
        let proposals_applied = c(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
        );
        let proposals_pending = g(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
        );
        let proposals_failed = c(
            "etcd_server_proposals_failed_total",
            "The total number of failed proposals seen.",
        );
        let wal_fsync_seconds = reg(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "etcd_disk_wal_fsync_duration_seconds",
                    "The latency distributions of fsync called by WAL.",
                )
                .buckets(prometheus::exponential_buckets(0.001, 2.0, 14).expect("valid")),
            )
            .expect("valid"),
        );
        let db_total_size_bytes = g(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
        );
        let db_total_size_in_use_bytes = g(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
        );
        let quota_backend_bytes = g(
            "etcd_server_quota_backend_bytes",
            "Current backend storage quota size in bytes.",
        );
        let mvcc_put_total = c(
            "etcd_mvcc_put_total",
            "Total number of puts seen by this member.",
        );
        let mvcc_delete_total = c(
            "etcd_mvcc_delete_total",
            "Total number of deletes seen by this member.",
        );
        let mvcc_range_total = c(
            "etcd_mvcc_range_total",
            "Total number of ranges seen by this member.",
        );
        let mvcc_txn_total = c(
            "etcd_mvcc_txn_total",
            "Total number of txns seen by this member.",
        );
        let snapshots_taken = c(
            "keel_raft_log_truncations_total",
            "Times the Raft log was truncated after --snapshot-count entries.",
        );
        let snapshots_installed = c(
            "keel_snapshots_installed_total",
            "Raft snapshots installed on this member.",
        );
        let snapshot_send_success = c(
            "etcd_network_snapshot_send_success",
            "Total number of successful snapshot sends",
        );
        let snapshot_send_failures = c(
            "etcd_network_snapshot_send_failures",
            "Total number of snapshot send failures",
        );
        let read_index_leased = c(
            "keel_read_index_leased_total",
            "ReadIndex requests the leader answered from its read lease, without a round of heartbeats.",
        );
        let snapshot_receive_success = c(
            "etcd_network_snapshot_receive_success",
            "Total number of successful snapshot receives",
        );
        Metrics {
            registry,
            snapshots_taken,
            snapshots_installed,
            snapshot_send_success,
            snapshot_send_failures,
            snapshot_receive_success,
            read_index_leased,
            has_leader,
            is_leader,
            leader_changes,
            proposals_committed,
            proposals_applied,
            proposals_pending,
            proposals_failed,
            wal_fsync_seconds,
            db_total_size_bytes,
            db_total_size_in_use_bytes,
            quota_backend_bytes,
            mvcc_put_total,
            mvcc_delete_total,
            mvcc_range_total,
            mvcc_txn_total,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_etcd_names() {
        let m = Metrics::new();
        m.has_leader.set(1);
        m.wal_fsync_seconds.observe(0.002);
        let text = m.render();
        assert!(text.contains("etcd_server_has_leader 1"), "{text}");
        assert!(
            text.contains("etcd_disk_wal_fsync_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("etcd_server_proposals_failed_total 0"),
            "{text}"
        );
    }
}
