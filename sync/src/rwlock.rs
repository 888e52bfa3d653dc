//! Reader-writer locks, in `pthread_rwlock_t`'s 56 bytes, with no writer starvation.
//!
//! # Policy
//!
//! | event | what happens |
//! |---|---|
//! | read lock | granted if no writer holds it and none waits; else the reader queues |
//! | write lock | granted if nobody holds it; else the writer queues |
//! | last reader leaves | the first queued writer gets it |
//! | writer leaves | every queued reader gets it; if none, the next writer |
//!
//! New readers queue behind a waiting writer, so writers never starve; readers that
//! queued during a write all get in when it ends, so readers never starve either. The
//! lock is handed over directly: the waker updates the counts for the woken waiters, who
//! return without re-checking.
//!
//! # Timed waits
//!
//! [`RawRwLock::timed_read_lock`] and [`RawRwLock::timed_write_lock`] queue like the
//! untimed calls and block with a deadline (`waitq::block_until`). The deadline and a
//! hand-over race under the queue lock: whoever unlinks the waiter's node first decides.
//! If the hand-over won, the waiter holds the lock even if its deadline has passed by the
//! time it runs (the counts already say so). If the timeout won, nothing was handed to it.
//!
//! "A writer waits" means its node is in `writers_q`, which only changes under the queue
//! lock, so it is never stale. But a writer that times out leaves behind the readers that
//! queued only because it waited (table above), and no unlock will come to let them in if
//! the lock is free or held only by readers. So once it is out of the queue without the
//! lock, it takes the queue lock and, if no writer holds the lock and none waits, grants
//! every queued reader. Until then, new readers go ahead of them (nothing stops them),
//! and an unlock that comes first grants them itself.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use parlib_uthread::BlockReason;

use crate::errno::{caller_id, Errno};
use crate::timeout::Deadline;
use crate::waitq::{block_until, Ended, QLock, WaitQueue, Waiter};

/// A pthread-shaped reader-writer lock that blocks only the calling uthread.
#[repr(C)]
pub struct RawRwLock {
    qlock: QLock,
    /// Readers holding it.
    readers: AtomicU32,
    /// 1 while a writer holds it.
    writer: AtomicU32,
    /// Keeps glibc's size (where glibc has `__writers_futex`).
    _pad: AtomicU32,
    readers_q: WaitQueue,
    writers_q: WaitQueue,
    /// `caller_id` of the writer holding it, 0 if none.
    owner: AtomicUsize,
}

const _: () = assert!(core::mem::size_of::<RawRwLock>() == 56 && core::mem::align_of::<RawRwLock>() == 8);
const _: () = assert!(core::mem::size_of::<RawRwLock>() == core::mem::size_of::<libc::pthread_rwlock_t>());

impl Default for RawRwLock {
    fn default() -> Self {
        RawRwLock::new()
    }
}

impl RawRwLock {
    /// An unlocked rwlock (the same as all-zero bytes).
    pub const fn new() -> RawRwLock {
        RawRwLock {
            qlock: QLock(AtomicU32::new(0)),
            readers: AtomicU32::new(0),
            writer: AtomicU32::new(0),
            _pad: AtomicU32::new(0),
            readers_q: WaitQueue::new(),
            writers_q: WaitQueue::new(),
            owner: AtomicUsize::new(0),
        }
    }

    /// Takes it for reading, blocking while a writer holds it or waits for it.
    ///
    /// # Errors
    /// `EDEADLK` if the caller holds it for writing; `EAGAIN` if the reader count would
    /// overflow.
    pub fn read_lock(&self) -> Result<(), Errno> {
        crate::held::taking(|| self.read_lock_until(None, "RwLock::read_lock"))
    }

    /// Like [`read_lock`](RawRwLock::read_lock), but gives up at `deadline`.
    ///
    /// # Errors
    /// `EDEADLK` if the caller holds it for writing (checked first); `ETIMEDOUT` at the
    /// deadline (at once if it has passed and the lock is not free for readers);
    /// `EAGAIN` as for `read_lock`; `EINVAL` on a uthread without a timeout service
    /// (`parlib_alarms::init`).
    pub fn timed_read_lock(&self, deadline: Deadline) -> Result<(), Errno> {
        crate::held::taking(|| self.read_lock_until(Some(deadline), "RwLock::timed_read_lock"))
    }

    /// The read locks above: `what` names the caller if it would block in vcore context.
    fn read_lock_until(&self, deadline: Option<Deadline>, what: &str) -> Result<(), Errno> {
        let g = self.qlock.lock();
        if self.owner.load(Ordering::Relaxed) == caller_id() {
            return Err(Errno::DEADLK);
        }
        if self.free_for_readers() {
            return self.add_reader();
        }
        if deadline.is_some_and(Deadline::has_passed) {
            return Err(Errno::TIMEDOUT);
        }
        let mut node = Waiter::for_caller(what);
        // SAFETY: under the queue lock; `node` stays alive until it is unlinked (by a
        // waker, the timeout, or `block_until` itself on error).
        unsafe { self.readers_q.push_back(&mut node) };
        // A reader that times out was handed nothing and holds nothing back: no repair.
        match block_until(g, &node, &self.readers_q, BlockReason::RwLock, deadline, false)? {
            Ended::Woken => Ok(()),    // handed over: we are a reader now
            _ => Err(Errno::TIMEDOUT), // not interruptible: the deadline ended it
        }
    }

    /// Under the queue lock: whether a new reader may enter (no writer holds it or waits).
    fn free_for_readers(&self) -> bool {
        // SAFETY: under the queue lock.
        self.writer.load(Ordering::Relaxed) == 0 && unsafe { self.writers_q.is_empty() }
    }

    fn add_reader(&self) -> Result<(), Errno> {
        let r = self.readers.load(Ordering::Relaxed);
        if r == u32::MAX {
            return Err(Errno::AGAIN);
        }
        self.readers.store(r + 1, Ordering::Relaxed);
        Ok(())
    }

    /// Takes it for reading if that needs no waiting.
    ///
    /// # Errors
    /// `EBUSY` if a writer holds it or waits for it.
    pub fn try_read_lock(&self) -> Result<(), Errno> {
        let _g = self.qlock.lock();
        crate::held::taking(|| if self.free_for_readers() { self.add_reader() } else { Err(Errno::BUSY) })
    }

    /// Takes it for writing, blocking while anyone holds it.
    ///
    /// # Errors
    /// `EDEADLK` if the caller already holds it for writing.
    pub fn write_lock(&self) -> Result<(), Errno> {
        crate::held::taking(|| self.write_lock_until(None, "RwLock::write_lock"))
    }

    /// Like [`write_lock`](RawRwLock::write_lock), but gives up at `deadline`.
    ///
    /// # Errors
    /// `EDEADLK` if the caller already holds it for writing (checked first);
    /// `ETIMEDOUT` at the deadline (at once if it has passed and anyone holds the lock);
    /// `EINVAL` on a uthread without a timeout service (`parlib_alarms::init`).
    pub fn timed_write_lock(&self, deadline: Deadline) -> Result<(), Errno> {
        crate::held::taking(|| self.write_lock_until(Some(deadline), "RwLock::timed_write_lock"))
    }

    /// The write locks above: `what` names the caller if it would block in vcore context.
    fn write_lock_until(&self, deadline: Option<Deadline>, what: &str) -> Result<(), Errno> {
        let me = caller_id();
        let g = self.qlock.lock();
        if self.owner.load(Ordering::Relaxed) == me {
            return Err(Errno::DEADLK);
        }
        if self.take_write(me) {
            return Ok(());
        }
        if deadline.is_some_and(Deadline::has_passed) {
            return Err(Errno::TIMEDOUT);
        }
        let mut node = Waiter::for_caller(what);
        node.tag = me;
        // SAFETY: under the queue lock; `node` stays alive until it is unlinked (by a
        // waker, the timeout, or `block_until` itself on error).
        unsafe { self.writers_q.push_back(&mut node) };
        let e = match block_until(g, &node, &self.writers_q, BlockReason::RwLock, deadline, false) {
            Ok(Ended::Woken) => return Ok(()), // handed over: we are the writer now
            Ok(_) => Errno::TIMEDOUT,          // not interruptible: the deadline ended it
            Err(e) => e,
        };
        // Not handed over, and out of the queue: let in the readers that queued behind
        // us (module docs, "Timed waits").
        let _g = self.qlock.lock();
        if self.free_for_readers() {
            self.grant_readers();
        }
        Err(e)
    }

    /// Under the queue lock: takes it for writing as `me` if nobody holds it.
    fn take_write(&self, me: usize) -> bool {
        let free = self.writer.load(Ordering::Relaxed) == 0 && self.readers.load(Ordering::Relaxed) == 0;
        if free {
            self.writer.store(1, Ordering::Relaxed);
            self.owner.store(me, Ordering::Relaxed);
        }
        free
    }

    /// Takes it for writing if nobody holds it.
    ///
    /// # Errors
    /// `EBUSY` if anyone holds it.
    pub fn try_write_lock(&self) -> Result<(), Errno> {
        let _g = self.qlock.lock();
        crate::held::taking(|| if self.take_write(caller_id()) { Ok(()) } else { Err(Errno::BUSY) })
    }

    /// Releases a read or write hold (as `pthread_rwlock_unlock`).
    ///
    /// # Errors
    /// `EPERM` if it is not held (or held for writing by someone else).
    pub fn unlock(&self) -> Result<(), Errno> {
        crate::held::released(self.unlock_uncounted())
    }

    fn unlock_uncounted(&self) -> Result<(), Errno> {
        let g = self.qlock.lock();
        if self.writer.load(Ordering::Relaxed) == 1 {
            if self.owner.load(Ordering::Relaxed) != caller_id() {
                return Err(Errno::PERM);
            }
            self.writer.store(0, Ordering::Relaxed);
            self.owner.store(0, Ordering::Relaxed);
            // SAFETY: under the queue lock.
            if unsafe { !self.readers_q.is_empty() } {
                self.grant_readers();
            } else {
                self.grant_writer();
            }
        } else {
            let r = self.readers.load(Ordering::Relaxed);
            if r == 0 {
                return Err(Errno::PERM);
            }
            self.readers.store(r - 1, Ordering::Relaxed);
            if r == 1 {
                self.grant_writer();
            }
        }
        drop(g);
        Ok(())
    }

    /// Under the queue lock: hands the lock to every queued reader.
    fn grant_readers(&self) {
        // SAFETY: under the queue lock; each node is unlinked before it is woken.
        while let Some(w) = unsafe { self.readers_q.pop_front() } {
            self.readers.store(self.readers.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            // SAFETY: unlinked just now; woken once.
            unsafe { Waiter::wake(w) };
        }
    }

    /// Under the queue lock: hands the lock to the first queued writer, if any.
    fn grant_writer(&self) {
        // SAFETY: under the queue lock.
        if let Some(w) = unsafe { self.writers_q.pop_front() } {
            self.writer.store(1, Ordering::Relaxed);
            // SAFETY: `w` is alive until woken; its tag is its owner's caller_id.
            self.owner.store(unsafe { (*w).tag }, Ordering::Relaxed);
            // SAFETY: unlinked just now; woken once.
            unsafe { Waiter::wake(w) };
        }
    }

    /// Checks that it may be destroyed.
    ///
    /// # Errors
    /// `EBUSY` if it is held.
    pub fn destroy(&self) -> Result<(), Errno> {
        let _g = self.qlock.lock();
        if self.writer.load(Ordering::Relaxed) != 0 || self.readers.load(Ordering::Relaxed) != 0 {
            Err(Errno::BUSY)
        } else {
            Ok(())
        }
    }
}

/// A reader-writer lock protecting a `T`; blocks only the calling uthread.
pub struct RwLock<T: ?Sized> {
    raw: RawRwLock,
    data: UnsafeCell<T>,
}

// SAFETY: readers share `&T` (so `T: Sync`), a writer gets `&mut T` alone (`T: Send`).
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}
// SAFETY: moving the lock moves the `T`.
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}

impl<T> RwLock<T> {
    /// A new, unlocked rwlock.
    pub const fn new(value: T) -> RwLock<T> {
        RwLock { raw: RawRwLock::new(), data: UnsafeCell::new(value) }
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Shared access; blocks while a writer holds or waits for the lock.
    ///
    /// # Panics
    /// If the caller holds it for writing (that would deadlock).
    pub fn read(&self) -> ReadGuard<'_, T> {
        self.raw.read_lock().expect("RwLock::read while holding the write lock");
        ReadGuard { lock: self, _not_send: core::marker::PhantomData }
    }

    /// Exclusive access; blocks while anyone holds the lock.
    ///
    /// # Panics
    /// If the caller already holds it for writing.
    pub fn write(&self) -> WriteGuard<'_, T> {
        self.raw.write_lock().expect("RwLock::write while already holding the write lock");
        WriteGuard { lock: self, _not_send: core::marker::PhantomData }
    }
}

/// Shared access to an [`RwLock`]; released when dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _not_send: core::marker::PhantomData<*const ()>,
}

impl<T: ?Sized> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: readers only share `&T` while no writer holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        let _ = self.lock.raw.unlock();
    }
}

/// Exclusive access to an [`RwLock`]; released when dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct WriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _not_send: core::marker::PhantomData<*const ()>,
}

impl<T: ?Sized> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the writer holds the lock alone.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the writer holds the lock alone.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        let _ = self.lock.raw.unlock();
    }
}
