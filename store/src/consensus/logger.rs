//! Bridges raft-rs's `slog` logging into `tracing`, so that one subscriber
//! (installed by the binary) sees everything. Key-value pairs become one
//! `kv` field; the level maps one to one (slog's critical becomes error).

use std::fmt::Write as _;

use slog::{Drain, Level, OwnedKVList, Record, KV};

/// A `slog::Drain` that re-emits records as `tracing` events with target `raft`.
pub struct TracingDrain;

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut kv = KvText(String::new());
        let _ = record.kv().serialize(record, &mut kv);
        let _ = values.serialize(record, &mut kv);
        let msg = record.msg();
        let kv = kv.0;
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", kv = %kv, "{msg}"),
            Level::Warning => tracing::warn!(target: "raft", kv = %kv, "{msg}"),
            Level::Info => tracing::info!(target: "raft", kv = %kv, "{msg}"),
            Level::Debug => tracing::debug!(target: "raft", kv = %kv, "{msg}"),
            Level::Trace => tracing::trace!(target: "raft", kv = %kv, "{msg}"),
        }
        Ok(())
    }
}

struct KvText(String);

impl slog::Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(self.0, "{key}={val}");
        Ok(())
    }
}

/// The logger handed to raft-rs.
pub fn raft_logger(member_id: u64) -> slog::Logger {
    slog::Logger::root(
        TracingDrain.fuse(),
        slog::o!("member" => format!("{member_id:x}")),
    )
}
