//! SplitMix64 (Steele, Lea and Flood, "Fast Splittable Pseudorandom Number Generators",
//! OOPSLA 2014; constants as published there): [`mix`], its 64-bit finaliser, is
//! `/work`'s hash step; [`SplitMix64`] is the seeded generator of the load generator's
//! arrivals and of the benches' random files. It passes BigCrush, costs a few ns, needs
//! no crate, and the same seed gives the same stream.

/// The finaliser: two multiplies and three xor-shifts in a dependency chain, a few ns
/// that nothing overlaps.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The generator: a counter stepped by an odd constant (the golden ratio's bits), mixed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The stream of `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in [0, 1): the top 53 bits, as many as an `f64` holds exactly.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}
