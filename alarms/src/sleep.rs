//! Sleeping that blocks only the calling uthread.

use core::pin::pin;
use core::ptr::NonNull;
use core::time::Duration;

use parlib_sync::Deadline;
use parlib_uthread::{self as uthread, BlockReason, Uthread};

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
