//! [`Report`]: the figures of a run, built from the merged per-thread tallies, and its
//! human-readable form (what `kweb-load` prints).

use std::fmt;
use std::time::Duration;

use super::stats::Tally;

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Responses that matched their probe and completed after the warm-up.
    pub requests: u64,
    /// Requests that failed: a wrong status or `Content-Length` (so also a wrong order),
    /// a framing error, a request lost to a closed connection or a connection error, a
    /// timeout. Each failed request counts once.
    pub errors: u64,
    /// The first few error descriptions (at most 10).
    pub error_samples: Vec<String>,
    /// The measured span: from the end of the warm-up to the last counted response.
    pub elapsed: Duration,
    /// `requests / elapsed`.
    pub rps: f64,
    /// Median latency in microseconds. A request's latency runs from the `send` that
    /// carried its last byte to the `recv` that completed its response.
    pub p50_us: f64,
    /// 99th percentile latency in microseconds.
    pub p99_us: f64,
    /// 99.9th percentile latency in microseconds.
    pub p999_us: f64,
    /// Largest latency in microseconds.
    pub max_us: f64,
    /// Body bytes of the counted responses.
    pub body_bytes: u64,
    /// Head bytes (status line and header fields) of the counted responses.
    pub header_bytes: u64,
    /// Idle connections the server had closed by the end.
    pub idle_closed: usize,
    /// CPU time the load threads used (`CLOCK_THREAD_CPUTIME_ID`, summed), from the end
    /// of the warm-up to the end of the load, in milliseconds: near `elapsed` times the
    /// thread count means the generator itself was saturated.
    pub cpu_ms: f64,
}

impl Report {
    /// The report of `tally`, measured from `measure_start_ns` (end of the warm-up, on the
    /// `now_ns` clock).
    pub(crate) fn from_tally(t: &Tally, measure_start_ns: u64, idle_closed: usize) -> Report {
        let elapsed = Duration::from_nanos(t.last_ns.saturating_sub(measure_start_ns));
        let us = |ns: u64| ns as f64 / 1000.0;
        Report {
            requests: t.requests,
            errors: t.errors,
            error_samples: t.error_samples.clone(),
            elapsed,
            rps: if elapsed.is_zero() { 0.0 } else { t.requests as f64 / elapsed.as_secs_f64() },
            p50_us: us(t.latency.quantile(0.5)),
            p99_us: us(t.latency.quantile(0.99)),
            p999_us: us(t.latency.quantile(0.999)),
            max_us: us(t.latency.max()),
            body_bytes: t.body_bytes,
            header_bytes: t.header_bytes,
            idle_closed,
            cpu_ms: t.cpu_ns as f64 / 1e6,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "requests   {} in {:.3} s", self.requests, self.elapsed.as_secs_f64())?;
        writeln!(f, "rate       {:.0} requests/s", self.rps)?;
        writeln!(
            f,
            "latency    p50 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us",
            self.p50_us, self.p99_us, self.p999_us, self.max_us
        )?;
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 { mib(self.body_bytes + self.header_bytes) / secs } else { 0.0 };
        writeln!(
            f,
            "bytes      body {:.1} MiB  headers {:.1} MiB  ({rate:.1} MiB/s)",
            mib(self.body_bytes),
            mib(self.header_bytes)
        )?;
        let busy = if secs > 0.0 { 100.0 * self.cpu_ms / 1000.0 / secs } else { 0.0 };
        writeln!(f, "load cpu   {:.0} ms ({busy:.0}% of one core over the run)", self.cpu_ms)?;
        if self.idle_closed > 0 {
            writeln!(f, "idle       {} idle connections closed by the server", self.idle_closed)?;
        }
        write!(f, "errors     {}", self.errors)?;
        for s in &self.error_samples {
            write!(f, "\n  - {s}")?;
        }
        Ok(())
    }
}
