//! Absolute deadlines as the timed functions take them (a `struct timespec` on
//! `CLOCK_REALTIME`, or on `CLOCK_MONOTONIC` for a condvar made with that clock), turned
//! into `parlib-sync`'s [`Deadline`], which is on `CLOCK_MONOTONIC`: the clock the
//! timeout service (the alarms layer) and the futex timeouts of plain threads use.
//!
//! A realtime deadline is converted once, when the call starts: if the system clock is
//! set while the caller waits, the wait still ends after the interval it had left then
//! (glibc's waits follow the new clock time instead).

use libc::{c_int, clockid_t, timespec};
use parlib_sync::Deadline;

/// A deadline that has always passed: what a caller gets when it must not wait at all.
pub(super) const PAST: Deadline = Deadline::at_monotonic_ns(0);

/// Reads `*abstime` as an absolute time on `clock` (`CLOCK_REALTIME` or
/// `CLOCK_MONOTONIC`).
///
/// # Errors
/// `EINVAL` if `abstime` is null or its `tv_nsec` is outside `0..1_000_000_000`.
///
/// # Safety
/// `abstime` must be null or point to a readable `timespec`.
pub(super) unsafe fn on_clock(abstime: *const timespec, clock: clockid_t) -> Result<Deadline, c_int> {
    // SAFETY: null or readable, by the caller's contract.
    let Some(ts) = (unsafe { abstime.as_ref() }) else { return Err(libc::EINVAL) };
    let r = if clock == libc::CLOCK_MONOTONIC {
        Deadline::from_monotonic(ts)
    } else {
        Deadline::from_realtime(ts)
    };
    r.map_err(|e| e.0)
}

/// Reads `*abstime` as an absolute `CLOCK_REALTIME` time (see [`on_clock`]).
///
/// # Errors
/// `EINVAL` as for [`on_clock`].
///
/// # Safety
/// As for [`on_clock`].
pub(super) unsafe fn realtime(abstime: *const timespec) -> Result<Deadline, c_int> {
    // SAFETY: forwarded contract.
    unsafe { on_clock(abstime, libc::CLOCK_REALTIME) }
}
