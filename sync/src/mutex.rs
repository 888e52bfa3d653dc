//! Mutexes: normal, recursive and error-checking, in `pthread_mutex_t`'s 40 bytes.
//!
//! # The state word
//!
//! | `state` | meaning |
//! |---|---|
//! | 0 | unlocked (all-zero storage is an unlocked normal mutex) |
//! | 1 | locked, no waiters |
//! | 2 | locked, maybe waiters: unlock must look at the queue |
//!
//! Locking is one compare-and-swap 0→1 when uncontended. A contender takes the queue
//! lock and swaps in 2: if it got 0 the mutex is its own, else it queues and blocks
//! (see `waitq`). Unlocking swaps 1 for 0; if it finds 2 it takes the queue lock,
//! unlinks the first waiter, stores 0, releases the lock and wakes the waiter, which
//! retries (Mesa semantics). Because a contender sets 2 under the queue lock and
//! queues before releasing it, an unlocker that saw 2 always finds it queued.
//!
//! # Layout
//!
//! The fields sit where glibc's `struct __pthread_mutex_s` (x86-64,
//! `sysdeps/nptl/bits/struct_mutex.h`) has the ones a static initialiser writes: glibc's
//! `PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP` and `PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP`
//! are all zero except `__kind` at byte 16, so a C program recompiled against upthread
//! gets the mutex kind it asked for.
//!
//! | byte | glibc | here |
//! |---|---|---|
//! | 0 | `__lock` | `state` |
//! | 4 | `__count` | `qlock` |
//! | 8 | `__owner`, `__nusers` | `owner` (a `caller_id`, 8 bytes) |
//! | 16 | `__kind` | `kind`: 0 normal, 1 recursive, 2 error-checking, 3 adaptive (= normal) |
//! | 20 | `__spins`, `__elision` | `count` |
//! | 24 | `__list` | `waiters` |
//!
//! Like glibc (`PTHREAD_MUTEX_TYPE`), only the low two bits of `kind` name the type.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use parlib_uthread::BlockReason;

use crate::errno::{caller_id, Errno};
use crate::timeout::Deadline;
use crate::waitq::{block, block_until, Ended, QLock, WaitQueue, Waiter};

/// glibc's `PTHREAD_MUTEX_NORMAL` (and default): relocking deadlocks, no checks.
pub const MUTEX_NORMAL: u32 = 0;
/// glibc's `PTHREAD_MUTEX_RECURSIVE`: the owner may relock; unlocks count down.
pub const MUTEX_RECURSIVE: u32 = 1;
/// glibc's `PTHREAD_MUTEX_ERRORCHECK`: relock gives `EDEADLK`, foreign unlock `EPERM`.
pub const MUTEX_ERRORCHECK: u32 = 2;

/// A pthread-shaped mutex that blocks only the calling uthread (or plain thread).
#[repr(C)]
pub struct RawMutex {
    state: AtomicU32,
    qlock: QLock,
    /// `caller_id` of the holder (recursive and error-checking kinds), 0 if none.
    owner: AtomicUsize,
    /// The kind as stored, `MUTEX_*` or glibc's adaptive 3; read it through `kind()`.
    kind: AtomicU32,
    /// Recursion depth (recursive and error-checking kinds).
    count: AtomicU32,
    waiters: WaitQueue,
}

const _: () = assert!(core::mem::size_of::<RawMutex>() == 40 && core::mem::align_of::<RawMutex>() == 8);
const _: () = assert!(core::mem::size_of::<RawMutex>() == core::mem::size_of::<libc::pthread_mutex_t>());
// glibc's `__kind` is at byte 16 on x86-64 (module docs, "Layout"); its static
// initialisers write nothing else.
const _: () = assert!(core::mem::offset_of!(RawMutex, kind) == 16);
const _: () = assert!(core::mem::offset_of!(RawMutex, state) == 0);
const _: () = assert!(core::mem::offset_of!(RawMutex, owner) == 8);
const _: () = assert!(core::mem::offset_of!(RawMutex, count) == 20);
const _: () = assert!(core::mem::offset_of!(RawMutex, waiters) == 24);

/// glibc's `PTHREAD_MUTEX_KIND_MASK_NP`: the bits of `__kind` that name the type.
const KIND_MASK: u32 = 3;
/// glibc's `PTHREAD_MUTEX_ADAPTIVE_NP`: spins before sleeping in glibc; here a normal
/// mutex, which it is in every observable way.
const KIND_ADAPTIVE: u32 = 3;

impl Default for RawMutex {
    fn default() -> Self {
        RawMutex::new()
    }
}

impl RawMutex {
    /// An unlocked normal mutex (the same as all-zero bytes).
    pub const fn new() -> RawMutex {
        RawMutex::with_kind(MUTEX_NORMAL)
    }

    /// An unlocked mutex of `kind` (`MUTEX_*`; glibc's `PTHREAD_MUTEX_ADAPTIVE_NP`, 3,
    /// is a normal mutex).
    pub const fn with_kind(kind: u32) -> RawMutex {
        RawMutex {
            state: AtomicU32::new(0),
            qlock: QLock(AtomicU32::new(0)),
            owner: AtomicUsize::new(0),
            kind: AtomicU32::new(kind),
            count: AtomicU32::new(0),
            waiters: WaitQueue::new(),
        }
    }

    /// (Re)initialises as an unlocked mutex of `kind` (`MUTEX_*`).
    ///
    /// # Errors
    /// `EINVAL` for an unknown kind; `EBUSY` if it is locked.
    pub fn init(&self, kind: u32) -> Result<(), Errno> {
        if kind > MUTEX_ERRORCHECK {
            return Err(Errno::INVAL);
        }
        if self.state.load(Ordering::Relaxed) != 0 {
            return Err(Errno::BUSY);
        }
        self.kind.store(kind, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
        self.owner.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// The kind (`MUTEX_*`): what the stored kind means, so an adaptive mutex (3) is
    /// [`MUTEX_NORMAL`].
    #[inline]
    pub fn kind(&self) -> u32 {
        match self.kind.load(Ordering::Relaxed) & KIND_MASK {
            KIND_ADAPTIVE => MUTEX_NORMAL,
            k => k,
        }
    }

    /// Locks, blocking the calling uthread (or thread) while another holds it.
    ///
    /// # Errors
    /// `EDEADLK` if an error-checking mutex is already the caller's; `EAGAIN` if a
    /// recursive mutex's count would overflow.
    #[inline]
    pub fn lock(&self) -> Result<(), Errno> {
        crate::held::taking(|| self.lock_uncounted())
    }

    #[inline]
    fn lock_uncounted(&self) -> Result<(), Errno> {
        let kind = self.kind();
        if kind != MUTEX_NORMAL {
            if let Some(r) = self.relock(kind) {
                return r;
            }
        }
        if self.state.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.lock_contended();
        }
        self.acquired(kind);
        Ok(())
    }

    /// Locks, waiting at most until `deadline`.
    ///
    /// # Errors
    /// `ETIMEDOUT` if it did not come free in time; `EDEADLK`/`EAGAIN` as for `lock`;
    /// `EINVAL` on a uthread without a timeout service (`parlib_alarms::init`).
    pub fn timed_lock(&self, deadline: Deadline) -> Result<(), Errno> {
        crate::held::taking(|| self.timed_lock_uncounted(deadline))
    }

    fn timed_lock_uncounted(&self, deadline: Deadline) -> Result<(), Errno> {
        let kind = self.kind();
        if kind != MUTEX_NORMAL {
            if let Some(r) = self.relock(kind) {
                return r;
            }
        }
        if self.state.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            loop {
                let g = self.qlock.lock();
                if self.state.swap(2, Ordering::Acquire) == 0 {
                    break;
                }
                if deadline.has_passed() {
                    return Err(Errno::TIMEDOUT);
                }
                let mut node = Waiter::for_caller("Mutex::timed_lock");
                // SAFETY: under the queue lock; `node` stays alive until it is unlinked.
                unsafe { self.waiters.push_back(&mut node) };
                let ended = block_until(g, &node, &self.waiters, BlockReason::Mutex, Some(deadline), false)?;
                if ended == Ended::TimedOut {
                    return Err(Errno::TIMEDOUT);
                }
            }
        }
        self.acquired(kind);
        Ok(())
    }

    /// Locks if free.
    ///
    /// # Errors
    /// `EBUSY` if another holds it (or, error-checking, the caller does); `EAGAIN` on a
    /// recursive count overflow.
    pub fn try_lock(&self) -> Result<(), Errno> {
        crate::held::taking(|| self.try_lock_uncounted())
    }

    fn try_lock_uncounted(&self) -> Result<(), Errno> {
        let kind = self.kind();
        if kind == MUTEX_RECURSIVE {
            if let Some(r) = self.relock(kind) {
                return r;
            }
        }
        if self.state.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return Err(Errno::BUSY);
        }
        self.acquired(kind);
        Ok(())
    }

    /// The caller already owns it: `Some(result)`; else `None`.
    fn relock(&self, kind: u32) -> Option<Result<(), Errno>> {
        if self.owner.load(Ordering::Relaxed) != caller_id() {
            return None;
        }
        Some(match kind {
            MUTEX_RECURSIVE => {
                let c = self.count.load(Ordering::Relaxed);
                if c == u32::MAX {
                    Err(Errno::AGAIN)
                } else {
                    self.count.store(c + 1, Ordering::Relaxed);
                    Ok(())
                }
            }
            _ => Err(Errno::DEADLK),
        })
    }

    #[inline]
    fn acquired(&self, kind: u32) {
        if kind != MUTEX_NORMAL {
            self.owner.store(caller_id(), Ordering::Relaxed);
            self.count.store(1, Ordering::Relaxed);
        }
    }

    #[cold]
    fn lock_contended(&self) {
        loop {
            let g = self.qlock.lock();
            if self.state.swap(2, Ordering::Acquire) == 0 {
                return;
            }
            let mut node = Waiter::for_caller("Mutex::lock");
            // SAFETY: under the queue lock; `node` outlives its time in the queue (we
            // return from `block` only after a waker unlinked it).
            unsafe { self.waiters.push_back(&mut node) };
            block(g, &node, BlockReason::Mutex);
        }
    }

    /// Unlocks.
    ///
    /// # Errors
    /// `EPERM` if the mutex is not locked, or (recursive, error-checking) not the
    /// caller's.
    #[inline]
    pub fn unlock(&self) -> Result<(), Errno> {
        crate::held::released(self.unlock_uncounted())
    }

    #[inline]
    fn unlock_uncounted(&self) -> Result<(), Errno> {
        let kind = self.kind();
        if kind != MUTEX_NORMAL {
            if self.owner.load(Ordering::Relaxed) != caller_id() {
                return Err(Errno::PERM);
            }
            let c = self.count.load(Ordering::Relaxed);
            if c > 1 {
                self.count.store(c - 1, Ordering::Relaxed);
                return Ok(());
            }
            self.count.store(0, Ordering::Relaxed);
            self.owner.store(0, Ordering::Relaxed);
        }
        // The failed CAS already read the state: 0 is unlocked (a misuse), 2 has waiters.
        match self.state.compare_exchange(1, 0, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => Ok(()),
            Err(0) => Err(Errno::PERM),
            Err(_) => {
                self.unlock_contended();
                Ok(())
            }
        }
    }

    /// Unlocks with waiters (state 2). The state goes to 0 while the queue lock is held,
    /// and releasing that lock is the last touch of the mutex: POSIX lets another thread
    /// lock, unlock and destroy it the moment it is unlocked, and `destroy` takes the
    /// queue lock, so it cannot finish before we are done (glibc bug 13690 was this).
    #[cold]
    fn unlock_contended(&self) {
        let g = self.qlock.lock();
        // SAFETY: under the queue lock.
        let w = unsafe { self.waiters.pop_front() };
        self.state.store(0, Ordering::Release);
        drop(g);
        if let Some(w) = w {
            // SAFETY: unlinked under the lock just now; woken once. Only the waiter's
            // node is touched, not the mutex.
            unsafe { Waiter::wake(w) };
        }
    }

    /// Whether it is locked (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != 0
    }

    /// Checks that the mutex may be destroyed.
    ///
    /// # Errors
    /// `EBUSY` if it is locked.
    pub fn destroy(&self) -> Result<(), Errno> {
        // Taking the queue lock waits for an unlocker still inside `unlock_contended`.
        let _g = self.qlock.lock();
        // SAFETY: under the queue lock.
        if self.is_locked() || unsafe { !self.waiters.is_empty() } {
            Err(Errno::BUSY)
        } else {
            Ok(())
        }
    }
}

/// A mutual-exclusion lock protecting a `T`; blocks only the calling uthread.
///
/// How it differs from `std::sync::Mutex` (which, since `parlib-syscalls` makes std's
/// futex waits uthread-aware, also blocks only the uthread):
///
/// * **No poisoning**: [`lock`](Mutex::lock) returns the guard, not a `Result`. A panic
///   while a guard is held unlocks the mutex as the guard drops during unwinding, and the
///   next holder sees whatever state the panic left, as with parking_lot's. Poisoning was
///   left out on purpose: nearly every caller unwraps it, it costs a flag on every
///   unlock, and the same storage is a `pthread_mutex_t` for C (`RawMutex`), where no
///   poison state exists.
/// * It is a direct face of the uthread layer (no system call on any path for a
///   uthread), fits in a `pthread_mutex_t`'s 40 bytes, and works in zeroed storage;
///   error-checking and recursive kinds are [`RawMutex`]'s.
pub struct Mutex<T: ?Sized> {
    raw: RawMutex,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex hands out access to one holder at a time.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}
// SAFETY: moving the mutex moves the `T`.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    /// A new, unlocked mutex.
    pub const fn new(value: T) -> Mutex<T> {
        Mutex { raw: RawMutex::new(), data: UnsafeCell::new(value) }
    }

    /// Consumes the mutex, returning its value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks, blocking the calling uthread while another holds it.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.raw.lock().expect("a normal mutex's lock cannot fail");
        MutexGuard { mutex: self, _not_send: core::marker::PhantomData }
    }

    /// Locks if free.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.raw.try_lock().ok().map(|()| MutexGuard { mutex: self, _not_send: core::marker::PhantomData })
    }

    /// The raw mutex (for `Condvar`).
    pub fn raw(&self) -> &RawMutex {
        &self.raw
    }

    /// Mutable access without locking: `&mut self` proves nobody else holds it.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

/// Holds a [`Mutex`]; unlocks when dropped.
#[must_use = "the mutex unlocks when the guard is dropped"]
pub struct MutexGuard<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
    /// Not `Send`: the holder unlocks.
    _not_send: core::marker::PhantomData<*const ()>,
}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    pub(crate) fn mutex(&self) -> &'a Mutex<T> {
        self.mutex
    }

    pub(crate) fn relock(mutex: &'a Mutex<T>) -> MutexGuard<'a, T> {
        MutexGuard { mutex, _not_send: core::marker::PhantomData }
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while its holder owns the mutex.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while its holder owns the mutex.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        let _ = self.mutex.raw.unlock();
    }
}
