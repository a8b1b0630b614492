//! Network quality faults (`--netns` only): `tc netem` on every member's
//! interface, with the figures of Jepsen's etcd tests: delay 75 ms ± 50 ms, or
//! 50 % packet loss.

use rand::rngs::StdRng;

use super::Nemesis;
use crate::cluster::Cluster;
use crate::Result;

/// Delay (`delay: true`) or loss.
pub struct Netem {
    delay: bool,
}

impl Netem {
    pub fn new(delay: bool) -> Netem {
        Netem { delay }
    }

    fn spec(&self) -> &'static str {
        if self.delay {
            "delay 75ms 50ms"
        } else {
            "loss 50%"
        }
    }
}

impl Nemesis for Netem {
    fn name(&self) -> &'static str {
        if self.delay {
            "delay"
        } else {
            "loss"
        }
    }

    fn inject(&mut self, cluster: &Cluster, _: &mut StdRng) -> Result<String> {
        cluster.netem(Some(self.spec()))?;
        Ok(format!("netem {} on every member", self.spec()))
    }

    fn heal(&mut self, cluster: &Cluster) -> Result<String> {
        cluster.netem(None)?;
        Ok("netem removed".into())
    }
}
