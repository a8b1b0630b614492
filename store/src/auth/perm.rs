//! Key permissions as intervals, and the containment test every permission
//! check ends in.
//!
//! A permission (or a request) names a key, a range `[key, range_end)`, or,
//! with `range_end` = `"\0"`, every key from `key` on. As etcd 3.4 does (its
//! range permission cache), the intervals a user's roles grant for one access
//! type are merged, and a request is allowed when its whole interval lies in
//! one merged interval: two adjacent grants together allow a request that
//! spans both, and a single key `k` is the interval `[k, k"\0")`.

use keel_proto::authpb::{permission::Type as PermType, Permission};

/// A half-open key interval; `end: None` is unbounded (from-key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

impl Interval {
    /// The interval `key` and `range_end` denote, with etcd's conventions:
    /// empty `range_end` is the single key, `"\0"` is from `key` on. An
    /// empty or inverted range is treated as the single key.
    pub fn of(key: &[u8], range_end: &[u8]) -> Interval {
        if range_end == [0] {
            return Interval {
                start: key.to_vec(),
                end: None,
            };
        }
        if range_end.is_empty() || range_end <= key {
            let mut end = key.to_vec();
            end.push(0);
            return Interval {
                start: key.to_vec(),
                end: Some(end),
            };
        }
        Interval {
            start: key.to_vec(),
            end: Some(range_end.to_vec()),
        }
    }

    /// Whether `self` lies wholly inside `other`.
    fn within(&self, other: &Interval) -> bool {
        if self.start < other.start {
            return false;
        }
        match (&self.end, &other.end) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => a <= b,
        }
    }
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    Write,
}

/// Whether permission type `t` grants `need`.
fn grants(t: i32, need: Need) -> bool {
    match PermType::try_from(t) {
        Ok(PermType::Readwrite) => true,
        Ok(PermType::Read) => need == Need::Read,
        Ok(PermType::Write) => need == Need::Write,
        Err(_) => false,
    }
}

/// Merges overlapping or touching intervals; the result is sorted and
/// disjoint.
pub fn merge(mut ivs: Vec<Interval>) -> Vec<Interval> {
    ivs.sort_by(|a, b| a.start.cmp(&b.start));
    let mut out: Vec<Interval> = Vec::with_capacity(ivs.len());
    for iv in ivs {
        if let Some(last) = out.last_mut() {
            let touches = match &last.end {
                None => true,
                Some(e) => iv.start <= *e,
            };
            if touches {
                last.end = match (last.end.take(), iv.end) {
                    (None, _) | (_, None) => None,
                    (Some(a), Some(b)) => Some(a.max(b)),
                };
                continue;
            }
        }
        out.push(iv);
    }
    out
}

/// Whether `perms` (all of one user's roles' permissions) allow `need` on
/// `[key, range_end)`.
pub fn allowed<'a>(
    perms: impl Iterator<Item = &'a Permission>,
    need: Need,
    key: &[u8],
    range_end: &[u8],
) -> bool {
    let granted: Vec<Interval> = perms
        .filter(|p| grants(p.perm_type, need))
        .map(|p| Interval::of(&p.key, &p.range_end))
        .collect();
    let want = Interval::of(key, range_end);
    merge(granted).iter().any(|iv| want.within(iv))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(t: PermType, key: &str, end: &str) -> Permission {
        Permission {
            perm_type: t as i32,
            key: key.as_bytes().to_vec(),
            range_end: end.as_bytes().to_vec(),
        }
    }

    fn ok(perms: &[Permission], need: Need, key: &str, end: &str) -> bool {
        allowed(perms.iter(), need, key.as_bytes(), end.as_bytes())
    }

    #[test]
    fn single_key_range_prefix_and_from_key() {
        let perms = vec![
            perm(PermType::Read, "/app/", "/app0"),
            perm(PermType::Write, "k1", ""),
            perm(PermType::Read, "from", "\0"),
            perm(PermType::Readwrite, "/x", "/z"),
        ];
        // Prefix: keys and sub-ranges inside it, not the range past it.
        assert!(ok(&perms, Need::Read, "/app/a", ""));
        assert!(ok(&perms, Need::Read, "/app/", "/app0"));
        assert!(!ok(&perms, Need::Read, "/app/", "/app1"));
        assert!(!ok(&perms, Need::Write, "/app/a", ""));
        assert!(!ok(&perms, Need::Read, "/other", ""));
        // Single key: that key only.
        assert!(ok(&perms, Need::Write, "k1", ""));
        assert!(!ok(&perms, Need::Write, "k10", ""));
        assert!(!ok(&perms, Need::Write, "k1", "k2"));
        // From-key: any key or range at or after it, a from-key request too.
        assert!(ok(&perms, Need::Read, "zzz", ""));
        assert!(ok(&perms, Need::Read, "from", "\0"));
        assert!(ok(&perms, Need::Read, "g", "\0"));
        assert!(!ok(&perms, Need::Read, "a", "\0"));
        // READWRITE grants both.
        assert!(ok(&perms, Need::Read, "/y", ""));
        assert!(ok(&perms, Need::Write, "/x", "/z"));
        assert!(!ok(&perms, Need::Write, "/x", "/z0"));
    }

    #[test]
    fn adjacent_grants_merge() {
        let perms = vec![
            perm(PermType::Read, "a", "c"),
            perm(PermType::Read, "c", "e"),
            perm(PermType::Read, "e", ""),
        ];
        assert!(ok(&perms, Need::Read, "a", "e"));
        // [a, e) + the key e = [a, e"\0").
        assert!(ok(&perms, Need::Read, "b", "e\0"));
        assert!(!ok(&perms, Need::Read, "b", "f"));
        assert!(!ok(&[], Need::Read, "a", ""));
    }

    #[test]
    fn merge_keeps_unbounded_and_sorts() {
        let m = merge(vec![
            Interval::of(b"m", b"\0"),
            Interval::of(b"a", b"b"),
            Interval::of(b"n", b"o"),
        ]);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], Interval::of(b"a", b"b"));
        assert_eq!(m[1].end, None);
    }
}
