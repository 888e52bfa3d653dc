//! The blocking pattern every primitive shares: a queue lock, waiter nodes, block, wake.
//!
//! # Blocking, step by step (parlib's pattern)
//!
//! 1. Take the primitive's queue lock ([`QLock`]). From a uthread it is a PDR lock:
//!    notifications stay disabled while it is held, so the uthread cannot be
//!    interrupted holding a lock vcore context may need.
//! 2. Test the condition; if the caller must wait, link a [`Waiter`] (on the caller's
//!    own stack, which lives as long as it waits) into the primitive's [`WaitQueue`].
//! 3. Block ([`block`]):
//!    * a uthread yields; the yield callback, in vcore context, calls `has_blocked` and
//!      *then* releases the queue lock, so no waker can see the uthread before it is
//!      `Blocked`. On resumption the uthread re-enables the notifications it disabled in
//!      step 1: the lock was released for it in vcore context, and without this its
//!      disable depth would leak one level per block (as the C parlib's does);
//!    * a plain Linux thread releases the lock and sleeps on the node's futex word.
//! 4. A waker takes the queue lock, unlinks a waiter, releases the lock, and wakes it
//!    ([`Waiter::wake`]): `runnable` for a uthread, a futex wake for a thread.
//! 5. Mesa semantics: the woken waiter re-checks its condition and may wait again.
//!
//! # Interruptible waits
//!
//! The waits that are POSIX cancellation points (condvar and semaphore waits) have
//! interruptible variants ([`block_interruptible`]): the uthread also registers a
//! `parlib_uthread::WaitInterrupt` whose function, `on_interrupt`, does what a timeout
//! does (see [`block_until`]): under the queue lock, if the node is still linked, it
//! unlinks it, marks it interrupted and wakes it. A waker (or the timeout) that unlinked
//! it first wins instead, and the interrupt does nothing. The node is always unlinked
//! before its owner returns, so it never outlives its stack frame in a queue. The
//! protocol that keeps the registration itself safe is `parlib_uthread::interrupt`'s.
//! Mutex locks are not cancellation points and never register.

use core::cell::{Cell, UnsafeCell};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU32, Ordering};

use parlib_uthread::{self as uthread, BlockReason, Uthread, WaitInterrupt};

use crate::errno::Errno;
use crate::timeout::{self, Deadline, TimeoutSlot};
use parlib_vcore as vcore;

/// A 4-byte spinlock guarding a primitive's wait queue; 0 is unlocked, so all-zero
/// storage is a valid lock. PDR when taken from a uthread (see the module docs).
#[repr(transparent)]
pub(crate) struct QLock(pub(crate) AtomicU32);

impl QLock {
    pub(crate) fn lock(&self) -> QGuard<'_> {
        let pdr = vcore::notif::disable_if_uthread();
        while self.0.swap(1, Ordering::Acquire) != 0 {
            while self.0.load(Ordering::Relaxed) != 0 {
                core::hint::spin_loop();
            }
        }
        QGuard { lock: self, pdr }
    }

    /// Releases without the PDR bookkeeping (the yield callback's half of step 3).
    fn unlock_raw(&self) {
        self.0.store(0, Ordering::Release);
    }
}

/// Holds a [`QLock`].
pub(crate) struct QGuard<'a> {
    lock: &'a QLock,
    /// Whether `lock` disabled notifications (taken on a uthread).
    pdr: bool,
}

impl Drop for QGuard<'_> {
    fn drop(&mut self) {
        self.lock.unlock_raw();
        if self.pdr {
            parlib_events::enable_notifs();
        }
    }
}

/// Who waits in a [`Waiter`].
#[derive(Clone, Copy)]
enum Who {
    Uthread(NonNull<Uthread>),
    Thread,
}

/// A waiting uthread or thread, linked into a [`WaitQueue`]. Lives on the waiter's stack.
pub(crate) struct Waiter {
    next: *mut Waiter,
    prev: *mut Waiter,
    who: Who,
    /// For plain threads: 0 while waiting, 1 once woken (the futex word).
    woken: AtomicU32,
    /// Primitive-specific tag (a reader or a writer, a futex address, ...).
    pub(crate) tag: usize,
    /// Whether the node is in a queue (under the queue lock).
    linked: Cell<bool>,
    /// For timed waits: the lock and queue the timeout callback must take and unlink from.
    qlock: Cell<*const QLock>,
    queue: Cell<*const WaitQueue>,
    /// Set by the timeout callback when it unlinked and woke the node.
    timed_out: AtomicU32,
    /// Set by the interrupt function when it unlinked and woke the node.
    interrupted: AtomicU32,
}

impl Waiter {
    /// A node for the caller.
    ///
    /// # Panics
    /// In vcore context, which must never block.
    pub(crate) fn for_caller(what: &str) -> Waiter {
        let who = match uthread::current() {
            Some(u) => Who::Uthread(u),
            None if vcore::in_vcore_context() => {
                panic!("{what} would block in vcore context, which must never block")
            }
            None => Who::Thread,
        };
        Waiter {
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
            who,
            woken: AtomicU32::new(0),
            tag: 0,
            linked: Cell::new(false),
            qlock: Cell::new(ptr::null()),
            queue: Cell::new(ptr::null()),
            timed_out: AtomicU32::new(0),
            interrupted: AtomicU32::new(0),
        }
    }

    /// The node after this one in its queue.
    ///
    /// # Safety
    /// Under the queue lock, with the node linked.
    pub(crate) unsafe fn next_in_queue(&self) -> Option<*mut Waiter> {
        (!self.next.is_null()).then_some(self.next)
    }

    /// Wakes the waiter of a node already unlinked from its queue (step 4).
    ///
    /// # Safety
    /// `w` must have been unlinked under the queue lock by the caller, and not woken yet.
    pub(crate) unsafe fn wake(w: *mut Waiter) {
        // SAFETY: the node is alive until its owner sees the wake-up; we read it first.
        match unsafe { (*w).who } {
            Who::Uthread(u) => uthread::runnable(u),
            Who::Thread => {
                // SAFETY: as above. After the store the owner may return and its stack
                // frame vanish; a futex wake on a stale address is harmless.
                let word = unsafe { &(*w).woken } as *const AtomicU32;
                // SAFETY: `word` is still valid until the store below is seen.
                unsafe { (*word).store(1, Ordering::Release) };
                vcore::futex::wake_addr(word as usize, 1);
            }
        }
    }
}

/// Blocks the caller on `node`, which it has linked into a queue under `guard` (step 3).
/// Returns once woken.
pub(crate) fn block(guard: QGuard<'_>, node: &Waiter, reason: BlockReason) {
    match node.who {
        Who::Uthread(_) => {
            let lock = guard.lock as *const QLock as usize;
            let pdr = guard.pdr;
            core::mem::forget(guard);
            uthread::yield_with(true, move |uth| {
                uthread::has_blocked(uth, reason);
                // SAFETY: the lock lives in the primitive, which outlives its waiters.
                unsafe { (*(lock as *const QLock)).unlock_raw() };
            });
            if pdr {
                parlib_events::enable_notifs(); // the depth the lock raised in step 1
            }
        }
        Who::Thread => {
            drop(guard);
            while node.woken.load(Ordering::Acquire) == 0 {
                vcore::futex::wait(&node.woken, 0);
            }
        }
    }
}

/// Like [`block`], but gives up at `deadline`; returns whether it timed out. `node` must
/// be linked in `queue`, guarded by `guard`'s lock.
///
/// A uthread arms a timeout (see `timeout`) whose callback unlinks and wakes the node if
/// it is still queued. Whoever unlinks first decides; afterwards the waiter cancels the
/// timeout, which returns only once the callback no longer touches its node or its slot
/// (both are on its stack).
///
/// # Errors
/// `EINVAL` for a uthread when no timeout service is installed (`parlib_alarms::init`);
/// the node is unlinked again.
pub(crate) fn block_until(
    guard: QGuard<'_>,
    node: &Waiter,
    queue: &WaitQueue,
    reason: BlockReason,
    deadline: Deadline,
) -> Result<bool, Errno> {
    match node.who {
        Who::Uthread(_) => {
            let Some(svc) = timeout::service() else {
                // SAFETY: under the queue lock, `node` is linked in `queue`.
                unsafe { queue.unlink(node as *const Waiter as *mut Waiter) };
                return Err(Errno::INVAL);
            };
            node.qlock.set(guard.lock);
            node.queue.set(queue);
            let mut slot = TimeoutSlot::new();
            // SAFETY: `slot` lives in this frame until the callback is done with it or
            // cancelled (we wait for either below).
            unsafe { svc.arm(&mut slot, deadline, on_timeout, node as *const Waiter as usize) };
            block(guard, node, reason);
            // Whether or not the timeout fired, cancel it: cancel returns only once the
            // service is done with `slot` and the callback done with `node`.
            // SAFETY: armed above.
            unsafe { svc.cancel(&mut slot) };
            Ok(node.timed_out.load(Ordering::Acquire) != 0)
        }
        Who::Thread => {
            let qlock = guard.lock;
            drop(guard);
            loop {
                if node.woken.load(Ordering::Acquire) != 0 {
                    return Ok(false);
                }
                if vcore::futex::wait_until(&node.woken, 0, deadline.ns()) || deadline.has_passed() {
                    let g = qlock.lock();
                    if node.linked.get() {
                        // SAFETY: under the queue lock, `node` is linked in `queue`.
                        unsafe { queue.unlink(node as *const Waiter as *mut Waiter) };
                        drop(g);
                        return Ok(true);
                    }
                    drop(g); // a waker unlinked us first: its wake-up is on its way
                    while node.woken.load(Ordering::Acquire) == 0 {
                        vcore::futex::wait(&node.woken, 0);
                    }
                    return Ok(false);
                }
            }
        }
    }
}

/// The timeout callback, in vcore context (see [`block_until`]).
fn on_timeout(arg: usize) {
    // SAFETY: the waiter set `qlock` and `queue` before arming, and its `cancel` waits
    // until this callback has returned, so the node is alive throughout.
    unsafe { end_early(arg as *const Waiter, |n| &n.timed_out) };
}

/// The interrupt function of [`block_interruptible`], from any context with
/// notifications disabled; returns whether it ended the wait.
fn on_interrupt(arg: usize) -> bool {
    // SAFETY: the waiter set `qlock` and `queue` before registering, and its `disarm`
    // waits until this function has returned, so the node is alive throughout.
    unsafe { end_early(arg as *const Waiter, |n| &n.interrupted) }
}

/// Ends the wait of `node` early if no one has yet: under its queue lock, unlinks it if
/// it is still linked, raises the flag `why` picks, and wakes it. Returns whether it did.
///
/// # Safety
/// `node` is alive for the whole call, with `qlock` and `queue` set.
unsafe fn end_early(node: *const Waiter, why: impl Fn(&Waiter) -> &AtomicU32) -> bool {
    // SAFETY: the caller's contract.
    unsafe {
        let g = (*(*node).qlock.get()).lock();
        if !(*node).linked.get() {
            return false; // a waker (or the other of timeout and interrupt) came first
        }
        (*(*node).queue.get()).unlink(node as *mut Waiter);
        why(&*node).store(1, Ordering::Release);
        drop(g);
        Waiter::wake(node as *mut Waiter);
        true
    }
}

/// How an interruptible wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke {
    /// A waker unlinked the node: what it hands over (a semaphore unit) is ours.
    Normally,
    /// The deadline passed first.
    TimedOut,
    /// `parlib_uthread::interrupt_wait` came first (or was pending when we started).
    Interrupted,
}

/// Like [`block_until`] (with a deadline) or [`block`] (without), but the wait can also
/// be ended by `parlib_uthread::interrupt_wait` (module docs). `node` must be linked in
/// `queue`, guarded by `guard`'s lock. On a plain thread, which cannot be interrupted,
/// it is the plain wait.
///
/// # Errors
/// As [`block_until`].
pub(crate) fn block_interruptible(
    guard: QGuard<'_>,
    node: &Waiter,
    queue: &WaitQueue,
    reason: BlockReason,
    deadline: Option<Deadline>,
) -> Result<Woke, Errno> {
    let Who::Uthread(uth) = node.who else {
        return match deadline {
            None => {
                block(guard, node, reason);
                Ok(Woke::Normally)
            }
            Some(d) => {
                Ok(if block_until(guard, node, queue, reason, d)? { Woke::TimedOut } else { Woke::Normally })
            }
        };
    };
    let svc = match deadline {
        None => None,
        Some(d) => match timeout::service() {
            Some(svc) => Some((svc, d)),
            None => {
                // SAFETY: under the queue lock, `node` is linked in `queue`.
                unsafe { queue.unlink(node as *const Waiter as *mut Waiter) };
                return Err(Errno::INVAL);
            }
        },
    };
    node.qlock.set(guard.lock);
    node.queue.set(queue);
    let reg = WaitInterrupt::new(on_interrupt, node as *const Waiter as usize);
    // SAFETY: our own uthread; `reg` stays in this frame until `disarm` below.
    if !unsafe { uthread::interrupt::arm(uth, &reg) } {
        // An interrupt is pending: do not wait at all.
        // SAFETY: under the queue lock, `node` is linked in `queue`.
        unsafe { queue.unlink(node as *const Waiter as *mut Waiter) };
        return Ok(Woke::Interrupted);
    }
    let mut slot = TimeoutSlot::new();
    if let Some((svc, d)) = svc {
        // SAFETY: `slot` lives in this frame until the callback is done with it or
        // cancelled (below).
        unsafe { svc.arm(&mut slot, d, on_timeout, node as *const Waiter as usize) };
    }
    block(guard, node, reason);
    if let Some((svc, _)) = svc {
        // SAFETY: armed above; returns once the callback no longer touches `node`.
        unsafe { svc.cancel(&mut slot) };
    }
    // SAFETY: registered above; returns once an interrupter no longer touches `node`.
    unsafe { uthread::interrupt::disarm(uth, &reg) };
    Ok(if node.interrupted.load(Ordering::Acquire) != 0 {
        Woke::Interrupted
    } else if node.timed_out.load(Ordering::Acquire) != 0 {
        Woke::TimedOut
    } else {
        Woke::Normally
    })
}

/// An intrusive FIFO of [`Waiter`]s: two pointers, null when empty, so all-zero storage
/// is an empty queue. Only touched under the owning primitive's [`QLock`].
#[repr(C)]
pub(crate) struct WaitQueue {
    head: UnsafeCell<*mut Waiter>,
    tail: UnsafeCell<*mut Waiter>,
}

// SAFETY: only accessed under the primitive's queue lock.
unsafe impl Sync for WaitQueue {}
// SAFETY: as above.
unsafe impl Send for WaitQueue {}

impl WaitQueue {
    pub(crate) const fn new() -> WaitQueue {
        WaitQueue { head: UnsafeCell::new(ptr::null_mut()), tail: UnsafeCell::new(ptr::null_mut()) }
    }

    /// # Safety
    /// Under the queue lock, with `w` alive until it is unlinked.
    pub(crate) unsafe fn push_back(&self, w: *mut Waiter) {
        // SAFETY: the caller holds the queue lock; nodes are alive while linked.
        unsafe {
            (*w).next = ptr::null_mut();
            (*w).prev = *self.tail.get();
            match (*self.tail.get()).as_mut() {
                Some(t) => t.next = w,
                None => *self.head.get() = w,
            }
            *self.tail.get() = w;
            (*w).linked.set(true);
        }
    }

    /// # Safety
    /// Under the queue lock.
    pub(crate) unsafe fn pop_front(&self) -> Option<*mut Waiter> {
        // SAFETY: the caller holds the queue lock.
        let h = unsafe { *self.head.get() };
        if h.is_null() {
            return None;
        }
        // SAFETY: `h` is linked, so alive.
        unsafe { self.unlink(h) };
        Some(h)
    }

    /// # Safety
    /// Under the queue lock, with `w` linked in this queue.
    pub(crate) unsafe fn unlink(&self, w: *mut Waiter) {
        // SAFETY: the caller holds the queue lock and `w` is linked here.
        unsafe {
            let (p, n) = ((*w).prev, (*w).next);
            match p.as_mut() {
                Some(p) => p.next = n,
                None => *self.head.get() = n,
            }
            match n.as_mut() {
                Some(n) => n.prev = p,
                None => *self.tail.get() = p,
            }
            (*w).next = ptr::null_mut();
            (*w).prev = ptr::null_mut();
            (*w).linked.set(false);
        }
    }

    /// # Safety
    /// Under the queue lock.
    pub(crate) unsafe fn is_empty(&self) -> bool {
        // SAFETY: the caller holds the queue lock.
        unsafe { (*self.head.get()).is_null() }
    }

    /// The first waiter, without unlinking it.
    ///
    /// # Safety
    /// Under the queue lock.
    pub(crate) unsafe fn front(&self) -> Option<*mut Waiter> {
        // SAFETY: the caller holds the queue lock.
        let h = unsafe { *self.head.get() };
        (!h.is_null()).then_some(h)
    }
}
