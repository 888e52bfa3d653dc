//! `push_call` on a uthread's handle: a call pushed onto a switched-out uthread runs first
//! thing when it next runs, as that uthread (its stack, its TLS, outside vcore context), and then
//! the uthread continues exactly where it was: after a block, and after a preemption in
//! the middle of a compute loop.

use parlib_testsched as common;

use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_events::{self as events, EventMsg, EventType, EV_USER_IPI};
use parlib_testkit::isolated;
use parlib_uthread::{self as uthread, BlockReason, Blocked, TlsMode, Uthread};
use parlib_vcore as vcore;

const ONE_VCORE: &[(&str, &str)] = &[(vcore::VCORE_LIMIT_ENV, "1")];
const TIMEOUT: Duration = Duration::from_secs(30);

/// What the pushed call saw: which uthread ran it, and whether in vcore context.
static CALLS: AtomicUsize = AtomicUsize::new(0);
static CALLED_ON: AtomicPtr<Uthread> = AtomicPtr::new(core::ptr::null_mut());
static CALLED_IN_VCORE_CONTEXT: AtomicBool = AtomicBool::new(false);
std::thread_local! {
    /// The caller's TLS: set by the uthread before it switches out, read by the call.
    static MARK: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
}
static MARK_SEEN: AtomicU64 = AtomicU64::new(0);

extern "C" fn record_call(arg: usize) {
    CALLS.fetch_add(arg, Ordering::SeqCst);
    CALLED_ON.store(uthread::current().map_or(core::ptr::null_mut(), |u| u.as_ptr()), Ordering::SeqCst);
    CALLED_IN_VCORE_CONTEXT.store(vcore::in_vcore_context(), Ordering::SeqCst);
    MARK_SEEN.store(MARK.with(|m| m.get()), Ordering::SeqCst);
}

#[test]
fn a_call_pushed_onto_a_blocked_uthread_runs_as_it_before_it_continues() {
    static BLOCKED: AtomicPtr<Uthread> = AtomicPtr::new(core::ptr::null_mut());
    static RESUMED_AFTER_CALL: AtomicBool = AtomicBool::new(false);
    isolated!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        let u = common::spawn(TlsMode::Backed, || {
            MARK.with(|m| m.set(0xfeed));
            let before = black_box(0x1234_5678_u64);
            uthread::yield_with(|me| {
                let me = uthread::has_blocked(me, BlockReason::Other(7));
                BLOCKED.store(me.into_raw().as_ptr(), Ordering::Release);
            });
            // The pushed call has run by now, and the locals survived it.
            RESUMED_AFTER_CALL
                .store(CALLS.load(Ordering::SeqCst) == 5 && before == 0x1234_5678, Ordering::SeqCst);
        });
        common::wait_until(|| !BLOCKED.load(Ordering::Acquire).is_null());
        // SAFETY: the uthread stored its Blocked handle's pointer; only this test takes it.
        let mut blocked =
            unsafe { Blocked::from_raw(NonNull::new(BLOCKED.load(Ordering::Acquire)).unwrap()) };
        // SAFETY: `record_call` only touches statics and TLS, with a few bytes of stack.
        unsafe { blocked.push_call(record_call, 5) };
        assert_eq!(CALLS.load(Ordering::SeqCst), 0, "the call ran before the uthread did");
        uthread::runnable(blocked);
        common::wait_all();
        assert_eq!(CALLS.load(Ordering::SeqCst), 5);
        assert_eq!(CALLED_ON.load(Ordering::SeqCst), u.as_ptr(), "the call ran on another uthread");
        assert!(!CALLED_IN_VCORE_CONTEXT.load(Ordering::SeqCst), "the call ran in vcore context");
        assert_eq!(MARK_SEEN.load(Ordering::SeqCst), 0xfeed, "the call did not run on the uthread's TLS");
        assert!(
            RESUMED_AFTER_CALL.load(Ordering::SeqCst),
            "the uthread did not continue intact after the call"
        );
    });
}

#[test]
fn a_call_pushed_onto_a_preempted_uthread_leaves_its_computation_intact() {
    static SPINNER: AtomicPtr<Uthread> = AtomicPtr::new(core::ptr::null_mut());
    static PUSHED: AtomicUsize = AtomicUsize::new(0);
    static STOP: AtomicBool = AtomicBool::new(false);
    static SPINNER_OK: AtomicBool = AtomicBool::new(false);
    /// Tick handler, in vcore context on the only vcore: push a call onto the spinner
    /// each time it is interrupted, and preempt it.
    fn on_tick(_: &EventMsg, _: EventType) {
        let Some(mut u) = uthread::take_interrupted() else { return };
        if u.as_ptr().as_ptr() == SPINNER.load(Ordering::Acquire) && PUSHED.load(Ordering::Relaxed) < 200 {
            PUSHED.fetch_add(1, Ordering::Relaxed);
            // SAFETY: `record_call` only touches statics and TLS, with a few bytes of stack.
            unsafe { u.push_call(record_call, 1) };
        }
        uthread::paused(u);
    }
    isolated!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        events::register_handler(EV_USER_IPI, on_tick).unwrap();
        let ticker = common::Ticker::start(Duration::from_micros(200), &[0]);
        let u = common::spawn(TlsMode::Backed, || {
            // Pure register arithmetic with no calls: a clobbered register shows up as a
            // mismatch against the same sequence recomputed afterwards.
            let (mut x, mut y, mut n) = (1u64, 7u64, 0u64);
            while !STOP.load(Ordering::Relaxed) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                y ^= x.rotate_left(13);
                n += 1;
            }
            let (mut x2, mut y2) = (1u64, 7u64);
            for _ in 0..n {
                x2 = x2.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                y2 ^= x2.rotate_left(13);
            }
            SPINNER_OK.store(x == x2 && y == y2 && n > 0, Ordering::SeqCst);
        });
        SPINNER.store(u.as_ptr(), Ordering::Release);
        common::wait_until(|| CALLS.load(Ordering::SeqCst) >= 50);
        STOP.store(true, Ordering::Relaxed);
        common::wait_all();
        ticker.stop();
        assert_eq!(
            CALLS.load(Ordering::SeqCst),
            PUSHED.load(Ordering::Relaxed),
            "a pushed call was lost or doubled"
        );
        assert_eq!(CALLED_ON.load(Ordering::SeqCst), u.as_ptr());
        assert!(!CALLED_IN_VCORE_CONTEXT.load(Ordering::SeqCst));
        assert!(SPINNER_OK.load(Ordering::SeqCst), "the spinner's registers changed across pushed calls");
    });
}
