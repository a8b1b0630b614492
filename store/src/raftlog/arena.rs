//! The Raft log's entries in memory, packed: each entry encoded (protobuf)
//! into large chunks, with a 24-byte slot per entry (term, chunk, offset,
//! length). An entry is decoded when read.
//!
//! Why not a `VecDeque<Entry>`: an `Entry` is a struct plus its own
//! allocation for the data, and between snapshots the log holds up to
//! `--snapshot-count` of them, allocated among the request path's
//! short-lived buffers. Freed at a compaction they left the heap full of
//! holes: measured with 1M puts of 256 bytes, about 1 KiB of resident memory
//! per retained entry. Chunks are allocated whole (1 MiB, or one entry's
//! size when larger) and freed whole once every entry in them is compacted.

use std::collections::VecDeque;

use protobuf::Message as _;
use raft::eraftpb::Entry;

use crate::{Error, Result};

/// Bytes per chunk (an entry larger than this gets a chunk of its own).
const CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, Copy)]
struct Slot {
    term: u64,
    /// Absolute chunk number.
    chunk: u64,
    offset: u32,
    len: u32,
}

/// Entries `first..first + len()`, for some `first` the caller tracks.
#[derive(Debug, Default, Clone)]
pub(super) struct Entries {
    slots: VecDeque<Slot>,
    chunks: VecDeque<Vec<u8>>,
    /// The absolute number of `chunks[0]`.
    first_chunk: u64,
}

impl Entries {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// The term of the `i`-th entry.
    pub fn term(&self, i: usize) -> Option<u64> {
        self.slots.get(i).map(|s| s.term)
    }

    /// The `i`-th entry, decoded.
    pub fn get(&self, i: usize) -> Result<Entry> {
        let s = self
            .slots
            .get(i)
            .ok_or_else(|| Error::Corrupt(format!("raft log: no entry at position {i}")))?;
        let chunk = &self.chunks[(s.chunk - self.first_chunk) as usize];
        let bytes = &chunk[s.offset as usize..(s.offset + s.len) as usize];
        Entry::parse_from_bytes(bytes)
            .map_err(|e| Error::Corrupt(format!("raft log: entry in memory undecodable: {e}")))
    }

    /// The encoded size of the `i`-th entry.
    pub fn size(&self, i: usize) -> u64 {
        self.slots.get(i).map_or(0, |s| u64::from(s.len))
    }

    /// Appends one entry.
    pub fn push(&mut self, e: &Entry) -> Result<()> {
        let len = e.compute_size() as usize;
        let fits = self
            .chunks
            .back()
            .is_some_and(|c| c.capacity() - c.len() >= len);
        if !fits {
            self.chunks.push_back(Vec::with_capacity(CHUNK.max(len)));
        }
        let chunk_no = self.first_chunk + self.chunks.len() as u64 - 1;
        let chunk = self.chunks.back_mut().expect("a chunk");
        let offset = chunk.len();
        e.write_to_vec(chunk)
            .map_err(|e| Error::Raft(raft::Error::CodecError(e)))?;
        debug_assert_eq!(chunk.len() - offset, len);
        self.slots.push_back(Slot {
            term: e.term,
            chunk: chunk_no,
            offset: offset as u32,
            len: (chunk.len() - offset) as u32,
        });
        Ok(())
    }

    /// Keeps the first `n` entries. The bytes of the dropped ones are
    /// reused: the chunk of the first dropped entry is cut back to it.
    pub fn truncate(&mut self, n: usize) {
        let Some(&cut) = self.slots.get(n) else {
            return;
        };
        self.slots.truncate(n);
        while self.first_chunk + self.chunks.len() as u64 - 1 > cut.chunk {
            self.chunks.pop_back();
        }
        if let Some(c) = self.chunks.back_mut() {
            c.truncate(cut.offset as usize);
        }
        if self.slots.is_empty() {
            self.clear();
        }
    }

    /// Drops the first `n` entries, and every chunk that only they used.
    pub fn drop_front(&mut self, n: usize) {
        let n = n.min(self.slots.len());
        self.slots.drain(..n);
        match self.slots.front() {
            Some(s) => {
                while self.first_chunk < s.chunk {
                    self.chunks.pop_front();
                    self.first_chunk += 1;
                }
            }
            None => self.clear(),
        }
    }

    pub fn clear(&mut self) {
        self.first_chunk += self.chunks.len() as u64;
        self.slots.clear();
        self.chunks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, size: usize) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; size].into(),
            ..Default::default()
        }
    }

    #[test]
    fn push_get_truncate_and_drop_keep_entries_intact() {
        let mut es = Entries::default();
        // 300 entries of ~10 KiB: several chunks; one larger than a chunk.
        for i in 0..300 {
            es.push(&entry(i, 1 + i / 100, 10_000)).unwrap();
        }
        es.push(&entry(300, 4, CHUNK + 10)).unwrap();
        assert_eq!(es.len(), 301);
        assert!(es.chunks.len() > 3);
        for i in [0, 99, 100, 299, 300] {
            let e = es.get(i).unwrap();
            assert_eq!(e.index, i as u64);
            assert_eq!(es.term(i), Some(e.term));
        }
        assert_eq!(es.get(300).unwrap().data.len(), CHUNK + 10);
        // A conflicting tail replaced.
        es.truncate(150);
        assert_eq!(es.len(), 150);
        es.push(&entry(150, 9, 10)).unwrap();
        assert_eq!(es.get(150).unwrap().term, 9);
        assert_eq!(es.get(149).unwrap(), entry(149, 2, 10_000));
        // Compaction frees the chunks in front.
        let chunks = es.chunks.len();
        es.drop_front(140);
        assert!(es.chunks.len() < chunks);
        assert_eq!(es.get(0).unwrap(), entry(140, 2, 10_000));
        assert_eq!(es.get(10).unwrap().term, 9);
        es.drop_front(100);
        assert_eq!(es.len(), 0);
        assert!(es.chunks.is_empty());
        es.push(&entry(151, 9, 10)).unwrap();
        assert_eq!(es.get(0).unwrap().index, 151);
        assert!(es.get(1).is_err());
    }
}
