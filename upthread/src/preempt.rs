//! Preemption: every running vcore is interrupted once per scheduling period through its
//! own alarm, and the thread it was running goes back to the tail of its queue.
//!
//! # The per-vcore tick
//!
//! Each vcore owns one `AlarmWaiter` (in its `PerVcore`), touched only by that vcore in
//! vcore context:
//!
//! 1. `sched_entry`, about to run a thread, starts the alarm for now + period unless it
//!    is already armed (`arm`). A vcore switching between threads therefore leaves
//!    the alarm (and the kernel timer under it) alone: arming costs microseconds here,
//!    so the timer is set at most once per period per busy vcore.
//! 2. At expiry the alarm's callback (`on_tick`) runs in that vcore's vcore context
//!    (the `EV_ALARM` event interrupted the running thread at a safe point). If a
//!    thread was running it is handed back with `uthread::paused`, and the scheduler
//!    picks the next one. The alarm is now done; step 1 starts it again when the vcore
//!    next runs a thread, so an idle vcore is not woken by ticks.
//! 3. A vcore about to park stops its alarm (`disarm`). The alarms layer leaves the
//!    kernel timer as it is (disarming costs as much as arming), so a parked vcore may
//!    see one last, spurious expiry.
//!
//! With a period of 0 (cooperative, the default) step 1 never arms, and a callback that
//! is still pending when the period drops to 0 does nothing.

use core::pin::Pin;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use parlib_alarms::AlarmWaiter;
use parlib_sync::Errno;
use parlib_uthread as uthread;

use crate::sched::PerVcore;

/// The smallest period accepted, in microseconds. Each tick costs the interrupted vcore
/// a signal, a full register save and a scheduling decision: 10-20 µs in a VM here
/// (`parlib_vcore::notif::RETRY_NS` cites the same figure), so a period much below
/// 100 µs would spend most of the CPU on preempting.
pub const MIN_SCHED_PERIOD_US: u64 = 100;

/// The period in nanoseconds; 0: cooperative.
static PERIOD_NS: AtomicU64 = AtomicU64::new(0);

/// Sets the preemption period: every running vcore is interrupted every `us`
/// microseconds and its thread goes to the back of its queue. `0` (the default) turns
/// preemption off: threads run until they yield or block. Takes effect on each vcore
/// when it next runs a thread, or at its pending tick.
///
/// # Errors
/// `EINVAL` for a period between 1 and [`MIN_SCHED_PERIOD_US`] - 1.
pub fn set_sched_period(us: u64) -> Result<(), Errno> {
    if us != 0 && us < MIN_SCHED_PERIOD_US {
        return Err(Errno::INVAL);
    }
    PERIOD_NS.store(us.saturating_mul(1000), Ordering::Release);
    Ok(())
}

/// The preemption period in microseconds (0: cooperative).
pub fn sched_period() -> u64 {
    PERIOD_NS.load(Ordering::Relaxed) / 1000
}

/// Step 1, in vcore context on the vcore that owns `pv`.
#[inline]
pub(crate) fn arm(pv: &'static PerVcore) {
    let p = PERIOD_NS.load(Ordering::Relaxed);
    if p == 0 || pv.preempt.is_armed() {
        return;
    }
    pv.preempt.set_rel(Duration::from_nanos(p));
    // SAFETY: the waiter lives in the per-vcore slice of a static `OnceLock`, which is
    // never dropped or reset, so it never moves.
    unsafe { Pin::new_unchecked(&pv.preempt) }.start();
}

/// Step 3, in vcore context on the vcore that owns `pv`.
pub(crate) fn disarm(pv: &PerVcore) {
    if pv.preempt.is_armed() {
        pv.preempt.stop();
    }
}

/// Step 2: the alarm callback, in vcore context.
pub(crate) fn on_tick(_: &AlarmWaiter) {
    if PERIOD_NS.load(Ordering::Relaxed) == 0 {
        return;
    }
    if let Some(preempted) = uthread::take_interrupted() {
        uthread::paused(preempted);
    }
}
