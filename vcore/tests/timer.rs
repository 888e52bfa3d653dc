//! `VcoreTimer`: armed at an absolute `CLOCK_MONOTONIC` time it expires once, on the
//! vcore it was made for, not before that time, and runs the timer hook there; re-arming
//! replaces the earlier time; disarming or dropping it means it never fires.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_testkit::isolated;
use parlib_vcore::{self as vcore, futex::monotonic_ns, notif, Error, VcoreTimer};

const TIMEOUT: Duration = Duration::from_secs(20);
/// Long enough that a timer that should not fire would have by then.
const QUIET: Duration = Duration::from_millis(60);

static FIRED: AtomicUsize = AtomicUsize::new(0);
static ON_VCORE: AtomicUsize = AtomicUsize::new(usize::MAX);
static AT_NS: AtomicU64 = AtomicU64::new(0);

/// The timer hook: runs in the notification handler of the vcore the timer aims at.
fn record(id: usize) {
    AT_NS.store(monotonic_ns(), Ordering::Relaxed);
    ON_VCORE.store(id, Ordering::Relaxed);
    FIRED.fetch_add(1, Ordering::Release);
}

fn init() {
    vcore::lib_init().expect("vcore::lib_init");
    notif::set_timer_hook(record);
}

fn wait_fired(n: usize) {
    while FIRED.load(Ordering::Acquire) < n {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_timer_fires_once_on_its_own_vcore_no_earlier_than_its_deadline() {
    isolated!(TIMEOUT, {
        init();
        let id = vcore::max_vcores() - 1;
        let t = VcoreTimer::new(id).expect("a timer for the last vcore");
        let deadline = monotonic_ns() + 20_000_000;
        t.arm_at(deadline).unwrap();
        wait_fired(1);
        assert_eq!(ON_VCORE.load(Ordering::Relaxed), id, "the hook ran on another vcore");
        assert!(AT_NS.load(Ordering::Relaxed) >= deadline, "fired before its deadline");
        std::thread::sleep(QUIET);
        assert_eq!(FIRED.load(Ordering::Acquire), 1, "a one-shot timer fired twice");
    });
}

#[test]
fn arming_again_replaces_the_earlier_deadline() {
    isolated!(TIMEOUT, {
        init();
        let t = VcoreTimer::new(0).unwrap();
        let now = monotonic_ns();
        t.arm_at(now + 3_600_000_000_000).unwrap();
        t.arm_at(now + 10_000_000).unwrap();
        wait_fired(1);
        std::thread::sleep(QUIET);
        assert_eq!(FIRED.load(Ordering::Acquire), 1);
    });
}

#[test]
fn a_deadline_of_zero_fires_at_once_instead_of_disarming() {
    isolated!(TIMEOUT, {
        init();
        let t = VcoreTimer::new(0).unwrap();
        t.arm_at(0).unwrap();
        wait_fired(1);
    });
}

#[test]
fn a_disarmed_or_dropped_timer_never_fires() {
    isolated!(TIMEOUT, {
        init();
        let deadline = monotonic_ns() + 20_000_000;
        let disarmed = VcoreTimer::new(0).unwrap();
        disarmed.arm_at(deadline).unwrap();
        disarmed.disarm().unwrap();
        let dropped = VcoreTimer::new(0).unwrap();
        dropped.arm_at(deadline).unwrap();
        drop(dropped);
        std::thread::sleep(QUIET);
        assert_eq!(FIRED.load(Ordering::Acquire), 0);
        // Still usable after a disarm.
        disarmed.arm_after(1_000_000).unwrap();
        wait_fired(1);
    });
}

#[test]
fn a_timer_for_a_vcore_that_does_not_exist_is_an_error() {
    isolated!(TIMEOUT, {
        assert_eq!(VcoreTimer::new(0).unwrap_err(), Error::NoSuchVcore { id: 0, max: 0 });
        init();
        let max = vcore::max_vcores();
        assert_eq!(VcoreTimer::new(max).unwrap_err(), Error::NoSuchVcore { id: max, max });
    });
}
