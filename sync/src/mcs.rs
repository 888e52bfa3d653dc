//! MCS queue locks (Mellor-Crummey and Scott, 1991): each waiter spins on its own node,
//! so a contended lock costs one cache-line transfer per hand-off instead of a
//! stampede on one word. Nodes live on the lockers' stacks for the duration of
//! [`McsLock::with`].
//!
//! Handing the lock over, step by step:
//! 1. a locker swaps its node into `tail`; if there was no previous tail, it holds the
//!    lock;
//! 2. otherwise it links itself behind the previous tail and spins on its own `locked`;
//! 3. the holder, releasing, CASes `tail` from its node back to null; if that fails a
//!    successor is linking in: it waits for `next` and clears the successor's `locked`.

use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use crossbeam_utils::CachePadded;

/// A waiter's node. Each lives in a `CachePadded` (128 bytes on x86-64, for the
/// adjacent-line prefetcher), so each waiter spins on its own pair of cache lines.
struct Node {
    next: AtomicPtr<Node>,
    locked: AtomicBool,
}

/// An MCS lock protecting a `T`. Like a spinlock, never hold it across a block or yield.
pub struct McsLock<T: ?Sized> {
    tail: AtomicPtr<Node>,
    pdr: bool,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&mut T` to one holder at a time.
unsafe impl<T: ?Sized + Send> Sync for McsLock<T> {}
// SAFETY: moving the lock moves the `T`.
unsafe impl<T: ?Sized + Send> Send for McsLock<T> {}

impl<T> McsLock<T> {
    /// A plain MCS lock.
    pub const fn new(value: T) -> McsLock<T> {
        McsLock { tail: AtomicPtr::new(ptr::null_mut()), pdr: false, data: UnsafeCell::new(value) }
    }

    /// The PDR variant: while a uthread holds it, notifications are disabled on its vcore
    /// (see `parlib_vcore::spin::PdrSpinLock` for why locks shared with vcore context need
    /// this).
    pub const fn new_pdr(value: T) -> McsLock<T> {
        McsLock { tail: AtomicPtr::new(ptr::null_mut()), pdr: true, data: UnsafeCell::new(value) }
    }
}

impl<T: ?Sized> McsLock<T> {
    /// Runs `f` holding the lock.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let disabled = self.pdr && parlib_vcore::notif::disable_if_uthread();
        let node =
            CachePadded::new(Node { next: AtomicPtr::new(ptr::null_mut()), locked: AtomicBool::new(true) });
        let node: &Node = &node;
        let me = node as *const Node as *mut Node;
        let prev = self.tail.swap(me, Ordering::AcqRel); // step 1
        if !prev.is_null() {
            // SAFETY: `prev` stays alive until it has handed us the lock (step 3), which
            // it cannot do before we link in.
            unsafe { (*prev).next.store(me, Ordering::Release) }; // step 2
            while node.locked.load(Ordering::Acquire) {
                core::hint::spin_loop();
            }
        }
        struct Release<'a, T: ?Sized>(&'a McsLock<T>, &'a Node, bool);
        impl<T: ?Sized> Drop for Release<'_, T> {
            fn drop(&mut self) {
                let me = self.1 as *const Node as *mut Node;
                // Step 3.
                if self
                    .0
                    .tail
                    .compare_exchange(me, ptr::null_mut(), Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    let mut next = self.1.next.load(Ordering::Acquire);
                    while next.is_null() {
                        core::hint::spin_loop();
                        next = self.1.next.load(Ordering::Acquire);
                    }
                    // SAFETY: the successor spins on its node until we clear `locked`.
                    unsafe { (*next).locked.store(false, Ordering::Release) };
                }
                if self.2 {
                    parlib_events::enable_notifs();
                }
            }
        }
        let _release = Release(self, node, disabled);
        // SAFETY: we hold the lock until `_release` drops.
        f(unsafe { &mut *self.data.get() })
    }
}
