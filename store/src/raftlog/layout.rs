//! How the Raft log storage lies in sled: tree names, keys, record
//! encoding, and the load-time check of the stored log.

use raft::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};

use super::Cache;
use crate::{Error, Result};

/// Name of the tree holding the entries.
pub(super) const LOG_TREE: &str = "raft_log";
/// Name of the tree holding hard state, conf state and snapshot metadata.
pub(super) const STATE_TREE: &str = "raft_state";
pub(super) const HARD_STATE_KEY: &[u8] = b"hard_state";
pub(super) const CONF_STATE_KEY: &[u8] = b"conf_state";
pub(super) const SNAPSHOT_KEY: &[u8] = b"snapshot_metadata";
/// The first WAL file not yet in sled (u64 big-endian), set at checkpoints.
pub(super) const WAL_SEQ_KEY: &[u8] = b"wal_first_seq";

/// Reads the state records and checks the log against them.
pub(super) fn load(log: &sled::Tree, state: &sled::Tree) -> Result<Cache> {
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
    let first_index = snapshot.index + 1;
    let (last_index, last_term) = match log.last()? {
        None => (snapshot.index, snapshot.term),
        Some((k, v)) => {
            let entry: Entry = decode(&v, "entry")?;
            check_index(index_of(&k)?, &entry)?;
            (entry.index, entry.term)
        }
    };
    // Entries below the first index are what a truncation had not deleted
    // yet when the member stopped (it deletes in the background): drop them.
    let mut leftovers = sled::Batch::default();
    let mut dropped = 0u64;
    for item in log.range(..key(first_index)) {
        let (k, _) = item?;
        leftovers.remove(k);
        dropped += 1;
    }
    if dropped > 0 {
        log.apply_batch(leftovers)?;
        tracing::info!(
            entries = dropped,
            "raft log: deleted entries left by an interrupted truncation"
        );
    }
    if let Some((k, _)) = log.first()? {
        let found = index_of(&k)?;
        if found != first_index {
            return Err(Error::Corrupt(format!(
                "raft log: first entry is {found}, expected {first_index} (snapshot index + 1)"
            )));
        }
    }
    // Keys are unique and within [first, last]: the count detects gaps.
    let count = log.len() as u64;
    if count != last_index + 1 - first_index {
        return Err(Error::Corrupt(format!(
            "raft log: {count} entries between {first_index} and {last_index}"
        )));
    }
    Ok(Cache {
        hard_state,
        conf_state,
        snapshot,
        last_index,
        last_term,
        written: !log.is_empty() || !state.is_empty(),
    })
}

pub(super) fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn index_of(key: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| Error::Corrupt(format!("raft log: bad key {key:?}")))?;
    Ok(u64::from_be_bytes(bytes))
}

pub(super) fn check_index(index: u64, entry: &Entry) -> Result<()> {
    if entry.index == index {
        Ok(())
    } else {
        Err(Error::Corrupt(format!(
            "raft log: key {index} holds entry {}",
            entry.index
        )))
    }
}

pub(super) fn encode<M: protobuf::Message>(msg: &M) -> Result<Vec<u8>> {
    msg.write_to_bytes()
        .map_err(|e| Error::Raft(raft::Error::CodecError(e)))
}

pub(super) fn decode<M: protobuf::Message>(bytes: &[u8], what: &str) -> Result<M> {
    M::parse_from_bytes(bytes)
        .map_err(|e| Error::Corrupt(format!("raft log: cannot decode {what}: {e}")))
}
