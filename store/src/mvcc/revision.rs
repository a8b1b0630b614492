//! Revisions: the logical clock of the MVCC store.
//!
//! A [`Revision`] is `{main, sub}`: `main` is the store revision that a write
//! transaction commits at, `sub` numbers the changes inside that transaction
//! (0, 1, 2...). Revisions order by `main`, then `sub`.
//!
//! On the backend a revision is the key of one history record: 8 bytes of
//! `main` then 8 bytes of `sub`, both big-endian, so that byte order is
//! revision order and a range of revisions is a range scan. A tombstone (a
//! delete) carries one more byte, [`TOMBSTONE_MARK`], after the 16; etcd marks
//! tombstones the same way (its keys also hold a `_` separator, which we leave
//! out). Only non-negative revisions are encoded; their first byte is below
//! `0x80`, which leaves `0x80..` free for the store's meta keys.

use crate::{Error, Result};

/// Length of an encoded revision without the tombstone mark.
pub const REVISION_LEN: usize = 16;
/// The byte appended to a tombstone's revision key.
pub const TOMBSTONE_MARK: u8 = b't';

/// A point in the store's history: `main` is the transaction's revision,
/// `sub` the change's position inside it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }

    /// The 16 big-endian bytes of this revision.
    pub fn to_bytes(self) -> [u8; REVISION_LEN] {
        let mut out = [0u8; REVISION_LEN];
        out[..8].copy_from_slice(&self.main.to_be_bytes());
        out[8..].copy_from_slice(&self.sub.to_be_bytes());
        out
    }

    /// The backend key of this revision: 16 bytes, or 17 with the tombstone mark.
    pub fn to_key(self, tombstone: bool) -> Vec<u8> {
        let mut key = Vec::with_capacity(REVISION_LEN + 1);
        key.extend_from_slice(&self.to_bytes());
        if tombstone {
            key.push(TOMBSTONE_MARK);
        }
        key
    }

    /// Decodes a backend key made by [`Revision::to_key`]: the revision and
    /// whether it is a tombstone.
    pub fn from_key(key: &[u8]) -> Result<(Revision, bool)> {
        let tombstone = match key.len() {
            REVISION_LEN => false,
            17 if key[REVISION_LEN] == TOMBSTONE_MARK => true,
            _ => return Err(Error::Corrupt(format!("mvcc: bad revision key {key:x?}"))),
        };
        let main = i64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
        let sub = i64::from_be_bytes(key[8..16].try_into().expect("8 bytes"));
        Ok((Revision { main, sub }, tombstone))
    }
}

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_roundtrip_and_order() {
        let revs = [
            Revision::new(0, 0),
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(1, 256),
            Revision::new(2, 0),
            Revision::new(256, 0),
            Revision::new(i64::MAX, i64::MAX),
        ];
        for w in revs.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].to_key(true) < w[1].to_key(false));
        }
        for r in revs {
            assert_eq!(Revision::from_key(&r.to_key(false)).unwrap(), (r, false));
            assert_eq!(Revision::from_key(&r.to_key(true)).unwrap(), (r, true));
            assert!(r.to_key(false)[0] < 0x80);
        }
        assert!(Revision::from_key(b"short").is_err());
        let mut bad = Revision::new(1, 1).to_key(false);
        bad.push(b'x');
        assert!(Revision::from_key(&bad).is_err());
    }
}
