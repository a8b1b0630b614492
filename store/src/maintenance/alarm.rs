//! Alarms: the replicated set of raised alarms (etcd's `v3alarm` store) and
//! what they forbid.
//!
//! An alarm is a (member id, alarm type) pair. Every change goes through Raft
//! (`InternalRequest.alarm`) and is applied by [`crate::apply`] on every
//! member, so every member refuses the same requests. Each raised alarm is one
//! record `\xfealarm/<type: 4 bytes BE><member: 8 bytes BE>` (empty value) in
//! the MVCC backend's keyspace, written in the same batch as the consistent
//! index of its entry, and loaded on start.
//!
//! What an alarm forbids, checked in apply (etcd's capped and corrupt
//! appliers): under NOSPACE, puts, txns with a put in either top-level branch
//! and lease grants fail with "database space exceeded"; under CORRUPT, every
//! write (puts, deletes, txns, compactions, lease grants and revokes) fails
//! with "corrupt cluster". Reads are served either way.
//!
//! Invariants: the set changes only in apply; raising an alarm that is
//! already raised, or clearing one that is not, writes nothing.

use std::collections::BTreeSet;
use std::sync::Mutex;

use keel_proto::etcdserverpb::alarm_request::AlarmAction;
use keel_proto::etcdserverpb::{
    request_op, AlarmMember, AlarmRequest, AlarmResponse, AlarmType, TxnRequest,
};
use keel_proto::peer::internal_request::Request;

use crate::error::{Error, Result};
use crate::mvcc::{Store, WriteTxn};

const RECORD_PREFIX: &[u8] = b"\xfealarm/";
const RECORD_END: &[u8] = b"\xfealarm0";

fn record_key(alarm: i32, member: u64) -> Vec<u8> {
    let mut k = RECORD_PREFIX.to_vec();
    k.extend_from_slice(&alarm.to_be_bytes());
    k.extend_from_slice(&member.to_be_bytes());
    k
}

fn parse_record_key(k: &[u8]) -> Result<(i32, u64)> {
    let rest = k
        .strip_prefix(RECORD_PREFIX)
        .filter(|r| r.len() == 12)
        .ok_or_else(|| Error::Corrupt(format!("alarm record with key {k:?}")))?;
    let alarm = i32::from_be_bytes(rest[..4].try_into().expect("4 bytes"));
    let member = u64::from_be_bytes(rest[4..].try_into().expect("8 bytes"));
    Ok((alarm, member))
}

/// The raised alarms. `Send + Sync`: share it behind an `Arc`.
#[derive(Debug, Default)]
pub struct Alarms {
    /// (alarm type, member id), ordered by type then member.
    set: Mutex<BTreeSet<(i32, u64)>>,
}

impl Alarms {
    /// The alarms recorded in `store`.
    pub fn open(store: &Store) -> Result<Alarms> {
        let mut set = BTreeSet::new();
        for item in store.backend().scan(RECORD_PREFIX, RECORD_END) {
            let (k, _) = item?;
            set.insert(parse_record_key(&k)?);
        }
        if !set.is_empty() {
            tracing::warn!(alarms = ?set, "alarms raised before the restart are still raised");
        }
        Ok(Alarms {
            set: Mutex::new(set),
        })
    }

    /// Reads the alarms recorded in `store` again (after the store's state was
    /// replaced, e.g. by installing a snapshot).
    pub fn reload(&self, store: &Store) -> Result<()> {
        let fresh = Alarms::open(store)?;
        let set = std::mem::take(&mut *fresh.lock());
        *self.lock() = set;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(i32, u64)>> {
        self.set.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The alarms of type `alarm` (every alarm for NONE), by type and member.
    pub fn get(&self, alarm: i32) -> Vec<AlarmMember> {
        self.lock()
            .iter()
            .filter(|(a, _)| alarm == AlarmType::None as i32 || *a == alarm)
            .map(|&(a, m)| AlarmMember {
                member_id: m,
                alarm: a,
            })
            .collect()
    }

    /// Whether any member has raised `alarm`.
    pub fn is_raised(&self, alarm: AlarmType) -> bool {
        self.lock().iter().any(|(a, _)| *a == alarm as i32)
    }

    /// Whether any alarm is raised.
    pub fn any(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Applies an alarm request in `txn` (GET reads, ACTIVATE raises,
    /// DEACTIVATE clears), answering as etcd's applier does: the alarms of
    /// the type asked for, or the one alarm raised or cleared. Call
    /// [`Alarms::settle`] once `txn` has committed.
    pub fn apply(&self, txn: &mut WriteTxn<'_>, r: &AlarmRequest) -> (AlarmResponse, Change) {
        let mut resp = AlarmResponse::default();
        let key = (r.alarm, r.member_id);
        let member = AlarmMember {
            member_id: r.member_id,
            alarm: r.alarm,
        };
        let change = match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Get) => {
                resp.alarms = self.get(r.alarm);
                Change::None
            }
            // An action etcd does not know gets an empty answer, as from etcd.
            Err(_) => Change::None,
            Ok(AlarmAction::Activate) => {
                resp.alarms.push(member);
                if self.lock().contains(&key) {
                    Change::None
                } else {
                    txn.put_record(record_key(r.alarm, r.member_id), Vec::new());
                    Change::Raise(key)
                }
            }
            Ok(AlarmAction::Deactivate) => {
                if self.lock().contains(&key) {
                    resp.alarms.push(member);
                    txn.delete_record(record_key(r.alarm, r.member_id));
                    Change::Clear(key)
                } else {
                    Change::None
                }
            }
        };
        (resp, change)
    }

    /// Makes a change prepared by [`Alarms::apply`] visible.
    pub fn settle(&self, change: Change) {
        match change {
            Change::None => {}
            Change::Raise((alarm, member)) => {
                let first = !self.lock().iter().any(|(a, _)| *a == alarm);
                self.lock().insert((alarm, member));
                if first {
                    tracing::warn!(
                        alarm = alarm_name(alarm),
                        from = format!("{member:x}"),
                        "alarm raised"
                    );
                }
            }
            Change::Clear((alarm, member)) => {
                self.lock().remove(&(alarm, member));
                if !self.lock().iter().any(|(a, _)| *a == alarm) {
                    tracing::warn!(
                        alarm = alarm_name(alarm),
                        from = format!("{member:x}"),
                        "alarm disarmed"
                    );
                }
            }
        }
    }

    /// The error the raised alarms give `req` in apply, if any (CORRUPT
    /// first, then NOSPACE, as etcd stacks its appliers).
    pub fn refuse(&self, req: &Request) -> Option<Error> {
        let (corrupt, nospace) = {
            let set = self.lock();
            if set.is_empty() {
                return None;
            }
            (
                set.iter().any(|(a, _)| *a == AlarmType::Corrupt as i32),
                set.iter().any(|(a, _)| *a == AlarmType::Nospace as i32),
            )
        };
        if corrupt
            && matches!(
                req,
                Request::Put(_)
                    | Request::DeleteRange(_)
                    | Request::Txn(_)
                    | Request::Compaction(_)
                    | Request::LeaseGrant(_)
                    | Request::LeaseRevoke(_)
            )
        {
            return Some(Error::CorruptCluster);
        }
        if nospace {
            let refused = match req {
                Request::Put(_) | Request::LeaseGrant(_) => true,
                Request::Txn(t) => txn_puts(t),
                _ => false,
            };
            if refused {
                return Some(Error::NoSpace);
            }
        }
        None
    }

    /// Status strings of the raised alarms (see [`alarm_string`]).
    pub fn strings(&self) -> Vec<String> {
        self.get(AlarmType::None as i32)
            .iter()
            .map(alarm_string)
            .collect()
    }
}

/// A change of the set prepared in a write transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Change {
    None,
    Raise((i32, u64)),
    Clear((i32, u64)),
}

/// Whether a txn has a put in either top-level branch (etcd's capped applier
/// costs only those).
fn txn_puts(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(t.failure.iter())
        .any(|op| matches!(op.request, Some(request_op::Request::RequestPut(_))))
}

/// The alarm type's name, or its number when unknown.
pub fn alarm_name(alarm: i32) -> String {
    match AlarmType::try_from(alarm) {
        Ok(t) => t.as_str_name().to_string(),
        Err(_) => alarm.to_string(),
    }
}

/// An alarm as etcd writes it in `StatusResponse.errors` and etcdctl prints it:
/// the protobuf compact text form, where zero values are left out
/// (`memberID:123 alarm:NOSPACE `, `alarm:CORRUPT `).
pub fn alarm_string(m: &AlarmMember) -> String {
    let mut s = String::new();
    if m.member_id != 0 {
        s.push_str(&format!("memberID:{} ", m.member_id));
    }
    if m.alarm != 0 {
        s.push_str(&format!("alarm:{} ", alarm_name(m.alarm)));
    }
    s
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keel_proto::etcdserverpb::{PutRequest, RangeRequest, RequestOp};

    use super::*;
    use crate::mvcc::MemoryBackend;

    fn req(action: AlarmAction, member: u64, alarm: AlarmType) -> AlarmRequest {
        AlarmRequest {
            action: action as i32,
            member_id: member,
            alarm: alarm as i32,
        }
    }

    fn run(alarms: &Alarms, store: &Store, r: AlarmRequest, index: u64) -> AlarmResponse {
        let mut txn = store.write();
        let (resp, change) = alarms.apply(&mut txn, &r);
        txn.end(index).unwrap();
        alarms.settle(change);
        resp
    }

    #[test]
    fn raise_list_clear_and_reload() {
        let store = Store::open(Arc::new(MemoryBackend::new())).unwrap();
        let alarms = Alarms::open(&store).unwrap();
        let r = run(
            &alarms,
            &store,
            req(AlarmAction::Activate, 7, AlarmType::Nospace),
            1,
        );
        assert_eq!(r.alarms.len(), 1);
        run(
            &alarms,
            &store,
            req(AlarmAction::Activate, 7, AlarmType::Nospace),
            2,
        );
        run(
            &alarms,
            &store,
            req(AlarmAction::Activate, 0, AlarmType::Corrupt),
            3,
        );
        run(
            &alarms,
            &store,
            req(AlarmAction::Activate, 3, AlarmType::Nospace),
            4,
        );
        let all = run(
            &alarms,
            &store,
            req(AlarmAction::Get, 0, AlarmType::None),
            5,
        );
        assert_eq!(
            all.alarms
                .iter()
                .map(|m| (m.member_id, m.alarm))
                .collect::<Vec<_>>(),
            vec![(3, 1), (7, 1), (0, 2)]
        );
        assert_eq!(alarms.get(AlarmType::Corrupt as i32).len(), 1);
        assert_eq!(
            alarms.strings(),
            vec![
                "memberID:3 alarm:NOSPACE ",
                "memberID:7 alarm:NOSPACE ",
                "alarm:CORRUPT "
            ]
        );
        // No revision is used by alarms.
        assert_eq!(store.current_revision(), 1);
        let reopened = Alarms::open(&store).unwrap();
        assert_eq!(reopened.get(0), alarms.get(0));
        let other = Alarms::default();
        other.reload(&store).unwrap();
        assert_eq!(other.get(0), alarms.get(0));

        let r = run(
            &alarms,
            &store,
            req(AlarmAction::Deactivate, 9, AlarmType::Nospace),
            6,
        );
        assert!(r.alarms.is_empty());
        let r = run(
            &alarms,
            &store,
            req(AlarmAction::Deactivate, 7, AlarmType::Nospace),
            7,
        );
        assert_eq!(r.alarms.len(), 1);
        assert!(alarms.is_raised(AlarmType::Nospace));
        run(
            &alarms,
            &store,
            req(AlarmAction::Deactivate, 3, AlarmType::Nospace),
            8,
        );
        assert!(!alarms.is_raised(AlarmType::Nospace));
        assert!(alarms.any());
        assert_eq!(Alarms::open(&store).unwrap().get(0).len(), 1);
        assert_eq!(store.consistent_index(), 8);
    }

    #[test]
    fn what_each_alarm_refuses() {
        let store = Store::open(Arc::new(MemoryBackend::new())).unwrap();
        let alarms = Alarms::open(&store).unwrap();
        let put = Request::Put(PutRequest {
            key: b"k".to_vec(),
            ..Default::default()
        });
        let op = |r| RequestOp { request: Some(r) };
        let txn_put = Request::Txn(TxnRequest {
            failure: vec![op(request_op::Request::RequestPut(PutRequest::default()))],
            ..Default::default()
        });
        let txn_read = Request::Txn(TxnRequest {
            success: vec![op(request_op::Request::RequestRange(
                RangeRequest::default(),
            ))],
            ..Default::default()
        });
        let delete = Request::DeleteRange(Default::default());
        assert!(alarms.refuse(&put).is_none());
        run(
            &alarms,
            &store,
            req(AlarmAction::Activate, 1, AlarmType::Nospace),
            1,
        );
        assert!(matches!(alarms.refuse(&put), Some(Error::NoSpace)));
        assert!(matches!(alarms.refuse(&txn_put), Some(Error::NoSpace)));
        assert!(alarms.refuse(&txn_read).is_none());
        assert!(alarms.refuse(&delete).is_none());
        assert!(matches!(
            alarms.refuse(&Request::LeaseGrant(Default::default())),
            Some(Error::NoSpace)
        ));
        run(
            &alarms,
            &store,
            req(AlarmAction::Activate, 0, AlarmType::Corrupt),
            2,
        );
        assert!(matches!(alarms.refuse(&put), Some(Error::CorruptCluster)));
        assert!(matches!(
            alarms.refuse(&delete),
            Some(Error::CorruptCluster)
        ));
        assert!(matches!(
            alarms.refuse(&txn_read),
            Some(Error::CorruptCluster)
        ));
        assert!(alarms
            .refuse(&Request::Alarm(AlarmRequest::default()))
            .is_none());
    }
}
