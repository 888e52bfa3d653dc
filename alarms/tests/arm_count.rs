//! Arming a vcore's timer is rare (DESIGN §6: "arming costs microseconds in a VM, so never
//! re-arm when the earliest deadline has not changed"; `alarms/src/pvc.rs`): a start arms
//! only if it becomes the vcore's earliest alarm, a stop never arms, and each expiry
//! re-arms at most once, for the next earliest. `parlib_alarms::arm_count` counts every
//! `timer_settime`, so with nothing else using alarms these are exact checks.
//!
//! Everything runs on one uthread pinned to vcore 0 with notifications disabled around
//! each batch of starts, so no expiry is handled in the middle of a batch.

use parlib_testsched as common;
mod support;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parlib_alarms::{arm_count, AlarmWaiter, Deadline};
use parlib_testkit::isolated;
use parlib_uthread::NotifGuard;
use support::{now, Task};

const TIMEOUT: Duration = Duration::from_secs(30);
const N: usize = 100;

static FIRED: AtomicUsize = AtomicUsize::new(0);
fn fired(_: &AlarmWaiter) {
    FIRED.fetch_add(1, Ordering::Release);
}

fn waiters() -> &'static [AlarmWaiter] {
    let v: Vec<AlarmWaiter> = (0..N).map(|_| AlarmWaiter::new()).collect();
    let v: &'static [AlarmWaiter] = Vec::leak(v);
    for w in v {
        w.init_waiter(fired);
    }
    v
}

/// Starts `w` at `at`, returning how many times that armed a timer.
fn start_at(w: &'static AlarmWaiter, at: u64) -> u64 {
    let before = arm_count();
    w.set_abs(Deadline::at_monotonic_ns(at));
    Pin::static_ref(w).start();
    arm_count() - before
}

#[test]
fn a_start_arms_the_timer_only_when_it_becomes_the_earliest_alarm() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        Task::uthread_on(0, || {
            let ws = waiters();
            let _batch = NotifGuard::new();

            // Increasing deadlines, far ahead: only the first becomes the earliest.
            let base = now() + 3_600_000_000_000;
            let arms: Vec<u64> =
                ws.iter().enumerate().map(|(i, w)| start_at(w, base + i as u64 * 1000)).collect();
            assert_eq!(arms[0], 1, "the first alarm on an idle vcore did not arm its timer");
            assert_eq!(
                arms[1..].iter().sum::<u64>(),
                0,
                "starts later than the earliest armed the timer: {arms:?}"
            );

            // A tie with the earliest does not move it.
            let last = &ws[N - 1];
            assert!(last.stop(), "stop of an armed alarm failed");
            assert_eq!(start_at(last, base), 0, "a start tying with the earliest deadline armed the timer");

            // Stopping, the earliest included, never arms (nor disarms).
            let before = arm_count();
            for w in ws {
                assert!(w.stop(), "stop of an armed alarm failed");
            }
            assert_eq!(arm_count() - before, 0, "stops armed the timer");

            // Decreasing deadlines: each becomes the earliest, so each may arm, once.
            let base = now() + 1_800_000_000_000;
            let arms: u64 = ws.iter().enumerate().map(|(i, w)| start_at(w, base - i as u64 * 1000)).sum();
            println!("{N} starts in decreasing deadline order armed the timer {arms} times");
            assert!(
                (1..=N as u64).contains(&arms),
                "{N} starts, each earlier than the last, armed {arms} times"
            );

            // Resets: to later than the earliest, no arm; to a new earliest, at most one.
            let earliest = base - (N as u64 - 1) * 1000;
            let before = arm_count();
            assert!(ws[0].reset_abs(Deadline::at_monotonic_ns(base + 5000)));
            assert_eq!(arm_count() - before, 0, "a reset to a later deadline armed the timer");
            let before = arm_count();
            assert!(ws[1].reset_abs(Deadline::at_monotonic_ns(earliest - 1000)));
            assert!(arm_count() - before <= 1, "a reset to a new earliest deadline armed more than once");
            let before = arm_count();
            assert!(ws[2].reset_abs(Deadline::at_monotonic_ns(earliest - 1000)));
            assert_eq!(arm_count() - before, 0, "a reset to a tie with the earliest armed the timer");

            for w in ws {
                assert!(w.stop());
            }
            assert_eq!(FIRED.load(Ordering::Relaxed), 0, "alarms an hour ahead fired");
        })
        .join();
    });
}

#[test]
fn each_expiry_re_arms_the_timer_at_most_once() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        let (start_arms, total_arms) = Task::uthread_on(0, || {
            let ws = waiters();
            let before = arm_count();
            let start_arms = {
                let _batch = NotifGuard::new();
                // Increasing deadlines 1 ms apart: one arm for the starts, then at most one
                // per expiry (each expiry handling fires at least the alarm it was armed for;
                // after the last nothing is left to arm for).
                let base = now() + 1_000_000;
                ws.iter().enumerate().map(|(i, w)| start_at(w, base + i as u64 * 1_000_000)).sum::<u64>()
            };
            common::wait_until(|| FIRED.load(Ordering::Acquire) == N);
            (start_arms, arm_count() - before)
        })
        .join();
        println!("{N} starts in increasing order: {start_arms} arms; {total_arms} with the expiries");
        assert_eq!(start_arms, 1, "{N} starts in increasing deadline order armed {start_arms} times");
        assert!(total_arms <= N as u64, "{N} alarms, started in order, armed the timer {total_arms} times");
        assert_eq!(FIRED.load(Ordering::Relaxed), N);
    });
}
