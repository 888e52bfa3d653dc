//! PDR locks and the notification disable depth (DESIGN §8): from a uthread, a PDR lock
//! (`PdrSpinLock`, `McsLock::new_pdr`) keeps notifications disabled while it is held, so
//! its holder is never interrupted; the depth is counted, so nesting works; and every
//! blocking primitive (whose queue lock is a PDR lock released *for* the blocked uthread
//! in vcore context) gives the uthread back exactly the depth it had before the call.
//! The C parlib leaked one level per block: after a block, a uthread could never be
//! interrupted again. The `blocking_does_not_leak_notification_disable_depth` tests are
//! named after that bug.

use parlib_testsched as common;
mod support;

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_events::{self as events, EventMsg, EventType, EV_USER_BASE, EV_USER_IPI};
use parlib_sync::{McsLock, PdrSpinLock, SpinLock};
use parlib_testkit::isolated;
use parlib_uthread::{self as uthread, NotifGuard, TlsMode, Uthread};
use parlib_vcore as vcore;
use support::Failures;

const TIMEOUT: Duration = Duration::from_secs(30);
const ONE_VCORE: &[(&str, &str)] = &[(vcore::VCORE_LIMIT_ENV, "1")];

fn depth() -> u32 {
    uthread::notif_disable_depth()
}

/// An event type whose handler only counts: a probe for "is this uthread interruptible".
const EV_PROBE: EventType = EventType(EV_USER_BASE.0 + 1);
static PROBES_HANDLED: AtomicUsize = AtomicUsize::new(0);

fn count_probe(_: &EventMsg, _: EventType) {
    PROBES_HANDLED.fetch_add(1, Ordering::SeqCst);
}

/// Checks, on a uthread, that notifications reach it again once its depth is back to 0:
/// a probe sent to its own vcore with notifications disabled (so it cannot move away
/// between reading its vcore id and sending) is handled inside the `enable_notifs` that
/// brings the depth to 0. With a leaked depth it would stay pending. Returns what went
/// wrong, if anything.
fn check_interruptible_again() -> Result<(), String> {
    let d = depth();
    if d != 0 {
        return Err(format!("depth {d} after all its blocks"));
    }
    let before = PROBES_HANDLED.load(Ordering::SeqCst);
    let guard = NotifGuard::new();
    events::send_event(&EventMsg::default(), EV_PROBE, vcore::id()).expect("send a probe");
    let early = PROBES_HANDLED.load(Ordering::SeqCst) - before;
    drop(guard);
    let handled = PROBES_HANDLED.load(Ordering::SeqCst) - before;
    match (early, handled) {
        (0, 1) => Ok(()),
        _ => {
            Err(format!("probe handled {early} time(s) with notifications off, {handled} after re-enabling"))
        }
    }
}

// ---------------------------------------------------------------------------------------
// PDR locks while held.

/// The depths seen inside each kind of lock, from the calling context: outside; in one
/// PdrSpinLock; in two; back in one; in a PDR McsLock; in a PDR McsLock inside a
/// PdrSpinLock; in a plain McsLock; in a plain SpinLock; after everything.
fn depths_inside_locks() -> [u32; 9] {
    let pdr_a = PdrSpinLock::new(());
    let pdr_b = PdrSpinLock::new(());
    let mcs_pdr = McsLock::new_pdr(());
    let mcs = McsLock::new(());
    let spin = SpinLock::new(());
    let outside = depth();
    let (one, two, back_to_one) = {
        let _a = pdr_a.lock();
        let one = depth();
        let two = {
            let _b = pdr_b.lock();
            depth()
        };
        (one, two, depth())
    };
    let mcs_pdr_in = mcs_pdr.with(|_| depth());
    let mcs_pdr_nested = {
        let _a = pdr_a.lock();
        mcs_pdr.with(|_| depth())
    };
    let mcs_plain = mcs.with(|_| depth());
    let spin_plain = {
        let _g = spin.lock();
        depth()
    };
    [outside, one, two, back_to_one, mcs_pdr_in, mcs_pdr_nested, mcs_plain, spin_plain, depth()]
}

/// On a uthread: 0 outside; 1 in one PDR lock; 2 in two; plain locks leave it alone.
const ON_A_UTHREAD: [u32; 9] = [0, 1, 2, 1, 1, 2, 0, 0, 0];

#[test]
fn pdr_locks_disable_notifications_while_held_and_nest() {
    static SPAWNED: [AtomicU32; 2] = [const { AtomicU32::new(u32::MAX) }; 2];
    isolated!(TIMEOUT, {
        common::init();
        assert_eq!(depths_inside_locks(), ON_A_UTHREAD, "on main");
        // Inside a NotifGuard everything is one deeper.
        {
            let _g = NotifGuard::new();
            assert_eq!(depths_inside_locks(), ON_A_UTHREAD.map(|d| d + 1), "inside a NotifGuard");
        }
        for (i, tls) in [TlsMode::Backed, TlsMode::None].into_iter().enumerate() {
            common::spawn(tls, move || {
                let ok = depths_inside_locks() == ON_A_UTHREAD;
                SPAWNED[i].store(ok as u32, Ordering::Relaxed);
            });
        }
        common::wait_all();
        assert_eq!(SPAWNED.each_ref().map(|s| s.load(Ordering::Relaxed)), [1, 1], "on spawned uthreads");
        // A plain thread has no depth: PDR locks are plain spinlocks there.
        assert_eq!(support::on_plain_thread(depths_inside_locks), [0; 9], "on a plain thread");
        assert_eq!(depth(), 0);
    });
}

#[test]
fn pdr_locks_taken_in_vcore_context_leave_the_depth_alone() {
    // An event handler (vcore context) takes PDR locks; the raw depth of the vcore must
    // not move (notifications are always off there), and the interrupted uthread gets
    // its own depth back.
    static RAW_DEPTHS: [AtomicU32; 3] = [const { AtomicU32::new(u32::MAX) }; 3];
    static SPIN: PdrSpinLock<u32> = PdrSpinLock::new(0);
    static MCS: McsLock<u32> = McsLock::new_pdr(0);
    fn take_pdr_locks(_: &EventMsg, _: EventType) {
        let vc = vcore::this().expect("on a vcore");
        assert!(vc.in_vcore_context());
        RAW_DEPTHS[0].store(vc.notif_depth(), Ordering::SeqCst);
        {
            let mut g = SPIN.lock();
            *g += 1;
            RAW_DEPTHS[1].store(vc.notif_depth(), Ordering::SeqCst);
            MCS.with(|v| *v += 1);
        }
        RAW_DEPTHS[2].store(vc.notif_depth(), Ordering::SeqCst);
        PROBES_HANDLED.fetch_add(1, Ordering::SeqCst);
    }
    isolated!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        assert_eq!(vcore::max_vcores(), 1, "run with VCORE_LIMIT=1");
        events::register_handler(EV_PROBE, take_pdr_locks).unwrap();
        for uthread_depth in [0, 1] {
            let guard = (uthread_depth == 1).then(NotifGuard::new);
            let before = PROBES_HANDLED.load(Ordering::SeqCst);
            {
                let _g = NotifGuard::new();
                events::send_event(&EventMsg::default(), EV_PROBE, 0).unwrap();
            } // delivered here if the uthread's depth is now 0, else when `guard` drops
            drop(guard);
            assert_eq!(PROBES_HANDLED.load(Ordering::SeqCst), before + 1, "the handler ran");
            let raw = RAW_DEPTHS.each_ref().map(|d| d.load(Ordering::SeqCst));
            assert_eq!(raw[0], raw[1], "a PDR lock changed the depth in vcore context");
            assert_eq!(raw[0], raw[2], "releasing a PDR lock changed the depth in vcore context");
            assert_eq!(depth(), 0, "the uthread got its depth back");
        }
        let _g = NotifGuard::new();
        assert_eq!(*SPIN.lock(), 2);
        assert_eq!(MCS.with(|v| *v), 2);
    });
}

/// Spins holding `hold`'s lock while a ticker sends 200 notifications to this vcore;
/// returns how many were handled while it was held, and checks the rest are delivered
/// as soon as the lock is released.
fn ticks_handled_while_holding(hold: impl FnOnce(&mut dyn FnMut())) -> usize {
    let before = PROBES_HANDLED.load(Ordering::SeqCst);
    let mut during = 0;
    let ticker = common::Ticker::start(Duration::from_micros(100), &[0]);
    hold(&mut || {
        while ticker.sent() < 200 {
            std::hint::spin_loop();
        }
        during = PROBES_HANDLED.load(Ordering::SeqCst) - before;
    });
    ticker.stop();
    assert!(PROBES_HANDLED.load(Ordering::SeqCst) > before, "no tick was handled at all");
    during
}

#[test]
fn a_uthread_holding_a_pdr_lock_is_never_interrupted() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        assert_eq!(vcore::max_vcores(), 1, "run with VCORE_LIMIT=1");
        events::register_handler(EV_USER_IPI, count_probe).unwrap();
        let spin = PdrSpinLock::new(());
        let mcs = McsLock::new_pdr(());
        let during_spin = ticks_handled_while_holding(|spin_for_ticks| {
            let _g = spin.lock();
            spin_for_ticks();
            assert!(vcore::this().unwrap().notif_pending(), "the ticks are pending");
        });
        assert_eq!(during_spin, 0, "interrupted while holding a PdrSpinLock");
        let during_mcs = ticks_handled_while_holding(|spin_for_ticks| mcs.with(|_| spin_for_ticks()));
        assert_eq!(during_mcs, 0, "interrupted while holding a PDR McsLock");
        // The control: a plain lock does not protect its holder, so the same spin is
        // interrupted (which shows the two checks above could fail).
        let plain = McsLock::new(());
        let during_plain = ticks_handled_while_holding(|spin_for_ticks| plain.with(|_| spin_for_ticks()));
        assert!(during_plain > 0, "a plain McsLock holder was never interrupted: the ticks did not work");
    });
}

// ---------------------------------------------------------------------------------------
// Blocking gives back the depth the uthread had.

/// Blocking calls each blocker makes; each is checked to block (see `partner_sees_block`).
const BLOCKS: usize = 1000;

/// The uthread that blocks, for the partner to watch.
static BLOCKER: AtomicPtr<Uthread> = AtomicPtr::new(core::ptr::null_mut());
/// How many times the partner saw the blocker `Blocked` before releasing it.
static BLOCKS_SEEN: AtomicUsize = AtomicUsize::new(0);
/// Rounds the blocker has finished, and rounds the partner has set up.
static DONE: AtomicUsize = AtomicUsize::new(0);
static READY: AtomicUsize = AtomicUsize::new(0);
static FAILURES: Failures = Failures::new();
static BLOCKER_FINISHED: AtomicBool = AtomicBool::new(false);

/// Runs the blocking call `call` for round `i`: at depth 0 on even rounds, inside a
/// `NotifGuard` (depth 1) on odd ones; records a failure if the depth after the call
/// differs from the depth before.
fn measured<R>(what: &str, i: usize, call: impl FnOnce() -> R) -> R {
    let _guard = (!i.is_multiple_of(2)).then(NotifGuard::new);
    let before = depth();
    let r = call();
    let after = depth();
    if after != before {
        FAILURES.record(|| format!("{what}, block {i}: depth {before} before the call, {after} after"));
    }
    r
}

/// In the partner: waits until the blocker is queued in the primitive, and counts it.
fn partner_sees_block() {
    let b = NonNull::new(BLOCKER.load(Ordering::Acquire)).expect("the blocker is published first");
    // SAFETY: the blocker cannot exit before the partner releases it from this block.
    unsafe { support::wait_until_blocked(b) };
    BLOCKS_SEEN.fetch_add(1, Ordering::Relaxed);
}

/// Spawns `blocker` and `partner` (free to run on, and migrate between, every vcore)
/// and checks every block was seen, every depth restored, and the blocker interruptible
/// afterwards. (Preemption while blocking and waking is the stress test's subject.)
fn run_blocking_scenario(what: &'static str, blocker: fn(), partner: fn()) {
    common::init();
    events::register_handler(EV_PROBE, count_probe).unwrap();
    let b = common::spawn(TlsMode::Backed, move || {
        blocker();
        if let Err(e) = check_interruptible_again() {
            FAILURES.record(|| format!("{what}: {e}"));
        }
        BLOCKER_FINISHED.store(true, Ordering::Release);
    });
    BLOCKER.store(b.as_ptr(), Ordering::Release);
    common::spawn(TlsMode::Backed, partner);
    common::wait_all();
    FAILURES.assert_none(what);
    assert!(BLOCKER_FINISHED.load(Ordering::Acquire));
    assert_eq!(BLOCKS_SEEN.load(Ordering::Relaxed), BLOCKS, "{what}: blocks seen by the partner");
    assert_eq!(depth(), 0, "main's depth");
}

mod blocking_does_not_leak_notification_disable_depth {
    use super::*;
    use parlib_sync::{futex_wait, futex_wake, Barrier, Condvar, Mutex, RawMutex, RwLock, Semaphore};

    #[test]
    fn on_a_mutex() {
        static M: RawMutex = RawMutex::new();
        isolated!(TIMEOUT, {
            run_blocking_scenario(
                "Mutex::lock",
                || {
                    for i in 0..BLOCKS {
                        common::wait_until(|| READY.load(Ordering::Acquire) > i); // the partner holds M
                        measured("Mutex::lock", i, || M.lock().unwrap());
                        M.unlock().unwrap();
                        DONE.store(i + 1, Ordering::Release);
                    }
                },
                || {
                    for i in 0..BLOCKS {
                        M.lock().unwrap();
                        READY.store(i + 1, Ordering::Release);
                        partner_sees_block();
                        M.unlock().unwrap();
                        common::wait_until(|| DONE.load(Ordering::Acquire) > i);
                    }
                },
            );
        });
    }

    #[test]
    fn on_a_condvar() {
        static M: Mutex<usize> = Mutex::new(0);
        static CV: Condvar = Condvar::new();
        static WAITS: AtomicUsize = AtomicUsize::new(0);
        isolated!(TIMEOUT, {
            run_blocking_scenario(
                "Condvar::wait",
                || {
                    let mut g = M.lock();
                    for i in 0..BLOCKS {
                        while *g <= i {
                            g = measured("Condvar::wait", i, || CV.wait(g));
                            WAITS.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                },
                || {
                    for _ in 0..BLOCKS {
                        partner_sees_block(); // waiting on CV (nobody else holds M)
                        *M.lock() += 1;
                        CV.notify_one();
                    }
                },
            );
            assert_eq!(WAITS.load(Ordering::Relaxed), BLOCKS, "one wait per notification");
        });
    }

    #[test]
    fn on_a_semaphore() {
        static S: Semaphore = Semaphore::new(0);
        isolated!(TIMEOUT, {
            run_blocking_scenario(
                "Semaphore::acquire",
                || {
                    for i in 0..BLOCKS {
                        measured("Semaphore::acquire", i, || S.acquire());
                    }
                },
                || {
                    for _ in 0..BLOCKS {
                        partner_sees_block();
                        S.release(); // handed straight to the blocker: the value stays 0
                    }
                },
            );
            assert_eq!(S.value(), 0);
        });
    }

    #[test]
    fn on_an_rwlock() {
        // Even rounds: the partner writes, the blocker's read blocks. Odd rounds: the
        // partner reads, the blocker's write blocks.
        static L: RwLock<u64> = RwLock::new(0);
        isolated!(TIMEOUT, {
            run_blocking_scenario(
                "RwLock::read / RwLock::write",
                || {
                    for i in 0..BLOCKS {
                        common::wait_until(|| READY.load(Ordering::Acquire) > i);
                        if i.is_multiple_of(2) {
                            drop(measured("RwLock::read", i, || L.read()));
                        } else {
                            let mut w = measured("RwLock::write", i, || L.write());
                            *w += 1;
                        }
                        DONE.store(i + 1, Ordering::Release);
                    }
                },
                || {
                    for i in 0..BLOCKS {
                        if i.is_multiple_of(2) {
                            let mut w = L.write();
                            *w += 1;
                            READY.store(i + 1, Ordering::Release);
                            partner_sees_block();
                        } else {
                            let _r = L.read();
                            READY.store(i + 1, Ordering::Release);
                            partner_sees_block();
                        }
                        common::wait_until(|| DONE.load(Ordering::Acquire) > i);
                    }
                },
            );
            assert_eq!(*L.read(), BLOCKS as u64, "every write landed");
        });
    }

    #[test]
    fn on_a_barrier() {
        static B: std::sync::OnceLock<Barrier> = std::sync::OnceLock::new();
        static SERIAL_BLOCKER: AtomicUsize = AtomicUsize::new(0);
        isolated!(TIMEOUT, {
            B.set(Barrier::new(2)).ok().unwrap();
            run_blocking_scenario(
                "Barrier::wait",
                || {
                    for i in 0..BLOCKS {
                        if measured("Barrier::wait", i, || B.get().unwrap().wait()) {
                            SERIAL_BLOCKER.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                },
                || {
                    for _ in 0..BLOCKS {
                        partner_sees_block();
                        B.get().unwrap().wait(); // the last arrival: releases the blocker
                    }
                },
            );
            assert_eq!(SERIAL_BLOCKER.load(Ordering::Relaxed), 0, "the blocker arrived first every time");
        });
    }

    #[test]
    fn on_a_futex() {
        static WORD: AtomicU32 = AtomicU32::new(0);
        static WOKEN_BY_PARTNER: AtomicUsize = AtomicUsize::new(0);
        isolated!(TIMEOUT, {
            run_blocking_scenario(
                "futex_wait",
                || {
                    for i in 0..BLOCKS {
                        let r = measured("futex_wait", i, || futex_wait(&WORD, i as u32));
                        if r.is_err() {
                            FAILURES.record(|| format!("futex_wait, block {i}: {r:?}"));
                        }
                    }
                },
                || {
                    for i in 0..BLOCKS {
                        partner_sees_block();
                        WORD.store(i as u32 + 1, Ordering::SeqCst);
                        WOKEN_BY_PARTNER.fetch_add(futex_wake(&WORD, 1) as usize, Ordering::Relaxed);
                    }
                },
            );
            assert_eq!(WOKEN_BY_PARTNER.load(Ordering::Relaxed), BLOCKS, "each wake found the blocker");
        });
    }
}
