//! The leader's read lease: answering a ReadIndex without a heartbeat round.
//!
//! Raft's ReadIndex (etcd's, and raft-rs's `ReadOnlyOption::Safe`) makes the
//! leader confirm with a round of heartbeats that a quorum still follows it
//! before it answers each read. For a read served by a follower that is four
//! one-way trips: the request to the leader, the heartbeats, their replies,
//! the answer. A lease makes it two.
//!
//! Why a confirmed round can stand for a while: with `check_quorum` on, a
//! member that has heard from the leader ignores every vote request (and
//! pre-vote request) for `election_tick` ticks from then, and does not
//! campaign itself before that either (raft-rs's `in_lease`). It counts
//! those ticks on the driver's clock, which ticks at most once per heartbeat
//! interval, so the refusal lasts longer than `(election_tick - 1)`
//! heartbeat intervals after it heard from the leader. When a quorum
//! answers the heartbeats of a round the leader started at `t0`, every one of
//! them heard from it after `t0`; a new leader needs the vote of one of them,
//! so none can exist before `t0 + (election_tick - 1) × heartbeat`. The lease
//! ends one heartbeat interval earlier, at `t0 + (election_tick - 2) ×
//! heartbeat`, a margin for clocks that run at slightly different rates
//! (monotonic clocks: their offsets do not matter, only their rates). Until
//! then the leader may answer a ReadIndex with its commit index at once: no
//! write can have been acknowledged by another leader.
//!
//! What ends the lease (and disowns every round in flight):
//! - a new term, or losing the leadership;
//! - a leadership transfer: the transferee's campaign (`CampaignTransfer`)
//!   is granted votes even inside the others' leases;
//! - an applied configuration change (the quorum the lease was counted in is
//!   not the cluster's any more);
//! - a member's restart: it forgets when it last heard from the leader. The
//!   driver of a member whose log holds a term (one that may have granted a
//!   lease) therefore ignores vote requests for `election_tick` heartbeat
//!   intervals after it starts ([`LeaseRules::restart_quiet`]). A leadership
//!   transfer's campaign is let through.
//!
//! The rounds the lease is built from are the ones ReadIndex already makes:
//! the driver records when it stepped each ReadIndex (its own, or a
//! follower's) into a leader, and when raft-rs answers it, the lease runs
//! from that step. A cluster that serves no linearizable reads holds no
//! lease and needs none. `--leader-read-lease=false` turns all of this off
//! (a heartbeat round per ReadIndex, as etcd 3.4).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The lease's two durations, from the heartbeat interval and the election
/// timeout in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRules {
    /// How long a confirmed round lets the leader answer reads alone.
    pub lease: Duration,
    /// How long a member ignores vote requests after it starts.
    pub restart_quiet: Duration,
}

impl LeaseRules {
    /// The rules for a heartbeat interval and an election timeout of
    /// `election_ticks` heartbeats; `None` when the election timeout is too
    /// short (under three heartbeats) to leave a lease after the margin.
    pub fn new(heartbeat: Duration, election_ticks: usize) -> Option<LeaseRules> {
        if election_ticks < 3 {
            return None;
        }
        let ticks = u32::try_from(election_ticks).ok()?;
        Some(LeaseRules {
            lease: heartbeat * (ticks - 2),
            restart_quiet: heartbeat * ticks,
        })
    }
}

/// A ReadIndex round the leader started: in which term, and when.
#[derive(Debug, Clone, Copy)]
struct Round {
    term: u64,
    started: Instant,
}

/// The lease and the rounds that may extend it.
#[derive(Debug)]
pub struct ReadLease {
    rules: Option<LeaseRules>,
    /// The term the lease was confirmed in, and until when it holds.
    held: Option<(u64, Instant)>,
    /// Rounds in flight, by the member that asked and the request's context.
    rounds: HashMap<(u64, Vec<u8>), Round>,
    /// The last renewal round's key ([`ReadLease::renewal_started`]); it is
    /// in flight while it is in `rounds` and began during the current lease.
    renewal: Option<(u64, Vec<u8>)>,
}

impl ReadLease {
    /// A lease under `rules`; `None` turns leases off.
    pub fn new(rules: Option<LeaseRules>) -> ReadLease {
        ReadLease {
            rules,
            held: None,
            rounds: HashMap::new(),
            renewal: None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.rules.is_some()
    }

    /// Whether the lease lets the leader answer a read alone at `now` in
    /// `term`. The caller checks that it leads, transfers nothing, and has
    /// committed an entry of its term.
    pub fn holds(&self, term: u64, now: Instant) -> bool {
        matches!(self.held, Some((t, until)) if t == term && now < until)
    }

    /// The leader stepped a ReadIndex from `from` (itself for its own reads)
    /// with context `ctx` at `at`, in `term`.
    pub fn round_started(&mut self, from: u64, ctx: &[u8], term: u64, at: Instant) {
        if self.rules.is_none() {
            return;
        }
        // A round raft-rs dropped (no commit in its term yet, or a lost
        // leadership) is never answered: forget rounds older than a lease.
        if self.rounds.len() >= 1024 {
            let horizon = self.rules.map_or(Duration::ZERO, |r| r.lease);
            self.rounds
                .retain(|_, r| at.saturating_duration_since(r.started) < horizon);
        }
        self.rounds
            .insert((from, ctx.to_vec()), Round { term, started: at });
    }

    /// Like [`ReadLease::round_started`], for a round the leader starts to
    /// renew its lease ([`ReadLease::needs_renewal`]).
    pub fn renewal_started(&mut self, from: u64, ctx: &[u8], term: u64, at: Instant) {
        self.round_started(from, ctx, term, at);
        self.renewal = Some((from, ctx.to_vec()));
    }

    /// Raft answered the ReadIndex of `from` with context `ctx` in `term`: a
    /// quorum confirmed the leadership after the round started. Extends the
    /// lease from the round's start; a round from another term, or one
    /// disowned by [`ReadLease::revoke`], extends nothing.
    pub fn round_confirmed(&mut self, from: u64, ctx: &[u8], term: u64) -> bool {
        let Some(rules) = self.rules else {
            return false;
        };
        let Some(round) = self.rounds.remove(&(from, ctx.to_vec())) else {
            return false;
        };
        if round.term != term {
            return false;
        }
        let until = round.started + rules.lease;
        match self.held {
            Some((t, held)) if t == term && held >= until => {}
            _ => self.held = Some((term, until)),
        }
        true
    }

    /// Whether the lease, holding in `term`, is in its second half at `now`
    /// with no renewal in flight: time to start a round that renews it
    /// before reads have to wait. A renewal that began before the current
    /// lease (lost, and the lease renewed by other rounds since) is not in
    /// flight any more.
    pub fn needs_renewal(&self, term: u64, now: Instant) -> bool {
        let (Some(rules), Some((t, until))) = (self.rules, self.held) else {
            return false;
        };
        if t != term || until.saturating_duration_since(now) >= rules.lease / 2 {
            return false;
        }
        let current_from = until.checked_sub(rules.lease);
        let in_flight = self
            .renewal
            .as_ref()
            .and_then(|key| self.rounds.get(key))
            .is_some_and(|r| current_from.is_none_or(|from| r.started >= from));
        !in_flight
    }

    /// Whether any round is in flight (the driver looks for answers only then).
    pub fn awaiting(&self) -> bool {
        !self.rounds.is_empty()
    }

    /// Ends the lease, and disowns every round in flight: their answers
    /// extend nothing.
    pub fn revoke(&mut self) {
        self.held = None;
        self.rounds.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HB: Duration = Duration::from_millis(100);

    fn lease() -> ReadLease {
        ReadLease::new(LeaseRules::new(HB, 10))
    }

    #[test]
    fn rules_leave_a_tick_of_margin_and_need_three_ticks() {
        let r = LeaseRules::new(HB, 10).unwrap();
        assert_eq!(r.lease, Duration::from_millis(800));
        assert_eq!(r.restart_quiet, Duration::from_millis(1000));
        assert_eq!(
            LeaseRules::new(HB, 3).unwrap().lease,
            Duration::from_millis(100)
        );
        assert!(LeaseRules::new(HB, 2).is_none());
    }

    #[test]
    fn a_confirmed_round_holds_from_its_start_for_the_lease() {
        let mut l = lease();
        let t0 = Instant::now();
        assert!(!l.holds(5, t0));
        l.round_started(2, b"ctx", 5, t0);
        assert!(l.awaiting());
        // Answered much later: the lease still runs from the round's start.
        assert!(l.round_confirmed(2, b"ctx", 5));
        assert!(!l.awaiting());
        assert!(l.holds(5, t0 + Duration::from_millis(799)));
        assert!(!l.holds(5, t0 + Duration::from_millis(800)));
        // Not in another term.
        assert!(!l.holds(6, t0 + Duration::from_millis(1)));
        // Renewed in its second half.
        assert!(!l.needs_renewal(5, t0 + Duration::from_millis(400)));
        assert!(l.needs_renewal(5, t0 + Duration::from_millis(401)));
        assert!(!l.needs_renewal(6, t0 + Duration::from_millis(401)));
    }

    #[test]
    fn one_renewal_at_a_time_and_a_lost_one_blocks_nothing() {
        let mut l = lease();
        let t0 = Instant::now();
        l.round_started(1, b"a", 5, t0);
        assert!(l.round_confirmed(1, b"a", 5));
        let t1 = t0 + Duration::from_millis(500);
        assert!(l.needs_renewal(5, t1));
        l.renewal_started(1, b"r1", 5, t1);
        assert!(!l.needs_renewal(5, t1), "one in flight");
        // It is never answered; the lease lapses, and a read's round
        // renews it later.
        let t2 = t0 + Duration::from_millis(900);
        l.round_started(2, b"b", 5, t2);
        assert!(l.round_confirmed(2, b"b", 5));
        assert!(!l.needs_renewal(5, t2 + Duration::from_millis(100)));
        assert!(
            l.needs_renewal(5, t2 + Duration::from_millis(500)),
            "the lost renewal began before this lease"
        );
        // An answered renewal extends the lease and is in flight no more.
        let t3 = t2 + Duration::from_millis(500);
        l.renewal_started(1, b"r2", 5, t3);
        assert!(!l.needs_renewal(5, t3));
        assert!(l.round_confirmed(1, b"r2", 5));
        assert!(!l.needs_renewal(5, t3 + Duration::from_millis(399)));
        assert!(l.needs_renewal(5, t3 + Duration::from_millis(401)));
    }

    #[test]
    fn rounds_are_told_apart_by_member_and_context() {
        let mut l = lease();
        let t0 = Instant::now();
        l.round_started(2, b"1", 5, t0);
        assert!(!l.round_confirmed(3, b"1", 5), "another member's context");
        assert!(!l.round_confirmed(2, b"2", 5), "another context");
        assert!(!l.holds(5, t0));
        assert!(l.round_confirmed(2, b"1", 5));
        assert!(!l.round_confirmed(2, b"1", 5), "answered once");
    }

    #[test]
    fn an_older_round_does_not_shorten_the_lease() {
        let mut l = lease();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(300);
        l.round_started(2, b"a", 5, t0);
        l.round_started(2, b"b", 5, t1);
        assert!(l.round_confirmed(2, b"b", 5));
        assert!(l.round_confirmed(2, b"a", 5));
        assert!(l.holds(5, t0 + Duration::from_millis(1000)));
        assert!(!l.holds(5, t1 + Duration::from_millis(800)));
    }

    #[test]
    fn revoking_ends_the_lease_and_disowns_rounds_in_flight() {
        let mut l = lease();
        let t0 = Instant::now();
        l.round_started(1, b"a", 5, t0);
        assert!(l.round_confirmed(1, b"a", 5));
        l.round_started(1, b"b", 5, t0);
        l.revoke();
        assert!(!l.holds(5, t0));
        assert!(
            !l.round_confirmed(1, b"b", 5),
            "a round from before the revoke"
        );
        assert!(!l.awaiting());
    }

    #[test]
    fn a_round_from_another_term_extends_nothing() {
        let mut l = lease();
        let t0 = Instant::now();
        l.round_started(1, b"a", 5, t0);
        assert!(!l.round_confirmed(1, b"a", 6));
        assert!(!l.holds(6, t0));
    }

    #[test]
    fn off_means_never() {
        let mut l = ReadLease::new(None);
        let t0 = Instant::now();
        l.round_started(1, b"a", 5, t0);
        assert!(!l.awaiting());
        assert!(!l.round_confirmed(1, b"a", 5));
        assert!(!l.holds(5, t0));
    }
}
