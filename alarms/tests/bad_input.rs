//! Bad input and misuse of the alarms layer get a defined result, an error value or a
//! panic with a clear message, never a crash or a hang: deadlines already past, stopping
//! or resetting alarms never started, starting twice or without a callback, malformed
//! timespecs, and timed waits before `parlib_alarms::init`.

use parlib_testsched as common;
mod support;

use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_alarms::{AlarmWaiter, Deadline};
use parlib_sync::{Errno, RawCondvar, RawMutex, RawSemaphore, MUTEX_ERRORCHECK};
use parlib_testkit::probe::{assert_no_crash_or_hang, assert_unwound_with, expect_unwinding_panic};
use parlib_testkit::{child_outcome, isolated};
use parlib_vcore as vcore;
use support::{now, Task};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A callback that counts its runs and notes the vcore it ran on.
static RUNS: AtomicU32 = AtomicU32::new(0);
static RAN_ON: AtomicUsize = AtomicUsize::new(usize::MAX);
fn count(_: &AlarmWaiter) {
    RAN_ON.store(vcore::id(), Ordering::Relaxed);
    RUNS.fetch_add(1, Ordering::Release);
}

/// Waits (yielding, so on a uthread) until `count` has run `n` times in all.
fn wait_for_runs(n: u32) {
    common::wait_until(|| RUNS.load(Ordering::Acquire) >= n);
}

fn timespec(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec { tv_sec: sec, tv_nsec: nsec }
}

fn realtime_now() -> libc::timespec {
    let mut ts = timespec(0, 0);
    // SAFETY: a valid clock id and a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts
}

// ---------------------------------------------------------------------------------------
// Deadlines already past.

/// An alarm whose deadline has passed fires promptly (the watchdog is the only clock),
/// started from a uthread (it runs on that uthread's vcore) and from a plain thread (it
/// runs on vcore 0).
#[test]
fn an_alarm_with_a_deadline_in_the_past_fires_promptly() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        static A: AlarmWaiter = AlarmWaiter::new();
        static B: AlarmWaiter = AlarmWaiter::new();
        static C: AlarmWaiter = AlarmWaiter::new();
        A.init_waiter(count);
        A.set_abs(Deadline::at_monotonic_ns(now() - 1_000_000_000));
        Pin::static_ref(&A).start();
        wait_for_runs(1);
        B.init_waiter(count);
        B.set_abs(Deadline::at_monotonic_ns(1)); // the earliest time there is but 0
        Pin::static_ref(&B).start();
        wait_for_runs(2);
        assert!(!A.is_armed() && !B.is_armed());
        // From a plain thread: the alarm lives on vcore 0.
        Task::thread(|| {
            C.init_waiter(count);
            C.set_rel(Duration::ZERO);
            Pin::static_ref(&C).start();
        })
        .join();
        wait_for_runs(3);
        assert_eq!(
            RAN_ON.load(Ordering::Relaxed),
            0,
            "an alarm started on a plain thread ran on another vcore"
        );
        assert_eq!(RUNS.load(Ordering::Relaxed), 3, "a past alarm fired more than once");
    });
}

/// Regression: an alarm at `CLOCK_MONOTONIC` time 0 (`Deadline::at_monotonic_ns(0)`, or
/// `Deadline::from_monotonic` of a zero or negative timespec, which it clamps to 0) used
/// to never fire, and no later alarm on that vcore either: an all-zero `it_value`
/// *disarms* a POSIX timer. The vcore timer (`parlib_vcore::timer`) arms for at least
/// time 1.
#[test]
fn an_alarm_at_monotonic_time_zero_fires_and_later_alarms_still_do() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        static ZERO: AlarmWaiter = AlarmWaiter::new();
        static LATER: AlarmWaiter = AlarmWaiter::new();
        let _stay = parlib_uthread::NotifGuard::new(); // both on this vcore
        ZERO.init_waiter(count);
        ZERO.set_abs(Deadline::from_monotonic(&timespec(0, 0)).unwrap());
        Pin::static_ref(&ZERO).start();
        LATER.init_waiter(count);
        LATER.set_rel(Duration::from_millis(1));
        Pin::static_ref(&LATER).start();
        drop(_stay);
        wait_for_runs(2);
    });
}

/// Regression: the same bug through a timed wait. A condvar wait with an already expired
/// monotonic deadline (a `{0, 0}` timespec, as pthread code passes to poll) on a uthread
/// used to never return: its timeout was armed for time 0.
#[test]
fn a_condvar_timed_wait_with_a_zero_monotonic_deadline_times_out() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        static M: RawMutex = RawMutex::new();
        static CV: RawCondvar = RawCondvar::new();
        M.lock().unwrap();
        let r = CV.timed_wait(&M, Deadline::from_monotonic(&timespec(0, 0)).unwrap());
        assert_eq!(r, Err(Errno::TIMEDOUT));
        M.unlock().unwrap();
    });
}

// ---------------------------------------------------------------------------------------
// Stopping and resetting alarms that were never started.

#[test]
fn stopping_a_never_started_alarm_returns_false_and_harms_nothing() {
    isolated!(TIMEOUT, {
        // Even before the runtime exists.
        let early = AlarmWaiter::new();
        assert!(!early.stop(), "stop of a never-started alarm (before init) returned true");
        drop(early);

        support::init_runtime(common::init);
        let w = pin!(AlarmWaiter::new());
        assert!(!w.stop(), "stop of a new alarm returned true");
        w.init_waiter(count);
        assert!(!w.stop(), "stop of a never-started alarm returned true");
        assert!(!w.is_armed());
        // It still works afterwards, and fires once.
        w.set_rel(Duration::from_millis(1));
        w.as_ref().start();
        wait_for_runs(1);
        assert!(!w.stop(), "stop after the callback ran returned true");
        common::yield_now();
        assert_eq!(RUNS.load(Ordering::Relaxed), 1);
    });
}

#[test]
fn resetting_a_never_started_alarm_returns_false_and_leaves_it_alone() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        let w = pin!(AlarmWaiter::new());
        w.init_waiter(count);
        let far = Deadline::after(Duration::from_secs(3600));
        w.set_abs(far);
        assert!(
            !w.reset_abs(Deadline::at_monotonic_ns(1)),
            "reset_abs of a never-started alarm returned true"
        );
        assert_eq!(w.deadline(), far, "a failed reset_abs changed the deadline");
        assert!(!w.is_armed(), "a failed reset_abs started the alarm");
        // The reset deadline has long passed: had the reset started it, it would run now.
        parlib_alarms::sleep(Duration::from_millis(5));
        assert_eq!(RUNS.load(Ordering::Relaxed), 0, "a failed reset_abs made the callback run");
    });
}

// ---------------------------------------------------------------------------------------
// Misuse that panics.

#[test]
fn starting_a_started_alarm_panics_with_a_message() {
    let out = child_outcome!(TIMEOUT, {
        support::init_runtime(common::init);
        static W: AlarmWaiter = AlarmWaiter::new();
        W.init_waiter(count);
        W.set_rel(Duration::from_secs(3600));
        Pin::static_ref(&W).start();
        expect_unwinding_panic(|| Pin::static_ref(&W).start());
    });
    assert_unwound_with(&out, "already started");
}

#[test]
fn changing_the_deadline_of_a_started_alarm_panics_with_a_message() {
    let out = child_outcome!(TIMEOUT, {
        support::init_runtime(common::init);
        static W: AlarmWaiter = AlarmWaiter::new();
        W.init_waiter(count);
        W.set_rel(Duration::from_secs(3600));
        Pin::static_ref(&W).start();
        expect_unwinding_panic(|| W.set_rel(Duration::from_secs(1)));
    });
    assert_unwound_with(&out, "on a started alarm");
}

#[test]
fn starting_an_alarm_without_a_callback_panics_with_a_message() {
    let out = child_outcome!(TIMEOUT, {
        support::init_runtime(common::init);
        let w = pin!(AlarmWaiter::new());
        w.set_rel(Duration::from_millis(1));
        expect_unwinding_panic(|| w.as_ref().start());
    });
    assert_unwound_with(&out, "no callback");
}

#[test]
fn starting_an_alarm_before_init_panics_with_a_message() {
    let out = child_outcome!(TIMEOUT, {
        let w = pin!(AlarmWaiter::new());
        w.init_waiter(count);
        w.set_rel(Duration::from_millis(1));
        expect_unwinding_panic(|| w.as_ref().start());
    });
    assert_unwound_with(&out, "parlib_alarms::init");
}

// ---------------------------------------------------------------------------------------
// Malformed timespecs.

#[test]
fn set_abs_unix_rejects_a_malformed_timespec() {
    let w = AlarmWaiter::new();
    let before = w.deadline();
    for bad in [timespec(1, 1_000_000_000), timespec(1, -1), timespec(0, i64::MAX)] {
        assert_eq!(w.set_abs_unix(&bad), Err(Errno::INVAL), "tv_nsec {}", bad.tv_nsec);
        assert_eq!(w.deadline(), before, "a rejected set_abs_unix changed the deadline");
    }
    // A good one an hour ahead of the realtime clock is ahead of the monotonic one too.
    let mut ahead = realtime_now();
    ahead.tv_sec += 3600;
    assert_eq!(w.set_abs_unix(&ahead), Ok(()));
    assert!(!w.deadline().has_passed(), "an hour from now has passed");
    // One in the past has passed.
    assert_eq!(w.set_abs_unix(&timespec(1, 0)), Ok(()));
    assert!(w.deadline().has_passed());
}

#[test]
fn timed_waits_with_a_malformed_realtime_timespec_return_einval() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        static M: RawMutex = RawMutex::new();
        static S: RawSemaphore = RawSemaphore::new(0);
        for bad in [timespec(0, 1_000_000_000), timespec(realtime_now().tv_sec + 1, -1)] {
            assert_eq!(Deadline::from_realtime(&bad), Err(Errno::INVAL));
            assert_eq!(Deadline::from_monotonic(&bad), Err(Errno::INVAL));
            // As a pthread_mutex_timedlock / sem_timedwait would use it: never reaches the wait.
            M.lock().unwrap();
            assert_eq!(Deadline::from_realtime(&bad).and_then(|d| M.timed_lock(d)), Err(Errno::INVAL));
            M.unlock().unwrap();
            assert_eq!(Deadline::from_realtime(&bad).and_then(|d| S.timed_wait(d)), Err(Errno::INVAL));
        }
        assert!(!M.is_locked());
        assert_eq!(S.value(), 0);
    });
}

// ---------------------------------------------------------------------------------------
// Before parlib_alarms::init.

#[test]
fn alarms_init_before_the_runtime_is_an_error_and_later_calls_are_harmless() {
    isolated!(TIMEOUT, {
        assert_eq!(parlib_alarms::init(), Err(parlib_alarms::Error::NotInitialized));
        common::init();
        assert_eq!(parlib_alarms::init(), Ok(()));
        assert_eq!(parlib_alarms::init(), Ok(()), "a second init failed");
        static W: AlarmWaiter = AlarmWaiter::new();
        W.init_waiter(count);
        W.set_rel(Duration::ZERO);
        Pin::static_ref(&W).start();
        wait_for_runs(1);
    });
}

/// Without the timeout service a timed wait on a uthread cannot be woken at its deadline:
/// it returns `EINVAL` at once instead of waiting forever, and leaves the primitive as it
/// was. Plain threads need no service and time out as usual.
#[test]
fn timed_waits_on_uthreads_before_alarms_init_return_einval() {
    isolated!(TIMEOUT, {
        common::init(); // and no parlib_alarms::init
        static M: RawMutex = RawMutex::new();
        static EM: RawMutex = RawMutex::with_kind(MUTEX_ERRORCHECK);
        static CV: RawCondvar = RawCondvar::new();
        static S: RawSemaphore = RawSemaphore::new(0);
        let forever = || Deadline::after(Duration::from_secs(3600));
        M.lock().unwrap();
        let r = Task::uthread(move || M.timed_lock(forever())).join();
        assert_eq!(r, Err(Errno::INVAL), "Mutex::timed_lock on a uthread before alarms::init");
        let (r, unlocked) = Task::uthread(move || {
            EM.lock().unwrap();
            (CV.timed_wait(&EM, forever()), EM.unlock())
        })
        .join();
        assert_eq!(r, Err(Errno::INVAL), "Condvar::timed_wait on a uthread before alarms::init");
        assert_eq!(unlocked, Ok(()), "Condvar::timed_wait returned EINVAL without the mutex held");
        let r = Task::uthread(move || S.timed_wait(forever())).join();
        assert_eq!(r, Err(Errno::INVAL), "Semaphore::timed_wait on a uthread before alarms::init");

        // The primitives still work.
        let waiter = Task::uthread(|| {
            M.lock().unwrap();
            M.unlock().unwrap();
            S.wait();
        });
        M.unlock().unwrap();
        S.post().unwrap();
        waiter.join();
        assert_eq!((M.is_locked(), S.value()), (false, 0));
        assert_eq!(CV.destroy(), Ok(()), "a waiter was left queued on the condvar");

        // Plain threads time out with the kernel's help.
        M.lock().unwrap();
        let r = Task::thread(|| M.timed_lock(Deadline::after(Duration::from_millis(5)))).join();
        assert_eq!(r, Err(Errno::TIMEDOUT), "Mutex::timed_lock on a plain thread");
        M.unlock().unwrap();
    });
}

#[test]
fn condvar_wait_timeout_on_a_uthread_before_alarms_init_panics_with_a_message() {
    let out = child_outcome!(TIMEOUT, {
        common::init();
        static M: parlib_sync::Mutex<()> = parlib_sync::Mutex::new(());
        static CV: parlib_sync::Condvar = parlib_sync::Condvar::new();
        expect_unwinding_panic(|| {
            let _ = CV.wait_timeout(M.lock(), Duration::from_secs(3600));
        });
    });
    assert_unwound_with(&out, "is parlib_alarms initialised?");
}

#[test]
fn semaphore_acquire_timeout_on_a_uthread_before_alarms_init_panics_with_a_message() {
    let out = child_outcome!(TIMEOUT, {
        common::init();
        static S: parlib_sync::Semaphore = parlib_sync::Semaphore::new(0);
        expect_unwinding_panic(|| {
            let _ = S.acquire_timeout(Duration::from_secs(3600));
        });
    });
    assert_unwound_with(&out, "is parlib_alarms initialised?");
}

/// Sleeping on a uthread before `parlib_alarms::init` cannot work; it must fail with a
/// message that says why, not crash or hang.
#[test]
fn sleep_on_a_uthread_before_alarms_init_fails_with_a_message() {
    let out = child_outcome!(TIMEOUT, {
        common::init();
        parlib_alarms::sleep(Duration::from_millis(1));
    });
    assert_no_crash_or_hang(&out);
    assert!(!out.finished, "sleep before alarms::init returned\n{}", out.output());
    assert!(
        out.stderr.contains("parlib_alarms::init"),
        "no message naming the missing init\n{}",
        out.output()
    );
}

/// Two starts of one alarm racing on different vcores (each under its own vcore's lock):
/// exactly one wins, the other panics naming the misuse, and the alarm is in one
/// deadline set only (a stop takes it out for good: its callback never runs).
#[test]
fn racing_starts_of_one_alarm_on_two_vcores_let_exactly_one_win() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        common::require_vcores(2);
        static W: AlarmWaiter = AlarmWaiter::new();
        static RAN: AtomicU32 = AtomicU32::new(0);
        static READY: AtomicU32 = AtomicU32::new(0);
        fn never(_: &AlarmWaiter) {
            RAN.fetch_add(1, Ordering::SeqCst);
        }
        W.init_waiter(never);
        for round in 0..200u32 {
            W.set_rel(Duration::from_secs(3600));
            let racers: Vec<_> = (0..2)
                .map(|v| {
                    Task::uthread_on(v, move || {
                        // Rendezvous by spinning: both racers run at once, one per vcore.
                        READY.fetch_add(1, Ordering::SeqCst);
                        while READY.load(Ordering::SeqCst) < 2 * (round + 1) {
                            core::hint::spin_loop();
                        }
                        std::panic::catch_unwind(|| Pin::static_ref(&W).start()).is_ok()
                    })
                })
                .collect();
            let won = racers.into_iter().map(|r| r.join()).filter(|&ok| ok).count();
            assert_eq!(won, 1, "round {round}: {won} starts succeeded");
            assert!(W.stop(), "round {round}: the alarm was not in exactly one set");
        }
        assert_eq!(RAN.load(Ordering::SeqCst), 0);
    });
}
