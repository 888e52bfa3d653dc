//! Counting semaphores, in `sem_t`'s 32 bytes.
//!
//! A post with waiters queued hands the unit directly to the first waiter instead of
//! incrementing the count, so a woken waiter never has to compete for it again.
//!
//! # Interruptible waits
//!
//! [`RawSemaphore::wait_interruptible`] and [`RawSemaphore::timed_wait_interruptible`]
//! can also be ended by `parlib_uthread::interrupt_wait` (what `pthread_cancel` and
//! uthread-directed signals use): they return `EINTR` *without* a unit. A post racing
//! the interrupt loses nothing: the queue lock orders them, so either the post unlinked
//! the waiter first and handed it the unit (the wait succeeds, the interrupt does
//! nothing), or the interrupt unlinked it first and the post finds the next waiter or
//! adds the unit to the count.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parlib_uthread::BlockReason;

use crate::errno::Errno;
use crate::timeout::Deadline;
use crate::waitq::{block_until, Ended, QLock, WaitQueue, Waiter};

/// Largest semaphore value, glibc's `SEM_VALUE_MAX`.
pub const SEM_VALUE_MAX: u32 = i32::MAX as u32;

/// A `sem_t`-shaped counting semaphore that blocks only the calling uthread.
#[repr(C)]
pub struct RawSemaphore {
    qlock: QLock,
    value: AtomicU32,
    _reserved: AtomicU64,
    waiters: WaitQueue,
}

const _: () =
    assert!(core::mem::size_of::<RawSemaphore>() == 32 && core::mem::align_of::<RawSemaphore>() == 8);
const _: () = assert!(core::mem::size_of::<RawSemaphore>() == core::mem::size_of::<libc::sem_t>());

impl RawSemaphore {
    /// A semaphore holding `value` units.
    pub const fn new(value: u32) -> RawSemaphore {
        RawSemaphore {
            qlock: QLock(AtomicU32::new(0)),
            value: AtomicU32::new(value),
            _reserved: AtomicU64::new(0),
            waiters: WaitQueue::new(),
        }
    }

    /// (Re)initialises with `value` units.
    ///
    /// # Errors
    /// `EINVAL` if `value` exceeds [`SEM_VALUE_MAX`].
    pub fn init(&self, value: u32) -> Result<(), Errno> {
        if value > SEM_VALUE_MAX {
            return Err(Errno::INVAL);
        }
        self.value.store(value, Ordering::Relaxed);
        Ok(())
    }

    /// Takes a unit, blocking the calling uthread while there is none.
    pub fn wait(&self) {
        self.take(None, false, "Semaphore::wait")
            .expect("only a post ends a wait with no deadline that cannot be interrupted");
    }

    /// Takes a unit, waiting at most until `deadline`.
    ///
    /// # Errors
    /// `ETIMEDOUT` if none came in time; `EINVAL` on a uthread without a timeout
    /// service (`parlib_alarms::init`).
    pub fn timed_wait(&self, deadline: Deadline) -> Result<(), Errno> {
        self.take(Some(deadline), false, "Semaphore::timed_wait")
    }

    /// Like [`wait`](RawSemaphore::wait), but [`parlib_uthread::interrupt_wait`] can end
    /// the wait early (module docs).
    ///
    /// # Errors
    /// `EINTR` if interrupted (or an interrupt was pending): no unit was taken.
    pub fn wait_interruptible(&self) -> Result<(), Errno> {
        self.take(None, true, "Semaphore::wait_interruptible")
    }

    /// Like [`timed_wait`](RawSemaphore::timed_wait), but
    /// [`parlib_uthread::interrupt_wait`] can end the wait early (module docs).
    ///
    /// # Errors
    /// `EINTR` if interrupted: no unit was taken; otherwise as `timed_wait`.
    pub fn timed_wait_interruptible(&self, deadline: Deadline) -> Result<(), Errno> {
        self.take(Some(deadline), true, "Semaphore::timed_wait_interruptible")
    }

    /// The waits above: `what` names the caller if it would block in vcore context.
    fn take(&self, deadline: Option<Deadline>, interruptible: bool, what: &str) -> Result<(), Errno> {
        let g = self.qlock.lock();
        let v = self.value.load(Ordering::Relaxed);
        if v > 0 {
            self.value.store(v - 1, Ordering::Relaxed);
            return Ok(());
        }
        if deadline.is_some_and(Deadline::has_passed) {
            return Err(Errno::TIMEDOUT);
        }
        let mut node = Waiter::for_caller(what);
        // SAFETY: under the queue lock; `node` stays alive until it is unlinked (by a
        // post, the timeout, an interrupt, or `block_until` itself on error).
        unsafe { self.waiters.push_back(&mut node) };
        match block_until(g, &node, &self.waiters, BlockReason::Semaphore, deadline, interruptible)? {
            Ended::Woken => Ok(()), // a post handed us its unit
            Ended::TimedOut => Err(Errno::TIMEDOUT),
            Ended::Interrupted => Err(Errno::INTR),
        }
    }

    /// Takes a unit if there is one.
    ///
    /// # Errors
    /// `EAGAIN` if there is none.
    pub fn try_wait(&self) -> Result<(), Errno> {
        let _g = self.qlock.lock();
        let v = self.value.load(Ordering::Relaxed);
        if v == 0 {
            return Err(Errno::AGAIN);
        }
        self.value.store(v - 1, Ordering::Relaxed);
        Ok(())
    }

    /// Adds a unit, handing it to the first waiter if there is one.
    ///
    /// # Errors
    /// `EOVERFLOW` if the value would exceed [`SEM_VALUE_MAX`].
    pub fn post(&self) -> Result<(), Errno> {
        let g = self.qlock.lock();
        // SAFETY: under the queue lock.
        if let Some(w) = unsafe { self.waiters.pop_front() } {
            drop(g);
            // SAFETY: unlinked under the lock just now; woken once.
            unsafe { Waiter::wake(w) };
            return Ok(());
        }
        let v = self.value.load(Ordering::Relaxed);
        if v == SEM_VALUE_MAX {
            return Err(Errno::OVERFLOW);
        }
        self.value.store(v + 1, Ordering::Relaxed);
        Ok(())
    }

    /// The number of units now (0 while callers wait, as glibc reports).
    pub fn value(&self) -> u32 {
        self.value.load(Ordering::Relaxed)
    }

    /// Checks that it may be destroyed.
    ///
    /// # Errors
    /// `EBUSY` if callers wait on it.
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

/// A counting semaphore.
pub struct Semaphore {
    raw: RawSemaphore,
}

impl Semaphore {
    /// A semaphore holding `value` units.
    pub const fn new(value: u32) -> Semaphore {
        Semaphore { raw: RawSemaphore::new(value) }
    }

    /// Takes a unit, blocking the calling uthread while there is none.
    pub fn acquire(&self) {
        self.raw.wait();
    }

    /// Takes a unit, waiting at most `timeout`; false if none came in time.
    ///
    /// # Panics
    /// On a uthread, if no timeout service is installed (`parlib_alarms::init`).
    pub fn acquire_timeout(&self, timeout: core::time::Duration) -> bool {
        match self.raw.timed_wait(Deadline::after(timeout)) {
            Ok(()) => true,
            Err(Errno::TIMEDOUT) => false,
            Err(e) => panic!("Semaphore::acquire_timeout: {e} (is parlib_alarms initialised?)"),
        }
    }

    /// Takes a unit if there is one.
    pub fn try_acquire(&self) -> bool {
        self.raw.try_wait().is_ok()
    }

    /// Adds a unit.
    ///
    /// # Panics
    /// If the value would exceed [`SEM_VALUE_MAX`].
    pub fn release(&self) {
        self.raw.post().expect("semaphore value overflow");
    }

    /// The number of units now.
    pub fn value(&self) -> u32 {
        self.raw.value()
    }
}
