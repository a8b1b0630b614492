//! Scenario tests of the member list: etcd's validation rules, persistence
//! with the consistent index, the strict reconfiguration rules, and the
//! learner readiness rule.

use std::sync::Arc;

use super::api::learner_ready;
use super::*;
use crate::consensus::Replication;
use crate::mvcc::MemoryBackend;

fn store() -> Arc<Store> {
    Arc::new(Store::open(Arc::new(MemoryBackend::new())).unwrap())
}

fn member(id: u64, name: &str, port: u16) -> Member {
    Member {
        id,
        name: name.into(),
        peer_urls: vec![format!("http://127.0.0.1:{port}")],
        client_urls: Vec::new(),
        is_learner: false,
    }
}

fn learner(id: u64, port: u16) -> Member {
    Member {
        is_learner: true,
        name: String::new(),
        ..member(id, "", port)
    }
}

/// A cluster of members 1, 2, 3 (all started), as member `local` sees it.
fn three(local: u64) -> (Arc<Store>, Membership) {
    let s = store();
    Membership::bootstrap(
        &s,
        &[member(1, "a", 1), member(2, "b", 2), member(3, "c", 3)],
    )
    .unwrap();
    let m = Membership::open(&s, local).unwrap();
    (s, m)
}

/// Applies `c` at `index` the way the applier does.
fn apply(s: &Store, m: &Membership, index: u64, c: Change) -> Result<()> {
    let mut txn = s.write();
    let staged = m.apply(&mut txn, &c)?;
    txn.end(index)?;
    m.commit(staged);
    Ok(())
}

#[test]
fn bootstrap_writes_records_without_a_revision_or_an_index() {
    let (s, m) = three(1);
    assert_eq!(s.current_revision(), 1);
    assert_eq!(s.consistent_index(), 0);
    assert!(Membership::has_records(&s).unwrap());
    let ids: Vec<u64> = m.members().iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(m.conf_state(), Some((vec![1, 2, 3], vec![])));
    assert_eq!(m.peers().keys().copied().collect::<Vec<_>>(), vec![2, 3]);
    assert!(Membership::open(&store(), 1)
        .unwrap()
        .conf_state()
        .is_none());
}

#[test]
fn changes_follow_etcds_rules() {
    let (s, m) = three(1);
    let mut index = 10;
    let mut run = |c: Change| {
        index += 1;
        apply(&s, &m, index, c).map_err(|e| e.to_string())
    };
    // Adding: a taken id, a taken peer URL.
    assert_eq!(
        run(Change::Add(member(2, "", 9))).unwrap_err(),
        "etcdserver: member ID already exist"
    );
    assert_eq!(
        run(Change::Add(member(4, "", 3))).unwrap_err(),
        "etcdserver: Peer URLs already exists"
    );
    // One learner at most (etcd 3.4).
    run(Change::Add(learner(4, 4))).unwrap();
    assert_eq!(
        run(Change::Add(learner(5, 5))).unwrap_err(),
        "etcdserver: too many learner members in cluster"
    );
    assert_eq!(m.conf_state(), Some((vec![1, 2, 3], vec![4])));
    // Promoting: only a learner that exists.
    assert_eq!(
        run(Change::Promote(2)).unwrap_err(),
        "etcdserver: can only promote a learner member"
    );
    assert_eq!(
        run(Change::Promote(9)).unwrap_err(),
        "etcdserver: member not found"
    );
    run(Change::Promote(4)).unwrap();
    assert_eq!(m.conf_state(), Some((vec![1, 2, 3, 4], vec![])));
    // Updating: not onto another member's URL; onto its own is fine.
    assert_eq!(
        run(Change::Update {
            id: 4,
            peer_urls: vec!["http://127.0.0.1:1".into()]
        })
        .unwrap_err(),
        "etcdserver: Peer URLs already exists"
    );
    run(Change::Update {
        id: 4,
        peer_urls: vec!["http://127.0.0.1:4".into(), "http://127.0.0.1:44".into()],
    })
    .unwrap();
    assert_eq!(m.peer_urls(4).unwrap().len(), 2);
    // Removing: a removed id never comes back.
    run(Change::Remove(4)).unwrap();
    assert!(m.is_removed(4));
    for c in [
        Change::Remove(4),
        Change::Add(member(4, "", 40)),
        Change::Update {
            id: 4,
            peer_urls: vec![],
        },
        Change::Remove(9),
    ] {
        assert_eq!(run(c).unwrap_err(), "etcdserver: member not found");
    }
    // Publishing: a member's name and client URLs; unknown members ignored.
    run(Change::Publish {
        id: 2,
        name: "b2".into(),
        client_urls: vec!["http://127.0.0.1:2379".into()],
    })
    .unwrap();
    run(Change::Publish {
        id: 4,
        name: "gone".into(),
        client_urls: vec![],
    })
    .unwrap();
    assert_eq!(m.member(2).unwrap().name, "b2");
    assert!(m.member(4).is_none());
    // None of it made a revision.
    assert_eq!(s.current_revision(), 1);
}

#[test]
fn the_list_is_persisted_with_the_index_and_reloaded() {
    let (s, m) = three(3);
    apply(&s, &m, 7, Change::Add(learner(4, 4))).unwrap();
    assert_eq!(s.consistent_index(), 7);
    let v = m.version();
    apply(&s, &m, 8, Change::Remove(3)).unwrap();
    assert!(m.version() > v);
    assert!(m.local_removed(), "member 3 applied its own removal");
    // A refused change writes nothing (the caller records the index alone).
    assert!(apply(&s, &m, 9, Change::Remove(3)).is_err());
    assert_eq!(s.consistent_index(), 8);

    let again = Membership::open(&s, 3).unwrap();
    assert_eq!(again.members(), m.members());
    assert!(again.is_removed(3));
    assert!(again.local_removed());
    assert_eq!(again.conf_state(), Some((vec![1, 2], vec![4])));
    let other = Membership::open(&s, 1).unwrap();
    assert!(!other.local_removed());
    other.reload(&s).unwrap();
    assert_eq!(other.members().len(), 3);
}

#[test]
fn remotes_fill_in_until_the_list_knows_a_peer() {
    let m = Membership::open(&store(), 9).unwrap();
    assert!(m.peers().is_empty());
    let v = m.version();
    m.set_remotes(
        [
            (1, vec!["http://r:1".to_string()]),
            (9, vec!["http://r:9".into()]),
        ]
        .into_iter()
        .collect(),
    );
    assert!(m.version() > v);
    assert_eq!(m.peers().keys().copied().collect::<Vec<_>>(), vec![1]);
    assert_eq!(m.peer_urls(1).unwrap(), vec!["http://r:1".to_string()]);
}

#[test]
fn strict_reconfiguration_rules() {
    let (s, m) = three(1);
    assert!(m.ready_to_add_voting());
    assert!(m.ready_to_remove_voting(3));
    assert!(m.ready_to_promote());
    // Two unstarted voters out of five: adding a sixth breaks the quorum rule.
    apply(&s, &m, 5, Change::Add(member(4, "", 4))).unwrap();
    apply(&s, &m, 6, Change::Add(member(5, "", 5))).unwrap();
    assert!(!m.ready_to_add_voting(), "3 started of 6");
    assert!(m.ready_to_remove_voting(4), "3 started of 4");
    assert!(!m.ready_to_remove_voting(1), "2 started of 4");
    assert!(m.ready_to_promote(), "3 + 1 started of 6");
    // One started member adding a second: allowed (etcd's restore case).
    let one = store();
    Membership::bootstrap(&one, &[member(1, "a", 1)]).unwrap();
    assert!(Membership::open(&one, 1).unwrap().ready_to_add_voting());
}

#[test]
fn new_ids_never_collide() {
    let (s, m) = three(1);
    let urls = vec!["http://127.0.0.1:7".to_string()];
    let a = m.new_member_id(&urls, 42);
    assert!(a != 0 && m.member(a).is_none());
    apply(&s, &m, 3, Change::Add(member(a, "", 7))).unwrap();
    apply(&s, &m, 4, Change::Remove(a)).unwrap();
    for _ in 0..100 {
        let b = m.new_member_id(&urls, 42);
        assert!(![1, 2, 3, a].contains(&b));
    }
}

#[test]
fn peer_urls_are_checked_as_etcd_checks_them() {
    let ok = parse_peer_urls(&["http://b:2".into(), "https://a:1".into()]).unwrap();
    assert_eq!(
        ok,
        vec!["http://b:2".to_string(), "https://a:1".to_string()]
    );
    assert!(parse_peer_urls(&["http://[::1]:2380".into()]).is_ok());
    for bad in [
        "",
        "a:1",
        "ftp://a:1",
        "http://a",
        "http://a:1/x",
        "http://a:1/",
    ] {
        assert!(
            matches!(parse_peer_urls(&[bad.into()]), Err(Error::MemberBadUrls)),
            "{bad}"
        );
    }
    assert!(parse_peer_urls(&[]).is_err());
}

#[test]
fn a_learner_is_ready_at_ninety_percent_of_the_leader() {
    let p = Replication {
        leader: 1,
        matched: [(1, 100), (2, 100), (4, 89)].into_iter().collect(),
    };
    assert_eq!(
        learner_ready(&p, 4).unwrap_err().to_string(),
        "etcdserver: can only promote a learner member which is in sync with leader"
    );
    let p = Replication {
        matched: [(1, 100), (4, 90)].into_iter().collect(),
        ..p
    };
    assert!(learner_ready(&p, 4).is_ok());
    assert!(learner_ready(&p, 7).is_ok(), "unknown: apply decides");
}

#[test]
fn a_restored_backup_gets_the_new_clusters_list() {
    let (s, m) = three(1);
    apply(&s, &m, 4, Change::Remove(3)).unwrap();
    Membership::replace_all(&s, &[member(7, "x", 7), member(8, "y", 8)]).unwrap();
    assert_eq!(s.consistent_index(), 4);
    let fresh = Membership::open(&s, 7).unwrap();
    assert_eq!(fresh.conf_state(), Some((vec![7, 8], vec![])));
    assert!(!fresh.is_removed(3), "the old cluster's removed ids go too");
}
