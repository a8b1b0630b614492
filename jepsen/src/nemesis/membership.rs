//! The membership fault: remove a member from the cluster and add it back
//! (Jepsen's etcd `member` nemesis, in shape).
//!
//! Inject: pick a member that is up (seeded; `member:one` any of them,
//! `member:leader` the current leader, `member` either at random), remove it
//! with MemberRemove through another member, kill it and wipe its data dir.
//! Heal: MemberAdd it back through a surviving member and start it empty with
//! `--initial-cluster-state existing`; the heal returns once it is healthy.
//! The mechanics are the cluster's ([`Cluster::remove_member`],
//! [`Cluster::rejoin_member`]); `heal_all` adds back a member this nemesis
//! left removed, so every member answers the final reads.
//!
//! Clients pinned to the removed member see their calls fail (connection
//! refused: `fail`) or time out (`info`) until it is back: that is expected.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::{pick, Nemesis, Target};
use crate::cluster::Cluster;
use crate::error::harness;
use crate::Result;

/// Remove and re-add one member.
pub struct Membership {
    targets: Vec<Target>,
    removed: Option<usize>,
}

impl Membership {
    /// `targets`: [`Target::One`] and/or [`Target::Leader`].
    pub fn new(targets: Vec<Target>) -> Membership {
        Membership {
            targets,
            removed: None,
        }
    }
}

impl Nemesis for Membership {
    fn name(&self) -> &'static str {
        "member"
    }

    fn inject(&mut self, cluster: &Cluster, rng: &mut StdRng) -> Result<String> {
        let up: Vec<usize> = (0..cluster.len())
            .filter(|&i| cluster.is_up(i) && !cluster.is_removed(i))
            .collect();
        let target = pick(&self.targets, rng);
        let chosen = match target {
            Target::Leader => cluster.leader().or_else(|| up.choose(rng).copied()),
            _ => up.choose(rng).copied(),
        };
        let i = chosen.ok_or_else(|| harness("no member is up to remove"))?;
        let detail = cluster.remove_member(i)?;
        self.removed = Some(i);
        Ok(format!("{detail} ({target:?})").to_lowercase())
    }

    fn heal(&mut self, cluster: &Cluster) -> Result<String> {
        match self.removed.take() {
            Some(i) => cluster.rejoin_member(i),
            None => Ok("nothing to add back".into()),
        }
    }
}
