//! Network quality faults: every member's network delayed by 75 ms ± 50 ms
//! or losing 50 % of its packets, the figures of Jepsen's etcd tests. With
//! `--netns`: `tc netem` (see [`crate::cluster::netns`]), or iptables'
//! `statistic` match for loss where the kernel has no netem. Otherwise (and
//! for delay without netem) keel's fault hooks delay or drop every member's
//! outgoing Raft messages instead (peer traffic only; etcd has no such hook).

use rand::rngs::StdRng;

use super::Nemesis;
use crate::cluster::{Cluster, Quality};
use crate::Result;

/// Delay or loss.
pub struct Netem {
    quality: Quality,
}

impl Netem {
    pub fn new(quality: Quality) -> Netem {
        Netem { quality }
    }
}

impl Nemesis for Netem {
    fn name(&self) -> &'static str {
        match self.quality {
            Quality::Delay => "delay",
            Quality::Loss => "loss",
        }
    }

    fn inject(&mut self, cluster: &Cluster, _: &mut StdRng) -> Result<String> {
        let how = cluster.degrade(Some(self.quality))?;
        let what = match self.quality {
            Quality::Delay => "75 ms ± 50 ms delay on every member",
            Quality::Loss => "50 % packet loss on every member",
        };
        Ok(format!("{what} ({how})"))
    }

    fn heal(&mut self, cluster: &Cluster) -> Result<String> {
        cluster.degrade(None)?;
        Ok("network restored".into())
    }
}
