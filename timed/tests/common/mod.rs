//! What the timed-call tests share: an exact computation to preempt, and a loop that
//! resumes a call to completion.

#![allow(dead_code)] // each test file uses a different subset

use std::time::Duration;

use parlib_timed::{Outcome, TlsKind};

/// An exact computation long enough to be preempted many times.
pub fn hash_chain(steps: u64) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..steps {
        h = (h ^ i).wrapping_mul(0x100_0000_01b3).rotate_left(7);
        std::hint::black_box(&h);
    }
    h
}

/// Resumes `out` with `budget` until it completes, calling `between` before each resume;
/// returns the value and how many times the call stopped.
pub fn drive_with<T, K: TlsKind>(
    mut out: Outcome<T, K>,
    budget: Duration,
    mut between: impl FnMut(),
) -> (T, usize) {
    let mut stops = 0;
    loop {
        match out {
            Outcome::Completed(v) => return (v, stops),
            Outcome::Timeout(c) | Outcome::Paused(c) => {
                stops += 1;
                between();
                out = c.resume(budget).unwrap();
            }
        }
    }
}
