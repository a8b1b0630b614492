//! The network faults of a cluster: partitions (grudges applied through the
//! members' fault hooks on loopback, or iptables in namespaces) and degraded
//! links (netem in namespaces, else the fault hooks).

use std::time::Duration;

use super::{http, Cluster, Quality, HTTP_TIMEOUT};
use crate::error::harness;
use crate::Result;

impl Cluster {
    /// Cuts the links of every member to the members of its grudge (symmetric).
    pub fn partition(&self, grudge: &[Vec<usize>]) -> Result<()> {
        for (i, peers) in grudge.iter().enumerate() {
            if peers.is_empty() {
                continue;
            }
            match &self.netns {
                Some(n) => n.cut(i, peers)?,
                None if self.db.fault_hooks() => {
                    if !self.is_up(i) {
                        continue;
                    }
                    let names: Vec<&str> = peers
                        .iter()
                        .map(|&p| self.members[p].name.as_str())
                        .collect();
                    let path = format!("/debug/fault/cut?peers={}", names.join(","));
                    self.hook(i, &path)?;
                }
                None => return Err(harness("partitions need fault hooks or --netns")),
            }
        }
        Ok(())
    }

    /// Heals every partition.
    pub fn heal_network(&self) -> Result<()> {
        for i in 0..self.len() {
            match &self.netns {
                Some(n) => n.heal(i)?,
                None if self.db.fault_hooks() && self.is_up(i) => {
                    self.hook(i, "/debug/fault/heal")?
                }
                None => {}
            }
        }
        Ok(())
    }

    /// POSTs to member `i`'s fault hook; a member that does not answer (just
    /// restarted, busy) is retried for a few seconds.
    fn hook(&self, i: usize, path: &str) -> Result<()> {
        let mut answer = None;
        for _ in 0..6 {
            answer = http::request(self.members[i].client, "POST", path, HTTP_TIMEOUT);
            if answer.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        match answer {
            Some((200, _)) => Ok(()),
            Some((code, body)) => Err(harness(format!(
                "{} {path}: {code} {body}",
                self.members[i].name
            ))),
            None => Err(harness(format!(
                "{} {path}: no answer",
                self.members[i].name
            ))),
        }
    }

    /// Whether the network can be degraded so: netem (or iptables, for loss)
    /// in namespaces, else the db's fault hooks.
    pub fn can_degrade(&self, q: Quality) -> bool {
        self.netns.as_ref().is_some_and(|n| n.can(q)) || self.db.fault_hooks()
    }

    /// Degrades (`Some`) or restores (`None`) every member's network: through
    /// the namespaces when they can, else through the fault hooks (keel's
    /// `/debug/fault/degrade`, which delays or drops outgoing Raft messages:
    /// peer traffic only, where netem also slows clients).
    /// Returns how it was done (for the history).
    pub fn degrade(&self, q: Option<Quality>) -> Result<&'static str> {
        let hooks = |path: &str| -> Result<()> {
            for i in 0..self.len() {
                if self.is_up(i) {
                    self.hook(i, path)?;
                }
            }
            Ok(())
        };
        match (q, &self.netns) {
            (Some(q), Some(n)) if n.can(q) => {
                n.degrade(Some(q))?;
                Ok(if n.has_netem() {
                    "tc netem"
                } else {
                    "iptables statistic match"
                })
            }
            (Some(Quality::Delay), _) if self.db.fault_hooks() => {
                hooks("/debug/fault/degrade?delay_ms=75&jitter_ms=50")?;
                Ok("fault hooks: outgoing Raft messages")
            }
            (Some(Quality::Loss), _) if self.db.fault_hooks() => {
                hooks("/debug/fault/degrade?loss=0.5")?;
                Ok("fault hooks: outgoing Raft messages")
            }
            (Some(q), _) => Err(harness(format!(
                "{q:?} needs --netns (and, for delay, the kernel's sch_netem) or a db with fault hooks"
            ))),
            (None, netns) => {
                let restored = netns.as_ref().map_or(Ok(()), |n| n.degrade(None));
                if self.db.fault_hooks() {
                    hooks("/debug/fault/degrade")?;
                }
                restored.map(|()| "restored")
            }
        }
    }
}
