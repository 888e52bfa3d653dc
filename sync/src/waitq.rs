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
//! interruptible variants ([`block_until`] with `interruptible`): the uthread also
//! registers a `parlib_uthread::WaitInterrupt` whose function, `on_interrupt`, does what
//! a timeout does: under the queue lock, if the node is still linked, it unlinks it,
//! records [`Ended::Interrupted`] and wakes it. A waker (or the timeout) that unlinked
//! it first wins instead, and the interrupt does nothing. The node is always unlinked
//! before its owner returns, so it never outlives its stack frame in a queue. The
//! protocol that keeps the registration itself safe is `parlib_uthread::interrupt`'s.
//! Mutex locks are not cancellation points and never register.

use core::cell::{Cell, UnsafeCell};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU32, Ordering};

use crossbeam_utils::Backoff;
use parlib_uthread::{self as uthread, BlockReason, Blocked, Uthread, WaitInterrupt};

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
            // Test-and-test-and-set, with exponential backoff between the looks so that
            // contending vcores do not hammer the line (crossbeam's `spin`, which only
            // issues `pause`; never `snooze`, whose `sched_yield` would stall a vcore).
            let backoff = Backoff::new();
            while self.0.load(Ordering::Relaxed) != 0 {
                backoff.spin();
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

/// How a wait ended, as [`block_until`] reports it; stored in the node's `ended` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Ended {
    /// A waker unlinked the node: what it hands over (a lock, a semaphore unit) is ours.
    /// Zero, so a fresh node reads as woken until someone ends its wait early.
    Woken = 0,
    /// The deadline passed first.
    TimedOut = 1,
    /// `parlib_uthread::interrupt_wait` came first (or was pending when we started).
    Interrupted = 2,
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
    /// For uthreads' timed or interruptible waits: the lock and queue the timeout or
    /// interrupt must take and unlink from.
    qlock: Cell<*const QLock>,
    queue: Cell<*const WaitQueue>,
    /// An [`Ended`] code. Only whoever unlinks the node writes it, under the queue lock,
    /// before waking the owner (release); the owner reads it once woken (acquire). A
    /// waker leaves it `Woken`, so at most one of timeout and interrupt ever writes it.
    ended: AtomicU32,
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
            ended: AtomicU32::new(Ended::Woken as u32),
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
            // SAFETY: the node's uthread blocked (its yield callback called has_blocked
            // before releasing the queue lock we took to unlink it), and unlinking it
            // made its wake-up ours alone.
            Who::Uthread(u) => uthread::runnable(unsafe { Blocked::from_raw(u) }),
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

    fn ptr(&self) -> *mut Waiter {
        self as *const Waiter as *mut Waiter
    }

    fn ended(&self) -> Ended {
        const TIMED_OUT: u32 = Ended::TimedOut as u32;
        const INTERRUPTED: u32 = Ended::Interrupted as u32;
        match self.ended.load(Ordering::Acquire) {
            TIMED_OUT => Ended::TimedOut,
            INTERRUPTED => Ended::Interrupted,
            _ => Ended::Woken,
        }
    }

    /// A plain thread's sleep until a waker has stored `woken`.
    fn sleep_until_woken(&self) {
        while self.woken.load(Ordering::Acquire) == 0 {
            vcore::futex::wait(&self.woken, 0);
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
            uthread::yield_with(move |me| {
                // The node already names the uthread: a waker rebuilds the handle from it
                // (`Waiter::wake`) once it has unlinked the node.
                let _ = uthread::has_blocked(me, reason).into_raw();
                // SAFETY: the lock lives in the primitive, which outlives its waiters.
                unsafe { (*(lock as *const QLock)).unlock_raw() };
            });
            if pdr {
                parlib_events::enable_notifs(); // the depth the lock raised in step 1
            }
        }
        Who::Thread => {
            drop(guard);
            node.sleep_until_woken();
        }
    }
}

/// Like [`block`], but the wait may also end at `deadline` (if any) or, if
/// `interruptible`, by `parlib_uthread::interrupt_wait` (module docs). `node` must be
/// linked in `queue`, guarded by `guard`'s lock.
///
/// A uthread arms a timeout (see `timeout`) and registers an interrupt, whose functions
/// unlink and wake the node if it is still queued. Whoever unlinks first decides;
/// afterwards the waiter cancels the timeout and withdraws the registration, which return
/// only once neither touches its node, slot or registration (all on its stack). A plain
/// thread sleeps with a kernel futex timeout and cannot be interrupted.
///
/// # Errors
/// `EINVAL` for a uthread with a deadline when no timeout service is installed
/// (`parlib_alarms::init`); the node is unlinked again.
pub(crate) fn block_until(
    guard: QGuard<'_>,
    node: &Waiter,
    queue: &WaitQueue,
    reason: BlockReason,
    deadline: Option<Deadline>,
    interruptible: bool,
) -> Result<Ended, Errno> {
    let uth = match node.who {
        Who::Uthread(uth) if deadline.is_some() || interruptible => uth,
        // Only a waker, or a plain thread's own futex timeout, can end this wait.
        _ => {
            return Ok(match deadline {
                None => {
                    block(guard, node, reason);
                    Ended::Woken
                }
                Some(d) => thread_block_until(guard, node, queue, d),
            })
        }
    };
    let timeout = match deadline {
        None => None,
        Some(d) => {
            let Some(svc) = timeout::service() else {
                // SAFETY: under the queue lock, `node` is linked in `queue`.
                unsafe { queue.unlink(node.ptr()) };
                return Err(Errno::INVAL);
            };
            Some((svc, d))
        }
    };
    node.qlock.set(guard.lock);
    node.queue.set(queue);
    let reg = WaitInterrupt::new(on_interrupt, node.ptr() as usize);
    // SAFETY: our own uthread; `reg` stays in this frame until `disarm` below.
    if interruptible && !unsafe { uthread::interrupt::arm(uth, &reg) } {
        // An interrupt is pending: do not wait at all.
        // SAFETY: under the queue lock, `node` is linked in `queue`.
        unsafe { queue.unlink(node.ptr()) };
        return Ok(Ended::Interrupted);
    }
    let mut slot = TimeoutSlot::new();
    if let Some((svc, d)) = timeout {
        // SAFETY: `slot` lives in this frame until the callback is done with it or
        // cancelled (below).
        unsafe { svc.arm(&mut slot, d, on_timeout, node.ptr() as usize) };
    }
    block(guard, node, reason);
    // Whether or not they fired, withdraw both: each returns only once its function no
    // longer touches `node` (nor the service `slot`, nor the interrupter `reg`).
    if let Some((svc, _)) = timeout {
        // SAFETY: armed above.
        unsafe { svc.cancel(&mut slot) };
    }
    if interruptible {
        // SAFETY: registered above.
        unsafe { uthread::interrupt::disarm(uth, &reg) };
    }
    Ok(node.ended())
}

/// [`block_until`] with a deadline, for a plain thread.
fn thread_block_until(guard: QGuard<'_>, node: &Waiter, queue: &WaitQueue, deadline: Deadline) -> Ended {
    let qlock = guard.lock;
    drop(guard);
    while node.woken.load(Ordering::Acquire) == 0 {
        if vcore::futex::wait_until(&node.woken, 0, deadline.ns()) || deadline.has_passed() {
            let _g = qlock.lock();
            if node.linked.get() {
                // SAFETY: under the queue lock, `node` is linked in `queue`.
                unsafe { queue.unlink(node.ptr()) };
                return Ended::TimedOut;
            }
            break; // a waker unlinked us first: its wake-up is on its way
        }
    }
    node.sleep_until_woken();
    Ended::Woken
}

/// The timeout callback, in vcore context (see [`block_until`]).
fn on_timeout(arg: usize) {
    // SAFETY: the waiter set `qlock` and `queue` before arming, and its `cancel` waits
    // until this callback has returned, so the node is alive throughout.
    unsafe { end_early(arg as *const Waiter, Ended::TimedOut) };
}

/// The interrupt function of [`block_until`], from any context with notifications
/// disabled; returns whether it ended the wait.
fn on_interrupt(arg: usize) -> bool {
    // SAFETY: the waiter set `qlock` and `queue` before registering, and its `disarm`
    // waits until this function has returned, so the node is alive throughout.
    unsafe { end_early(arg as *const Waiter, Ended::Interrupted) }
}

/// Ends the wait of `node` early if no one has yet: under its queue lock, unlinks it if
/// it is still linked, records `why`, and wakes it. Returns whether it did.
///
/// # Safety
/// `node` is alive for the whole call, with `qlock` and `queue` set.
unsafe fn end_early(node: *const Waiter, why: Ended) -> bool {
    // SAFETY: the caller's contract.
    unsafe {
        let g = (*(*node).qlock.get()).lock();
        if !(*node).linked.get() {
            return false; // a waker (or the other of timeout and interrupt) came first
        }
        (*(*node).queue.get()).unlink(node as *mut Waiter);
        (*node).ended.store(why as u32, Ordering::Release);
        drop(g);
        Waiter::wake(node as *mut Waiter);
        true
    }
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
