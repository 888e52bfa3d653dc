//! Per-thread figures: the latency [`Histogram`] and the [`Tally`] of counts, bytes and
//! error samples. Each load thread owns one `Tally` and never shares it during the load;
//! they are merged once at the end.

/// Error descriptions kept per thread (and in the report).
pub(crate) const MAX_ERROR_SAMPLES: usize = 10;

/// Sub-buckets per power of two: a bucket spans at most 1/128 of its values, so a
/// reported percentile is within 0.8% of the true one (the same idea as HdrHistogram's
/// "significant digits", with 2^7 sub-buckets ~ 2 decimal digits).
const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS;
/// Values below `2 * SUB` get a bucket each; then each power of two above gets `SUB`.
const BUCKETS: usize = 2 * SUB + (63 - SUB_BITS as usize) * SUB;

/// A log-linear histogram of latencies in nanoseconds, 1 ns to 2^64 ns at <= 0.8% error.
pub(crate) struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
}

impl Histogram {
    pub(crate) fn new() -> Histogram {
        Histogram { counts: vec![0; BUCKETS].into_boxed_slice(), total: 0, max: 0 }
    }

    /// The bucket of `v`: exact below 256; above, the top 8 bits of `v` (its leading
    /// one and 7 more) select the bucket within its power of two.
    #[inline]
    fn index(v: u64) -> usize {
        if v < 2 * SUB as u64 {
            return v as usize;
        }
        let shift = 63 - v.leading_zeros() - SUB_BITS; // >= 1
        shift as usize * SUB + (v >> shift) as usize
    }

    /// A value that stands for bucket `i`: the middle of its range.
    fn value_of(i: usize) -> u64 {
        if i < 2 * SUB {
            return i as u64;
        }
        let shift = (i / SUB - 1) as u32;
        let low = ((i % SUB + SUB) as u64) << shift;
        low + ((1u64 << shift) - 1) / 2
    }

    /// Records one latency.
    #[inline]
    pub(crate) fn record(&mut self, ns: u64) {
        self.counts[Self::index(ns)] += 1;
        self.total += 1;
        self.max = self.max.max(ns);
    }

    /// Adds every value of `other` to this one.
    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0..=1), in nanoseconds; 0 for an empty histogram.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        if rank == self.total {
            return self.max;
        }
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value_of(i).min(self.max);
            }
        }
        self.max
    }

    /// The largest value recorded, exactly.
    pub(crate) fn max(&self) -> u64 {
        self.max
    }
}

/// What one load thread counted.
pub(crate) struct Tally {
    /// Responses that matched their probe and completed after the warm-up.
    pub requests: u64,
    /// Requests that failed (module docs of `load` list the kinds).
    pub errors: u64,
    /// The first few error descriptions.
    pub error_samples: Vec<String>,
    /// Latency of each counted response.
    pub latency: Histogram,
    /// Body bytes of counted responses.
    pub body_bytes: u64,
    /// Head bytes of counted responses.
    pub header_bytes: u64,
    /// Completion time of the last counted response (`now_ns` clock), 0 if none.
    pub last_ns: u64,
    /// CPU time the thread used during the load.
    pub cpu_ns: u64,
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally {
            requests: 0,
            errors: 0,
            error_samples: Vec::new(),
            latency: Histogram::new(),
            body_bytes: 0,
            header_bytes: 0,
            last_ns: 0,
            cpu_ns: 0,
        }
    }

    /// Counts `n` failed requests; `why` makes the description, only while samples are
    /// still wanted (so a flood of errors costs no formatting).
    #[cold]
    pub(crate) fn errors(&mut self, n: u64, why: impl FnOnce() -> String) {
        self.errors += n;
        if n > 0 && self.error_samples.len() < MAX_ERROR_SAMPLES {
            self.error_samples.push(why());
        }
    }

    /// Adds `other` into this one.
    pub(crate) fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.errors += other.errors;
        let room = MAX_ERROR_SAMPLES.saturating_sub(self.error_samples.len());
        self.error_samples.extend(other.error_samples.into_iter().take(room));
        self.latency.merge(&other.latency);
        self.body_bytes += other.body_bytes;
        self.header_bytes += other.header_bytes;
        self.last_ns = self.last_ns.max(other.last_ns);
        self.cpu_ns += other.cpu_ns;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_within_one_percent() {
        let mut last = 0;
        for v in (0..100_000u64).chain((20..64).map(|s| (1u64 << s) + 12345)).chain([u64::MAX]) {
            let i = Histogram::index(v);
            assert!(i >= last && i < BUCKETS, "v {v} -> {i}");
            last = i;
            let rep = Histogram::value_of(i);
            let err = (rep as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err < 0.008, "v {v} stands as {rep}");
        }
    }

    #[test]
    fn quantiles_of_a_uniform_spread() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        for (q, want) in [(0.5, 5_000_000.0), (0.99, 9_900_000.0), (0.999, 9_990_000.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.01, "q {q}: {got}");
        }
        assert_eq!(h.quantile(1.0), 10_000_000);
        assert_eq!(h.max(), 10_000_000);
    }
}
