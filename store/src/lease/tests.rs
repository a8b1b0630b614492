//! Scenario tests of the lessor over an in-memory MVCC store: grant rules,
//! attach / move / detach by the events of writes, revoke in one revision,
//! rebuild on open, deadlines only on the primary, promote's extension,
//! expiry reporting with its retry interval and limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::mvcc::{MemoryBackend, Store};

fn store() -> (Arc<MemoryBackend>, Store) {
    let b = Arc::new(MemoryBackend::new());
    let s = Store::open(b.clone()).unwrap();
    (b, s)
}

fn grant(l: &Lessor, s: &Store, id: LeaseId, ttl: i64, index: u64) -> Result<i64> {
    let mut txn = s.write();
    let ttl = l.grant(&mut txn, id, ttl)?;
    txn.end(index)?;
    l.granted(id, ttl);
    Ok(ttl)
}

fn put(l: &Lessor, s: &Store, key: &str, lease: LeaseId, index: u64) {
    let mut txn = s.write();
    txn.put(key.as_bytes(), b"v".to_vec(), lease).unwrap();
    let events = txn.end(index).unwrap();
    l.apply_events(&events);
}

fn keys(l: &Lessor, id: LeaseId) -> Vec<String> {
    l.lookup(id, true)
        .unwrap()
        .keys
        .into_iter()
        .map(|k| String::from_utf8(k).unwrap())
        .collect()
}

#[test]
fn grant_follows_etcd_rules() {
    let (_, s) = store();
    let l = Lessor::open(&s, 2).unwrap();
    assert_eq!(grant(&l, &s, 1, 1, 1).unwrap(), 2, "raised to the minimum");
    assert_eq!(grant(&l, &s, 2, 60, 2).unwrap(), 60);
    assert!(matches!(grant(&l, &s, 1, 5, 3), Err(Error::LeaseExists)));
    assert!(matches!(
        grant(&l, &s, 3, MAX_LEASE_TTL + 1, 4),
        Err(Error::LeaseTtlTooLarge)
    ));
    assert!(matches!(grant(&l, &s, 0, 5, 5), Err(Error::LeaseNotFound)));
    assert_eq!(s.current_revision(), 1, "grants do not make revisions");
    let mut ids = l.leases();
    ids.sort();
    assert_eq!(ids, vec![1, 2]);
}

#[test]
fn keys_attach_move_and_detach() {
    let (_, s) = store();
    let l = Lessor::open(&s, 1).unwrap();
    grant(&l, &s, 1, 10, 1).unwrap();
    grant(&l, &s, 2, 10, 2).unwrap();
    put(&l, &s, "a", 1, 3);
    put(&l, &s, "b", 1, 4);
    assert_eq!(keys(&l, 1), ["a", "b"]);
    put(&l, &s, "a", 2, 5); // another lease moves it
    assert_eq!(
        (keys(&l, 1), keys(&l, 2)),
        (vec!["b".into()], vec!["a".into()])
    );
    put(&l, &s, "b", 0, 6); // no lease detaches it
    assert!(keys(&l, 1).is_empty());
    let mut txn = s.write();
    txn.delete_range(b"a", &[]).unwrap();
    l.apply_events(&txn.end(7).unwrap());
    assert!(keys(&l, 2).is_empty());
}

#[test]
fn revoke_deletes_every_key_in_one_revision_and_survives_reopen() {
    let (b, s) = store();
    let l = Lessor::open(&s, 1).unwrap();
    grant(&l, &s, 7, 10, 1).unwrap();
    grant(&l, &s, 8, 20, 2).unwrap();
    for (i, k) in ["x", "y", "z"].iter().enumerate() {
        put(&l, &s, k, 7, 3 + i as u64);
    }
    put(&l, &s, "kept", 8, 6);
    let before = s.current_revision();
    // Reopen: the leases and their keys come back.
    let s2 = Store::open(b.clone()).unwrap();
    let l2 = Lessor::open(&s2, 1).unwrap();
    assert_eq!(keys(&l2, 7), ["x", "y", "z"]);
    assert_eq!(l2.lookup(8, false).unwrap().granted_ttl, 20);

    let mut txn = s.write();
    l.revoke(&mut txn, 7).unwrap();
    let events = txn.end(7).unwrap();
    l.apply_events(&events);
    l.revoked(7);
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.kv.mod_revision == before + 1));
    assert_eq!(s.current_revision(), before + 1);
    assert!(!l.exists(7));
    let mut txn = s.write();
    assert!(matches!(l.revoke(&mut txn, 7), Err(Error::LeaseNotFound)));
    drop(txn);

    let s3 = Store::open(b).unwrap();
    let l3 = Lessor::open(&s3, 1).unwrap();
    assert!(!l3.exists(7));
    assert_eq!(keys(&l3, 8), ["kept"]);
}

#[test]
fn only_the_primary_keeps_deadlines_and_promote_extends_them() {
    let (_, s) = store();
    let l = Lessor::open(&s, 1).unwrap();
    grant(&l, &s, 1, 5, 1).unwrap();
    assert_eq!(l.renew(1), Renew::NotPrimary);
    assert!(l
        .expired(Instant::now() + Duration::from_secs(3600), 10)
        .is_empty());
    l.promote(Duration::from_secs(1));
    let info = l.lookup(1, false).unwrap();
    assert!(info.remaining >= 5, "{info:?}");
    let now = Instant::now();
    assert!(l.expired(now + Duration::from_millis(5500), 10).is_empty());
    assert_eq!(l.expired(now + Duration::from_millis(6100), 10), vec![1]);
    // Reported once, then again only after the retry interval.
    assert!(l.expired(now + Duration::from_millis(6200), 10).is_empty());
    assert_eq!(
        l.expired(now + Duration::from_millis(6100) + REVOKE_RETRY, 10),
        vec![1]
    );
    assert_eq!(l.renew(2), Renew::NotFound);
    assert_eq!(l.renew(1), Renew::Renewed(5));
    l.demote();
    assert_eq!(l.renew(1), Renew::NotPrimary);
}

#[test]
fn expiry_is_limited_per_call_most_overdue_first() {
    let (_, s) = store();
    let l = Lessor::open(&s, 1).unwrap();
    l.promote(Duration::ZERO);
    for id in 1..=10 {
        grant(&l, &s, id, id, id as u64).unwrap();
    }
    let later = Instant::now() + Duration::from_secs(60);
    assert_eq!(l.expired(later, 3), vec![1, 2, 3]);
    assert_eq!(l.expired(later, 3), vec![4, 5, 6]);
}
