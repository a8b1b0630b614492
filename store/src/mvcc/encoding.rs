//! The on-backend format of the MVCC store.
//!
//! Layout of the one backend keyspace:
//! - history records: key = [`Revision::to_key`] (first byte below `0x80`),
//!   value = one record encoded here;
//! - records written beside the history (leases, alarms: first byte in
//!   `0x80..0xff`), in formats their owners define;
//! - meta keys, all starting with `0xff`: the consistent index and the compact
//!   revision, each an 8-byte big-endian integer.
//!
//! A record value is a tag byte, then the user key (varint length + bytes);
//! a put record goes on with `create_revision`, `version` and `lease` (zigzag
//! varints) and ends with the value bytes, unprefixed. `mod_revision` is not
//! stored: it is the record's own revision. The tag byte leaves room for a
//! later format without a migration; unknown tags are reported as corrupt.
//! Varints are LEB128 (the idea of protobuf's encoding, written here).
//!
//! Leaves out: checksums (sled has its own), compression.

use super::revision::Revision;
use super::KeyValue;
use crate::{Error, Result};

/// Meta key: the Raft index of the last applied entry persisted with a write.
pub const META_CONSISTENT_INDEX: &[u8] = b"\xffmeta/consistent_index";
/// Meta key: the revision of the last finished compaction.
pub const META_COMPACT_REVISION: &[u8] = b"\xffmeta/compact_revision";
/// The end (exclusive) of the revision keyspace, which starts at `[]`.
pub const REVISIONS_END: &[u8] = &[0x80];
/// The end (exclusive) of the keyspace of other records (leases, alarms),
/// which starts at [`REVISIONS_END`]; the meta keys come after it.
pub const RECORDS_END: &[u8] = &[0xff];

const TAG_PUT: u8 = 1;
const TAG_TOMBSTONE: u8 = 2;

/// A decoded history record.
#[derive(Debug, PartialEq, Eq)]
pub enum Record {
    Put(KeyValue),
    /// A delete of the key.
    Tombstone(Vec<u8>),
}

impl Record {
    pub fn key(&self) -> &[u8] {
        match self {
            Record::Put(kv) => &kv.key,
            Record::Tombstone(key) => key,
        }
    }
}

/// Encodes a put record (everything of `kv` but its `mod_revision`).
pub fn encode_put(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 10 * 4 + kv.key.len() + kv.value.len());
    out.push(TAG_PUT);
    put_uvarint(&mut out, kv.key.len() as u64);
    out.extend_from_slice(&kv.key);
    put_ivarint(&mut out, kv.create_revision);
    put_ivarint(&mut out, kv.version);
    put_ivarint(&mut out, kv.lease);
    out.extend_from_slice(&kv.value);
    out
}

/// Encodes a tombstone record of `key`.
pub fn encode_tombstone(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 5 + key.len());
    out.push(TAG_TOMBSTONE);
    put_uvarint(&mut out, key.len() as u64);
    out.extend_from_slice(key);
    out
}

/// Decodes the record stored at `rev`; `tombstone` is the mark of its key.
/// With `keys_only`, a put's value is left empty (and not copied).
pub fn decode_record(
    rev: Revision,
    tombstone: bool,
    bytes: &[u8],
    keys_only: bool,
) -> Result<Record> {
    let mut r = Reader { bytes, pos: 0 };
    let tag = r.byte()?;
    let key_len = r.uvarint()? as usize;
    let key = r.take(key_len)?.to_vec();
    match (tag, tombstone) {
        (TAG_TOMBSTONE, true) => r.end().map(|()| Record::Tombstone(key)),
        (TAG_PUT, false) => {
            let create_revision = r.ivarint()?;
            let version = r.ivarint()?;
            let lease = r.ivarint()?;
            let value = if keys_only {
                Vec::new()
            } else {
                r.rest().to_vec()
            };
            Ok(Record::Put(KeyValue {
                key,
                create_revision,
                mod_revision: rev.main,
                version,
                value,
                lease,
            }))
        }
        _ => Err(corrupt(format!(
            "record at {rev}: tag {tag}, tombstone mark {tombstone}"
        ))),
    }
}

/// The user key of an encoded record, without decoding the rest.
pub fn decode_record_key(bytes: &[u8]) -> Result<&[u8]> {
    let mut r = Reader { bytes, pos: 0 };
    r.byte()?;
    let key_len = r.uvarint()? as usize;
    r.take(key_len)
}

/// The key, create_revision, version and lease of a put record, without
/// copying its key or value.
pub fn decode_put_meta(bytes: &[u8]) -> Result<(&[u8], i64, i64, i64)> {
    let mut r = Reader { bytes, pos: 0 };
    if r.byte()? != TAG_PUT {
        return Err(corrupt("expected a put record".into()));
    }
    let key_len = r.uvarint()? as usize;
    let key = r.take(key_len)?;
    Ok((key, r.ivarint()?, r.ivarint()?, r.ivarint()?))
}

/// Encodes a meta integer.
pub fn encode_u64(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

/// Decodes a meta integer.
pub fn decode_u64(name: &[u8], bytes: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| {
        corrupt(format!(
            "meta key {}: {} bytes",
            String::from_utf8_lossy(name),
            bytes.len()
        ))
    })?;
    Ok(u64::from_be_bytes(arr))
}

fn corrupt(msg: String) -> Error {
    Error::Corrupt(format!("mvcc: {msg}"))
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_ivarint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| corrupt("record truncated".into()))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| corrupt("record truncated".into()))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn uvarint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(corrupt("varint too long".into()))
    }

    fn ivarint(&mut self) -> Result<i64> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn rest(&mut self) -> &'a [u8] {
        let out = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        out
    }

    fn end(&self) -> Result<()> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(corrupt("trailing bytes in record".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_roundtrip() {
        for (cr, ver, lease) in [
            (1, 1, 0),
            (2, 300, -1),
            (i64::MAX, i64::MIN, 7_587_848_412_345_678),
        ] {
            let kv = KeyValue {
                key: b"foo".to_vec(),
                create_revision: cr,
                mod_revision: 9,
                version: ver,
                value: vec![0, 1, 2, 255],
                lease,
            };
            let bytes = encode_put(&kv);
            let rev = Revision::new(9, 3);
            assert_eq!(
                decode_record(rev, false, &bytes, false).unwrap(),
                Record::Put(kv.clone())
            );
            let ko = KeyValue {
                value: vec![],
                ..kv
            };
            assert_eq!(
                decode_record(rev, false, &bytes, true).unwrap(),
                Record::Put(ko)
            );
            assert_eq!(decode_record_key(&bytes).unwrap(), b"foo");
            assert!(decode_record(rev, true, &bytes, false).is_err());
        }
    }

    #[test]
    fn tombstone_roundtrip_and_corruption() {
        let bytes = encode_tombstone(b"k");
        let rev = Revision::new(3, 0);
        assert_eq!(
            decode_record(rev, true, &bytes, false).unwrap(),
            Record::Tombstone(b"k".to_vec())
        );
        assert!(decode_record(rev, false, &bytes, false).is_err());
        assert!(decode_record(rev, true, &bytes[..2], false).is_err());
        assert!(decode_record(rev, true, &[], false).is_err());
        assert!(decode_record(
            rev,
            true,
            &[
                TAG_TOMBSTONE,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0x01
            ],
            false
        )
        .is_err());
        assert!(decode_u64(META_CONSISTENT_INDEX, &[1, 2]).is_err());
        assert_eq!(
            decode_u64(META_CONSISTENT_INDEX, &encode_u64(42)).unwrap(),
            42
        );
    }
}
