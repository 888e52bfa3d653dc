//! Per-thread figures of the open loop: per class, the answered requests and their
//! latency [`Histogram`]; per thread, the errors, the completions inside the measured
//! window, and how late requests went out. Each load thread owns one [`Tally`] during
//! the load; they are merged once at the end.

use crate::load::stats::{Histogram, MAX_ERROR_SAMPLES};

/// One class's figures.
pub(crate) struct ClassTally {
    /// Right answers to requests scheduled after the warm-up.
    pub requests: u64,
    /// Failed requests of this class (all of the run, warm-up included).
    pub errors: u64,
    /// Latency of each counted request, from its scheduled arrival to its answer, ns.
    pub latency: Histogram,
}

/// What one load thread counted.
pub(crate) struct Tally {
    /// In the order of the spec's classes.
    pub classes: Vec<ClassTally>,
    /// Failed requests, of a class or of none (a reconnect that fails); every one, once.
    pub errors: u64,
    /// The first few error descriptions.
    pub error_samples: Vec<String>,
    /// Right answers completed inside the measured window, whenever they were scheduled.
    pub completed_in_window: u64,
    /// Of each counted request: from its scheduled arrival to the `send` of its last
    /// byte, ns (the generator's lateness, plus any wait for an idle connection).
    pub lag: Histogram,
    /// Counted requests that found no idle connection and waited in the client FIFO.
    pub queued: u64,
    /// CPU time the thread used from the end of the warm-up to the end of the load.
    pub cpu_ns: u64,
}

impl Tally {
    /// An empty tally for `classes` classes.
    pub(crate) fn new(classes: usize) -> Tally {
        Tally {
            classes: (0..classes)
                .map(|_| ClassTally { requests: 0, errors: 0, latency: Histogram::new() })
                .collect(),
            errors: 0,
            error_samples: Vec::new(),
            completed_in_window: 0,
            lag: Histogram::new(),
            queued: 0,
            cpu_ns: 0,
        }
    }

    /// Counts `n` failed requests, of `class` if they have one; `why` makes the
    /// description, only while samples are still wanted.
    #[cold]
    pub(crate) fn errors(&mut self, class: Option<u32>, n: u64, why: impl FnOnce() -> String) {
        self.errors += n;
        if let Some(c) = class {
            self.classes[c as usize].errors += n;
        }
        if n > 0 && self.error_samples.len() < MAX_ERROR_SAMPLES {
            self.error_samples.push(why());
        }
    }

    /// Adds `other` into this one.
    pub(crate) fn merge(&mut self, other: Tally) {
        for (a, b) in self.classes.iter_mut().zip(&other.classes) {
            a.requests += b.requests;
            a.errors += b.errors;
            a.latency.merge(&b.latency);
        }
        self.errors += other.errors;
        let room = MAX_ERROR_SAMPLES.saturating_sub(self.error_samples.len());
        self.error_samples.extend(other.error_samples.into_iter().take(room));
        self.completed_in_window += other.completed_in_window;
        self.lag.merge(&other.lag);
        self.queued += other.queued;
        self.cpu_ns += other.cpu_ns;
    }
}
