//! The Raft log as earlier builds kept it, in two sled trees: read once, to
//! move it into the WAL, then dropped.
//!
//! - `raft_log`: one entry per key, the key the index as 8-byte big-endian,
//!   the value the entry encoded with protobuf;
//! - `raft_state`: `hard_state`, `conf_state` and `snapshot_metadata`, each a
//!   protobuf message.

use raft::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};

use crate::{Error, Result};

const LOG_TREE: &str = "raft_log";
const STATE_TREE: &str = "raft_state";
const HARD_STATE_KEY: &[u8] = b"hard_state";
const CONF_STATE_KEY: &[u8] = b"conf_state";
const SNAPSHOT_KEY: &[u8] = b"snapshot_metadata";

/// A log found in sled.
#[derive(Debug)]
pub(super) struct SledLog {
    pub hard_state: HardState,
    pub conf_state: ConfState,
    pub snapshot: SnapshotMetadata,
    /// The entries after the snapshot index, contiguous.
    pub entries: Vec<Entry>,
}

/// Whether `db` holds a log in the old trees.
pub(super) fn present(db: &sled::Db) -> Result<bool> {
    let names = db.tree_names();
    let has = |n: &str| names.iter().any(|t| t.as_ref() == n.as_bytes());
    if !has(STATE_TREE) && !has(LOG_TREE) {
        return Ok(false);
    }
    Ok(!db.open_tree(STATE_TREE)?.is_empty() || !db.open_tree(LOG_TREE)?.is_empty())
}

/// Reads the log held in `db`'s old trees, checking it has no gap.
pub(super) fn read(db: &sled::Db) -> Result<SledLog> {
    let log = db.open_tree(LOG_TREE)?;
    let state = db.open_tree(STATE_TREE)?;
    let get = |k: &[u8]| state.get(k).map_err(Error::from);
    let hard_state: HardState = match get(HARD_STATE_KEY)? {
        Some(v) => decode(&v, "hard state")?,
        None => HardState::default(),
    };
    let conf_state: ConfState = match get(CONF_STATE_KEY)? {
        Some(v) => decode(&v, "conf state")?,
        None => ConfState::default(),
    };
    let snapshot: SnapshotMetadata = match get(SNAPSHOT_KEY)? {
        Some(v) => decode(&v, "snapshot metadata")?,
        None => SnapshotMetadata::default(),
    };
    let mut entries = Vec::new();
    // Entries at or below the snapshot index are leftovers of a truncation.
    for item in log.range(&(snapshot.index + 1).to_be_bytes()[..]..) {
        let (_, v) = item?;
        let entry: Entry = decode(&v, "entry")?;
        let want = snapshot.index + 1 + entries.len() as u64;
        if entry.index != want {
            return Err(Error::Corrupt(format!(
                "raft log in sled: found entry {} where {want} was expected",
                entry.index
            )));
        }
        entries.push(entry);
    }
    Ok(SledLog {
        hard_state,
        conf_state,
        snapshot,
        entries,
    })
}

/// Drops the old trees (once their log is durable in the WAL).
pub(super) fn drop_trees(db: &sled::Db) -> Result<()> {
    db.drop_tree(LOG_TREE)?;
    db.drop_tree(STATE_TREE)?;
    db.flush()?;
    Ok(())
}

fn decode<M: protobuf::Message>(bytes: &[u8], what: &str) -> Result<M> {
    M::parse_from_bytes(bytes)
        .map_err(|e| Error::Corrupt(format!("raft log in sled: cannot decode {what}: {e}")))
}

#[cfg(test)]
pub(super) mod testing {
    //! Writes a log the way earlier builds did, for the migration test.
    use super::*;
    use protobuf::Message as _;

    pub fn write(db: &sled::Db, log: &SledLog) {
        let state = db.open_tree(STATE_TREE).unwrap();
        state
            .insert(HARD_STATE_KEY, log.hard_state.write_to_bytes().unwrap())
            .unwrap();
        state
            .insert(CONF_STATE_KEY, log.conf_state.write_to_bytes().unwrap())
            .unwrap();
        state
            .insert(SNAPSHOT_KEY, log.snapshot.write_to_bytes().unwrap())
            .unwrap();
        let tree = db.open_tree(LOG_TREE).unwrap();
        for e in &log.entries {
            tree.insert(e.index.to_be_bytes(), e.write_to_bytes().unwrap())
                .unwrap();
        }
        db.flush().unwrap();
    }
}
