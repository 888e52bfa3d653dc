//! Preemption (DESIGN §5): a uthread that never yields is interrupted by a notification
//! and, when the event handler hands it back with `uthread::paused`, another uthread runs
//! on the same vcore. The tick source is a plain Linux thread sending `EV_USER_IPI`
//! (`common::Ticker`); the handler is `common::preempt_on_tick`.
//!
//! Every test runs on one vcore (`VCORE_LIMIT=1`), so without preemption a spinning
//! uthread would keep the only vcore forever and the watchdog would fail the test.

use parlib_testsched as common;

use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_events::{self as events, EventMsg, EventType, EV_USER_IPI};
use parlib_testkit::isolated;

use parlib_uthread::{self as uthread, TlsMode, Uthread};
use parlib_vcore as vcore;

const ONE_VCORE: &[(&str, &str)] = &[(vcore::VCORE_LIMIT_ENV, "1")];
const TIMEOUT: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_micros(200);

/// One step of a 64-bit LCG: a pure computation the compiler cannot skip.
#[inline(always)]
fn lcg(x: u64) -> u64 {
    x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407)
}

#[test]
fn a_spinning_uthread_is_preempted_so_another_runs_on_its_vcore() {
    static OTHER_RAN: AtomicBool = AtomicBool::new(false);
    static SPINNER_RUNNING: AtomicBool = AtomicBool::new(false);
    static SPINNER_DONE: AtomicBool = AtomicBool::new(false);
    static OTHER_SAW_SPINNER_UNFINISHED: AtomicBool = AtomicBool::new(false);
    static OTHER_VCORE: AtomicUsize = AtomicUsize::new(usize::MAX);
    isolated!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        assert_eq!(vcore::max_vcores(), 1);
        let ticker = common::start_preempting(TICK, &[0]);
        // The spinner runs first (FIFO) and computes until the other uthread has run:
        // no yield, no system call, no library call.
        common::spawn(TlsMode::Backed, || {
            SPINNER_RUNNING.store(true, Ordering::Release);
            let mut x = 1u64;
            while !OTHER_RAN.load(Ordering::Acquire) {
                x = black_box(lcg(x));
            }
            black_box(x);
            SPINNER_DONE.store(true, Ordering::Release);
        });
        common::spawn(TlsMode::Backed, || {
            OTHER_SAW_SPINNER_UNFINISHED.store(
                SPINNER_RUNNING.load(Ordering::Acquire) && !SPINNER_DONE.load(Ordering::Acquire),
                Ordering::Relaxed,
            );
            OTHER_VCORE.store(vcore::id(), Ordering::Relaxed);
            OTHER_RAN.store(true, Ordering::Release);
        });
        common::wait_all();
        ticker.stop();
        assert!(OTHER_RAN.load(Ordering::Relaxed) && SPINNER_DONE.load(Ordering::Relaxed));
        assert!(
            OTHER_SAW_SPINNER_UNFINISHED.load(Ordering::Relaxed),
            "the second uthread ran while the spinner was still spinning"
        );
        assert_eq!(OTHER_VCORE.load(Ordering::Relaxed), 0);
        assert!(common::PREEMPTIONS.load(Ordering::Relaxed) > 0);
    });
}

#[test]
fn spinning_uthreads_take_turns_on_one_vcore() {
    // Each spinner counts its own progress and spins until every spinner has made
    // PROGRESS steps: only possible if each is preempted, repeatedly, for the others.
    const SPINNERS: usize = 4;
    const PROGRESS: u64 = 50;
    static STEPS: [AtomicU64; SPINNERS] = [const { AtomicU64::new(0) }; SPINNERS];
    /// How many times a spinner saw another's count change while it spun: its turns.
    static TURNS_SEEN: [AtomicU64; SPINNERS] = [const { AtomicU64::new(0) }; SPINNERS];
    isolated!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        let ticker = common::start_preempting(TICK, &[0]);
        for i in 0..SPINNERS {
            common::spawn(TlsMode::Backed, move || {
                let others = || -> u64 {
                    (0..SPINNERS).filter(|&j| j != i).map(|j| STEPS[j].load(Ordering::Relaxed)).sum()
                };
                let mut last_others = others();
                let mut x = i as u64;
                loop {
                    // One step: a fixed amount of computation, then publish it.
                    for _ in 0..10_000 {
                        x = black_box(lcg(x));
                    }
                    let mine = STEPS[i].fetch_add(1, Ordering::Relaxed) + 1;
                    let now = others();
                    if now != last_others {
                        TURNS_SEEN[i].fetch_add(1, Ordering::Relaxed);
                        last_others = now;
                    }
                    if mine >= PROGRESS && STEPS.iter().all(|s| s.load(Ordering::Relaxed) >= PROGRESS) {
                        break;
                    }
                }
                black_box(x);
            });
        }
        common::wait_all();
        ticker.stop();
        for i in 0..SPINNERS {
            assert!(STEPS[i].load(Ordering::Relaxed) >= PROGRESS);
            assert!(TURNS_SEEN[i].load(Ordering::Relaxed) >= 1, "spinner {i} never saw another one run");
        }
        assert!(common::PREEMPTIONS.load(Ordering::Relaxed) >= SPINNERS);
    });
}

#[test]
fn an_interrupted_uthread_that_is_not_paused_resumes_where_it_was() {
    // The handler only counts: vcore_entry resumes the interrupted uthread in place. Its
    // computation, interrupted hundreds of times, gives the same result as computed
    // again afterwards.
    static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);
    static SPINNER: AtomicU64 = AtomicU64::new(0);
    fn count_only(_: &EventMsg, _: EventType) {
        if let Some(u) = uthread::interrupted() {
            if u.as_ptr() as u64 == SPINNER.load(Ordering::Relaxed) {
                INTERRUPTS.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    static STEPS: AtomicU64 = AtomicU64::new(0);
    static RESULT: AtomicU64 = AtomicU64::new(0);
    isolated!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        events::register_handler(EV_USER_IPI, count_only).unwrap();
        let ticker = common::Ticker::start(TICK, &[0]);
        let u: NonNull<Uthread> = common::spawn(TlsMode::None, || {
            let (mut x, mut f, mut steps) = (7u64, 1.0f64, 0u64);
            while INTERRUPTS.load(Ordering::Relaxed) < 300 {
                x = black_box(lcg(x));
                f = black_box(f * 1.000_000_1 + (x >> 40) as f64 * 1e-12);
                steps += 1;
            }
            STEPS.store(steps, Ordering::Relaxed);
            RESULT.store(x ^ f.to_bits(), Ordering::Relaxed);
        });
        // Not yet run (one vcore, and main is running): the record is alive.
        SPINNER.store(u.as_ptr() as u64, Ordering::Relaxed);
        common::wait_all();
        ticker.stop();
        let steps = STEPS.load(Ordering::Relaxed);
        let (mut x, mut f) = (7u64, 1.0f64);
        for _ in 0..steps {
            x = black_box(lcg(x));
            f = black_box(f * 1.000_000_1 + (x >> 40) as f64 * 1e-12);
        }
        assert!(INTERRUPTS.load(Ordering::Relaxed) >= 300);
        assert_eq!(
            RESULT.load(Ordering::Relaxed),
            x ^ f.to_bits(),
            "the computation went wrong after {steps} steps"
        );
    });
}

#[test]
fn uthreads_preempted_in_the_middle_of_yielding_are_not_paused_twice() {
    // Uthreads that do nothing but yield (and exit), under a preempting tick that pauses
    // whatever `interrupted()` returns, unconditionally. A tick that lands inside
    // `yield_with` must not see the yielding (or exiting) uthread as interruptible.
    const YIELDERS: usize = 16;
    static YIELDS: AtomicU64 = AtomicU64::new(0);
    fn pause_whatever_was_interrupted(_: &EventMsg, _: EventType) {
        if let Some(u) = uthread::take_interrupted() {
            uthread::paused(u);
        }
    }
    parlib_testkit::isolated!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        events::register_handler(EV_USER_IPI, pause_whatever_was_interrupted).unwrap();
        let ticker = common::Ticker::start(Duration::from_micros(50), &[0]);
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            for _ in 0..YIELDERS {
                common::spawn(TlsMode::None, || {
                    for _ in 0..1000 {
                        common::yield_now();
                        YIELDS.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            common::wait_all();
        }
        ticker.stop();
        assert!(YIELDS.load(Ordering::Relaxed) > 0);
    });
}
