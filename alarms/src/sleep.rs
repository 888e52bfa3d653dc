//! Sleeping that blocks only the calling uthread.
//!
//! # Interruptible sleep
//!
//! [`sleep_until_interruptible`] can also be ended by `parlib_uthread::interrupt_wait`
//! (what `pthread_cancel` and uthread-directed signals use; the protocol is in
//! `parlib_uthread::interrupt`). The race between the alarm and the interrupt is
//! settled by [`AlarmWaiter::stop`]: it returns true only if the alarm's callback will
//! never run, so the interrupt wakes the sleeper only then, and otherwise the callback
//! does. The registration is published in the yield callback, after the alarm started:
//! the alarm's expiry is handled by the vcore that started it (`pvc`), which is busy in
//! that callback, so the sleeper cannot be woken before its registration is in place.

use core::pin::pin;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::time::Duration;

use parlib_sync::Deadline;
use parlib_uthread::{self as uthread, BlockReason, Interrupted, Uthread, WaitInterrupt};

use crate::waiter::AlarmWaiter;

/// Sleeps for `d`. On a uthread, only the uthread sleeps and its vcore runs others; on
/// a plain thread, the thread sleeps (`clock_nanosleep`).
pub fn sleep(d: Duration) {
    sleep_until(Deadline::after(d));
}

/// Sleeps until `t` (never wakes early). See [`sleep`].
pub fn sleep_until(t: Deadline) {
    if uthread::current().is_none() {
        return thread_sleep_until(t);
    }
    assert!(crate::pvc::initialized(), "parlib_alarms::sleep on a uthread needs parlib_alarms::init first");
    let w = pin!(AlarmWaiter::new());
    w.init_waiter(wake);
    w.set_abs(t);
    let wr = w.as_ref();
    uthread::yield_with(true, move |uth| {
        // Vcore context: block first, then start the alarm, so its callback can only
        // find the uthread blocked. The alarm runs on this vcore.
        uthread::has_blocked(uth, BlockReason::Sleep);
        wr.set_data(uth.as_ptr() as usize);
        wr.start();
    });
    // Woken by `wake`. Dropping `w` waits until its callback has returned.
}

/// Like [`sleep_until`], but `parlib_uthread::interrupt_wait` can end the sleep early
/// (module docs). On a plain thread, which cannot be interrupted, it is `sleep_until`.
///
/// # Errors
/// [`Interrupted`] if an interrupt ended the sleep (or was pending when it began).
pub fn sleep_until_interruptible(t: Deadline) -> Result<(), Interrupted> {
    if uthread::current().is_none() {
        thread_sleep_until(t);
        return Ok(());
    }
    assert!(crate::pvc::initialized(), "parlib_alarms::sleep on a uthread needs parlib_alarms::init first");
    let w = pin!(AlarmWaiter::new());
    w.init_waiter(wake);
    w.set_abs(t);
    let wr = w.as_ref();
    let sleeper = Sleeper {
        alarm: wr.get_ref(),
        uth: AtomicUsize::new(0),
        armed: AtomicBool::new(false),
        interrupted: AtomicBool::new(false),
    };
    let sp = &sleeper as *const Sleeper as usize;
    let reg = WaitInterrupt::new(interrupt_sleep, sp);
    let regp = &reg as *const WaitInterrupt as usize;
    uthread::yield_with(true, move |uth| {
        uthread::has_blocked(uth, BlockReason::Sleep);
        wr.set_data(uth.as_ptr() as usize);
        // SAFETY: the sleeper and the registration are on the blocked uthread's stack,
        // which stays put until it runs again.
        let s = unsafe { &*(sp as *const Sleeper) };
        s.uth.store(uth.as_ptr() as usize, Ordering::Relaxed); // published by `arm`
        wr.start();
        // SAFETY: the uthread that just yielded; `reg` stays in place until `disarm`.
        if unsafe { uthread::interrupt::arm(uth, regp as *const WaitInterrupt) } {
            s.armed.store(true, Ordering::Relaxed); // read by the sleeper once it runs
        } else {
            // An interrupt was pending: end the sleep now, unless the alarm already did.
            s.interrupted.store(true, Ordering::Release);
            if wr.stop() {
                uthread::runnable(uth);
            }
        }
    });
    if sleeper.armed.load(Ordering::Relaxed) {
        // SAFETY: the yield callback registered `reg` for this uthread (the one running).
        unsafe { uthread::interrupt::disarm(uthread::current().expect("still the same uthread"), &reg) };
    }
    if sleeper.interrupted.load(Ordering::Acquire) {
        Err(Interrupted)
    } else {
        Ok(())
    }
    // Dropping `w` waits until its callback, if it runs, has returned.
}

/// The state an interrupt of [`sleep_until_interruptible`] needs; on the sleeper's stack.
struct Sleeper<'a> {
    alarm: &'a AlarmWaiter,
    /// The sleeping uthread, set in its yield callback.
    uth: AtomicUsize,
    /// Whether the yield callback registered the interrupt (`disarm` is then due).
    armed: AtomicBool,
    interrupted: AtomicBool,
}

/// The interrupt function of [`sleep_until_interruptible`].
fn interrupt_sleep(arg: usize) -> bool {
    // SAFETY: the registration's argument; the sleeper keeps it alive until `disarm`.
    let s = unsafe { &*(arg as *const Sleeper) };
    if !s.alarm.stop() {
        return false; // the alarm fired: its callback wakes the sleeper
    }
    s.interrupted.store(true, Ordering::Release);
    // SAFETY: set before the registration was published; the uthread is blocked and its
    // alarm will never wake it, so it is ours to wake.
    uthread::runnable(unsafe { NonNull::new_unchecked(s.uth.load(Ordering::Relaxed) as *mut Uthread) });
    true
}

fn wake(w: &AlarmWaiter) {
    // SAFETY: `sleep_until` stored its (blocked) uthread here before starting the alarm.
    uthread::runnable(unsafe { NonNull::new_unchecked(w.data() as *mut Uthread) });
}

fn thread_sleep_until(t: Deadline) {
    let ts =
        libc::timespec { tv_sec: (t.ns() / 1_000_000_000) as i64, tv_nsec: (t.ns() % 1_000_000_000) as i64 };
    // SAFETY: absolute CLOCK_MONOTONIC sleep with a valid timespec; EINTR restarts.
    while unsafe {
        libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &ts, core::ptr::null_mut())
    } == libc::EINTR
    {}
}
