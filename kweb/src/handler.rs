//! Running a `/work` handler: inline, or as a timed call that long requests cannot
//! hold the vcore with (`--quantum-us`; the head-of-line experiment of Boucher et al.,
//! "Lightweight Preemptible Functions", USENIX ATC 2020, done on kweb).
//!
//! # A timed handler's life
//!
//! 1. The worker launches the handler as a `parlib-timed` call with budget Q, the
//!    quantum. Most handlers return within it, and the worker answers as for any request.
//! 2. One that runs out of its quantum is suspended at a safe point, and the worker
//!    gets its continuation. The worker first writes the responses of the requests its
//!    turn answered before this one (they are complete, and order on the connection
//!    allows them), so they do not wait for the long one.
//! 3. It yields its vcore once, so that the poller (which the preemption's pass through
//!    vcore context made runnable if readiness was pending) queues the connections whose
//!    requests arrived during the quantum. It then puts the continuation back in its
//!    shard's connection queue, behind every connection waiting now
//!    (`ConnQueue::wait_turn`), and blocks. Other workers take those connections and
//!    serve them; when one reaches the continuation's place, it wakes this worker. (If
//!    no worker is idle to do so, the worker goes straight on: the yield was its turn.)
//! 4. The worker resumes the handler for another quantum, and so on: step 2 or the
//!    answer. Requests behind it on the same connection wait in the worker's buffer, so
//!    responses leave in order.
//! 5. A handler whose run time (the quanta it used, not the time it waited) reaches the
//!    handler budget (`--handler-budget-ms`) is cancelled, and the request gets a 503.
//!    A handler that panics gets a 503 too. The server goes on either way.
//!
//! The continuation stays with its worker (step 3 queues the worker, not the call): a
//! call runs on its launcher's TLS, and moving it to another worker would take a TLS
//! block of its own, a Linux thread per request (`parlib_timed::OwnTls`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parlib_timed::{self as timed, Outcome};

use crate::status::Status;
use crate::sys;
use crate::work::{self, Job};

/// Counts of what timed handlers did, for `url_cmd stats`.
#[derive(Default)]
pub struct HandlerStats {
    /// Times a handler ran out of its quantum and waited behind the queue.
    pub timeouts: AtomicU64,
    /// Handlers cancelled at the end of their budget.
    pub cancelled: AtomicU64,
    /// Handlers that panicked.
    pub panicked: AtomicU64,
}

/// How handlers run.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Budget of one launch or resume.
    pub quantum: Duration,
    /// Total run time a handler may use.
    pub budget: Duration,
}

/// Runs `job` to completion on the calling worker: its chain's value, or a 503 if it
/// panicked.
pub fn run_inline(job: Job, stats: &HandlerStats) -> Result<u64, Status> {
    catch_unwind(|| work::run(job)).map_err(|_| {
        stats.panicked.fetch_add(1, Ordering::Relaxed);
        Status::Unavailable
    })
}

/// Runs `job` as a timed call (module docs). After each timeout it calls `wait_turn`,
/// which gives the rest of the server its turn (steps 2 and 3) and returns whether the
/// request still matters (false: its connection failed, or the server is stopping; the
/// handler is cancelled).
pub fn run_timed(
    job: Job,
    t: Timing,
    stats: &HandlerStats,
    mut wait_turn: impl FnMut() -> bool,
) -> Result<u64, Status> {
    let now = || sys::clock_ns(libc::CLOCK_MONOTONIC);
    let budget = t.budget.as_nanos() as u64;
    let mut used = 0u64;
    let mut start = now();
    let mut out = catch_unwind(|| timed::launch(t.quantum, move || work::run(job)));
    loop {
        let c = match out {
            Ok(Ok(Outcome::Completed(v))) => return Ok(v),
            Ok(Ok(Outcome::Timeout(c) | Outcome::Paused(c))) => c,
            // No stack or clock for the call (`Error::Resource`): the server is out of
            // memory, and says so as for any overload.
            Ok(Err(_)) => return Err(Status::Unavailable),
            Err(_) => {
                stats.panicked.fetch_add(1, Ordering::Relaxed);
                return Err(Status::Unavailable);
            }
        };
        used += now() - start;
        if used >= budget {
            stats.cancelled.fetch_add(1, Ordering::Relaxed);
            c.cancel();
            return Err(Status::Unavailable);
        }
        stats.timeouts.fetch_add(1, Ordering::Relaxed);
        if !wait_turn() {
            c.cancel();
            return Err(Status::Unavailable);
        }
        let slice = t.quantum.min(Duration::from_nanos(budget - used));
        start = now();
        out = catch_unwind(AssertUnwindSafe(|| c.resume(slice)));
    }
}
