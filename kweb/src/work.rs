//! `/work`: a request that costs a chosen amount of CPU, for head-of-line experiments.
//!
//! `GET /work?us=N` computes a hash chain of about N µs, `GET /work?n=K` one of exactly K
//! steps; the body names the steps and the chain's last value:
//!
//! ```text
//! work n=33512 hash=5d0c1b0e9f3e2a71
//! ```
//!
//! The chain is real, serial work (each step depends on the last, so no compiler or CPU
//! can skip or overlap steps), and its result is the same whether the handler ran in one
//! go or was preempted and resumed many times: a test compares the two. Steps per µs are
//! measured once, when the server starts ([`Work::calibrate`]).
//!
//! Off unless `--work` is given: it lets any client spend the server's CPU. For tests, a
//! request may also ask its handler to misbehave (`fault=panic`, or `fault=loop`: never
//! return, which only a timed handler's budget can end, so it is refused without
//! `--quantum-us`).

use crate::status::Status;
use crate::{splitmix, sys};

/// Longest request: 10 s of CPU. More is a unit mistake or an attack.
pub const MAX_US: u64 = 10_000_000;
/// Most steps a request may ask for directly: about MAX_US at a few ns per step.
pub const MAX_STEPS: u64 = 1 << 36;
/// Steps between two cancellation points (`parlib_timed::checkpoint`): tens of µs, so a
/// cancelled handler unwinds well within `timed::CANCEL_GRACE`, for a check that costs
/// a few ns.
const CHECK_EVERY: u64 = 1 << 14;

/// How a handler should misbehave, for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Panic halfway through the chain.
    Panic,
    /// Never return.
    Loop,
}

/// One `/work` request, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// Steps of the chain.
    pub steps: u64,
    /// A misbehaviour asked for.
    pub fault: Option<Fault>,
}

/// The calibrated endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Work {
    steps_per_us: f64,
}

impl Work {
    /// Measures the chain's speed on this CPU: the fastest of a few runs of about 2 ms,
    /// so a run the kernel interrupted does not count.
    pub fn calibrate() -> Work {
        let now = || sys::clock_ns(libc::CLOCK_MONOTONIC);
        let mut steps = 1u64 << 12;
        let mut best = f64::MAX;
        let mut runs = 0;
        while runs < 5 {
            let t = now();
            std::hint::black_box(chain(steps));
            let ns = (now() - t).max(1);
            if ns < 2_000_000 {
                steps *= 2; // too short to time well
                continue;
            }
            best = best.min(ns as f64 / steps as f64);
            runs += 1;
        }
        Work { steps_per_us: 1000.0 / best }
    }

    /// Chain steps per µs on this CPU.
    pub fn steps_per_us(&self) -> f64 {
        self.steps_per_us
    }

    /// Parses a `/work` query: `us=N` or `n=K` (one of them), and optionally `fault=`.
    /// `timed` says whether handlers run as timed calls (only they survive
    /// `fault=loop`).
    pub fn parse(&self, query: &[u8], timed: bool) -> Result<Job, Status> {
        let mut steps = None;
        let mut fault = None;
        for pair in query.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => return Err(Status::BadRequest),
            };
            match k {
                b"us" | b"n" if steps.is_some() => return Err(Status::BadRequest),
                b"us" => {
                    let us = number(v).filter(|us| (1..=MAX_US).contains(us)).ok_or(Status::BadRequest)?;
                    steps = Some(((us as f64 * self.steps_per_us).round() as u64).max(1));
                }
                b"n" => {
                    steps = Some(number(v).filter(|n| (1..=MAX_STEPS).contains(n)).ok_or(Status::BadRequest)?)
                }
                b"fault" => {
                    fault = Some(match v {
                        b"panic" => Fault::Panic,
                        b"loop" if timed => Fault::Loop,
                        _ => return Err(Status::BadRequest),
                    })
                }
                _ => return Err(Status::BadRequest),
            }
        }
        Ok(Job { steps: steps.ok_or(Status::BadRequest)?, fault })
    }
}

fn number(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Runs `job`: its chain's last value, or never (`Fault::Loop`), or a panic
/// (`Fault::Panic`).
pub fn run(job: Job) -> u64 {
    match job.fault {
        None => chain(job.steps),
        Some(Fault::Panic) => {
            std::hint::black_box(chain(job.steps / 2));
            panic!("kweb /work: fault=panic, as the request asked");
        }
        Some(Fault::Loop) => loop {
            std::hint::black_box(chain(CHECK_EVERY));
        },
    }
}

/// The response body for a chain of `steps` ending in `hash`.
pub fn body(steps: u64, hash: u64) -> String {
    format!("work n={steps} hash={hash:016x}\n")
}

/// `steps` steps of a serial hash chain (each step is SplitMix64's finaliser, a few ns
/// that nothing overlaps), with a cancellation point every `CHECK_EVERY` steps (a no-op
/// outside timed calls).
pub fn chain(steps: u64) -> u64 {
    let mut h = 0x6b77_6562_u64; // "kweb"
    let mut i = 0;
    while i < steps {
        let end = (i + CHECK_EVERY).min(steps);
        while i < end {
            h = splitmix::mix(h ^ i);
            i += 1;
        }
        parlib_timed::checkpoint();
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Work = Work { steps_per_us: 100.0 };

    #[test]
    fn a_query_names_its_size_in_microseconds_or_steps() {
        assert_eq!(W.parse(b"us=50", false), Ok(Job { steps: 5000, fault: None }));
        assert_eq!(W.parse(b"n=7", false), Ok(Job { steps: 7, fault: None }));
        assert_eq!(W.parse(b"n=7&fault=panic", false), Ok(Job { steps: 7, fault: Some(Fault::Panic) }));
        assert_eq!(W.parse(b"fault=loop&us=1", true), Ok(Job { steps: 100, fault: Some(Fault::Loop) }));
    }

    #[test]
    fn a_bad_query_is_a_bad_request() {
        for q in [
            &b""[..],
            b"us=0",
            b"us=10000001",
            b"n=0",
            b"n=-1",
            b"us=5&n=5",
            b"us=5&us=5",
            b"us",
            b"us=5&colour=red",
            b"us=5&fault=crash",
            b"us=5&fault=loop", // without timed handlers nothing could stop it
        ] {
            assert_eq!(W.parse(q, false), Err(Status::BadRequest), "{}", String::from_utf8_lossy(q));
        }
    }

    #[test]
    fn the_chain_depends_on_every_step() {
        assert_ne!(chain(1000), chain(1001));
        assert_eq!(chain(CHECK_EVERY * 3 + 5), chain(CHECK_EVERY * 3 + 5));
        assert_eq!(body(12, 0xab), "work n=12 hash=00000000000000ab\n");
    }

    #[test]
    fn calibration_gives_a_plausible_speed() {
        let w = Work::calibrate();
        // A step is a few ns on any x86-64 of the last decade; a debug build is slower.
        assert!((1.0..10_000.0).contains(&w.steps_per_us()), "{}", w.steps_per_us());
    }
}
