//! [`Spec`] and [`Class`]: what an open-loop run does, and the checks that refuse a bad
//! one before any socket is opened.

use std::net::SocketAddr;
use std::time::Duration;

use crate::load::spec::{check_path, check_target};

/// The highest rate accepted, requests per second: ten times what one load thread can
/// send (some 100 000 a second: a `send`, a wake-up, a `recv` and a head parse each, µs
/// apiece), so a rate beyond it is a typo, not a plan.
pub const MAX_RATE: f64 = 1_000_000.0;

/// One class of requests: a URL and how often it is drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct Class {
    /// The request path, starting with `/`.
    pub url: String,
    /// Its weight: each request is of this class with probability weight ÷ the sum of
    /// the weights. Finite and above zero.
    pub weight: f64,
}

impl Class {
    /// A class for `url` with `weight`.
    pub fn new(url: impl Into<String>, weight: f64) -> Class {
        Class { url: url.into(), weight }
    }
}

/// What an open-loop run does. Build one with [`Spec::new`] and change the fields you
/// need.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The server. Must be a loopback address (127.0.0.0/8 or ::1), as for the closed
    /// loop.
    pub addr: SocketAddr,
    /// Requests per second, all load threads together: the mean of the Poisson arrival
    /// process. Above zero, at most [`MAX_RATE`].
    pub rate: f64,
    /// The request classes (at least one); each arrival draws one by weight.
    pub classes: Vec<Class>,
    /// Connections in the pool (at least 1). Each carries at most one request at a time;
    /// a request that finds none idle waits in a client-side FIFO.
    pub connections: usize,
    /// Requests are scheduled over this long (more than zero); then the run waits for
    /// every scheduled request to be answered, for at most `timeout`.
    pub duration: Duration,
    /// Requests scheduled in the first `warmup` are checked but not counted in the
    /// figures (zero: none). Shorter than `duration`.
    pub warmup: Duration,
    /// Load threads (at least 1): each runs its own Poisson process of rate ÷ threads
    /// over its own share of the pool (the sum of independent Poisson processes is a
    /// Poisson process of the summed rate).
    pub threads: usize,
    /// If not empty, load thread `k` pins itself to CPU `cpus[k % cpus.len()]`.
    pub cpus: Vec<usize>,
    /// Hard bound on the run: a request unanswered this long after it was sent, a
    /// request waiting this long for a connection, a connect taking this long, or a run
    /// longer than `duration + timeout` stops it, and its unanswered requests are
    /// reported as errors. It also bounds each probe and each connect of the pool.
    pub timeout: Duration,
    /// Seeds the arrival times and the class draws: two runs with the same seed, rate
    /// and classes schedule the same requests at the same offsets from their start.
    pub seed: u64,
    /// The load threads never sleep: they poll their epoll set without blocking, so
    /// that neither a send nor the receipt of an answer waits for an idle CPU to wake
    /// (tens of µs, and hundreds in the tail, in a VM), time that would count in every
    /// latency. Each thread then keeps its CPU busy: for a CPU of the generator's own.
    pub busy_poll: bool,
}

impl Spec {
    /// A spec of `rate` requests per second drawn from `classes` on `addr` with the
    /// defaults: 100 connections, for 5 s, no warm-up, 1 load thread, no pinning, a 30 s
    /// timeout, seed 1, sleeping between events.
    pub fn new(addr: SocketAddr, rate: f64, classes: Vec<Class>) -> Spec {
        Spec {
            addr,
            rate,
            classes,
            connections: 100,
            duration: Duration::from_secs(5),
            warmup: Duration::ZERO,
            threads: 1,
            cpus: Vec::new(),
            timeout: Duration::from_secs(30),
            seed: 1,
            busy_poll: false,
        }
    }

    /// Refuses a spec that cannot be run, with a message that says why.
    pub(crate) fn validate(&self) -> Result<(), String> {
        check_target(self.addr)?;
        if !(self.rate > 0.0 && self.rate <= MAX_RATE) {
            return Err(format!("rate {}: requests per second above 0 and at most {MAX_RATE}", self.rate));
        }
        if self.classes.is_empty() {
            return Err("give at least one request class (URL)".into());
        }
        for c in &self.classes {
            check_path(&c.url)?;
            if !(c.weight.is_finite() && c.weight > 0.0) {
                return Err(format!("weight {} of {}: a finite number above 0", c.weight, c.url));
            }
        }
        if self.connections == 0 {
            return Err("connections must be at least 1".into());
        }
        if self.threads == 0 {
            return Err("threads must be at least 1".into());
        }
        if self.duration.is_zero() {
            return Err("duration must be more than zero".into());
        }
        if self.warmup >= self.duration {
            return Err("warmup must be shorter than duration: nothing would be counted".into());
        }
        if self.timeout.is_zero() {
            return Err("timeout must be more than zero".into());
        }
        Ok(())
    }
}
