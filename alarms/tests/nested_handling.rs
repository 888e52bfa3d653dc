//! Alarm handling nested on one vcore: an alarm callback can run a nested pass of the
//! `EV_ALARM` handler on its own vcore, and must still count as its own callback after
//! it (regression: the nested pass reset "which callback runs here" to none).
//!
//! In a real program the nesting comes from `parlib-events`: a callback that sends an
//! event into another vcore's full ring drains its own vcore's queue while it waits for
//! room (`send_to_full`, up to `MAX_NESTED_DRAINS` deep), and an `EV_ALARM` there runs
//! the handler again, inside the callback. Filling another vcore's ring from a callback
//! is hard to arrange reliably, so this test makes the same call directly: the callback
//! queues an `EV_ALARM` for its own vcore and calls `parlib_events::handle_events`, as
//! `send_to_full` does when its own queue has messages ready.

use parlib_testsched as common;
mod support;

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use parlib_alarms::{AlarmWaiter, Deadline};
use parlib_events::{EventMsg, EV_ALARM};
use parlib_testkit::isolated;
use parlib_uthread::NotifGuard;
use parlib_vcore as vcore;
use support::{now, Task};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Fires first; its callback nests a pass that fires `INNER`, then restarts itself.
static OUTER: AlarmWaiter = AlarmWaiter::new();
/// Due when `OUTER`'s callback runs, so the nested pass fires it.
static INNER: AlarmWaiter = AlarmWaiter::new();

static OUTER_RUNS: AtomicU32 = AtomicU32::new(0);
static INNER_RUNS: AtomicU32 = AtomicU32::new(0);
/// `INNER_RUNS` as `OUTER`'s first callback saw it right after its nested pass.
static INNER_RUNS_IN_NESTED_PASS: AtomicU32 = AtomicU32::new(u32::MAX);

/// In vcore context, so it records rather than asserts.
fn outer(_: &AlarmWaiter) {
    if OUTER_RUNS.fetch_add(1, Ordering::AcqRel) == 0 {
        // What `send_to_full` does while it waits for room elsewhere (module docs).
        let _ = parlib_events::send_event(&EventMsg::default(), EV_ALARM, vcore::id());
        parlib_events::handle_events();
        INNER_RUNS_IN_NESTED_PASS.store(INNER_RUNS.load(Ordering::Acquire), Ordering::Release);
        // A periodic restart from its own callback: it must not wait for itself to
        // return (before the fix it spun here forever, in vcore context).
        OUTER.set_abs(Deadline::at_monotonic_ns(now()));
        Pin::static_ref(&OUTER).start();
    }
}

fn inner(_: &AlarmWaiter) {
    INNER_RUNS.fetch_add(1, Ordering::AcqRel);
}

#[test]
fn a_callback_restarts_its_own_alarm_after_a_nested_alarm_pass() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        Task::uthread_on(0, || {
            OUTER.init_waiter(outer);
            INNER.init_waiter(inner);
            {
                // Both due, OUTER first, and no pass until both are in vcore 0's set.
                let _batch = NotifGuard::new();
                let t = now();
                OUTER.set_abs(Deadline::at_monotonic_ns(t - 2));
                INNER.set_abs(Deadline::at_monotonic_ns(t - 1));
                Pin::static_ref(&OUTER).start();
                Pin::static_ref(&INNER).start();
            }
            common::wait_until(|| OUTER_RUNS.load(Ordering::Acquire) >= 2);
            assert_eq!(
                INNER_RUNS_IN_NESTED_PASS.load(Ordering::Acquire),
                1,
                "INNER did not fire in the pass nested in OUTER's callback: the test did not nest"
            );
            assert_eq!(INNER_RUNS.load(Ordering::Acquire), 1, "INNER fired more than once");
            assert_eq!(OUTER_RUNS.load(Ordering::Acquire), 2, "OUTER's restart fired more than once");
            assert!(!OUTER.is_armed() && !INNER.is_armed(), "an alarm is still armed after firing");
        })
        .join();
    });
}
