//! Idle vcores: giving the core back without losing a wake-up.
//!
//! A vcore whose scheduler has nothing to run should park (cost no CPU) rather than spin,
//! but work can arrive at any instant: a uthread made runnable by another vcore or by a
//! plain thread, an event (an alarm expiry, a syscall completion), I/O readiness. This
//! is parking_lot's `park(validate, before_sleep)` for vcores: [`park`] on the idle side,
//! [`wake`] / [`wake_any`] on the side that makes work.
//!
//! # The handshake, step by step
//!
//! Parker P (a vcore in `sched_entry` with nothing to run), waker W (whoever publishes
//! work P must see, for example by pushing onto P's queue):
//!
//! 1. P sets its *parking* flag, then a SeqCst fence;
//! 2. P runs the scheduler's `validate` (is there work after all?); if it finds some, P
//!    clears its flag and [`park`] returns;
//! 3. otherwise P parks (`parlib_vcore::yield_vcore`). Events need no look here: a
//!    sender queues its message, then sets the target's `notif_pending`, which the vcore
//!    layer re-checks after marking the vcore parked (and a parked vcore is woken). While
//!    parked the vcore sleeps in the park hook, which `parlib-syscalls` makes an
//!    `epoll_wait`: I/O readiness for the uthreads blocked on it wakes it too (so an
//!    idle vcore with I/O waiters sleeps, where polling `events_pending`, which counts
//!    them as work, would keep it spinning);
//! 4. W publishes the work, then a SeqCst fence, then reads P's flag; if it is set, W
//!    notifies P (`parlib_vcore::notify`): a parked P is woken, and a P still in steps 2
//!    and 3 gets `notif_pending` and stays up;
//! 5. P, running again, enters `vcore_entry`, which clears its flag.
//!
//! Steps 1-2 and 4 are the store-then-load pattern on both sides (Dekker's): at least
//! one of P's `validate` and W's flag read sees the other's store, so either P finds the
//! work or W notifies P. Notifications are the only wake-up, so events and
//! `runnable` from anywhere are covered alike.
//!
//! A scheduler that already orders the two sides through a lock (P's `validate` takes
//! the queue lock; W reads the flag with [`is_parking`] while it holds the same lock,
//! after its push) needs no fence on the push: the lock orders the critical sections.
//! It then notifies after unlocking (`parlib_vcore::notify`). upthread does this, so
//! its yield path has no fence.
//!
//! Every vcore's flag starts set (all are parked until `lib_init` moves `main` onto one,
//! whose first `vcore_entry` clears it), so work given to a vcore that has never run wakes
//! it: no separate `vcore::request` is needed.

use core::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::OnceLock;

use crossbeam_utils::CachePadded;
use parlib_vcore as vcore;

/// One flag per vcore, each on its own pair of cache lines: W reads other vcores' flags
/// on every push, and P writes its own (`CachePadded` is 128 bytes on x86-64, for the
/// adjacent-line prefetcher).
static PARKING: OnceLock<Box<[CachePadded<AtomicBool>]>> = OnceLock::new();

/// Sets up the flags (all set: every vcore is parked until requested). Called by
/// `lib_init` after the vcore layer is up.
pub(crate) fn init() {
    let _ = PARKING.set((0..vcore::max_vcores()).map(|_| CachePadded::new(AtomicBool::new(true))).collect());
}

#[inline]
fn flags() -> &'static [CachePadded<AtomicBool>] {
    PARKING.get().map_or(&[], |f| &f[..])
}

/// Step 5, from `vcore_entry`: vcore `id` runs. A plain load first: the flag is usually
/// clear, and the line stays shared with wakers that read it.
#[inline]
pub(crate) fn running(id: usize) {
    if let Some(f) = flags().get(id) {
        if f.load(Ordering::Relaxed) {
            f.store(false, Ordering::Relaxed);
        }
    }
}

/// Steps 1 to 3, for a vcore with nothing to run: returns if there is work after all
/// (`validate` returned true: look again). Otherwise runs `before_sleep` (disarm a
/// timer, update counts) and parks; the vcore starts afresh in `vcore_entry` when woken
/// (which handles its events first), so in that case it never returns.
///
/// `validate` must look at everything a waker publishes before calling [`wake`] (or
/// before reading [`is_parking`] under a lock `validate` also takes).
///
/// # Panics
/// Outside vcore context.
pub fn park(validate: impl FnOnce() -> bool, before_sleep: impl FnOnce()) {
    let vc = crate::switch::in_vcore_context("uthread::idle::park");
    let flag = &flags()[vc.id()];
    flag.store(true, Ordering::Relaxed);
    fence(Ordering::SeqCst);
    if validate() {
        flag.store(false, Ordering::Relaxed);
        return;
    }
    before_sleep();
    vcore::yield_vcore()
}

/// Whether vcore `id` is parking or parked (step 4's read, without the fence). Only
/// race-free under a lock that the parker's `validate` also takes (module docs); use
/// [`wake`] otherwise.
#[inline]
pub fn is_parking(id: usize) -> bool {
    flags().get(id).is_some_and(|f| f.load(Ordering::Relaxed))
}

/// Step 4 for vcore `id`, after publishing work it must see: wakes it if it is parking
/// or parked. Cheap when it is running (a fence and a load).
#[inline]
pub fn wake(id: usize) {
    fence(Ordering::SeqCst);
    if is_parking(id) {
        let _ = vcore::notify(id);
    }
}

/// Step 4 for work any vcore may take (a global queue): wakes one parking or parked
/// vcore, if there is one. Each parked vcore is claimed by one waker (its flag is swapped
/// off), so wakers racing after a burst of pushes wake different vcores.
pub fn wake_any() {
    fence(Ordering::SeqCst);
    for (id, f) in flags().iter().enumerate() {
        if f.load(Ordering::Relaxed) && f.swap(false, Ordering::AcqRel) {
            let _ = vcore::notify(id);
            return;
        }
    }
}
