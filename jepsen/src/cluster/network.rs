//! The network faults of a cluster: partitions (grudges applied through the
//! members' fault hooks on loopback, or iptables in namespaces) and degraded
//! links (netem, namespaces only).

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

    /// Degrades or restores every member's network (namespaces only).
    pub fn degrade(&self, q: Option<Quality>) -> Result<()> {
        match &self.netns {
            Some(n) => n.degrade(q),
            None if q.is_none() => Ok(()),
            None => Err(harness("delay and loss need --netns")),
        }
    }
}
