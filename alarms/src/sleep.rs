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
//! that callback, so the alarm cannot wake the sleeper before its registration is in
//! place. An interrupter can, at once: so the callback touches nothing on the sleeper's
//! stack after publishing it.

use core::pin::{pin, Pin};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;

use parlib_sync::Deadline;
use parlib_uthread::{self as uthread, BlockReason, Blocked, Interrupted, Uthread, WaitInterrupt, Yielded};

use crate::waiter::AlarmWaiter;

/// Sleeps for `d`. On a uthread, only the uthread sleeps and its vcore runs others; on
/// a plain thread, the thread sleeps (`clock_nanosleep`).
pub fn sleep(d: Duration) {
    sleep_until(Deadline::after(d));
}

/// Sleeps until `t` (never wakes early). See [`sleep`].
pub fn sleep_until(t: Deadline) {
    let Some(w) = wake_up_alarm(t) else { return };
    let w = pin!(w);
    let wp = addr_of(w.as_ref());
    uthread::yield_with(move |me| {
        // SAFETY: the alarm is pinned on the blocked uthread's stack, which stays put
        // until `wake` makes it runnable again.
        block_until_alarm(me, unsafe { pinned_at(wp) });
    });
    // Woken by `wake`. Dropping `w` waits until its callback has returned.
}

/// Like [`sleep_until`], but `parlib_uthread::interrupt_wait` can end the sleep early
/// (module docs). On a plain thread, which cannot be interrupted, it is `sleep_until`.
///
/// # Errors
/// [`Interrupted`] if an interrupt ended the sleep (or was pending when it began).
pub fn sleep_until_interruptible(t: Deadline) -> Result<(), Interrupted> {
    let Some(w) = wake_up_alarm(t) else { return Ok(()) };
    let w = pin!(w);
    let wp = addr_of(w.as_ref());
    let sleeper = Sleeper {
        alarm: w.as_ref().get_ref(),
        armed: AtomicBool::new(false),
        interrupted: AtomicBool::new(false),
    };
    let sp = &sleeper as *const Sleeper as usize;
    let reg = WaitInterrupt::new(interrupt_sleep, sp);
    let regp = &reg as *const WaitInterrupt as usize;
    uthread::yield_with(move |me| {
        // SAFETY: the alarm, the sleeper and the registration are on the blocked
        // uthread's stack, which stays put until it runs again.
        let (wr, s) = unsafe { (pinned_at(wp), &*(sp as *const Sleeper)) };
        let me = block_until_alarm(me, wr);
        // Set before `arm` publishes the registration: from then on an interrupter can
        // stop the alarm and wake the sleeper, whose frame may then be gone.
        s.armed.store(true, Ordering::Relaxed);
        // SAFETY: the uthread that just yielded; `reg` stays in place until `disarm`.
        if !unsafe { uthread::interrupt::arm(me, regp as *const WaitInterrupt) } {
            // An interrupt was pending: end the sleep now, unless the alarm already did.
            s.armed.store(false, Ordering::Relaxed);
            s.interrupted.store(true, Ordering::Release);
            if wr.stop() {
                // SAFETY: the alarm will never run `wake` now, so the wake-up is ours.
                uthread::runnable(unsafe { Blocked::from_raw(me) });
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

/// What both sleeps do first. On a plain thread: sleeps until `t`, returns `None`. On a
/// uthread: returns the alarm that will wake it at `t`, not started (so still movable).
fn wake_up_alarm(t: Deadline) -> Option<AlarmWaiter> {
    if uthread::current().is_none() {
        thread_sleep_until(t);
        return None;
    }
    assert!(crate::pvc::initialized(), "parlib_alarms::sleep on a uthread needs parlib_alarms::init first");
    let w = AlarmWaiter::new();
    w.init_waiter(wake);
    w.set_abs(t);
    Some(w)
}

/// In the yield callback (vcore context): blocks the uthread, then starts `w` to wake it;
/// returns the blocked uthread's identity. In that order, so the callback can only find
/// the uthread blocked; the alarm runs on this vcore, so not before this yield callback
/// has returned.
fn block_until_alarm(me: Yielded, w: Pin<&AlarmWaiter>) -> NonNull<Uthread> {
    let me = uthread::has_blocked(me, BlockReason::Sleep).into_raw();
    w.set_data(me.as_ptr() as usize); // for `wake`, which rebuilds the handle
    w.start();
    me
}

/// The address of a pinned alarm, for a yield callback (which must not borrow from the
/// uthread's stack).
fn addr_of(w: Pin<&AlarmWaiter>) -> usize {
    w.get_ref() as *const AlarmWaiter as usize
}

/// The pinned alarm at `addr`.
///
/// # Safety
/// `addr` came from [`addr_of`] for an alarm that is still pinned in place.
unsafe fn pinned_at<'a>(addr: usize) -> Pin<&'a AlarmWaiter> {
    // SAFETY: the caller's contract: the alarm is alive and pinned.
    unsafe { Pin::new_unchecked(&*(addr as *const AlarmWaiter)) }
}

/// The state an interrupt of [`sleep_until_interruptible`] needs; on the sleeper's stack.
struct Sleeper<'a> {
    /// The alarm that wakes the sleeper; its data word is the sleeping uthread.
    alarm: &'a AlarmWaiter,
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
    // SAFETY: the alarm's data word, set to the blocked uthread before the registration
    // was published; its alarm will never wake it now, so it is ours to wake.
    uthread::runnable(unsafe { Blocked::from_raw(NonNull::new_unchecked(s.alarm.data() as *mut Uthread)) });
    true
}

fn wake(w: &AlarmWaiter) {
    // SAFETY: `block_until_alarm` stored the blocked uthread here before starting the
    // alarm, and an alarm that fires was not stopped: the wake-up is ours.
    uthread::runnable(unsafe { Blocked::from_raw(NonNull::new_unchecked(w.data() as *mut Uthread)) });
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
