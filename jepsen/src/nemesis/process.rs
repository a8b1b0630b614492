//! Process faults: SIGKILL then restart, or SIGSTOP then SIGCONT, of one
//! member, the leader, or a majority.

use rand::rngs::StdRng;

use super::{names, pick, Nemesis, Target};
use crate::cluster::Cluster;
use crate::Result;

/// Kill (`kill: true`) or pause members.
pub struct ProcessFault {
    kill: bool,
    targets: Vec<Target>,
    hit: Vec<usize>,
}

impl ProcessFault {
    pub fn new(kill: bool, targets: Vec<Target>) -> ProcessFault {
        ProcessFault {
            kill,
            targets,
            hit: Vec::new(),
        }
    }
}

impl Nemesis for ProcessFault {
    fn name(&self) -> &'static str {
        if self.kill {
            "kill"
        } else {
            "pause"
        }
    }

    fn inject(&mut self, cluster: &Cluster, rng: &mut StdRng) -> Result<String> {
        let target = pick(&self.targets, rng);
        let hit = target.resolve(cluster, rng);
        for &i in &hit {
            if self.kill {
                cluster.kill(i);
            } else {
                cluster.pause(i)?;
            }
            self.hit.push(i);
        }
        Ok(format!(
            "{} {} ({target:?})",
            if self.kill { "killed" } else { "paused" },
            names(cluster, &hit)
        )
        .to_lowercase())
    }

    fn heal(&mut self, cluster: &Cluster) -> Result<String> {
        let hit = std::mem::take(&mut self.hit);
        for &i in &hit {
            if self.kill {
                cluster.spawn(i)?;
            } else {
                cluster.resume(i)?;
            }
        }
        Ok(format!(
            "{} {}",
            if self.kill { "restarted" } else { "resumed" },
            names(cluster, &hit)
        ))
    }
}
