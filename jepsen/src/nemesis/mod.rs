//! Nemeses: the faults a run injects, each behind [`Nemesis`] (`inject` starts
//! one fault, `heal` undoes it), and the schedule that drives them
//! ([`schedule`]). Every start and end is recorded into the history as a
//! nemesis line, so the report can shade the windows.
//!
//! Faults, named on the command line as `kind` or `kind:target`:
//!
//! | name | fault | heal |
//! |---|---|---|
//! | `kill[:one\|leader\|majority]` | SIGKILL the member(s) | restart them |
//! | `pause[:one\|leader\|majority]` | SIGSTOP | SIGCONT |
//! | `partition[:one\|leader\|halves\|ring\|bridge]` | cut peer links | heal all links |
//! | `delay` | 75 ms ± 50 ms on every member (netem, or keel's fault hooks) | remove it |
//! | `loss` | 50 % loss on every member (netem, iptables, or keel's fault hooks) | remove it |
//! | `member[:one\|leader]` | MemberRemove a member, kill it, wipe its data | MemberAdd it back, start it empty |
//!
//! Without a target, each injection picks one at random (seeded). Partitions
//! follow Jepsen's shapes (jepsen.nemesis: `partition-random-node`,
//! `partition-random-halves`, `partition-majorities-ring`, bridge).

pub mod membership;
pub mod netem;
pub mod partition;
pub mod process;
pub mod schedule;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::cluster::{Cluster, Quality};
use crate::error::harness;
use crate::Result;

/// A fault that can be started and undone.
pub trait Nemesis: Send {
    /// The fault's name (`kill`, `partition` ...), as in the history.
    fn name(&self) -> &'static str;
    /// Starts a fault; returns what it did, for the history.
    fn inject(&mut self, cluster: &Cluster, rng: &mut StdRng) -> Result<String>;
    /// Undoes the fault this nemesis started, if any; returns what it did.
    fn heal(&mut self, cluster: &Cluster) -> Result<String>;
}

/// The nemeses of a run.
pub type Nemeses = Vec<Box<dyn Nemesis>>;

/// Which members a process fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    One,
    Leader,
    Majority,
}

impl Target {
    /// The member indices this target names now.
    pub fn resolve(self, cluster: &Cluster, rng: &mut StdRng) -> Vec<usize> {
        let mut all: Vec<usize> = (0..cluster.len()).collect();
        all.shuffle(rng);
        match self {
            Target::One => vec![all[0]],
            Target::Leader => vec![cluster.leader().unwrap_or(all[0])],
            Target::Majority => {
                let mut v = all[..cluster.len() / 2 + 1].to_vec();
                v.sort();
                v
            }
        }
    }
}

fn pick<T: Copy>(options: &[T], rng: &mut StdRng) -> T {
    options[rng.gen_range(0..options.len())]
}

fn names(cluster: &Cluster, idx: &[usize]) -> String {
    idx.iter()
        .map(|&i| cluster.members()[i].name.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses `kill,partition:leader,...` into nemeses. Faults the cluster cannot
/// do (partitions on etcd without `--netns`; delay and loss without it) are
/// left out and named in the returned warnings.
pub fn parse(spec: &str, cluster: &Cluster) -> Result<(Nemeses, Vec<String>)> {
    let can_partition = cluster.can_partition();
    let mut out: Nemeses = Vec::new();
    let mut warnings = Vec::new();
    let spec = if spec.trim() == "all" {
        "kill,pause,partition,delay,loss,member"
    } else {
        spec
    };
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item == "none" {
            continue;
        }
        let (kind, target) = match item.split_once(':') {
            Some((k, t)) => (k, Some(t)),
            None => (item, None),
        };
        let bad = || harness(format!("unknown nemesis {item:?}"));
        match kind {
            "kill" | "pause" => {
                let targets = match target {
                    None => vec![Target::One, Target::Leader, Target::Majority],
                    Some("one") => vec![Target::One],
                    Some("leader") => vec![Target::Leader],
                    Some("majority") => vec![Target::Majority],
                    Some(_) => return Err(bad()),
                };
                out.push(Box::new(process::ProcessFault::new(
                    kind == "kill",
                    targets,
                )));
            }
            "partition" => {
                let shapes = match target {
                    None => partition::Shape::ALL.to_vec(),
                    Some(t) => vec![partition::Shape::parse(t).ok_or_else(bad)?],
                };
                if can_partition {
                    out.push(Box::new(partition::Partition::new(shapes)));
                } else {
                    warnings.push(format!(
                        "skipping {item}: this db has no fault hooks on loopback; use --netns"
                    ));
                }
            }
            "delay" | "loss" if target.is_none() => {
                let q = if kind == "delay" {
                    Quality::Delay
                } else {
                    Quality::Loss
                };
                if cluster.can_degrade(q) {
                    out.push(Box::new(netem::Netem::new(q)));
                } else {
                    warnings.push(format!(
                        "skipping {item}: it needs --netns (and, for delay, the kernel's sch_netem) or a db with fault hooks"
                    ));
                }
            }
            "member" => {
                let targets = match target {
                    None => vec![Target::One, Target::Leader],
                    Some("one") => vec![Target::One],
                    Some("leader") => vec![Target::Leader],
                    Some(_) => return Err(bad()),
                };
                out.push(Box::new(membership::Membership::new(targets)));
            }
            _ => return Err(bad()),
        }
    }
    Ok((out, warnings))
}
