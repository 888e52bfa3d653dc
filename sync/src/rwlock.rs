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
//! A writer that times out still counts in `writers_waiting` when it wakes, so:
//!
//! 1. it takes the queue lock and decrements `writers_waiting`;
//! 2. if then no writer holds the lock and none waits, it grants every queued reader.
//!
//! Step 2 matters: readers that arrived while the writer waited queued only because of
//! it (table above), and no unlock will come to let them in if the lock is free or held
//! only by readers. Between the timeout and step 1 the count is one too high; an unlock
//! in that window finds no writer node to grant (or grants the next real one), and
//! step 2 then catches up.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use parlib_uthread::BlockReason;

use crate::errno::{caller_id, Errno};
use crate::timeout::Deadline;
use crate::waitq::{block, block_until, QLock, WaitQueue, Waiter};

/// A pthread-shaped reader-writer lock that blocks only the calling uthread.
#[repr(C)]
pub struct RawRwLock {
    qlock: QLock,
    /// Readers holding it.
    readers: AtomicU32,
    /// 1 while a writer holds it.
    writer: AtomicU32,
    /// Writers queued.
    writers_waiting: AtomicU32,
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
            writers_waiting: AtomicU32::new(0),
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
        let g = self.qlock.lock();
        if self.owner.load(Ordering::Relaxed) == caller_id() {
            return Err(Errno::DEADLK);
        }
        if self.writer.load(Ordering::Relaxed) == 0 && self.writers_waiting.load(Ordering::Relaxed) == 0 {
            return self.add_reader();
        }
        let mut node = Waiter::for_caller("RwLock::read_lock");
        // SAFETY: under the queue lock; `node` stays alive until a waker unlinks it.
        unsafe { self.readers_q.push_back(&mut node) };
        block(g, &node, BlockReason::RwLock); // handed over: we are a reader now
        Ok(())
    }

    /// Like [`read_lock`](RawRwLock::read_lock), but gives up at `deadline`.
    ///
    /// # Errors
    /// `EDEADLK` if the caller holds it for writing (checked first); `ETIMEDOUT` at the
    /// deadline (at once if it has passed and the lock is not free for readers);
    /// `EAGAIN` as for `read_lock`; `EINVAL` on a uthread without a timeout service
    /// (`parlib_alarms::init`).
    pub fn timed_read_lock(&self, deadline: Deadline) -> Result<(), Errno> {
        let g = self.qlock.lock();
        if self.owner.load(Ordering::Relaxed) == caller_id() {
            return Err(Errno::DEADLK);
        }
        if self.writer.load(Ordering::Relaxed) == 0 && self.writers_waiting.load(Ordering::Relaxed) == 0 {
            return self.add_reader();
        }
        if deadline.has_passed() {
            return Err(Errno::TIMEDOUT);
        }
        let mut node = Waiter::for_caller("RwLock::timed_read_lock");
        // SAFETY: under the queue lock; `node` stays alive until it is unlinked (by a
        // waker, the timeout, or `block_until` itself on error).
        unsafe { self.readers_q.push_back(&mut node) };
        // A reader that times out was handed nothing and holds nothing back: no repair.
        match block_until(g, &node, &self.readers_q, BlockReason::RwLock, deadline)? {
            false => Ok(()), // handed over: we are a reader now
            true => Err(Errno::TIMEDOUT),
        }
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
        if self.writer.load(Ordering::Relaxed) == 0 && self.writers_waiting.load(Ordering::Relaxed) == 0 {
            self.add_reader()
        } else {
            Err(Errno::BUSY)
        }
    }

    /// Under the queue lock: `EDEADLK` if `me` holds it for writing, else takes it for
    /// writing if nobody holds it (`true`), or says the caller must wait (`false`).
    fn write_now(&self, me: usize) -> Result<bool, Errno> {
        if self.owner.load(Ordering::Relaxed) == me {
            return Err(Errno::DEADLK);
        }
        if self.writer.load(Ordering::Relaxed) == 0 && self.readers.load(Ordering::Relaxed) == 0 {
            self.writer.store(1, Ordering::Relaxed);
            self.owner.store(me, Ordering::Relaxed);
            return Ok(true);
        }
        Ok(false)
    }

    /// Takes it for writing, blocking while anyone holds it.
    ///
    /// # Errors
    /// `EDEADLK` if the caller already holds it for writing.
    pub fn write_lock(&self) -> Result<(), Errno> {
        let me = caller_id();
        let g = self.qlock.lock();
        if self.write_now(me)? {
            return Ok(());
        }
        self.writers_waiting.store(self.writers_waiting.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let mut node = Waiter::for_caller("RwLock::write_lock");
        node.tag = me;
        // SAFETY: under the queue lock; `node` stays alive until a waker unlinks it.
        unsafe { self.writers_q.push_back(&mut node) };
        block(g, &node, BlockReason::RwLock); // handed over: we are the writer now
        Ok(())
    }

    /// Like [`write_lock`](RawRwLock::write_lock), but gives up at `deadline`.
    ///
    /// # Errors
    /// `EDEADLK` if the caller already holds it for writing (checked first);
    /// `ETIMEDOUT` at the deadline (at once if it has passed and anyone holds the lock);
    /// `EINVAL` on a uthread without a timeout service (`parlib_alarms::init`).
    pub fn timed_write_lock(&self, deadline: Deadline) -> Result<(), Errno> {
        let me = caller_id();
        let g = self.qlock.lock();
        if self.write_now(me)? {
            return Ok(());
        }
        if deadline.has_passed() {
            return Err(Errno::TIMEDOUT);
        }
        self.writers_waiting.store(self.writers_waiting.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let mut node = Waiter::for_caller("RwLock::timed_write_lock");
        node.tag = me;
        // SAFETY: under the queue lock; `node` stays alive until it is unlinked (by a
        // waker, the timeout, or `block_until` itself on error).
        unsafe { self.writers_q.push_back(&mut node) };
        let r = match block_until(g, &node, &self.writers_q, BlockReason::RwLock, deadline) {
            Ok(false) => return Ok(()), // handed over: we are the writer now
            Ok(true) => Errno::TIMEDOUT,
            Err(e) => e,
        };
        // Not handed over, and our node is out of the queue: undo our count and let in
        // the readers that queued behind us (module docs, "Timed waits").
        let g = self.qlock.lock();
        let waiting = self.writers_waiting.load(Ordering::Relaxed) - 1;
        self.writers_waiting.store(waiting, Ordering::Relaxed);
        if waiting == 0 && self.writer.load(Ordering::Relaxed) == 0 {
            self.grant_readers();
        }
        drop(g);
        Err(r)
    }

    /// Takes it for writing if nobody holds it.
    ///
    /// # Errors
    /// `EBUSY` if anyone holds it.
    pub fn try_write_lock(&self) -> Result<(), Errno> {
        let _g = self.qlock.lock();
        if self.writer.load(Ordering::Relaxed) == 0 && self.readers.load(Ordering::Relaxed) == 0 {
            self.writer.store(1, Ordering::Relaxed);
            self.owner.store(caller_id(), Ordering::Relaxed);
            Ok(())
        } else {
            Err(Errno::BUSY)
        }
    }

    /// Releases a read or write hold (as `pthread_rwlock_unlock`).
    ///
    /// # Errors
    /// `EPERM` if it is not held (or held for writing by someone else).
    pub fn unlock(&self) -> Result<(), Errno> {
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
            self.writers_waiting.store(self.writers_waiting.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
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
