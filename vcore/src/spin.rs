//! A test-and-test-and-set spinlock, for the short critical sections of vcore context.
//!
//! Vcore context may not block, so the lists it shares (stack pools, schedulers' run
//! queues) are guarded by spinning. A holder must not block or yield while holding one.
//! This is the plain spinlock; the sync layer builds the MCS and PDR variants.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

use crossbeam_utils::Backoff;

/// A spinlock protecting a `T`.
pub struct SpinLock<T: ?Sized> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&mut T` to one holder at a time, so sharing the lock
// between tasks is sound whenever `T` may be sent between them.
unsafe impl<T: ?Sized + Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the `T` it owns.
unsafe impl<T: ?Sized + Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A new, unlocked spinlock.
    pub const fn new(value: T) -> Self {
        SpinLock { locked: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }
}

impl<T: ?Sized> SpinLock<T> {
    /// Spins until the lock is ours.
    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        if self.locked.swap(true, Ordering::Acquire) {
            take_contended(&self.locked);
        }
        SpinGuard { lock: self }
    }

    /// Takes the lock if it is free.
    #[inline]
    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        (!self.locked.load(Ordering::Relaxed) && !self.locked.swap(true, Ordering::Acquire))
            .then_some(SpinGuard { lock: self })
    }
}

/// The slow path of [`SpinLock::lock`]: waits for `locked` to clear, then takes it. Out
/// of line and not generic, so the backoff loop is not copied into every caller.
///
/// Waiters spin on a plain load, so they share the line until it is released, and look
/// less often the longer it is held: `Backoff::spin` doubles its PAUSEs from 1 up to 64
/// (crossbeam-utils' `SPIN_LIMIT` of 6), and never yields the task.
#[cold]
#[inline(never)]
fn take_contended(locked: &AtomicBool) {
    let backoff = Backoff::new();
    loop {
        while locked.load(Ordering::Relaxed) {
            backoff.spin();
        }
        if !locked.swap(true, Ordering::Acquire) {
            return;
        }
    }
}

/// Holds a [`SpinLock`]; releases it when dropped.
pub struct SpinGuard<'a, T: ?Sized> {
    lock: &'a SpinLock<T>,
}

impl<T: ?Sized> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this holder owns the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T: ?Sized> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while this holder owns the lock.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T: ?Sized> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

/// A spinlock that is safe to take from a uthread under preemption: while a uthread
/// holds it, notifications are disabled on its vcore (the "PDR" behaviour of DESIGN §8;
/// on Linux vcores are never preempted, so only the uthread's interruption matters).
///
/// Without this, a uthread interrupted while holding a lock that vcore context also
/// takes would deadlock its vcore: vcore context would spin on a lock whose holder can
/// only run again once vcore context leaves. In vcore context and on plain threads it
/// is a plain spinlock.
pub struct PdrSpinLock<T: ?Sized> {
    inner: SpinLock<T>,
}

impl<T> PdrSpinLock<T> {
    /// A new, unlocked lock.
    pub const fn new(value: T) -> Self {
        PdrSpinLock { inner: SpinLock::new(value) }
    }
}

impl<T: ?Sized> PdrSpinLock<T> {
    /// Disables notifications if called from a uthread, then spins until the lock is ours.
    #[inline]
    pub fn lock(&self) -> PdrGuard<'_, T> {
        let disabled = crate::notif::disable_if_uthread();
        PdrGuard { guard: Some(self.inner.lock()), disabled }
    }
}

/// Holds a [`PdrSpinLock`]; releases it, then re-enables notifications, when dropped.
pub struct PdrGuard<'a, T: ?Sized> {
    guard: Option<SpinGuard<'a, T>>,
    disabled: bool,
}

impl<T: ?Sized> Deref for PdrGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("a PdrGuard holds its lock until dropped")
    }
}

impl<T: ?Sized> DerefMut for PdrGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("a PdrGuard holds its lock until dropped")
    }
}

impl<T: ?Sized> Drop for PdrGuard<'_, T> {
    fn drop(&mut self) {
        drop(self.guard.take()); // release first: a pending notification may switch us out
        if self.disabled {
            // SAFETY: we disabled notifications on this uthread in `lock`, and with them
            // off it cannot have migrated.
            unsafe { crate::notif::enable_notifs() };
        }
    }
}
