//! Deadlines for timed waits, and the service that enforces them on uthreads.
//!
//! A plain thread waits with a kernel futex timeout. A uthread cannot: its vcore must
//! keep running others. So a timed wait on a uthread arms an *alarm* whose callback, in
//! vcore context at the deadline, unlinks the waiter (if a waker has not already) and
//! wakes it with "timed out". Alarms live in `parlib-alarms`, which `DESIGN.md` §1 puts
//! above this crate; so this crate defines the [`TimeoutService`] it needs and the
//! alarms layer installs itself as that service (`parlib_alarms::init`). Without it,
//! timed waits on uthreads return `EINVAL`.
//!
//! The race between the deadline and a wake-up is settled under the primitive's queue
//! lock: whoever unlinks the waiter first decides the outcome, and the other finds
//! nothing to do. A wake-up that arrives together with the timeout is therefore never
//! lost: either the waiter returns success, or the wake-up goes to the next waiter (or,
//! for a semaphore, back into its count).

use core::time::Duration;
use std::sync::OnceLock;

use crate::errno::Errno;

/// An absolute deadline on `CLOCK_MONOTONIC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(u64);

impl Deadline {
    /// `d` from now.
    pub fn after(d: Duration) -> Deadline {
        Deadline(now_ns().saturating_add(d.as_nanos().min(u64::MAX as u128) as u64))
    }

    /// At `ns` on `CLOCK_MONOTONIC`.
    pub const fn at_monotonic_ns(ns: u64) -> Deadline {
        Deadline(ns)
    }

    /// An absolute `CLOCK_REALTIME` time (as `pthread_mutex_timedlock`, `sem_timedwait`
    /// and default condvars take), converted to a monotonic deadline now.
    ///
    /// # Errors
    /// `EINVAL` if `tv_nsec` is outside `0..1e9` (POSIX).
    pub fn from_realtime(ts: &libc::timespec) -> Result<Deadline, Errno> {
        let target = timespec_ns(ts)?;
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: a valid clock id and timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
        let real_now = timespec_ns(&now)?;
        Ok(Deadline(now_ns().saturating_add(target.saturating_sub(real_now))))
    }

    /// An absolute `CLOCK_MONOTONIC` time.
    ///
    /// # Errors
    /// `EINVAL` if `tv_nsec` is outside `0..1e9`.
    pub fn from_monotonic(ts: &libc::timespec) -> Result<Deadline, Errno> {
        timespec_ns(ts).map(Deadline)
    }

    /// The deadline in nanoseconds on `CLOCK_MONOTONIC`.
    pub fn ns(self) -> u64 {
        self.0
    }

    /// Whether it has passed.
    pub fn has_passed(self) -> bool {
        now_ns() >= self.0
    }
}

fn timespec_ns(ts: &libc::timespec) -> Result<u64, Errno> {
    if !(0..1_000_000_000).contains(&ts.tv_nsec) {
        return Err(Errno::INVAL);
    }
    if ts.tv_sec < 0 {
        return Ok(0); // long past
    }
    Ok((ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64))
}

/// `CLOCK_MONOTONIC` now, in nanoseconds.
pub fn now_ns() -> u64 {
    parlib_vcore::futex::monotonic_ns()
}

/// Storage a [`TimeoutService`] keeps its record in: it lives in the waiter's stack
/// frame, so arming a timeout never allocates. 128 bytes, 16-aligned.
#[repr(C, align(16))]
pub struct TimeoutSlot(pub [u64; 16]);

impl TimeoutSlot {
    /// Zeroed storage.
    pub const fn new() -> TimeoutSlot {
        TimeoutSlot([0; 16])
    }
}

impl Default for TimeoutSlot {
    fn default() -> Self {
        TimeoutSlot::new()
    }
}

/// Calls a function in vcore context at a deadline: what timed waits on uthreads need.
/// `parlib_alarms` implements it.
pub trait TimeoutService: Sync {
    /// Calls `f(arg)` in vcore context at `deadline` unless cancelled first.
    ///
    /// # Safety
    /// `slot` must stay valid and unmoved until `f` has been called or `cancel` returned
    /// true.
    unsafe fn arm(&self, slot: *mut TimeoutSlot, deadline: Deadline, f: fn(usize), arg: usize);

    /// Cancels an armed timeout: `true` if `f` will never be called; `false` if it has
    /// been called. Either way the service no longer touches `slot` when this returns
    /// (it waits for a call in progress to finish).
    ///
    /// # Safety
    /// `slot` must have been armed.
    unsafe fn cancel(&self, slot: *mut TimeoutSlot) -> bool;
}

static SERVICE: OnceLock<&'static dyn TimeoutService> = OnceLock::new();

/// Installs the timeout service (the alarms layer does, at init). The first one stays.
pub fn set_timeout_service(service: &'static dyn TimeoutService) {
    let _ = SERVICE.set(service);
}

pub(crate) fn service() -> Option<&'static dyn TimeoutService> {
    SERVICE.get().copied()
}
