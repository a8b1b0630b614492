//! Keys and values as etcd's benchmark tool makes them: a key of `key-size`
//! bytes holding the key's index as a Go zigzag varint (`binary.PutVarint`)
//! followed by zero bytes, the index sequential or random within the key space;
//! values are random bytes, made once per run.

use anyhow::ensure;
use rand::Rng;

/// Makes the keys of a run.
#[derive(Debug, Clone)]
pub struct KeyGen {
    key_size: usize,
    key_space: u64,
    sequential: bool,
}

impl KeyGen {
    /// A generator of `key_size`-byte keys over `key_space` distinct keys; fails
    /// when the key space is empty or its largest index does not fit the size.
    pub fn new(key_size: usize, key_space: u64, sequential: bool) -> anyhow::Result<KeyGen> {
        ensure!(key_space >= 1, "--key-space-size must be at least 1");
        ensure!(
            key_space <= i64::MAX as u64,
            "--key-space-size is too large"
        );
        let need = varint_len((key_space - 1) as i64);
        ensure!(
            key_size >= need,
            "--key-size {key_size} cannot hold {key_space} distinct keys (needs at least {need} bytes)"
        );
        Ok(KeyGen {
            key_size,
            key_space,
            sequential,
        })
    }

    /// The key index of request `i`: `i mod key-space`, or uniform in the key space.
    pub fn index(&self, i: u64, rng: &mut impl Rng) -> u64 {
        if self.sequential {
            i % self.key_space
        } else {
            rng.gen_range(0..self.key_space)
        }
    }

    /// The key of request `i`.
    pub fn key_for(&self, i: u64, rng: &mut impl Rng) -> Vec<u8> {
        self.key(self.index(i, rng))
    }

    /// The key with index `idx` (taken modulo the key space).
    pub fn key(&self, idx: u64) -> Vec<u8> {
        let mut k = vec![0u8; self.key_size];
        put_varint(&mut k, (idx % self.key_space) as i64);
        k
    }
}

/// Go's `binary.PutVarint`: writes `x` zigzag-encoded as a varint at the start of
/// `buf` and returns the number of bytes written. Panics if `buf` is too short.
pub fn put_varint(buf: &mut [u8], x: i64) -> usize {
    let mut ux = (x as u64) << 1;
    if x < 0 {
        ux = !ux;
    }
    let mut i = 0;
    while ux >= 0x80 {
        buf[i] = (ux as u8) | 0x80;
        ux >>= 7;
        i += 1;
    }
    buf[i] = ux as u8;
    i + 1
}

/// How many bytes `put_varint` writes for `x`.
pub fn varint_len(x: i64) -> usize {
    let mut buf = [0u8; 10];
    put_varint(&mut buf, x)
}

/// `size` random bytes.
pub fn random_bytes(size: usize, rng: &mut impl Rng) -> Vec<u8> {
    let mut v = vec![0u8; size];
    rng.fill(&mut v[..]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::HashSet;

    #[test]
    fn varint_matches_go() {
        // Values from Go's binary.PutVarint.
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x02]),
            (-1, &[0x01]),
            (63, &[0x7e]),
            (64, &[0x80, 0x01]),
            (1000, &[0xd0, 0x0f]),
        ];
        for (x, want) in cases {
            let mut buf = [0u8; 10];
            let n = put_varint(&mut buf, *x);
            assert_eq!(&buf[..n], *want, "PutVarint({x})");
            assert_eq!(varint_len(*x), want.len());
        }
    }

    #[test]
    fn sequential_keys_cycle_through_the_key_space() {
        let g = KeyGen::new(8, 3, true).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let idx: Vec<u64> = (0..7).map(|i| g.index(i, &mut rng)).collect();
        assert_eq!(idx, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(g.key_for(1, &mut rng), [2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(g.key_for(4, &mut rng), g.key(1));
        for i in 0..10 {
            assert_eq!(g.key_for(i, &mut rng).len(), 8);
        }
    }

    #[test]
    fn random_keys_stay_within_the_key_space() {
        let g = KeyGen::new(16, 100, false).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = HashSet::new();
        for i in 0..5000 {
            let idx = g.index(i, &mut rng);
            assert!(idx < 100);
            seen.insert(g.key(idx));
        }
        assert_eq!(seen.len(), 100, "every key of the space shows up");
        assert!(seen.iter().all(|k| k.len() == 16));
    }

    #[test]
    fn default_key_space_is_one_key() {
        let g = KeyGen::new(8, 1, false).unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        assert!((0..50).all(|i| g.key_for(i, &mut rng) == [0u8; 8]));
    }

    #[test]
    fn size_checks() {
        assert!(KeyGen::new(8, 0, false).is_err());
        assert!(KeyGen::new(1, 64, true).is_ok());
        assert!(KeyGen::new(1, 65, true).is_err(), "index 64 needs 2 bytes");
        let v = random_bytes(256, &mut StdRng::seed_from_u64(0));
        assert_eq!(v.len(), 256);
    }
}
