//! The arrival schedule of an open-loop run: a seeded pseudo-random generator ([`Rng`]),
//! the exponential gaps of a Poisson process and the weighted draw of each request's
//! class ([`Arrivals`]).
//!
//! Why Poisson: independent users, each sending now and then, add up to a Poisson
//! process (the Palm-Khintchine theorem), the usual model of a server's arrivals and
//! the one queueing results (M/G/1) speak of. Its gaps are exponential: many short,
//! a few long, so requests bunch as they do in real traffic; evenly spaced arrivals
//! would never queue below saturation and would hide head-of-line blocking.

/// The seeded generator of a run's arrivals.
pub(crate) use crate::splitmix::SplitMix64 as Rng;

/// One load thread's arrivals: when each request is due and of which class.
pub(crate) struct Arrivals {
    rng: Rng,
    /// Mean gap between arrivals, ns: 1e9 ÷ the thread's rate.
    mean_gap_ns: f64,
    /// `cumulative[c]`: the sum of the weights of classes `0..=c`, ÷ the total.
    cumulative: Vec<f64>,
    /// The schedule so far, ns after the start. Kept in `f64` so that rounding does not
    /// accumulate over a run (it is exact to the ns for 104 days).
    at_ns: f64,
}

impl Arrivals {
    /// Arrivals at `rate` per second, of classes drawn by `weights` (each above zero),
    /// from `rng`.
    pub(crate) fn new(rate: f64, weights: &[f64], rng: Rng) -> Arrivals {
        let total: f64 = weights.iter().sum();
        let mut sum = 0.0;
        let mut cumulative: Vec<f64> = weights
            .iter()
            .map(|w| {
                sum += w;
                sum / total
            })
            .collect();
        // Whatever the rounding, a draw in [0, 1) finds a class.
        if let Some(last) = cumulative.last_mut() {
            *last = f64::INFINITY;
        }
        Arrivals { rng, mean_gap_ns: 1e9 / rate, cumulative, at_ns: 0.0 }
    }

    /// The next arrival: its time, ns after the start of the run, and its class. The
    /// gap since the previous one is exponential (inverse transform: −ln(1 − U) × mean,
    /// with 1 − U in (0, 1], so the logarithm is finite).
    pub(crate) fn next(&mut self) -> (u64, u32) {
        self.at_ns += -(1.0 - self.rng.unit()).ln() * self.mean_gap_ns;
        let u = self.rng.unit();
        let class = self.cumulative.iter().position(|&c| u < c).unwrap_or(0);
        (self.at_ns as u64, class as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_schedule() {
        let draw = |seed| {
            let mut a = Arrivals::new(1000.0, &[1.0, 2.0], Rng::new(seed));
            (0..100).map(|_| a.next()).collect::<Vec<_>>()
        };
        let (a, b, c) = (draw(7), draw(7), draw(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.windows(2).all(|w| w[0].0 <= w[1].0), "times never go back");
    }

    #[test]
    fn gaps_are_exponential_with_the_rate_as_mean() {
        // 100 000 gaps of mean 100 µs: the sample mean's standard error is 0.3%, and an
        // exponential's tail P(gap > 3 x mean) is e^-3 = 4.98%.
        let n = 100_000;
        let mut arr = Arrivals::new(10_000.0, &[1.0], Rng::new(1));
        let mut last = 0;
        let mut long = 0;
        for _ in 0..n {
            let (t, class) = arr.next();
            assert_eq!(class, 0);
            if t - last > 300_000 {
                long += 1;
            }
            last = t;
        }
        let mean = last as f64 / n as f64;
        assert!((mean - 100_000.0).abs() < 2_000.0, "mean gap {mean} ns");
        let tail = long as f64 / n as f64;
        assert!((tail - (-3.0f64).exp()).abs() < 0.005, "P(gap > 3 mean) = {tail}");
    }

    #[test]
    fn classes_are_drawn_by_weight() {
        // Binomial counts: with n = 200 000, class 2 (p = 0.01) has sd 44.5, class 0
        // (p = 0.74) sd 196; 5 sd bounds.
        let n = 200_000;
        let mut arr = Arrivals::new(1.0, &[74.0, 25.0, 1.0], Rng::new(3));
        let mut counts = [0usize; 3];
        for _ in 0..n {
            counts[arr.next().1 as usize] += 1;
        }
        for (c, (p, sd)) in [(0.74, 196.0), (0.25, 194.0), (0.01, 44.5)].into_iter().enumerate() {
            let want = p * n as f64;
            assert!((counts[c] as f64 - want).abs() < 5.0 * sd, "class {c}: {} of {n}", counts[c]);
        }
    }
}
