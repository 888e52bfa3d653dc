//! The `AlarmWaiter` and its start / stop / reset protocol.
//!
//! # States
//!
//! | state | meaning | entered by | left by |
//! |---|---|---|---|
//! | `IDLE` | not started (new, or stopped) | new, a successful `stop` | `start` |
//! | `ARMED` | in its vcore's deadline set | `start`, a successful `reset_abs` | `stop` (→ `IDLE`), expiry (→ `FIRING`) |
//! | `FIRING` | taken out by expiry; its callback runs or is about to | expiry | the callback's return (→ `DONE`), or the callback restarting it (→ `ARMED`, periodic alarms) |
//! | `DONE` | its callback has run | the callback's return | `start` |
//! | `STARTING` | claimed by a `start`, which holds its vcore's lock | `start`'s CAS from `IDLE`/`DONE`/`FIRING` | the same `start` (→ `ARMED`) |
//!
//! # Who moves it, under which lock
//!
//! The invariant: a waiter is in vcore v's deadline set exactly when `state == ARMED`
//! and `vcore == v`, and that pair turns true or false only under v's lock.
//!
//! | operation | lock held | transition |
//! |---|---|---|
//! | `start` | the calling vcore's (v) | `IDLE`/`DONE` → `ARMED` (`FIRING` → `ARMED` from its own callback; any other caller first waits for the callback to return); stores `vcore = v` before `state` |
//! | `stop` | `w.vcore`'s | `ARMED` → `IDLE`, returns true; any other state: false, no change |
//! | `reset_abs` | `w.vcore`'s | `ARMED` → `ARMED` at the new deadline, true; otherwise false |
//! | expiry | its vcore's | `ARMED` → `FIRING`; then, unlocked, the callback; `FIRING` → `DONE` unless the callback restarted it |
//!
//! `stop` and `reset_abs` find the lock to take through `vcore`, which a `start` on
//! another vcore may change (once someone else stopped the waiter) without that lock.
//! So under the lock they check `state == ARMED` *first* and `vcore` second, and retry
//! on the new vcore if it moved (`pvc::lock_armed_set` gives the argument).
//!
//! Every transition out of `ARMED` happens under the lock of the set that holds it, so
//! exactly one of "stop succeeds" and "the callback runs" happens for each start, and
//! callers can keep exact counts:
//! * `stop` returns true only if it took the waiter from `ARMED` to `IDLE`: the callback
//!   will never run. False means it has run, is running or will run (or it was never
//!   started).
//! * `reset_abs` returns true if it moved an `ARMED` waiter to the new deadline; false
//!   means it fires (or fired) at the old one.

use core::cell::Cell;
use core::pin::Pin;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use core::time::Duration;

use crossbeam_utils::Backoff;
use parlib_sync::Deadline;

use crate::pvc;

pub(crate) const IDLE: u8 = 0;
pub(crate) const ARMED: u8 = 1;
pub(crate) const FIRING: u8 = 2;
pub(crate) const DONE: u8 = 3;
/// Claimed by a `start` that is putting it into its vcore's set (under that lock): a
/// second, concurrent `start` sees it and panics instead of inserting it twice.
pub(crate) const STARTING: u8 = 4;

/// An alarm: a deadline and a callback run in vcore context when it passes.
///
/// It must stay put while started (hence `Pin`); dropping it stops it, and if its
/// callback is running elsewhere, waits for the callback to return.
pub struct AlarmWaiter {
    pub(crate) deadline: Cell<u64>,
    pub(crate) func: Cell<Option<fn(&AlarmWaiter)>>,
    /// A word for the callback's use (`data`/`set_data`).
    data: AtomicUsize,
    pub(crate) state: AtomicU8,
    /// The vcore whose deadline set holds it (set by `start`).
    pub(crate) vcore: AtomicUsize,
    /// Tie-breaker among equal deadlines, unique per start.
    pub(crate) seq: Cell<u64>,
    _pinned: core::marker::PhantomPinned,
}

// SAFETY: the `Cell` fields change only under the owning vcore's lock or before `start`
// publishes the waiter (deadline, func, seq), and are read under the same lock.
unsafe impl Sync for AlarmWaiter {}
// SAFETY: as above.
unsafe impl Send for AlarmWaiter {}

impl Default for AlarmWaiter {
    fn default() -> Self {
        AlarmWaiter::new()
    }
}

impl AlarmWaiter {
    /// A waiter with no callback and no deadline.
    pub const fn new() -> AlarmWaiter {
        AlarmWaiter {
            deadline: Cell::new(0),
            func: Cell::new(None),
            data: AtomicUsize::new(0),
            state: AtomicU8::new(IDLE),
            vcore: AtomicUsize::new(0),
            seq: Cell::new(0),
            _pinned: core::marker::PhantomPinned,
        }
    }

    /// Sets the callback, run in vcore context when the alarm expires (parlib's
    /// `init_awaiter`).
    ///
    /// # Panics
    /// If the waiter is started.
    pub fn init_waiter(&self, func: fn(&AlarmWaiter)) {
        self.assert_not_started("init_waiter");
        self.func.set(Some(func));
    }

    /// A word for the callback's use.
    pub fn data(&self) -> usize {
        self.data.load(Ordering::Acquire)
    }

    /// Sets the callback's word.
    pub fn set_data(&self, d: usize) {
        self.data.store(d, Ordering::Release);
    }

    /// Sets an absolute deadline.
    pub fn set_abs(&self, t: Deadline) {
        self.assert_not_started("set_abs");
        self.deadline.set(t.ns());
    }

    /// Sets an absolute deadline given as `CLOCK_REALTIME` time (Unix time).
    ///
    /// # Errors
    /// `EINVAL` for a malformed timespec.
    pub fn set_abs_unix(&self, t: &libc::timespec) -> Result<(), parlib_sync::Errno> {
        self.set_abs(Deadline::from_realtime(t)?);
        Ok(())
    }

    /// Sets the deadline `d` from now.
    pub fn set_rel(&self, d: Duration) {
        self.set_abs(Deadline::after(d));
    }

    /// Moves the deadline `d` later than it was (for periodic alarms: no drift).
    pub fn set_inc(&self, d: Duration) {
        self.assert_not_started("set_inc");
        self.deadline.set(self.deadline.get().saturating_add(d.as_nanos().min(u64::MAX as u128) as u64));
    }

    /// The deadline.
    pub fn deadline(&self) -> Deadline {
        Deadline::at_monotonic_ns(self.deadline.get())
    }

    /// Starts the alarm on the calling vcore (vcore 0 when called from a plain thread):
    /// its callback runs in that vcore's vcore context at the deadline. A deadline in
    /// the past fires promptly.
    ///
    /// # Panics
    /// If it has no callback, or is already started.
    pub fn start(self: Pin<&Self>) {
        assert!(self.func.get().is_some(), "AlarmWaiter::start: no callback (init_waiter first)");
        pvc::start(self.get_ref());
    }

    /// Stops the alarm: true only if its callback will never run (see the module docs).
    pub fn stop(&self) -> bool {
        pvc::stop(self)
    }

    /// Moves a started alarm to `t`: true if it will fire at `t`, false if it fires (or
    /// fired) at its old deadline.
    pub fn reset_abs(&self, t: Deadline) -> bool {
        pvc::reset_abs(self, t)
    }

    /// Whether it is started and has not fired yet.
    pub fn is_armed(&self) -> bool {
        self.state.load(Ordering::Acquire) == ARMED
    }

    /// Waits while the alarm is `FIRING`: until its callback, running in another vcore's
    /// vcore context, has returned (or restarted it). A uthread yields meanwhile, so its
    /// vcore runs other uthreads; vcore context and plain threads spin, briefly: a
    /// callback runs in vcore context, which must not block.
    ///
    /// Never from the alarm's own callback, which would wait for itself: callers check
    /// `pvc::in_own_callback` first.
    pub(crate) fn wait_while_firing(&self) {
        let backoff = Backoff::new();
        while self.state.load(Ordering::Acquire) == FIRING {
            if let Some(me) = parlib_uthread::current() {
                // SAFETY: `current()` just returned it.
                unsafe { parlib_uthread::yield_current_with(me, parlib_uthread::paused) };
            } else {
                backoff.spin(); // a plain thread: the callback runs on a vcore meanwhile
            }
        }
    }

    fn assert_not_started(&self, what: &str) {
        // FIRING is allowed: a periodic alarm moves its deadline from its own callback.
        assert!(
            !matches!(self.state.load(Ordering::Acquire), ARMED | STARTING),
            "AlarmWaiter::{what} on a started alarm (stop it first, or wait for it to fire)"
        );
    }
}

impl Drop for AlarmWaiter {
    fn drop(&mut self) {
        if self.stop() {
            return;
        }
        // Its callback may be running on another vcore: it must finish before the memory
        // goes away. From the callback itself that would wait forever.
        if self.state.load(Ordering::Acquire) == FIRING && crate::pvc::in_own_callback(self) {
            panic!("AlarmWaiter dropped inside its own callback: the callback still uses it");
        }
        self.wait_while_firing();
    }
}
