//! Network partitions, as *views*: for each member, the members it can still
//! talk to (itself included); everything else is cut, both ways. Shapes after
//! Jepsen's (jepsen.nemesis): isolate one member, isolate the leader, random
//! halves (a minority and a majority), a majorities ring (every member sees a
//! majority, no two the same one) and a bridge (two halves joined only through
//! one member, which sees everyone).
//!
//! With 3 members a ring of majorities cannot be built from symmetric cuts
//! (each member would keep exactly one link: an odd total), so `ring` on fewer
//! than 5 members is the bridge, which is the 3-member ring.

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::{names, pick, Nemesis};
use crate::cluster::Cluster;
use crate::Result;

/// A partition shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    One,
    Leader,
    Halves,
    Ring,
    Bridge,
}

impl Shape {
    pub const ALL: [Shape; 5] = [
        Shape::One,
        Shape::Leader,
        Shape::Halves,
        Shape::Ring,
        Shape::Bridge,
    ];

    pub fn parse(s: &str) -> Option<Shape> {
        Some(match s {
            "one" => Shape::One,
            "leader" => Shape::Leader,
            "halves" => Shape::Halves,
            "ring" => Shape::Ring,
            "bridge" => Shape::Bridge,
            _ => return None,
        })
    }
}

/// Each member's view (who it can reach) for `shape` over `n` members in the
/// order `order` (a shuffle); `leader` is used by [`Shape::Leader`].
pub fn views(shape: Shape, order: &[usize], leader: Option<usize>) -> Vec<BTreeSet<usize>> {
    let n = order.len();
    let all: BTreeSet<usize> = order.iter().copied().collect();
    let mut views = vec![BTreeSet::new(); n];
    let group = |views: &mut Vec<BTreeSet<usize>>, g: &[usize], sees: &BTreeSet<usize>| {
        for &m in g {
            views[m] = sees.clone();
        }
    };
    match shape {
        Shape::One | Shape::Leader => {
            let lone = match shape {
                Shape::Leader => leader.unwrap_or(order[0]),
                _ => order[0],
            };
            let rest: BTreeSet<usize> = all.iter().copied().filter(|&m| m != lone).collect();
            group(&mut views, &[lone], &BTreeSet::from([lone]));
            let r: Vec<usize> = rest.iter().copied().collect();
            group(&mut views, &r, &rest);
        }
        Shape::Halves => {
            let (a, b) = order.split_at(n / 2);
            group(&mut views, a, &a.iter().copied().collect());
            group(&mut views, b, &b.iter().copied().collect());
        }
        Shape::Ring if n >= 5 => {
            // Ring distance at most k, where 2k + 1 >= a majority.
            let k = (n / 2).div_ceil(2);
            for (pos, &m) in order.iter().enumerate() {
                views[m] = (0..n)
                    .filter(|&q| {
                        let d = pos.abs_diff(q);
                        d.min(n - d) <= k
                    })
                    .map(|q| order[q])
                    .collect();
            }
        }
        Shape::Ring | Shape::Bridge => {
            let mid = n / 2;
            let (left, rest) = order.split_at(mid);
            let (bridge, right) = (rest[0], &rest[1..]);
            let mut l: BTreeSet<usize> = left.iter().copied().collect();
            l.insert(bridge);
            let mut r: BTreeSet<usize> = right.iter().copied().collect();
            r.insert(bridge);
            group(&mut views, left, &l);
            group(&mut views, right, &r);
            views[bridge] = all.clone();
        }
    }
    views
}

/// The cuts for `views`: each member's complement.
pub fn grudge(views: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    let n = views.len();
    views
        .iter()
        .map(|v| (0..n).filter(|m| !v.contains(m)).collect())
        .collect()
}

/// The partition nemesis.
pub struct Partition {
    shapes: Vec<Shape>,
}

impl Partition {
    pub fn new(shapes: Vec<Shape>) -> Partition {
        Partition { shapes }
    }
}

impl Nemesis for Partition {
    fn name(&self) -> &'static str {
        "partition"
    }

    fn inject(&mut self, cluster: &Cluster, rng: &mut StdRng) -> Result<String> {
        let shape = pick(&self.shapes, rng);
        let mut order: Vec<usize> = (0..cluster.len()).collect();
        order.shuffle(rng);
        let leader = if shape == Shape::Leader {
            cluster.leader()
        } else {
            None
        };
        let v = views(shape, &order, leader);
        cluster.partition(&grudge(&v))?;
        let desc: Vec<String> = v
            .iter()
            .enumerate()
            .map(|(m, sees)| {
                let s: Vec<usize> = sees.iter().copied().collect();
                format!("{} sees {}", cluster.members()[m].name, names(cluster, &s))
            })
            .collect();
        Ok(format!("{shape:?}: {}", desc.join("; ")).to_lowercase())
    }

    fn heal(&mut self, cluster: &Cluster) -> Result<String> {
        cluster.heal_network()?;
        Ok("healed all links".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symmetric(v: &[BTreeSet<usize>]) -> bool {
        (0..v.len()).all(|a| (0..v.len()).all(|b| v[a].contains(&b) == v[b].contains(&a)))
    }

    #[test]
    fn shapes_are_symmetric_and_see_themselves() {
        for n in [3, 5, 7] {
            let order: Vec<usize> = (0..n).rev().collect();
            for s in Shape::ALL {
                let v = views(s, &order, Some(1));
                assert!(symmetric(&v), "{s:?} n={n}: {v:?}");
                assert!((0..n).all(|m| v[m].contains(&m)));
                assert!(
                    grudge(&v).iter().any(|g| !g.is_empty()),
                    "{s:?} cuts nothing"
                );
            }
        }
    }

    #[test]
    fn ring_of_five_gives_everyone_a_different_majority() {
        let v = views(Shape::Ring, &[0, 1, 2, 3, 4], None);
        assert!(v.iter().all(|s| s.len() == 3));
        let distinct: BTreeSet<_> = v.iter().cloned().collect();
        assert_eq!(distinct.len(), 5);
        assert_eq!(v[0], BTreeSet::from([4, 0, 1]));
    }

    #[test]
    fn leader_and_halves() {
        let v = views(Shape::Leader, &[0, 1, 2], Some(2));
        assert_eq!(v[2], BTreeSet::from([2]));
        assert_eq!(v[0], BTreeSet::from([0, 1]));
        let v = views(Shape::Halves, &[4, 3, 2, 1, 0], None);
        assert_eq!(v[4], BTreeSet::from([3, 4]));
        assert_eq!(v[0], BTreeSet::from([0, 1, 2]));
        let v = views(Shape::Bridge, &[0, 1, 2, 3, 4], None);
        assert_eq!(v[2].len(), 5);
        assert_eq!(v[0], BTreeSet::from([0, 1, 2]));
    }
}
