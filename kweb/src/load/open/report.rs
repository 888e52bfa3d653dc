//! [`Report`] and [`ClassReport`]: the figures of an open-loop run, built from the merged
//! per-thread tallies, and their printed form (what `kweb-load --rate` prints).

use std::fmt;
use std::time::Duration;

use super::spec::Spec;
use super::tally::Tally;

/// What one request class measured.
#[derive(Clone, Debug, Default)]
pub struct ClassReport {
    /// Its URL path.
    pub url: String,
    /// Its weight in the spec.
    pub weight: f64,
    /// Right answers to its requests scheduled after the warm-up.
    pub requests: u64,
    /// Its failed requests (warm-up included); a failure that belongs to no request (a
    /// reconnect that fails, bytes answering nothing) counts in [`Report::errors`] only.
    pub errors: u64,
    /// Median latency, µs. A request's latency runs from its **scheduled** arrival (not
    /// from when it could be sent) to the `recv` that completed its answer.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// 99.9th percentile latency, µs.
    pub p999_us: f64,
    /// Largest latency, µs.
    pub max_us: f64,
}

/// What an open-loop run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The rate asked for, requests/s.
    pub offered_rps: f64,
    /// Right answers completed inside the measured window ÷ its length, whenever they
    /// were scheduled: the offered rate when the server keeps up, its throughput when it
    /// does not.
    pub rps: f64,
    /// The measured window: from the end of the warm-up to the end of the schedule.
    pub window: Duration,
    /// Right answers to requests scheduled in the measured window (all classes).
    pub requests: u64,
    /// Failed requests: a wrong status, `Content-Length` or body; a request lost with its
    /// connection; a framing error; a request unanswered when the run was stopped by its
    /// timeout. Each failed request counts once.
    pub errors: u64,
    /// The first few error descriptions (at most 10).
    pub error_samples: Vec<String>,
    /// Per class, in the order of the spec's.
    pub classes: Vec<ClassReport>,
    /// Median of how late counted requests went out: from the scheduled arrival to the
    /// `send` of the last byte, µs. The generator's own lateness (a wake-up), plus any
    /// wait for an idle connection.
    pub lag_p50_us: f64,
    /// 99th percentile of that lag, µs.
    pub lag_p99_us: f64,
    /// Counted requests that found every connection busy and waited in the client FIFO
    /// (their wait is in their latency). Many: the pool is too small for the load.
    pub queued: u64,
    /// CPU time the load threads used from the end of the warm-up to the end of the
    /// load, ms (summed over threads).
    pub cpu_ms: f64,
}

impl Report {
    /// The report of `tally` for `spec`.
    pub(crate) fn from_tally(t: &Tally, spec: &Spec) -> Report {
        let window = spec.duration.saturating_sub(spec.warmup);
        let us = |ns: u64| ns as f64 / 1000.0;
        let classes: Vec<ClassReport> = spec
            .classes
            .iter()
            .zip(&t.classes)
            .map(|(c, ct)| ClassReport {
                url: c.url.clone(),
                weight: c.weight,
                requests: ct.requests,
                errors: ct.errors,
                p50_us: us(ct.latency.quantile(0.5)),
                p99_us: us(ct.latency.quantile(0.99)),
                p999_us: us(ct.latency.quantile(0.999)),
                max_us: us(ct.latency.max()),
            })
            .collect();
        Report {
            offered_rps: spec.rate,
            rps: t.completed_in_window as f64 / window.as_secs_f64(),
            window,
            requests: classes.iter().map(|c| c.requests).sum(),
            errors: t.errors,
            error_samples: t.error_samples.clone(),
            classes,
            lag_p50_us: us(t.lag.quantile(0.5)),
            lag_p99_us: us(t.lag.quantile(0.99)),
            queued: t.queued,
            cpu_ms: t.cpu_ns as f64 / 1e6,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.window.as_secs_f64();
        writeln!(f, "requests   {} scheduled in {secs:.3} s and answered", self.requests)?;
        writeln!(
            f,
            "rate       offered {:.0} requests/s, achieved {:.0} requests/s",
            self.offered_rps, self.rps
        )?;
        let total: f64 = self.classes.iter().map(|c| c.weight).sum();
        for c in &self.classes {
            writeln!(
                f,
                "class      {} ({:.2}%): {} requests, p50 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us, {} errors",
                c.url,
                100.0 * c.weight / total,
                c.requests,
                c.p50_us,
                c.p99_us,
                c.p999_us,
                c.max_us,
                c.errors
            )?;
        }
        writeln!(
            f,
            "send lag   p50 {:.1} us  p99 {:.1} us; {} requests waited for a connection",
            self.lag_p50_us, self.lag_p99_us, self.queued
        )?;
        let busy = if secs > 0.0 { 100.0 * self.cpu_ms / 1000.0 / secs } else { 0.0 };
        writeln!(f, "load cpu   {:.0} ms ({busy:.0}% of one core over the window)", self.cpu_ms)?;
        write!(f, "errors     {}", self.errors)?;
        for s in &self.error_samples {
            write!(f, "\n  - {s}")?;
        }
        Ok(())
    }
}
