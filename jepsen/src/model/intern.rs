//! Interning: each distinct value gets a dense `u32` id, so that model states are
//! integers. Equal ids if and only if equal values, within one interner.

use std::hash::Hash;

use crate::hash::FxHashMap;

/// Maps values to dense ids and back.
#[derive(Debug, Clone)]
pub struct Interner<T> {
    ids: FxHashMap<T, u32>,
    values: Vec<T>,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            ids: FxHashMap::default(),
            values: Vec::new(),
        }
    }
}

impl<T: Hash + Eq + Clone> Interner<T> {
    /// An interner whose id 0 is `first`.
    pub fn with_first(first: T) -> Self {
        let mut i = Interner::default();
        i.intern(first);
        i
    }

    /// The id of `v`, allocating one if it is new.
    pub fn intern(&mut self, v: T) -> u32 {
        if let Some(&id) = self.ids.get(&v) {
            return id;
        }
        let id = self.values.len() as u32;
        self.values.push(v.clone());
        self.ids.insert(v, id);
        id
    }

    /// The value of `id`.
    pub fn get(&self, id: u32) -> &T {
        &self.values[id as usize]
    }

    /// All values, in id order.
    pub fn into_values(self) -> Vec<T> {
        self.values
    }
}
