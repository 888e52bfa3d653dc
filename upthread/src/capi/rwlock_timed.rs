//! Timed rwlock acquisition, built from the try-locks because `parlib_sync::RawRwLock`
//! has no timed variants yet.
//!
//! # Protocol
//!
//! 1. Try to take the lock; done if that works.
//! 2. If the deadline has passed, `ETIMEDOUT`.
//! 3. Nap until the earlier of the deadline and now + the current nap length, then
//!    double the nap length (up to [`MAX_NAP`]) and go back to step 1.
//!
//! A nap is a timed wait on a semaphore nobody posts, private to this call: it blocks
//! only the calling uthread (through the timeout service, as every timed wait does) or
//! sleeps a plain thread on a futex, and returns `EINVAL` exactly when a real timed wait
//! would (a uthread without the alarms layer).
//!
//! What this costs compared with queueing in the lock: a timed waiter is not queued, so
//! it gets the lock up to one nap after it came free (at most [`MAX_NAP`] late), it has
//! no place in the lock's order (a timed writer does not hold back new readers), and a
//! caller that holds the lock for writing waits until the deadline (`ETIMEDOUT`) where
//! glibc reports `EDEADLK` at once. Nothing is lost or corrupted: the lock only ever
//! changes hands through `try_read_lock` / `try_write_lock`.

use core::time::Duration;

use libc::c_int;
use parlib_sync::{Deadline, Errno, RawRwLock, RawSemaphore};

/// The first nap: about the median lateness of an alarm on an idle vcore (58 µs in
/// `BENCHMARKS.md`, `alarms`, case `idle1ms`); a shorter nap would be mostly lateness.
const FIRST_NAP: Duration = Duration::from_micros(50);
/// The longest nap: a timed waiter takes a lock that came free at most this late, and
/// polls at most 1000 times a second. Ten times the p99 lateness of an idle alarm
/// (106-124 µs, same benchmark), so the nap length, not alarm jitter, sets the pace.
const MAX_NAP: Duration = Duration::from_millis(1);

/// Which hold a timed call wants.
#[derive(Clone, Copy)]
pub(super) enum Hold {
    Read,
    Write,
}

/// Takes `lock` for `hold`, waiting at most until `deadline` (module docs). Returns 0,
/// `ETIMEDOUT`, `EAGAIN` (reader count overflow) or `EINVAL` (a uthread without the
/// timeout service).
pub(super) fn acquire(lock: &RawRwLock, hold: Hold, deadline: Deadline) -> c_int {
    let mut nap = FIRST_NAP;
    loop {
        let r = match hold {
            Hold::Read => lock.try_read_lock(),
            Hold::Write => lock.try_write_lock(),
        };
        match r {
            Ok(()) => return 0,
            Err(Errno::BUSY) => {}
            Err(e) => return e.0,
        }
        if deadline.has_passed() {
            return libc::ETIMEDOUT;
        }
        let until = Deadline::after(nap).min(deadline);
        match RawSemaphore::new(0).timed_wait(until) {
            Ok(()) | Err(Errno::TIMEDOUT) => {}
            Err(e) => return e.0,
        }
        nap = (nap * 2).min(MAX_NAP);
    }
}
