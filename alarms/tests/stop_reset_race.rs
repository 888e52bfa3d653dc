//! `stop` and `reset_abs` racing with expiry keep parlib's exact accounting (DESIGN §6,
//! `alarms/src/waiter.rs`): for every start, exactly one of "a `stop` returned true" and
//! "the callback ran once" happens; `reset_abs` true means the alarm fires at the new
//! deadline (or a later reset's, or is stopped), false that it fires or fired at the old.
//!
//! 100 000 starts with deadlines 0-20 µs ahead, so expiry races the other side all the
//! time. A *starter* uthread on the last vcore starts alarms from a pool of waiters (they
//! live on that vcore); a *stopper* uthread on vcore 0 keeps calling `stop` or
//! `reset_abs` (to 0-20 µs ahead) on them. With one vcore both share it and the races come
//! from timer signals interrupting them.
//!
//! # Who owns a pool slot
//!
//! So that every `stop` and `reset_abs` result can be charged to the right start, a slot
//! goes round one cycle per start, and its start id (the waiter's `data`) is fixed for the
//! whole cycle:
//!
//! | slot state | set by | then |
//! |---|---|---|
//! | `FREE` | the stopper | the starter may start the waiter again |
//! | `IN_FLIGHT` | the starter, after `start` returned, with notifications still off (so the callback, which runs on its vcore, cannot come first) | the stopper stops or resets it; the callback may fire |
//! | `FIRED` | the callback | the stopper checks that `stop` and `reset_abs` now fail, and frees it |
//!
//! A successful `stop` takes `IN_FLIGHT` straight to `FREE` (the stopper's own
//! acknowledgement). The starter touches a waiter only in a `FREE` slot, on the vcore its
//! callback runs on, so never while the callback is still running.

use parlib_testsched as common;
mod support;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use parlib_alarms::{AlarmWaiter, Deadline};
use parlib_testkit::isolated;
use parlib_uthread::{NotifGuard, TlsMode};
use parlib_vcore as vcore;
use support::{now, Rng, Task};

const TIMEOUT: Duration = Duration::from_secs(300);

/// Starts over the whole test.
const STARTS: usize = 100_000;
/// Waiters in the pool.
const POOL: usize = 64;
/// Deadlines (at start and at reset) fall this close ahead of now.
const NEAR_NS: u64 = 20_000;

const FREE: u8 = 0;
const IN_FLIGHT: u8 = 1;
const FIRED: u8 = 2;

struct Slot {
    state: AtomicU8,
}

static WAITERS: OnceLock<&'static [AlarmWaiter]> = OnceLock::new();
static SLOTS: [Slot; POOL] = [const { Slot { state: AtomicU8::new(FREE) } }; POOL];

/// Per start id: callback runs, successful stops, failed resets.
static FIRES: [AtomicU8; STARTS] = [const { AtomicU8::new(0) }; STARTS];
static STOPS: [AtomicU8; STARTS] = [const { AtomicU8::new(0) }; STARTS];
static RESET_FAILED: [AtomicBool; STARTS] = [const { AtomicBool::new(false) }; STARTS];
/// Per start id: the deadline it was started with, the deadline of its last successful
/// reset (0 if none), and the deadline in force when its callback ran.
static START_DEADLINE: [AtomicU64; STARTS] = [const { AtomicU64::new(0) }; STARTS];
static RESET_DEADLINE: [AtomicU64; STARTS] = [const { AtomicU64::new(0) }; STARTS];
static FIRE_DEADLINE: [AtomicU64; STARTS] = [const { AtomicU64::new(0) }; STARTS];

/// Totals.
static STARTED: AtomicUsize = AtomicUsize::new(0);
static CALLBACKS: AtomicUsize = AtomicUsize::new(0);
static STOPPED: AtomicUsize = AtomicUsize::new(0);
static RESETS_TRUE: AtomicUsize = AtomicUsize::new(0);
static RESETS_FALSE: AtomicUsize = AtomicUsize::new(0);
/// Broken promises seen on the spot (each also leaves a per-id trace checked at the end).
static EARLY_FIRES: AtomicUsize = AtomicUsize::new(0);
static FIRED_WHEN_NOT_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static STOP_OR_RESET_OF_FIRED_SUCCEEDED: AtomicUsize = AtomicUsize::new(0);
static STARTER_DONE: AtomicBool = AtomicBool::new(false);

fn slot_of(w: &AlarmWaiter) -> usize {
    let base = WAITERS.get().unwrap().as_ptr();
    // SAFETY: every waiter handed to `start` is an element of the pool slice.
    unsafe { (w as *const AlarmWaiter).offset_from(base) as usize }
}

/// The callback, in vcore context on the starter's vcore.
fn fired(w: &AlarmWaiter) {
    let t = now();
    let id = w.data();
    let deadline = w.deadline().ns();
    if t < deadline {
        EARLY_FIRES.fetch_add(1, Ordering::Relaxed);
    }
    FIRE_DEADLINE[id].store(deadline, Ordering::Relaxed);
    FIRES[id].fetch_add(1, Ordering::Relaxed);
    CALLBACKS.fetch_add(1, Ordering::Relaxed);
    let slot = &SLOTS[slot_of(w)];
    if slot.state.compare_exchange(IN_FLIGHT, FIRED, Ordering::AcqRel, Ordering::Relaxed).is_err() {
        // Stopped (so it must never run), or fired twice.
        FIRED_WHEN_NOT_IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
    }
}

/// Starts `STARTS` alarms from free pool slots.
fn starter(seed: u64) {
    let waiters = *WAITERS.get().unwrap();
    let mut rng = Rng::new(seed);
    let mut next = 0;
    while next < STARTS {
        let mut started_any = false;
        for (k, w) in waiters.iter().enumerate() {
            if next == STARTS {
                break;
            }
            if SLOTS[k].state.load(Ordering::Acquire) != FREE {
                continue;
            }
            let at = now() + rng.below(NEAR_NS);
            // The callback runs on this vcore, so with notifications off it cannot run
            // before the slot says IN_FLIGHT (see the module docs).
            let _g = NotifGuard::new();
            w.set_data(next);
            w.set_abs(Deadline::at_monotonic_ns(at));
            START_DEADLINE[next].store(at, Ordering::Relaxed);
            Pin::static_ref(w).start();
            STARTED.fetch_add(1, Ordering::Relaxed);
            SLOTS[k].state.store(IN_FLIGHT, Ordering::Release);
            next += 1;
            started_any = true;
        }
        if !started_any {
            common::yield_now();
        }
    }
    STARTER_DONE.store(true, Ordering::Release);
}

/// Stops or resets in-flight alarms, checks fired ones, frees slots; returns when the
/// starter is done and every slot is free again.
fn stopper(seed: u64) {
    let waiters = *WAITERS.get().unwrap();
    let mut rng = Rng::new(seed);
    loop {
        let done = STARTER_DONE.load(Ordering::Acquire);
        let mut busy = false;
        for (k, w) in waiters.iter().enumerate() {
            match SLOTS[k].state.load(Ordering::Acquire) {
                IN_FLIGHT => {
                    busy = true;
                    let id = w.data(); // fixed until we free the slot
                    if rng.below(2) == 0 {
                        if w.stop() {
                            STOPS[id].fetch_add(1, Ordering::Relaxed);
                            STOPPED.fetch_add(1, Ordering::Relaxed);
                            SLOTS[k].state.store(FREE, Ordering::Release);
                        }
                    } else {
                        let at = now() + rng.below(NEAR_NS);
                        if w.reset_abs(Deadline::at_monotonic_ns(at)) {
                            RESET_DEADLINE[id].store(at, Ordering::Relaxed);
                            RESETS_TRUE.fetch_add(1, Ordering::Relaxed);
                        } else {
                            RESET_FAILED[id].store(true, Ordering::Relaxed);
                            RESETS_FALSE.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                FIRED => {
                    busy = true;
                    // Its callback has run: neither may claim it now.
                    let far = Deadline::after(Duration::from_secs(3600));
                    if w.stop() || w.reset_abs(far) {
                        STOP_OR_RESET_OF_FIRED_SUCCEEDED.fetch_add(1, Ordering::Relaxed);
                    }
                    SLOTS[k].state.store(FREE, Ordering::Release);
                }
                _ => {}
            }
        }
        if done && !busy {
            return;
        }
        if vcore::max_vcores() == 1 || !busy {
            common::yield_now();
        }
    }
}

#[test]
fn stop_and_reset_racing_expiry_account_for_every_start_exactly_once() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        let nv = vcore::max_vcores();
        let waiters: Vec<AlarmWaiter> = (0..POOL).map(|_| AlarmWaiter::new()).collect();
        let waiters: &'static [AlarmWaiter] = Vec::leak(waiters);
        for w in waiters {
            w.init_waiter(fired);
        }
        WAITERS.set(waiters).ok().unwrap();

        let (s1, s2) = (support::seed(), support::seed());
        common::spawn_on(nv - 1, TlsMode::None, move || starter(s1));
        common::spawn_on(0, TlsMode::None, move || stopper(s2));
        common::wait_all();

        let (started, callbacks, stopped) = (
            STARTED.load(Ordering::Relaxed),
            CALLBACKS.load(Ordering::Relaxed),
            STOPPED.load(Ordering::Relaxed),
        );
        println!(
            "{nv} vcores: {started} starts, {callbacks} callbacks, {stopped} successful stops, resets {} true / {} \
             false",
            RESETS_TRUE.load(Ordering::Relaxed),
            RESETS_FALSE.load(Ordering::Relaxed)
        );
        assert_eq!(started, STARTS);
        assert_eq!(EARLY_FIRES.load(Ordering::Relaxed), 0, "callbacks ran before their deadline");
        assert_eq!(
            FIRED_WHEN_NOT_IN_FLIGHT.load(Ordering::Relaxed),
            0,
            "callbacks ran for alarms that had been stopped, or ran twice"
        );
        assert_eq!(
            STOP_OR_RESET_OF_FIRED_SUCCEEDED.load(Ordering::Relaxed),
            0,
            "stop or reset_abs returned true for an alarm whose callback had run"
        );
        for id in 0..STARTS {
            let (fires, stops) = (FIRES[id].load(Ordering::Relaxed), STOPS[id].load(Ordering::Relaxed));
            assert_eq!(
                u32::from(fires) + u32::from(stops),
                1,
                "start {id}: callback ran {fires} times and stop succeeded {stops} times; exactly one of \
                 the two must happen"
            );
            if RESET_FAILED[id].load(Ordering::Relaxed) {
                assert_eq!(fires, 1, "start {id}: reset_abs returned false, yet the alarm did not fire");
            }
            if fires == 1 {
                let reset = RESET_DEADLINE[id].load(Ordering::Relaxed);
                let expected = if reset != 0 { reset } else { START_DEADLINE[id].load(Ordering::Relaxed) };
                assert_eq!(
                    FIRE_DEADLINE[id].load(Ordering::Relaxed),
                    expected,
                    "start {id}: fired at a deadline other than its start's or its last successful reset's"
                );
            }
        }
        assert_eq!(callbacks + stopped, started, "callback runs + successful stops != starts");
    });
}

/// Regression test for a stop racing a restart that moved the alarm to another vcore.
/// `stop` and `reset_abs` find the vcore lock to take through `w.vcore`, which a start on
/// another vcore rewrites under *that* vcore's lock. First they did not check it again
/// under the lock; then they checked it, but *before* `state` (about 1 double outcome
/// in 200 000 starts): between the two checks a stop by someone else and a restart
/// on vcore u could slip in, so the late `stop` read vcore v, then u's `ARMED`, "removed"
/// the waiter from v's set (where it was not), returned true, and it fired on u anyway.
/// Now `state` is checked first and `vcore` second (`alarms/src/pvc.rs`,
/// `lock_armed_set`).
///
/// The race: a starter uthread pinned to each vcore; after a successful stop the waiter is
/// handed to the *next* vcore's starter, after its callback to its own vcore's; three
/// plain threads keep stopping random waiters. The double outcome showed as a start both
/// stopped and fired.
#[test]
fn a_stop_racing_a_restart_on_another_vcore_keeps_exact_accounting() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        const WAITERS_N: usize = 8;
        const TOTAL: usize = 200_000;
        const STOPPERS: usize = 3;
        /// `HOME[k]`: 0 while the waiter is started; `v + 1` when vcore `v`'s starter may
        /// start it again.
        static HOME: [AtomicUsize; WAITERS_N] = [const { AtomicUsize::new(1) }; WAITERS_N];
        static WS: [AlarmWaiter; WAITERS_N] = [const { AlarmWaiter::new() }; WAITERS_N];
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        static FIRES: AtomicUsize = AtomicUsize::new(0);
        static STOPS: AtomicUsize = AtomicUsize::new(0);
        /// A stop or a callback that found its waiter not started: two outcomes for one start.
        static DOUBLE: AtomicUsize = AtomicUsize::new(0);
        fn index(w: &AlarmWaiter) -> usize {
            WS.iter().position(|x| core::ptr::eq(x, w)).expect("one of WS")
        }
        fn fired(w: &AlarmWaiter) {
            FIRES.fetch_add(1, Ordering::Relaxed);
            if HOME[index(w)].swap(vcore::id() + 1, Ordering::AcqRel) != 0 {
                DOUBLE.fetch_add(1, Ordering::Relaxed);
            }
        }
        let nv = vcore::max_vcores();
        for w in &WS {
            w.init_waiter(fired);
        }
        for v in 0..nv {
            common::spawn_on(v, TlsMode::None, move || {
                let mut rng = Rng::new(support::seed());
                while STARTS.load(Ordering::Relaxed) < TOTAL {
                    for (k, w) in WS.iter().enumerate() {
                        if HOME[k].load(Ordering::Acquire) == v + 1 {
                            // The callback runs on this vcore: not before the slot says so.
                            let _g = NotifGuard::new();
                            HOME[k].store(0, Ordering::Release);
                            w.set_abs(Deadline::at_monotonic_ns(now() + 5_000 + rng.below(50_000)));
                            Pin::static_ref(w).start();
                            STARTS.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    common::yield_now();
                }
            });
        }
        let stoppers: Vec<_> = (0..STOPPERS)
            .map(|_| {
                Task::thread(move || {
                    let mut rng = Rng::new(support::seed());
                    let mut next_home = 0;
                    while STARTS.load(Ordering::Relaxed) < TOTAL {
                        let k = rng.below(WAITERS_N as u64) as usize;
                        if WS[k].stop() {
                            STOPS.fetch_add(1, Ordering::Relaxed);
                            next_home = (next_home + 1) % nv;
                            if HOME[k].swap(next_home + 1, Ordering::AcqRel) != 0 {
                                DOUBLE.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in stoppers {
            t.join();
        }
        common::wait_all();
        // Every start now either was stopped or fires within 55 µs.
        common::wait_until(|| HOME.iter().all(|h| h.load(Ordering::Acquire) != 0));
        let (starts, fires, stops) =
            (STARTS.load(Ordering::Relaxed), FIRES.load(Ordering::Relaxed), STOPS.load(Ordering::Relaxed));
        println!("{starts} starts, {fires} callbacks, {stops} successful stops");
        assert_eq!(
            DOUBLE.load(Ordering::Relaxed),
            0,
            "starts that were both stopped and fired (or stopped twice)"
        );
        assert_eq!(fires + stops, starts, "callback runs + successful stops != starts");
    });
}

/// The alarm of the restart tests below (each test runs in its own process).
static W: AlarmWaiter = AlarmWaiter::new();
static ENTERED: AtomicBool = AtomicBool::new(false);
static RELEASE: AtomicBool = AtomicBool::new(false);
static RETURNED: AtomicUsize = AtomicUsize::new(0);

/// `W`'s callback: its first run holds its vcore, spinning, until `RELEASE`.
fn slow(_: &AlarmWaiter) {
    if RETURNED.load(Ordering::SeqCst) == 0 {
        ENTERED.store(true, Ordering::SeqCst);
        while !RELEASE.load(Ordering::SeqCst) {
            core::hint::spin_loop();
        }
    }
    RETURNED.fetch_add(1, Ordering::SeqCst);
}

/// A `start` from outside an alarm's callback, while that callback runs, waits until
/// the callback has returned: otherwise the expiry's `FIRING -> DONE` could overwrite
/// the restart, and a `Drop` waiting for "not firing" could free the alarm under it.
#[test]
fn a_restart_from_outside_waits_for_the_running_callback_to_return() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        W.init_waiter(slow);
        // Both helpers are plain threads, started before the alarm: its callback holds
        // its vcore (main's), so nothing on that vcore runs until it is released.
        // The restarter restarts the alarm while the callback is held inside.
        let restarter = std::thread::spawn(|| {
            while !ENTERED.load(Ordering::SeqCst) {
                core::hint::spin_loop();
            }
            W.set_rel(Duration::ZERO);
            Pin::static_ref(&W).start();
            RETURNED.load(Ordering::SeqCst) // what the callback had done when start returned
        });
        // The releaser lets the callback go once the restarter has had time to reach
        // `start` and wait there. (Were it late, the test would pass without testing;
        // it cannot fail falsely.)
        std::thread::spawn(|| {
            while !ENTERED.load(Ordering::SeqCst) {
                core::hint::spin_loop();
            }
            std::thread::sleep(Duration::from_millis(50));
            RELEASE.store(true, Ordering::SeqCst);
        });
        W.set_rel(Duration::ZERO);
        Pin::static_ref(&W).start();
        common::wait_until(|| restarter.is_finished());
        let seen = restarter.join().unwrap();
        assert_eq!(seen, 1, "start returned while the callback was still running");
        common::wait_until(|| RETURNED.load(Ordering::SeqCst) == 2);
        assert!(!W.is_armed());
    });
}

/// A `start` from a uthread while the alarm's callback runs on another vcore yields
/// instead of spinning: the restarter's vcore goes on running other uthreads, here the
/// one that lets the callback return. A spinning `start` would hang (the watchdog fails
/// the test).
#[test]
fn a_restart_from_a_uthread_lets_its_vcore_run_other_uthreads_until_the_callback_returns() {
    static RESTARTING: AtomicBool = AtomicBool::new(false);
    isolated!(Duration::from_secs(60), {
        support::init_runtime(common::init);
        common::require_vcores(2);
        W.init_waiter(slow);
        // Started on vcore 0, the callback runs there and holds it until released.
        let starter = Task::uthread_on(0, || {
            W.set_rel(Duration::ZERO);
            Pin::static_ref(&W).start();
        });
        // Both on vcore 1. The restarter yields only inside `start`, so only there can
        // the releaser run once the restarter is waiting.
        let restarter = Task::uthread_on(1, || {
            while !ENTERED.load(Ordering::SeqCst) {
                core::hint::spin_loop();
            }
            RESTARTING.store(true, Ordering::SeqCst);
            W.set_rel(Duration::from_secs(3600)); // it must not fire before we look
            Pin::static_ref(&W).start();
            RETURNED.load(Ordering::SeqCst) // what the callback had done when start returned
        });
        let releaser = Task::uthread_on(1, || {
            common::wait_until(|| RESTARTING.load(Ordering::SeqCst));
            RELEASE.store(true, Ordering::SeqCst);
        });
        starter.join();
        releaser.join();
        assert_eq!(restarter.join(), 1, "start returned while the callback was still running");
        assert!(W.stop(), "the restart was lost");
    });
}
