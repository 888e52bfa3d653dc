//! Per-vcore alarms (after Akaros' pvc-alarms): each vcore keeps its started waiters in
//! deadline order and arms one POSIX timer that signals its own task.
//!
//! # Arming, and why it is rare
//!
//! Arming or disarming a timer costs 4-15 µs in a VM, so the timer is armed only when
//! the earliest deadline moves *earlier* than the time it is armed for (`armed_at`), and
//! after it fires. Stopping the earliest alarm leaves the timer armed: the spurious
//! expiry costs one handler pass, which then arms for the new earliest, cheaper than a
//! disarm plus a re-arm.
//!
//! # Expiry, step by step
//!
//! 1. The timer signals the vcore's task (`SIGEV_THREAD_ID`); the notification handler
//!    runs the timer hook, which queues an `EV_ALARM` event for this vcore and notifies it.
//! 2. The vcore handles events in vcore context: [`on_alarm_event`] takes every waiter
//!    whose deadline has passed out of the set (`ARMED` → `FIRING`, under the lock) and
//!    runs its callback with the lock released, then marks it `DONE`.
//! 3. It arms the timer for the new earliest deadline, if any.
//!
//! Alarms started on a plain thread go to vcore 0; if vcore 0 is parked, the expiry wakes
//! it to run them.

use alloc::collections::BTreeMap;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::OnceLock;

use parlib_events::{EventMsg, EventType, EV_ALARM};
use parlib_sync::{Deadline, PdrSpinLock};
use parlib_vcore::{self as vcore, VcoreTimer};

use crate::waiter::{AlarmWaiter, ARMED, DONE, FIRING, IDLE, STARTING};

extern crate alloc;

/// A started waiter, keyed by (deadline, seq).
struct Entry(*const AlarmWaiter);
// SAFETY: waiters are Sync and stay alive (pinned) while in a set.
unsafe impl Send for Entry {}

struct Set {
    waiters: BTreeMap<(u64, u64), Entry>,
    /// Absolute time the timer is armed for; `u64::MAX` when disarmed.
    armed_at: u64,
}

struct PerVcore {
    set: PdrSpinLock<Set>,
    timer: VcoreTimer,
    /// The alarm whose callback this vcore's context is running, the innermost one when
    /// event handling nests (null: none). Only that vcore context writes it.
    running: AtomicPtr<AlarmWaiter>,
}

static VCORES: OnceLock<Box<[PerVcore]>> = OnceLock::new();
static SEQ: AtomicU64 = AtomicU64::new(1);
static ARMS: AtomicU64 = AtomicU64::new(0);

/// How many times any vcore's timer has been armed (`timer_settime` calls).
pub fn arm_count() -> u64 {
    ARMS.load(Ordering::Relaxed)
}

pub(crate) fn init() -> Result<(), crate::Error> {
    let n = vcore::max_vcores();
    if n == 0 {
        return Err(crate::Error::NotInitialized);
    }
    if VCORES.get().is_some() {
        return Ok(());
    }
    let mut v = Vec::with_capacity(n);
    for id in 0..n {
        // Timers made before a failure are deleted as `v` drops.
        let timer = VcoreTimer::new(id).map_err(|e| match e {
            vcore::Error::Os { errno, .. } => crate::Error::Timer { errno },
            _ => crate::Error::NotInitialized,
        })?;
        v.push(PerVcore {
            set: PdrSpinLock::new(Set { waiters: BTreeMap::new(), armed_at: u64::MAX }),
            timer,
            running: AtomicPtr::new(core::ptr::null_mut()),
        });
    }
    let _ = VCORES.set(v.into_boxed_slice());
    parlib_events::register_handler(EV_ALARM, on_alarm_event).map_err(|_| crate::Error::NotInitialized)?;
    vcore::notif::set_timer_hook(on_timer);
    Ok(())
}

fn vcores() -> &'static [PerVcore] {
    VCORES.get().map(|v| &v[..]).expect("parlib_alarms::init has not been called")
}

/// Step 1: runs in the notification signal handler of vcore `id`.
fn on_timer(id: usize) {
    let _ = parlib_events::send_event(&EventMsg::default(), EV_ALARM, id);
}

fn arm(pv: &PerVcore, set: &mut Set, at: u64) {
    set.armed_at = at;
    ARMS.fetch_add(1, Ordering::Relaxed);
    // Fails only for a bad timer id or time; ours are valid.
    let _ = pv.timer.arm_at(at);
}

/// Puts `w` into `set` and arms the timer if it became the earliest.
fn insert(pv: &PerVcore, set: &mut Set, w: &AlarmWaiter) {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    w.seq.set(seq);
    let at = w.deadline.get();
    set.waiters.insert((at, seq), Entry(w));
    w.state.store(ARMED, Ordering::Release);
    if at < set.armed_at {
        arm(pv, set, at);
    }
}

/// Whether the caller is `w`'s own callback: vcore context running it.
pub(crate) fn in_own_callback(w: &AlarmWaiter) -> bool {
    vcore::this()
        .filter(|v| v.in_vcore_context())
        .is_some_and(|v| core::ptr::eq(vcores()[v.id()].running.load(Ordering::Relaxed), w))
}

pub(crate) fn start(w: &AlarmWaiter) {
    // FIRING: only its own callback may restart it (a periodic alarm). Anyone else waits
    // for the callback to return first, or the expiry's FIRING -> DONE would overwrite
    // the restart, and whoever waits for "not FIRING" (drop, timeout cancel) could free
    // the alarm under its still-running callback. Unless we are that callback, it runs
    // on another vcore, so the wait ends: on this vcore a callback runs only nested in
    // another's (`on_alarm_event`), and must not start an alarm firing beneath it.
    let own = in_own_callback(w);
    let (id, mut set) = loop {
        if !own {
            w.wait_while_firing();
        }
        // Looked up after the wait: a uthread that yielded there may have moved.
        let id = vcore::try_id().unwrap_or(0);
        let set = vcores()[id].set.lock();
        if own || w.state.load(Ordering::Acquire) != FIRING {
            break (id, set);
        }
    };
    let pv = &vcores()[id];
    // Claim it: two starts racing on different vcores (each under its own lock) would
    // otherwise both insert it. The loser panics; a stop meanwhile sees STARTING, not
    // ARMED, and reports that the callback will run.
    let s = w.state.load(Ordering::Acquire);
    let claimed = !matches!(s, ARMED | STARTING)
        && w.state.compare_exchange(s, STARTING, Ordering::AcqRel, Ordering::Acquire).is_ok();
    assert!(claimed, "AlarmWaiter::start: the alarm is already started");
    // `vcore` before `ARMED` (the Release store in `insert`): `lock_armed_set` relies on it.
    w.vcore.store(id, Ordering::Relaxed);
    insert(pv, &mut set, w);
}

/// Locks the set that holds `w`; `None` if `w` is not armed.
///
/// `w` is in vcore v's set exactly when `state == ARMED` and `vcore == v`. That pair
/// becomes true and stops being true only under v's lock, but `vcore` alone can change
/// under *another* vcore's lock: a `start` elsewhere, once someone else has stopped `w`.
/// So, holding v's lock, read `state` first and `vcore` second. Seeing `ARMED` (Acquire)
/// means seeing the `vcore` its start stored before it (Release) or a later one, and a
/// later one can name v only through v's lock, which we hold. The other order is the
/// bug this replaced: `vcore == v`, then a stop and a restart on vcore u, then `ARMED`
/// (u's) made a stop on v "succeed" on an alarm that still fired on u.
fn lock_armed_set(w: &AlarmWaiter) -> Option<(&'static PerVcore, parlib_sync::PdrGuard<'static, Set>)> {
    loop {
        if w.state.load(Ordering::Acquire) != ARMED {
            return None; // never started, stopped, or taken by expiry (maybe while we waited)
        }
        let id = w.vcore.load(Ordering::Relaxed);
        let pv = &vcores()[id];
        let set = pv.set.lock();
        if w.state.load(Ordering::Acquire) != ARMED {
            return None;
        }
        if w.vcore.load(Ordering::Relaxed) == id {
            return Some((pv, set));
        }
        // Stopped and started again on another vcore while we waited: follow it.
    }
}

pub(crate) fn stop(w: &AlarmWaiter) -> bool {
    let Some((_, mut set)) = lock_armed_set(w) else {
        return false; // never started, or already firing / fired
    };
    set.waiters.remove(&(w.deadline.get(), w.seq.get()));
    w.state.store(IDLE, Ordering::Release);
    true
}

pub(crate) fn reset_abs(w: &AlarmWaiter, t: Deadline) -> bool {
    let Some((pv, mut set)) = lock_armed_set(w) else {
        return false;
    };
    set.waiters.remove(&(w.deadline.get(), w.seq.get()));
    w.deadline.set(t.ns());
    insert(pv, &mut set, w);
    true
}

/// Whether `init` has run.
pub(crate) fn initialized() -> bool {
    VCORES.get().is_some()
}

/// Steps 2 and 3, in vcore context.
fn on_alarm_event(_: &EventMsg, _: EventType) {
    let id = vcore::id();
    let pv = &vcores()[id];
    loop {
        let now = parlib_sync::now_ns();
        let mut set = pv.set.lock();
        if set.armed_at <= now {
            set.armed_at = u64::MAX; // the timer fired: it is disarmed now
        }
        let first = set.waiters.first_key_value().map(|(&k, e)| (k, e.0));
        match first {
            Some(((at, _), w)) if at <= now => {
                set.waiters.pop_first();
                // SAFETY: a waiter in the set is pinned and alive until it leaves FIRING.
                let w = unsafe { &*w };
                w.state.store(FIRING, Ordering::Release);
                drop(set);
                if let Some(f) = w.func.get() {
                    // A callback can run a nested pass of this handler on this vcore
                    // (`send_to_full` drains its own queue while it waits for room in
                    // another vcore's ring): restore the outer callback's alarm after
                    // ours, not null, or it would no longer count as its own callback.
                    // Only this vcore's context touches `running`: a load and a store, no
                    // locked swap.
                    let outer = pv.running.load(Ordering::Relaxed);
                    pv.running.store(w as *const AlarmWaiter as *mut AlarmWaiter, Ordering::Relaxed);
                    f(w);
                    pv.running.store(outer, Ordering::Relaxed);
                }
                // Unless the callback restarted it (a periodic alarm): then it is ARMED.
                let _ = w.state.compare_exchange(FIRING, DONE, Ordering::AcqRel, Ordering::Relaxed);
            }
            Some(((at, _), _)) => {
                if at < set.armed_at {
                    arm(pv, &mut set, at);
                }
                return;
            }
            None => return,
        }
    }
}
