//! Barriers, in `pthread_barrier_t`'s 32 bytes.
//!
//! The last of `count` arrivals starts a new phase and wakes everyone queued; it
//! is the "serial" one (`PTHREAD_BARRIER_SERIAL_THREAD`). Only that arrival wakes
//! waiters, so a woken waiter is released and returns without touching the barrier.

use core::sync::atomic::{AtomicU32, Ordering};

use parlib_uthread::BlockReason;

use crate::errno::Errno;
use crate::waitq::{block, QLock, WaitQueue, Waiter};

/// A pthread-shaped barrier that blocks only the calling uthread.
#[repr(C)]
pub struct RawBarrier {
    qlock: QLock,
    /// Arrivals per phase; 0 until initialised.
    count: AtomicU32,
    arrived: AtomicU32,
    /// Keeps glibc's 32 bytes.
    _reserved: AtomicU32,
    waiters: WaitQueue,
}

const _: () = assert!(core::mem::size_of::<RawBarrier>() == 32 && core::mem::align_of::<RawBarrier>() == 8);
const _: () = assert!(core::mem::size_of::<RawBarrier>() == core::mem::size_of::<libc::pthread_barrier_t>());

impl RawBarrier {
    /// A barrier for `count` arrivals per phase.
    pub const fn new(count: u32) -> RawBarrier {
        RawBarrier {
            qlock: QLock(AtomicU32::new(0)),
            count: AtomicU32::new(count),
            arrived: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
            waiters: WaitQueue::new(),
        }
    }

    /// (Re)initialises for `count` arrivals per phase.
    ///
    /// # Errors
    /// `EINVAL` if `count` is 0; `EBUSY` if a phase is in progress.
    pub fn init(&self, count: u32) -> Result<(), Errno> {
        if count == 0 {
            return Err(Errno::INVAL);
        }
        let _g = self.qlock.lock();
        if self.arrived.load(Ordering::Relaxed) != 0 {
            return Err(Errno::BUSY);
        }
        self.count.store(count, Ordering::Relaxed);
        Ok(())
    }

    /// Waits until `count` callers have arrived. Returns `true` for exactly one of them.
    ///
    /// # Errors
    /// `EINVAL` if the barrier was never initialised (count 0).
    pub fn wait(&self) -> Result<bool, Errno> {
        let g = self.qlock.lock();
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return Err(Errno::INVAL);
        }
        let arrived = self.arrived.load(Ordering::Relaxed) + 1;
        if arrived == count {
            self.arrived.store(0, Ordering::Relaxed);
            // SAFETY: under the queue lock; each node is unlinked before it is woken.
            while let Some(w) = unsafe { self.waiters.pop_front() } {
                // SAFETY: unlinked just now; woken once.
                unsafe { Waiter::wake(w) };
            }
            return Ok(true);
        }
        self.arrived.store(arrived, Ordering::Relaxed);
        let mut node = Waiter::for_caller("Barrier::wait");
        // SAFETY: under the queue lock; `node` stays alive until a waker unlinks it.
        unsafe { self.waiters.push_back(&mut node) };
        block(g, &node, BlockReason::Barrier);
        // Only the last arrival of a phase wakes waiters, so being woken means released.
        // Return without touching the barrier again: the serial caller may destroy and
        // reuse it at once (POSIX allows it; glibc's destroy waits for us instead).
        Ok(false)
    }

    /// Checks that it may be destroyed.
    ///
    /// # Errors
    /// `EBUSY` if callers wait at it.
    pub fn destroy(&self) -> Result<(), Errno> {
        let _g = self.qlock.lock();
        if self.arrived.load(Ordering::Relaxed) != 0 {
            Err(Errno::BUSY)
        } else {
            Ok(())
        }
    }
}

/// A barrier for a fixed number of uthreads (or threads).
pub struct Barrier {
    raw: RawBarrier,
}

impl Barrier {
    /// A barrier for `n` participants per phase.
    ///
    /// # Panics
    /// If `n` is 0.
    pub fn new(n: u32) -> Barrier {
        assert!(n > 0, "a Barrier needs at least one participant");
        Barrier { raw: RawBarrier::new(n) }
    }

    /// Waits for all participants; returns `true` for exactly one of them per phase.
    pub fn wait(&self) -> bool {
        self.raw.wait().expect("an initialised barrier")
    }
}
