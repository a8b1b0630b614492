//! The memo of the linearizability search: configurations already explored.
//!
//! A configuration is (set of linearised operations, model state). Lowe's
//! observation ("Testing for linearizability", 2017), also used by Porcupine: if
//! the search has been in a configuration before, everything reachable from it
//! has been explored, so it need not go there again.
//!
//! Layout: sets live in one arena of `u64` words (`words` per entry), states in
//! a parallel vector, and an open-addressing table (linear probing, load ≤ 1/2)
//! holds, per slot, an entry index in the low 32 bits and the high 32 bits of
//! the entry's hash as a tag (whose low bits also pick the home slot), so that probing past other entries touches only
//! the table. The caller supplies the hash, which it maintains incrementally
//! (Zobrist hashing of the set, see `search`), so an insert costs one probe
//! sequence and, on a tag match, a comparison of state and set. Entries are
//! never removed.

const EMPTY: u64 = u64::MAX;

/// Set of (bitset, state) pairs.
pub struct Memo<S> {
    words: usize,
    sets: Vec<u64>,
    states: Vec<S>,
    slots: Vec<u64>,
}

impl<S: Eq + Clone> Memo<S> {
    /// An empty memo for sets of `words` 64-bit words.
    pub fn new(words: usize) -> Self {
        Memo {
            words,
            sets: Vec::new(),
            states: Vec::new(),
            slots: vec![EMPTY; 1 << 10],
        }
    }

    /// Number of configurations stored.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Inserts (`set`, `state`) with precomputed `hash`; false if already present.
    pub fn insert(&mut self, set: &[u64], hash: u64, state: &S) -> bool {
        debug_assert_eq!(set.len(), self.words);
        let mask = self.slots.len() - 1;
        let tag = hash & TAG;
        let mut i = (hash >> 32) as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot == EMPTY {
                break;
            }
            if slot & TAG == tag {
                let e = (slot & !TAG) as usize;
                if self.states[e] == *state && same(&self.sets[e * self.words..], set) {
                    return false;
                }
            }
            i = (i + 1) & mask;
        }
        self.slots[i] = tag | self.states.len() as u64;
        self.sets.extend_from_slice(set);
        self.states.push(state.clone());
        if self.states.len() * 2 > self.slots.len() {
            self.grow();
        }
        true
    }

    /// Doubles the table, re-placing entries by their tags (tables are indexed
    /// by tag bits, so no hash needs to be recomputed).
    fn grow(&mut self) {
        let cap = self.slots.len() * 2;
        let mask = cap - 1;
        let mut slots = vec![EMPTY; cap];
        for &slot in self.slots.iter().filter(|&&s| s != EMPTY) {
            let mut i = (slot >> 32) as usize & mask;
            while slots[i] != EMPTY {
                i = (i + 1) & mask;
            }
            slots[i] = slot;
        }
        self.slots = slots;
    }
}

const TAG: u64 = 0xffff_ffff_0000_0000;

/// Word-by-word equality of the first `b.len()` words of `a` with `b`.
#[inline]
fn same(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_once_and_survives_growth() {
        let mut m = Memo::new(2);
        for i in 0..1000u64 {
            // a weak hash on purpose: many collisions
            assert!(m.insert(&[i, !i], i % 7, &(i % 3)));
        }
        for i in 0..1000u64 {
            assert!(!m.insert(&[i, !i], i % 7, &(i % 3)));
            assert!(m.insert(&[i, !i], i % 7, &(i % 3 + 10)));
        }
        assert_eq!(m.len(), 2_000);
    }
}
