//! Wait interrupts: ending a blocked uthread's wait early, from outside.
//!
//! A uthread blocked in a sync primitive, a sleep or an I/O wait is held by whoever
//! will wake it (a wait queue, an alarm, a vcore's readiness list), and only that party
//! knows how to take it back. Cancellation (`pthread_cancel`) and uthread-directed
//! signals need to end such a wait without knowing which it is. So a uthread that blocks
//! in an *interruptible* wait registers a [`WaitInterrupt`]: a function that ends this
//! wait, and its argument. [`interrupt_wait`] takes the registration and calls it.
//!
//! # The slot
//!
//! Each [`Uthread`] has one word, its *interrupt slot*:
//!
//! | value | meaning | set by |
//! |---|---|---|
//! | `EMPTY` (0) | no interruptible wait, nothing pending | init; [`arm`] consuming `PENDING`; [`interrupt_wait`] taking a registration |
//! | `PENDING` (1) | an interrupt came while no wait was registered | [`interrupt_wait`] on `EMPTY` |
//! | a pointer | the [`WaitInterrupt`] of the wait in progress (on the waiter's stack) | [`arm`] |
//!
//! # The protocol, step by step
//!
//! Waiter W (the uthread that blocks), waker K (whoever ends the wait normally: a
//! signal, a post, an alarm, readiness), interrupter I:
//!
//! 1. W builds a [`WaitInterrupt`] on its stack whose function can end *this* wait, and
//!    publishes it with [`arm`] (a compare-and-swap `EMPTY` → pointer) before the wait
//!    can be missed: before it blocks, or in its yield callback once its waker can find
//!    it. If the slot holds `PENDING`, `arm` consumes it and fails: W does not block (or
//!    undoes what it queued) and reports "interrupted" at once. This closes the window
//!    between the caller's own check ("is a cancel pending?") and the registration.
//! 2. I calls [`interrupt_wait`], with notifications disabled: it swaps the pointer out
//!    of the slot (compare-and-swap pointer → `EMPTY`). From then on no one else can
//!    call the function for this wait. If the slot held no pointer, I leaves `PENDING`
//!    (step 1 will see it) and returns.
//! 3. I calls the function. The function and K race to end the wait, and the wait's own
//!    state settles it, *exactly once*: each party takes the wait from "waiting" to
//!    "ended" with one atomic step that only one can win (for a wait queue: unlinking
//!    the waiter node under the queue lock; for a join: a compare-and-swap of the target's
//!    lifecycle word; for a sleep: stopping the alarm, which succeeds only if its
//!    callback never runs). The winner makes W runnable; the loser does nothing. The
//!    function records on W's stack that the wait was interrupted, and returns whether
//!    it won.
//! 4. I marks the registration `done` (a release store, made even if the function
//!    panics) and touches it no more.
//! 5. W, running again for whichever reason, calls [`disarm`]: a compare-and-swap
//!    pointer → `EMPTY`. If it succeeds, no interrupter took the registration and none
//!    ever will. If it fails, an interrupter took it (step 2) and may still be in step 3
//!    reading W's stack: W waits for `done` (step 4) before its frame may go.
//!
//! Why exactly once: the function is called at most once per registration, because only
//! the compare-and-swap of step 2 (or W's own of step 5) can take the pointer out, and
//! only one of them succeeds. Whether the wait ends by interruption or normally, the
//! wait's own state decides in one atomic step (step 3), so W is made runnable once. Why
//! no dangling access: I touches the registration (and whatever its argument points to
//! on W's stack) only between steps 2 and 4, and W does not leave its frame before it has
//! either taken the pointer back itself or seen `done`.
//!
//! Why W's wait in step 5 ends: steps 3 and 4 never block or yield, and I runs them
//! with notifications disabled (on a uthread) or in vcore context, so it cannot be
//! switched out for W on its own vcore, where W's spin would keep it from ever
//! resuming. A plain-thread I runs them straight through. What can still delay I is
//! the kernel giving I's CPU to another thread (W's vcore, on a machine with more
//! threads than CPUs), so W spins only briefly, then lets the kernel run I
//! (`sched_yield`).
//!
//! A `PENDING` left behind by an interrupt whose cause went away (a cancel acted on at
//! another point, a signal already delivered) is harmless, so nothing clears it: it
//! ends the uthread's next interruptible wait at once, and [`arm`] consumes it there.
//! That is a spurious wake-up, which callers must handle anyway, since an interrupt's
//! cause can also go away while its wait is being ended: they re-check why they were
//! interrupted (upthread runs pending signal handlers and acts on a pending cancel)
//! and, finding nothing to do, wait again. One interrupt leaves at most one `PENDING`,
//! so it costs at most one extra round.
//!
//! Rejected: a flag in the uthread's state word ("interrupted") checked by every waker.
//! Every wait would then pay for interruptibility, and the wakers of different waits
//! (queues, alarms, epoll) would all need to know about it.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::notif::NotifGuard;
use crate::uthread::Uthread;

/// The slot holds no registration and nothing is pending.
const EMPTY: usize = 0;
/// An interrupt came while no wait was registered.
const PENDING: usize = 1;

/// Failed looks at `done` before a waiter in [`disarm`] gives its CPU away. glibc's
/// adaptive mutex spins for the same count before it sleeps (its
/// `glibc.pthread.mutex_spin_count` tunable, default 100): long enough for an
/// interrupter running on another CPU to finish, short enough that one waiting for this
/// CPU waits only microseconds.
const SPINS_BEFORE_YIELD: u32 = 100;

/// How to end one interruptible wait early: `func(arg)`, called at most once, from any
/// context, with notifications disabled. It must end the wait *if it is still in
/// progress* (settling the race with the normal wake-up in one atomic step, module docs
/// step 3), make the waiter runnable if it won, and return whether it did.
///
/// It lives on the waiting uthread's stack for the length of the wait.
pub struct WaitInterrupt {
    func: fn(usize) -> bool,
    arg: usize,
    /// Set by the interrupter once it no longer touches this registration (step 4).
    done: AtomicBool,
}

impl WaitInterrupt {
    /// A registration that ends the wait with `func(arg)`.
    pub const fn new(func: fn(usize) -> bool, arg: usize) -> WaitInterrupt {
        WaitInterrupt { func, arg, done: AtomicBool::new(false) }
    }
}

/// A wait ended by [`interrupt_wait`] instead of its normal wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

impl core::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("wait interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Registers `reg` as the way to end `uth`'s coming wait (step 1). Returns false, and
/// registers nothing, if an interrupt is pending: the pending mark is consumed and the
/// caller must not block (or must undo its wait) and report the interruption.
///
/// # Panics
/// If a registration is already in place (one interruptible wait at a time).
///
/// # Safety
/// `uth` is the caller's own uthread (or, from its yield callback, the uthread that
/// yielded). `reg` must stay valid and in place until [`disarm`] returns.
pub unsafe fn arm(uth: NonNull<Uthread>, reg: *const WaitInterrupt) -> bool {
    // SAFETY: the caller's contract: the record is alive.
    let slot = unsafe { &uth.as_ref().wait_interrupt };
    match slot.compare_exchange(EMPTY, reg as usize, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => true,
        Err(PENDING) => {
            // Only `arm` moves PENDING back to EMPTY, and only for the uthread's own
            // wait: nobody else can change it under us.
            slot.store(EMPTY, Ordering::Release);
            false
        }
        Err(_) => {
            // SAFETY: as above.
            let id = unsafe { uth.as_ref() }.id();
            panic!("uthread::interrupt::arm: uthread {id} already has an interruptible wait")
        }
    }
}

/// Withdraws `reg` after the wait ended, for whatever reason (step 5). Returns whether
/// an interrupter took it (then its function has run to completion: whether it won the
/// race is for the wait's own state to tell).
///
/// # Safety
/// `reg` was registered for `uth` with a successful [`arm`].
pub unsafe fn disarm(uth: NonNull<Uthread>, reg: &WaitInterrupt) -> bool {
    // SAFETY: the caller's contract: the record is alive.
    let slot = unsafe { &uth.as_ref().wait_interrupt };
    let me = reg as *const WaitInterrupt as usize;
    if slot.compare_exchange(me, EMPTY, Ordering::AcqRel, Ordering::Acquire).is_ok() {
        return false;
    }
    // Taken by an interrupter (step 2): wait until it is done with our stack (step 4).
    // It never blocks, but the kernel may keep it off this CPU (module docs), so after a
    // short spin let the kernel run it: a uthread yield would only run our vcore's
    // other uthreads.
    let mut looks = 0;
    while !reg.done.load(Ordering::Acquire) {
        looks += 1;
        if looks == SPINS_BEFORE_YIELD {
            looks = 0;
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        } else {
            core::hint::spin_loop();
        }
    }
    true
}

/// Marks a taken registration `done` (step 4) when dropped, so also when its function
/// panics: otherwise its waiter would spin in [`disarm`] forever.
struct MarkDone<'a>(&'a WaitInterrupt);

impl Drop for MarkDone<'_> {
    fn drop(&mut self) {
        self.0.done.store(true, Ordering::Release);
    }
}

/// Ends `uth`'s interruptible wait early, if it is in one (steps 2 to 4); otherwise
/// leaves an interrupt pending, which ends its next interruptible wait at once (step
/// 1). Returns true if this call ended a wait (the registered function won the race
/// with the normal wake-up).
///
/// Callable from a uthread, vcore context or a plain thread.
///
/// # Panics
/// If the registered function panics; the registration is still marked done, so its
/// waiter's [`disarm`] returns.
///
/// # Safety
/// `uth` must be alive for the duration of the call (a blocked uthread in an
/// interruptible wait stays alive until its wait's [`disarm`], which waits for us; a
/// scheduler must otherwise keep the record from being freed, for example under the lock
/// of its thread table).
pub unsafe fn interrupt_wait(uth: NonNull<Uthread>) -> bool {
    // SAFETY: the caller's contract.
    let slot = unsafe { &uth.as_ref().wait_interrupt };
    // Steps 2 to 4 must not be switched out (module docs); the guard also re-enables
    // notifications if the function panics. Declared before `MarkDone`, so dropped
    // after it: `done` is set before we can be switched out, on unwind too.
    let _notifs = NotifGuard::new();
    let mut cur = slot.load(Ordering::Acquire);
    loop {
        let to = if cur > PENDING { EMPTY } else { PENDING };
        if cur == PENDING {
            break false;
        }
        match slot.compare_exchange(cur, to, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) if cur == EMPTY => break false,
            Ok(_) => {
                // SAFETY: we took the registration out of the slot (step 2): its owner
                // keeps it in place until it sees `done` (step 5).
                let reg = unsafe { &*(cur as *const WaitInterrupt) };
                let done = MarkDone(reg);
                let won = (reg.func)(reg.arg);
                drop(done); // step 4: the last touch
                break won;
            }
            Err(now) => cur = now,
        }
    }
}
