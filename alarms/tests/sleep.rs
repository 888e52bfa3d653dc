//! `sleep` blocks only the calling uthread (DESIGN §6), never wakes early, and on a plain
//! thread sleeps the thread.

use parlib_testsched as common;
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_alarms::{sleep, sleep_until, Deadline};
use parlib_testkit::isolated;
use parlib_uthread::TlsMode;
use parlib_vcore as vcore;
use support::{now, Rng};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Sleepers in the single-vcore test.
const SLEEPERS: usize = 1000;
/// Each sleeps a random time below this.
const MAX_SLEEP_NS: u64 = 50_000_000;

static SPINS: AtomicU64 = AtomicU64::new(0);
static ALL_AWAKE: AtomicBool = AtomicBool::new(false);
static WOKEN: AtomicUsize = AtomicUsize::new(0);
static EARLY: AtomicUsize = AtomicUsize::new(0);
/// Sleepers that woke to find the spinner had not run while they slept.
static NO_PROGRESS: AtomicUsize = AtomicUsize::new(0);
/// The spinner's count when the first sleeper went to sleep, and at the last wake-up.
static SPINS_AT_FIRST_SLEEP: AtomicU64 = AtomicU64::new(u64::MAX);
static SPINS_AT_LAST_WAKE: AtomicU64 = AtomicU64::new(0);

fn sleeper(seed: u64) {
    let d = Duration::from_nanos(Rng::new(seed).below(MAX_SLEEP_NS));
    let before = SPINS.load(Ordering::Relaxed);
    let _ = SPINS_AT_FIRST_SLEEP.compare_exchange(u64::MAX, before, Ordering::Relaxed, Ordering::Relaxed);
    let t0 = now();
    sleep(d);
    let slept = now() - t0;
    let after = SPINS.load(Ordering::Relaxed);
    if u128::from(slept) < d.as_nanos() {
        EARLY.fetch_add(1, Ordering::Relaxed);
    }
    if after == before {
        NO_PROGRESS.fetch_add(1, Ordering::Relaxed);
    }
    SPINS_AT_LAST_WAKE.fetch_max(after, Ordering::Relaxed);
    if WOKEN.fetch_add(1, Ordering::AcqRel) + 1 == SLEEPERS {
        ALL_AWAKE.store(true, Ordering::Release);
    }
}

/// On one vcore, 1000 uthreads sleep 0-50 ms each while a spinner uthread keeps yielding.
/// Every sleeper must wake, none before its time, and the spinner must run while each
/// sleeps: a sleeper that blocked its vcore would stop it.
///
/// On one vcore with the test scheduler's FIFO run queue this is exact: when a sleeper
/// blocks, the spinner is waiting in the queue (nothing else can be running), and the
/// sleeper's wake-up puts it behind the spinner. (Comparing the spinner's count at the
/// first and at the last wake-up would not be: on a slow enough machine every deadline
/// has passed before the last sleeper goes to sleep, and all may wake in one batch.)
#[test]
fn sleeping_uthreads_wake_no_earlier_than_their_deadline_while_others_run() {
    isolated!(TIMEOUT, env = &[("VCORE_LIMIT", "1")], {
        support::init_runtime(common::init);
        assert_eq!(vcore::max_vcores(), 1, "VCORE_LIMIT=1 should leave one vcore");
        common::spawn(TlsMode::None, || {
            while !ALL_AWAKE.load(Ordering::Acquire) {
                SPINS.fetch_add(1, Ordering::Relaxed);
                common::yield_now();
            }
        });
        for _ in 0..SLEEPERS {
            let seed = support::seed();
            common::spawn(TlsMode::None, move || sleeper(seed));
        }
        common::wait_all();

        assert_eq!(WOKEN.load(Ordering::Relaxed), SLEEPERS, "not every sleeper woke");
        assert_eq!(EARLY.load(Ordering::Relaxed), 0, "sleepers woke before their time");
        assert_eq!(
            NO_PROGRESS.load(Ordering::Relaxed),
            0,
            "sleepers woke without the spinner having run while they slept: sleep blocked the vcore"
        );
        let (first, last) =
            (SPINS_AT_FIRST_SLEEP.load(Ordering::Relaxed), SPINS_AT_LAST_WAKE.load(Ordering::Relaxed));
        assert!(
            last > first,
            "the spinner did not advance between the first sleep ({first}) and last wake ({last})"
        );
    });
}

/// Sleepers spread over every vcore (each alarm lives on the vcore its sleeper ran on,
/// which may have parked by the time it expires) all wake, none before its deadline.
#[test]
fn sleepers_on_every_vcore_all_wake_no_earlier_than_their_deadline() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        static OK: AtomicUsize = AtomicUsize::new(0);
        static EARLY: AtomicUsize = AtomicUsize::new(0);
        const N: usize = 200;
        for k in 0..N {
            common::spawn(TlsMode::None, move || {
                for round in 0..3 {
                    let t = Deadline::after(Duration::from_micros(((k * 7 + round * 13) % 50) as u64 * 100));
                    sleep_until(t);
                    if !t.has_passed() {
                        EARLY.fetch_add(1, Ordering::Relaxed);
                    }
                }
                OK.fetch_add(1, Ordering::Relaxed);
            });
        }
        common::wait_all();
        assert_eq!(EARLY.load(Ordering::Relaxed), 0, "a sleeper woke before its deadline");
        assert_eq!(OK.load(Ordering::Relaxed), N, "not every sleeper finished");
    });
}

/// A uthread pinned to a vcore that parks while it sleeps wakes there: the expiry wakes
/// the parked vcore, whose alarm handler makes the sleeper runnable on that same vcore.
///
/// Regression test for a bug in the shared test scheduler: a vcore woken from its park by
/// an event runs `handle_events` before `sched_entry`, so its `parking` flag was still set
/// when the alarm handler made a uthread pinned to it runnable, and `wake_pinned` spun on
/// `request_specific(self)` forever.
#[test]
fn pinned_sleepers_wake_on_their_own_vcore_after_it_parked() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        static OK: AtomicUsize = AtomicUsize::new(0);
        static BAD: AtomicUsize = AtomicUsize::new(0);
        static DONE: parlib_sync::Semaphore = parlib_sync::Semaphore::new(0);
        let per_vcore = 20;
        for v in 0..vcore::max_vcores() {
            for k in 0..per_vcore {
                common::spawn_on(v, TlsMode::None, move || {
                    // Long enough for an idle vcore to park (it polls about 20 µs first).
                    let t = Deadline::after(Duration::from_millis(1 + k % 7));
                    sleep_until(t);
                    if t.has_passed() && vcore::id() == v {
                        OK.fetch_add(1, Ordering::Relaxed);
                    } else {
                        BAD.fetch_add(1, Ordering::Relaxed);
                    }
                    DONE.release();
                });
            }
        }
        // Block (rather than yield in a loop, which keeps requesting vcores) so that idle
        // vcores do park.
        for _ in 0..per_vcore as usize * vcore::max_vcores() {
            DONE.acquire();
        }
        common::wait_all();
        assert_eq!(BAD.load(Ordering::Relaxed), 0, "a sleeper woke early or on the wrong vcore");
        assert_eq!(OK.load(Ordering::Relaxed), per_vcore as usize * vcore::max_vcores());
    });
}

/// `sleep(0)`, and `sleep_until` a deadline long past, return on a uthread.
#[test]
fn zero_and_past_sleeps_return_on_uthreads() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        sleep(Duration::ZERO);
        sleep_until(Deadline::at_monotonic_ns(1));
        sleep_until(Deadline::at_monotonic_ns(now().saturating_sub(1_000_000_000)));
        let done = std::sync::Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        common::spawn(TlsMode::Backed, move || {
            sleep(Duration::ZERO);
            sleep_until(Deadline::at_monotonic_ns(2));
            d.fetch_add(1, Ordering::Release);
        });
        common::wait_all();
        assert_eq!(done.load(Ordering::Acquire), 1);
    });
}

/// On a plain thread `sleep` is the thread's own sleep: at least the duration, with or
/// without the runtime started; `sleep(0)` returns.
#[test]
fn sleep_on_a_plain_thread_sleeps_at_least_the_duration() {
    isolated!(TIMEOUT, {
        fn check() {
            for ms in [0u64, 1, 5, 20] {
                let d = Duration::from_millis(ms);
                let t0 = now();
                sleep(d);
                let slept = now() - t0;
                assert!(
                    u128::from(slept) >= d.as_nanos(),
                    "sleep({d:?}) on a plain thread returned after {slept} ns"
                );
            }
            let t = Deadline::after(Duration::from_millis(3));
            sleep_until(t);
            assert!(t.has_passed(), "sleep_until returned before its deadline");
        }
        // Before any runtime: the test thread is a plain thread.
        check();
        // With the runtime up, from a plain thread next to the vcores.
        support::init_runtime(common::init);
        let t = std::thread::spawn(check);
        common::wait_until(|| t.is_finished());
        t.join().expect("sleep on a plain thread");
    });
}
