//! Hashes of the MVCC state, for consistency checks between members
//! (the Maintenance service's `Hash` and `HashKV`, and the periodic
//! corruption check).
//!
//! [`Store::hash_kv`] follows etcd 3.4's `HashByRev`: a CRC-32C over every
//! history record (key and value bytes, in revision order) up to a revision,
//! where records at or below the compact revision count only if the
//! compaction kept them. Two members with the same history, compact revision
//! and revision get the same hash whatever their background deletion of
//! compacted records has reached: hashing first waits for pending deletions
//! and holds new ones off while it scans. The values differ from etcd's (the
//! record encoding is keel's own), never between keel members.
//!
//! [`Store::hash`] is the whole keyspace (records, leases, alarms and meta
//! keys, the consistent index aside, as etcd leaves it out), a testing aid.
//!
//! CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven, byte
//! at a time: the textbook algorithm (as in RFC 3720's appendix), written here.

use super::encoding;
use super::revision::Revision;
use super::store::Store;
use crate::{Error, Result};

/// The answer of [`Store::hash_kv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    pub hash: u32,
    /// The store's current revision when the hash was taken.
    pub revision: i64,
    /// The compact revision the hash starts from; -1 if never compacted (as
    /// etcd reports it).
    pub compact_revision: i64,
}

impl Store {
    /// The hash of the history up to `rev` (0: the current revision).
    /// [`Error::Compacted`] if `rev` is at or below the compact revision,
    /// [`Error::FutureRevision`] if above the current one (etcd's checks).
    pub fn hash_kv(&self, rev: i64) -> Result<KvHash> {
        let _quiet = self.quiesce_compaction();
        let (current, compact) = {
            let state = self.read_state();
            (state.current_rev, state.compact_rev)
        };
        if rev > 0 && compact > 0 && rev <= compact {
            return Err(Error::Compacted);
        }
        if rev > current {
            return Err(Error::FutureRevision);
        }
        let rev = if rev <= 0 { current } else { rev };
        // With no deletion pending, the records at or below `compact` are
        // exactly the ones its compaction kept; a compaction applied during
        // the scan deletes nothing until `_quiet` is dropped.
        let mut crc = Crc32c::new();
        // etcd starts with its bucket's name, so no history hashes to 0.
        crc.update(b"key");
        let end = Revision::new(rev + 1, 0).to_bytes();
        for item in self.backend.scan(&[], &end) {
            let (k, v) = item?;
            crc.update(&k);
            crc.update(&v);
        }
        Ok(KvHash {
            hash: crc.finish(),
            revision: current,
            compact_revision: if compact > 0 { compact } else { -1 },
        })
    }

    /// The hash of the whole keyspace and the current revision.
    pub fn hash(&self) -> Result<(u32, i64)> {
        let _quiet = self.quiesce_compaction();
        let current = self.current_revision();
        let mut crc = Crc32c::new();
        for item in self.backend.scan(&[], &[]) {
            let (k, v) = item?;
            if k == encoding::META_CONSISTENT_INDEX {
                continue;
            }
            crc.update(&k);
            crc.update(&v);
        }
        Ok((crc.finish(), current))
    }
}

/// CRC-32C, incremental.
pub struct Crc32c(u32);

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC32C_TABLE: [u32; 256] = crc32c_table();

impl Crc32c {
    pub fn new() -> Crc32c {
        Crc32c(!0)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        let mut c = self.0;
        for b in bytes {
            c = CRC32C_TABLE[((c ^ u32::from(*b)) & 0xff) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    pub fn finish(&self) -> u32 {
        !self.0
    }
}

impl Default for Crc32c {
    fn default() -> Self {
        Crc32c::new()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mvcc::MemoryBackend;

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C.
        let mut c = Crc32c::new();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.finish(), 0xE306_9283);
    }

    fn store_with_history() -> Store {
        let s = Store::open(Arc::new(MemoryBackend::new())).unwrap();
        for i in 0..20u64 {
            let mut t = s.write();
            t.put(format!("k{}", i % 4).as_bytes(), vec![i as u8; 8], 0)
                .unwrap();
            t.end(i + 1).unwrap();
        }
        let mut t = s.write();
        t.delete_range(b"k3", &[]).unwrap();
        t.end(100).unwrap();
        s
    }

    #[test]
    fn hash_kv_is_equal_for_equal_histories_and_checks_revisions() {
        let a = store_with_history();
        let b = store_with_history();
        assert_eq!(a.current_revision(), 22);
        let ha = a.hash_kv(0).unwrap();
        assert_eq!(ha, b.hash_kv(0).unwrap());
        assert_eq!((ha.revision, ha.compact_revision), (22, -1));
        assert_eq!(a.hash_kv(10).unwrap(), b.hash_kv(10).unwrap());
        assert_ne!(a.hash_kv(10).unwrap().hash, ha.hash);
        assert_eq!(a.hash_kv(22).unwrap().hash, ha.hash);
        assert!(matches!(a.hash_kv(23), Err(Error::FutureRevision)));

        // A change of one value changes the hash.
        let mut t = b.write();
        t.put(b"k0", b"other".to_vec(), 0).unwrap();
        t.end(200).unwrap();
        assert_ne!(b.hash_kv(22).unwrap().hash, b.hash_kv(23).unwrap().hash);
        assert_eq!(b.hash_kv(22).unwrap().hash, ha.hash);
    }

    #[test]
    fn hash_kv_after_compaction_counts_the_survivors() {
        let a = store_with_history();
        let b = store_with_history();
        a.compact(10, 300).unwrap();
        b.compact(10, 300).unwrap();
        a.wait_compacted();
        // `b` may still be deleting: hashing waits for it.
        let ha = a.hash_kv(0).unwrap();
        assert_eq!(ha, b.hash_kv(0).unwrap());
        assert_eq!(ha.compact_revision, 10);
        assert!(matches!(a.hash_kv(10), Err(Error::Compacted)));
        assert!(matches!(a.hash_kv(5), Err(Error::Compacted)));
        assert_eq!(a.hash_kv(11).unwrap().compact_revision, 10);
        // A store compacted elsewhere has another hash.
        let c = store_with_history();
        c.compact(12, 300).unwrap();
        assert_ne!(c.hash_kv(0).unwrap().hash, ha.hash);
        // The whole-keyspace hash ignores the consistent index only.
        assert_eq!(a.hash().unwrap(), b.hash().unwrap());
        a.set_consistent_index(5000).unwrap();
        assert_eq!(a.hash().unwrap(), b.hash().unwrap());
    }

    #[test]
    fn bytes_in_use_follow_writes_and_compaction() {
        let s = store_with_history();
        let used = s.size_in_use();
        assert!(used > 20 * 8, "{used}");
        s.compact(21, 300).unwrap();
        s.wait_compacted();
        let after = s.size_in_use();
        assert!(after < used / 2, "{after} of {used}");
        // Reopening counts the same bytes.
        let backend = s.backend().clone();
        drop(s);
        let s = Store::open(backend).unwrap();
        assert_eq!(s.size_in_use(), after);
        let mut t = s.write();
        t.put_record(b"\xfetest/1".to_vec(), vec![0; 10]);
        t.end(400).unwrap();
        assert_eq!(s.size_in_use(), after + 7 + 10);
        let mut t = s.write();
        t.put_record(b"\xfetest/1".to_vec(), vec![0; 4]);
        t.end(401).unwrap();
        assert_eq!(s.size_in_use(), after + 7 + 4);
        let mut t = s.write();
        t.delete_record(b"\xfetest/1".to_vec());
        t.end(402).unwrap();
        assert_eq!(s.size_in_use(), after);
    }
}
