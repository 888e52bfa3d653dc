//! Test inputs without a dependency: a small xorshift64* generator (Vigna, "An
//! experimental exploration of Marsaglia's xorshift generators, scrambled", 2016: shifts
//! 12, 25, 27 and the multiplier below) and byte patterns that name their place in a
//! stream. Not for anything but spreading test inputs.

/// A xorshift64* generator.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `seed` (never 0 inside: the golden-ratio multiplier spreads
    /// small seeds, `| 1` keeps the state non-zero).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)] // an endless generator, not an iterator
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }
}

/// Fills `buf` with bytes that depend on `(stream, seq)` and the position, so data that
/// arrives out of order, from another stream, or shifted shows up as a mismatch.
pub fn fill_pattern(buf: &mut [u8], stream: u64, seq: u64) {
    let mut r = Rng::new(stream.wrapping_mul(1_000_003) ^ seq.rotate_left(29) ^ 0x5bd1_e995);
    for chunk in buf.chunks_mut(8) {
        let v = r.next().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}
