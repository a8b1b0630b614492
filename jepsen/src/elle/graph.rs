//! The dependency graph of an Elle-style check: transactions as nodes, edges
//! labelled with a bitmask of relations (write-write, write-read, read-write,
//! real time), strongly connected components (Tarjan's algorithm, iterative)
//! and the search for a cycle whose edges satisfy a class's constraint
//! (breadth first, so cycles are short). After Kingsbury & Alvaro, "Elle:
//! Inferring Isolation Anomalies from Experimental Observations" (VLDB 2020).

use std::collections::{HashMap, VecDeque};

/// A node index.
pub type Node = usize;

/// Relation bits.
pub const WW: u8 = 1;
pub const WR: u8 = 2;
pub const RW: u8 = 4;
pub const RT: u8 = 8;

/// A directed graph with labelled edges.
#[derive(Debug, Default)]
pub struct Graph {
    adj: Vec<Vec<(Node, u8)>>,
    index: HashMap<(Node, Node), usize>,
}

impl Graph {
    pub fn new(nodes: usize) -> Graph {
        Graph {
            adj: vec![Vec::new(); nodes],
            index: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.adj.len()
    }

    pub fn is_empty(&self) -> bool {
        self.adj.is_empty()
    }

    /// Adds a node; returns its index.
    pub fn node(&mut self) -> Node {
        self.adj.push(Vec::new());
        self.adj.len() - 1
    }

    /// Adds relation bits to the edge a → b (self edges are ignored).
    pub fn add(&mut self, a: Node, b: Node, rel: u8) {
        if a == b {
            return;
        }
        match self.index.get(&(a, b)) {
            Some(&i) => self.adj[a][i].1 |= rel,
            None => {
                self.index.insert((a, b), self.adj[a].len());
                self.adj[a].push((b, rel));
            }
        }
    }

    /// The edges out of `a`.
    pub fn out(&self, a: Node) -> &[(Node, u8)] {
        &self.adj[a]
    }

    /// Strongly connected components with more than one node.
    pub fn sccs(&self) -> Vec<Vec<Node>> {
        let n = self.adj.len();
        let (mut index, mut low) = (vec![usize::MAX; n], vec![0; n]);
        let mut on_stack = vec![false; n];
        let (mut stack, mut out, mut next) = (Vec::new(), Vec::new(), 0);
        for root in 0..n {
            if index[root] != usize::MAX {
                continue;
            }
            // (node, next edge to look at)
            let mut work = vec![(root, 0usize)];
            index[root] = next;
            low[root] = next;
            next += 1;
            stack.push(root);
            on_stack[root] = true;
            while let Some(&mut (v, ref mut ei)) = work.last_mut() {
                if let Some(&(w, _)) = self.adj[v].get(*ei) {
                    *ei += 1;
                    if index[w] == usize::MAX {
                        index[w] = next;
                        low[w] = next;
                        next += 1;
                        stack.push(w);
                        on_stack[w] = true;
                        work.push((w, 0));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                    continue;
                }
                work.pop();
                if let Some(&(parent, _)) = work.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut comp = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp.push(w);
                        if w == v {
                            break;
                        }
                    }
                    if comp.len() > 1 {
                        out.push(comp);
                    }
                }
            }
        }
        out
    }

    /// The shortest path `from` → `to` through nodes where `inside` holds,
    /// over edges that carry a bit of `allowed`: the steps (node reached,
    /// relation bits of the edge taken).
    pub fn path(
        &self,
        from: Node,
        to: Node,
        allowed: u8,
        inside: &dyn Fn(Node) -> bool,
    ) -> Option<Vec<(Node, u8)>> {
        let mut prev: HashMap<Node, (Node, u8)> = HashMap::new();
        let mut queue = VecDeque::from([from]);
        let mut seen = std::collections::HashSet::from([from]);
        while let Some(v) = queue.pop_front() {
            for &(w, rel) in &self.adj[v] {
                if rel & allowed == 0 || !inside(w) || !seen.insert(w) {
                    if w == to && rel & allowed != 0 && v != to {
                        prev.entry(w).or_insert((v, rel & allowed));
                        return Some(unwind(&prev, from, to));
                    }
                    continue;
                }
                prev.insert(w, (v, rel & allowed));
                if w == to {
                    return Some(unwind(&prev, from, to));
                }
                queue.push_back(w);
            }
        }
        None
    }
}

fn unwind(prev: &HashMap<Node, (Node, u8)>, from: Node, to: Node) -> Vec<(Node, u8)> {
    let mut steps = Vec::new();
    let mut at = to;
    loop {
        let (p, rel) = prev[&at];
        steps.push((at, rel));
        at = p;
        if at == from {
            break;
        }
    }
    steps.reverse();
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_components_and_short_paths() {
        let mut g = Graph::new(5);
        g.add(0, 1, WW);
        g.add(1, 2, WR);
        g.add(2, 0, RW);
        g.add(3, 4, WW);
        let sccs = g.sccs();
        assert_eq!(sccs.len(), 1);
        let mut c = sccs[0].clone();
        c.sort();
        assert_eq!(c, vec![0, 1, 2]);
        let all = |_| true;
        assert_eq!(g.path(0, 0, WW | WR | RW, &all).unwrap().len(), 3);
        assert!(g.path(0, 0, WW | WR, &all).is_none());
        assert_eq!(g.path(1, 0, WR | RW, &all).unwrap(), vec![(2, WR), (0, RW)]);
    }
}
