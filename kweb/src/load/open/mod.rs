//! # The open loop: requests at a fixed rate, whatever the server does
//!
//! The closed loop ([`crate::load::run`]) asks how fast a server can go: a new request
//! leaves only when an answer comes back, so a slow server is sent less. This loop asks
//! how long requests take at a given load: requests arrive as a Poisson process of a
//! fixed rate, each of a class drawn by weight (a URL: short and long requests, say),
//! and a server that falls behind sees its queue grow, as it would with real users.
//! That is what head-of-line blocking needs: a long request holding up short ones shows
//! in the short ones' latency only if the short ones keep arriving meanwhile.
//!
//! ```no_run
//! use std::time::Duration;
//! use kweb::load::open::{run, Class, Spec};
//!
//! let classes = vec![Class::new("/work?us=50", 99.0), Class::new("/work?us=5000", 1.0)];
//! let mut spec = Spec::new("127.0.0.1:8080".parse().unwrap(), 5000.0, classes);
//! spec.connections = 500;
//! spec.duration = Duration::from_secs(3);
//! let report = run(&spec).expect("set-up failed");
//! assert_eq!(report.errors, 0, "{report}");
//! println!("short p99 {:.0} us, long p99 {:.0} us", report.classes[0].p99_us, report.classes[1].p99_us);
//! ```
//!
//! ## Map
//!
//! | file | what it does |
//! |---|---|
//! | `mod.rs` | [`run`]: validate, probe, connect the pool, start the load threads, merge their figures |
//! | `spec.rs` | [`Spec`], [`Class`], their defaults and the checks that refuse a bad spec |
//! | `arrivals.rs` | the seeded generator, the Poisson schedule and the weighted class draw |
//! | `plan.rs` | per class: the request bytes, and the status, length and body its answers must have |
//! | `worker.rs` | a load thread: its epoll loop, arrival timer, idle and waiting FIFOs, deadlines |
//! | `conn.rs` | one pool connection: one request at a time, response framing and checks |
//! | `tally.rs` | the per-thread figures: per-class histograms, errors, lag |
//! | `report.rs` | [`Report`], [`ClassReport`] and their printed form |
//!
//! It shares the closed loop's probe, request rendering, response parser, histogram
//! and system calls (`load/`).
//!
//! ## How a run goes
//!
//! 1. The [`Spec`] is checked: a target that is not a loopback address is refused before
//!    any socket is opened, as are a rate, a weight or a setting that cannot be run.
//! 2. Each distinct URL is probed once on a fresh connection: the status and
//!    `Content-Length` of its answer, and its body if it is short, are what every later
//!    answer to it must repeat.
//! 3. The pool's connections are opened (blocking connects, then non-blocking with
//!    `TCP_NODELAY`) and split evenly over the load threads; each thread gets rate ÷
//!    threads and its own stream of the seeded generator.
//! 4. The load threads pin themselves (`cpus`), build their epoll sets and timers and
//!    wait at a barrier; the schedule starts for all of them at the same instant `t0`.
//! 5. Each arrival, at its scheduled time, goes out on the connection of the thread's
//!    share that has been idle longest; if every one is busy it waits in a FIFO, and
//!    the next connection to become idle takes the oldest waiting request. A
//!    connection never carries more than one request, so no request waits behind
//!    another on the client's side of a socket.
//! 6. Arrivals are scheduled over `[t0, t0 + duration)`; then every scheduled request is
//!    waited for, up to `timeout`.
//! 7. The threads' tallies are merged into a [`Report`].
//!
//! ## No coordinated omission
//!
//! A client that sends only when it can and times each request from its `send` lets a
//! stalled server stop the clock: the requests that would have arrived during the stall
//! are never sent, so never counted as slow (Gil Tene's "coordinated omission", the
//! reason wrk2 exists). Here a request's latency always runs from its *scheduled*
//! arrival, the moment the Poisson process says it is due, to the `recv` that completes
//! its answer: time spent waiting for an idle connection, or for this thread to wake
//! up, counts. The report says how much of it was the client's ([`Report::lag_p99_us`],
//! [`Report::queued`]), so a too-small pool or a late generator shows.
//!
//! ## What is counted
//!
//! * A request *counts* if it was scheduled at or after the end of the warm-up; its
//!   class's count and latency histogram take it when its answer is right.
//! * [`Report::rps`] counts right answers *completed* inside the measured window (end
//!   of warm-up to end of schedule), whenever they were scheduled: the offered rate when
//!   the server keeps up, and its throughput when it does not (the latency then grows
//!   with the queue, and the run ends by its timeout if the queue does not drain).
//! * Errors, each failed request once, warm-up included: a wrong status,
//!   `Content-Length` or body (bodies up to [`BODY_CHECK_MAX`]
//!   bytes are compared byte for byte); a request lost with a connection the server
//!   closed or reset (the connection is reopened); bytes that answer no request (the
//!   connection is closed and reopened); a request unanswered, a request waiting for a
//!   connection, or a connect, for `timeout` (the run stops: it never hangs); a run
//!   past `duration + timeout`.
//!
//! ## Why the numbers are fair to every server
//!
//! * **The same schedule.** With the same seed, every server is sent the same classes at
//!   the same offsets from the start, byte-identical requests from pre-rendered buffers.
//! * **Precise sends.** Each thread sleeps in `epoll_wait` until the next arrival, woken
//!   by a `timerfd` (no timer slack, ns resolution) rather than by `epoll_wait`'s
//!   millisecond timeout; a request goes out in one `send` as soon as it is due. With
//!   [`Spec::busy_poll`] it does not sleep at all, so not even a CPU's wake-up (tens of
//!   µs in a VM) delays a send or the receipt of an answer.
//! * **Cheap timing.** One `clock_gettime(CLOCK_MONOTONIC)` per loop turn, per `send`
//!   and per `recv`; latencies go to the log-linear histogram of the closed loop
//!   (error < 1%).

mod arrivals;
mod conn;
mod plan;
mod report;
mod spec;
mod tally;
mod worker;

pub use plan::BODY_CHECK_MAX;
pub use report::{ClassReport, Report};
pub use spec::{Class, Spec, MAX_RATE};

use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use arrivals::{Arrivals, Rng};
use plan::Plan;
use tally::Tally;
use worker::{Settings, Worker};

/// Runs the open-loop load `spec` describes and reports what it measured.
///
/// Returns `Err` only for a spec it refuses (a non-loopback address, impossible
/// settings) or a set-up failure (cannot connect, a probe without a usable answer, a CPU
/// that cannot be pinned). Problems with individual requests are counted in
/// [`Report::errors`].
///
/// It blocks for the whole run (at most about `timeout` for the probes plus
/// `duration + timeout` for the load). It raises the process's soft limit on open
/// descriptors if the pool needs more.
pub fn run(spec: &Spec) -> Result<Report, String> {
    spec.validate()?;
    super::check_cpus(&spec.cpus)?;
    let threads = spec.threads.min(spec.connections);
    super::reserve_fds(spec.connections)?;

    let plan = Plan::probe(spec, Instant::now() + spec.timeout)?;

    let mut shares: Vec<Vec<OwnedFd>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..spec.connections {
        shares[i * threads / spec.connections].push(super::load_connection(spec.addr, spec.timeout, i)?);
    }
    let weights: Vec<f64> = spec.classes.iter().map(|c| c.weight).collect();
    let mut seeds = Rng::new(spec.seed);
    let shares: Vec<(Vec<OwnedFd>, Arrivals)> = shares
        .into_iter()
        .map(|conns| (conns, Arrivals::new(spec.rate / threads as f64, &weights, Rng::new(seeds.next_u64()))))
        .collect();

    let settings = Settings {
        addr: spec.addr,
        warmup_ns: super::nanos(spec.warmup),
        duration_ns: super::nanos(spec.duration),
        timeout_ns: super::nanos(spec.timeout),
        busy_poll: spec.busy_poll,
    };
    let stop = AtomicBool::new(false);
    let (tallies, _t0) = super::run_threads(&spec.cpus, shares, |(conns, arrivals)| {
        let worker = Worker::new(&plan, &settings, &stop, arrivals, conns)
            .map_err(|e| format!("epoll or timer set-up: {e}"))?;
        Ok(move |t0| worker.run(t0))
    })?;
    let mut tally = Tally::new(spec.classes.len());
    for t in tallies {
        tally.merge(t);
    }
    Ok(Report::from_tally(&tally, spec))
}
