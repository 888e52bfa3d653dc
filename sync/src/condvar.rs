//! Condition variables, in `pthread_cond_t`'s 48 bytes.
//!
//! A waiter queues itself under the condvar's queue lock *before* releasing the mutex,
//! then blocks; a signal unlinks the first waiter under the same lock. So a signal sent
//! after the waiter released the mutex always finds it queued: no lost wake-up. Woken
//! waiters re-acquire the mutex and, Mesa-style, re-check their predicate.
//!
//! A condvar also records the clock its callers measure absolute deadlines on
//! ([`RawCondvar::with_clock`], as `pthread_condattr_setclock` sets it), in a word of its
//! own, 0 being `CLOCK_REALTIME`: zeroed storage (`PTHREAD_COND_INITIALIZER`) is a
//! realtime condvar, as in glibc. The condvar does not use it itself: `timed_wait` takes
//! a [`Deadline`], already on `CLOCK_MONOTONIC`; the clock tells the caller how to make
//! that deadline from an absolute time (`Deadline::from_realtime`, `from_monotonic`).
//!
//! # Interruptible waits
//!
//! [`RawCondvar::wait_interruptible`] and [`RawCondvar::timed_wait_interruptible`] can
//! also be ended by `parlib_uthread::interrupt_wait` (what `pthread_cancel` and
//! uthread-directed signals use): the waiter leaves the queue, re-acquires the mutex and
//! returns `EINTR`, which to a caller that ignores it is a spurious wake-up (POSIX allows
//! those). A signal that races the interrupt is never lost: either it unlinked the
//! waiter first (the wait ends normally) or it finds the waiter gone and wakes the next
//! one.

use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use parlib_uthread::BlockReason;

use crate::errno::Errno;
use crate::mutex::{MutexGuard, RawMutex};
use crate::timeout::Deadline;
use crate::waitq::{block_until, Ended, QLock, WaitQueue, Waiter};

/// A pthread-shaped condition variable that blocks only the calling uthread.
#[repr(C)]
pub struct RawCondvar {
    qlock: QLock,
    /// The clock absolute deadlines are given on (a `clockid_t`; 0 = `CLOCK_REALTIME`).
    clock: AtomicI32,
    waiters: WaitQueue,
    _pad: [AtomicU64; 3],
}

const _: () = assert!(core::mem::size_of::<RawCondvar>() == 48 && core::mem::align_of::<RawCondvar>() == 8);
const _: () = assert!(core::mem::size_of::<RawCondvar>() == core::mem::size_of::<libc::pthread_cond_t>());
// Zeroed storage must be a realtime condvar.
const _: () = assert!(libc::CLOCK_REALTIME == 0);

impl Default for RawCondvar {
    fn default() -> Self {
        RawCondvar::new()
    }
}

impl RawCondvar {
    /// A condvar with no waiters on `CLOCK_REALTIME` (the same as all-zero bytes).
    pub const fn new() -> RawCondvar {
        RawCondvar::with_clock(libc::CLOCK_REALTIME)
    }

    /// A condvar with no waiters whose callers give deadlines on `clock` (module docs).
    /// Any clock id is recorded as given; which ones to accept is the caller's choice
    /// (glibc's `pthread_condattr_setclock` takes `CLOCK_REALTIME` and `CLOCK_MONOTONIC`).
    pub const fn with_clock(clock: libc::clockid_t) -> RawCondvar {
        RawCondvar {
            qlock: QLock(AtomicU32::new(0)),
            clock: AtomicI32::new(clock),
            waiters: WaitQueue::new(),
            _pad: [const { AtomicU64::new(0) }; 3],
        }
    }

    /// The clock given to [`with_clock`](RawCondvar::with_clock); `CLOCK_REALTIME` for
    /// [`new`](RawCondvar::new) and zeroed storage.
    pub fn clock(&self) -> libc::clockid_t {
        self.clock.load(Ordering::Relaxed)
    }

    /// Atomically releases `mutex` and waits for a signal, then re-acquires `mutex`.
    /// Spurious wake-ups are possible: re-check the predicate.
    ///
    /// # Errors
    /// `EPERM` if the caller does not hold `mutex` (recursive and error-checking
    /// mutexes know their owner; for normal mutexes, if it is not locked at all).
    pub fn wait(&self, mutex: &RawMutex) -> Result<(), Errno> {
        self.wait_until(mutex, None, false, "Condvar::wait")
    }

    /// Like [`wait`](RawCondvar::wait), but gives up at `deadline`. The mutex is held again
    /// on return either way.
    ///
    /// # Errors
    /// `ETIMEDOUT` at the deadline; `EPERM` as for `wait`; `EINVAL` on a uthread without
    /// a timeout service (`parlib_alarms::init`), with the mutex still held.
    pub fn timed_wait(&self, mutex: &RawMutex, deadline: Deadline) -> Result<(), Errno> {
        self.wait_until(mutex, Some(deadline), false, "Condvar::timed_wait")
    }

    /// Like [`wait`](RawCondvar::wait), but [`parlib_uthread::interrupt_wait`] can end
    /// the wait early (module docs). The mutex is held again on return either way.
    ///
    /// # Errors
    /// `EINTR` if the wait was interrupted (or an interrupt was pending); `EPERM` as for
    /// `wait`.
    pub fn wait_interruptible(&self, mutex: &RawMutex) -> Result<(), Errno> {
        self.wait_until(mutex, None, true, "Condvar::wait_interruptible")
    }

    /// Like [`timed_wait`](RawCondvar::timed_wait), but [`parlib_uthread::interrupt_wait`]
    /// can end the wait early (module docs). The mutex is held again on return either way.
    ///
    /// # Errors
    /// `EINTR` if interrupted; otherwise as `timed_wait`.
    pub fn timed_wait_interruptible(&self, mutex: &RawMutex, deadline: Deadline) -> Result<(), Errno> {
        self.wait_until(mutex, Some(deadline), true, "Condvar::timed_wait_interruptible")
    }

    /// The waits above: `what` names the caller if it would block in vcore context.
    fn wait_until(
        &self,
        mutex: &RawMutex,
        deadline: Option<Deadline>,
        interruptible: bool,
        what: &str,
    ) -> Result<(), Errno> {
        if deadline.is_some_and(Deadline::has_passed) {
            return Err(Errno::TIMEDOUT); // released and re-acquired, as far as anyone can tell
        }
        let g = self.qlock.lock();
        let mut node = Waiter::for_caller(what);
        // SAFETY: under the queue lock; `node` stays alive until it is unlinked (by a
        // signal, the timeout, an interrupt, or `block_until` itself on error).
        unsafe { self.waiters.push_back(&mut node) };
        if let Err(e) = mutex.unlock() {
            // SAFETY: still under the queue lock, and `node` is linked here.
            unsafe { self.waiters.unlink(&mut node) };
            return Err(e);
        }
        let ended = block_until(g, &node, &self.waiters, BlockReason::Condvar, deadline, interruptible);
        mutex.lock()?;
        match ended? {
            Ended::Woken => Ok(()),
            Ended::TimedOut => Err(Errno::TIMEDOUT),
            Ended::Interrupted => Err(Errno::INTR),
        }
    }

    /// Wakes one waiter, if any.
    pub fn signal(&self) {
        let g = self.qlock.lock();
        // SAFETY: under the queue lock.
        let w = unsafe { self.waiters.pop_front() };
        drop(g);
        if let Some(w) = w {
            // SAFETY: unlinked under the lock just now; woken once.
            unsafe { Waiter::wake(w) };
        }
    }

    /// Wakes every waiter.
    pub fn broadcast(&self) {
        let _g = self.qlock.lock();
        // SAFETY: under the queue lock; each node is unlinked before it is woken, and
        // waking under the lock is fine: a woken waiter never needs this lock to leave.
        while let Some(w) = unsafe { self.waiters.pop_front() } {
            // SAFETY: unlinked just now; woken once.
            unsafe { Waiter::wake(w) };
        }
    }

    /// Checks that the condvar may be destroyed.
    ///
    /// # Errors
    /// `EBUSY` if uthreads or threads wait on it.
    pub fn destroy(&self) -> Result<(), Errno> {
        let _g = self.qlock.lock();
        // SAFETY: under the queue lock.
        if unsafe { self.waiters.is_empty() } {
            Ok(())
        } else {
            Err(Errno::BUSY)
        }
    }
}

/// A condition variable for [`Mutex`](crate::Mutex) guards.
#[derive(Default)]
pub struct Condvar {
    raw: RawCondvar,
}

impl Condvar {
    /// A condvar with no waiters.
    pub const fn new() -> Condvar {
        Condvar { raw: RawCondvar::new() }
    }

    /// Releases the guard's mutex, waits for a notification, and re-locks.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        let m = guard.mutex();
        core::mem::forget(guard); // `wait` unlocks and re-locks the mutex itself
        self.raw.wait(m.raw()).expect("the guard proves the mutex is held");
        MutexGuard::relock(m)
    }

    /// Waits until `condition` is false, re-checking after every wake-up.
    pub fn wait_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> MutexGuard<'a, T> {
        while condition(&mut guard) {
            guard = self.wait(guard);
        }
        guard
    }

    /// Like [`wait`](Condvar::wait), but gives up after `timeout`; the flag says whether
    /// it timed out.
    ///
    /// # Panics
    /// On a uthread, if no timeout service is installed (`parlib_alarms::init`).
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: core::time::Duration,
    ) -> (MutexGuard<'a, T>, bool) {
        let m = guard.mutex();
        core::mem::forget(guard); // `timed_wait` unlocks and re-locks the mutex itself
        let r = self.raw.timed_wait(m.raw(), Deadline::after(timeout));
        let g = MutexGuard::relock(m);
        match r {
            Ok(()) => (g, false),
            Err(Errno::TIMEDOUT) => (g, true),
            Err(e) => panic!("Condvar::wait_timeout: {e} (is parlib_alarms initialised?)"),
        }
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) {
        self.raw.signal();
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.raw.broadcast();
    }
}
