//! The notification disable depth (DESIGN §5): a uthread whose depth is above 0 is never
//! interrupted; a notification that arrives meanwhile stays pending (`notif_pending`)
//! and is delivered the moment the depth returns to 0, before `enable_notifs` returns.
//! Disables nest, and the depth belongs to the uthread, not the vcore.
//!
//! Every test runs on one vcore (`VCORE_LIMIT=1`) so that all events go to the vcore the
//! test runs on.

use parlib_testsched as common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_events::{self as events, EventMsg, EventType, EV_USER_BASE, EV_USER_IPI};
use parlib_testkit::{child_outcome, isolated};
use parlib_uthread::{self as uthread, NotifGuard, TlsMode};
use parlib_vcore as vcore;

const ONE_VCORE: &[(&str, &str)] = &[(vcore::VCORE_LIMIT_ENV, "1")];
const TIMEOUT: Duration = Duration::from_secs(30);
const EV_COUNT: EventType = EventType(EV_USER_BASE.0 + 1);

/// Events handled (any type registered with `count`).
static HANDLED: AtomicUsize = AtomicUsize::new(0);

fn count(_: &EventMsg, _: EventType) {
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

fn handled() -> usize {
    HANDLED.load(Ordering::SeqCst)
}

fn pending() -> bool {
    vcore::this().expect("on a vcore").notif_pending()
}

/// Sends `n` events to vcore 0 from a plain thread and waits for it to finish, by
/// spinning (not yielding: a yield would enter vcore context, which handles events).
fn send_from_plain_thread(n: usize) {
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        for i in 0..n {
            events::send_event(&EventMsg { arg0: i as u64, ..Default::default() }, EV_COUNT, 0).unwrap();
        }
        d.store(true, Ordering::Release);
    });
    while !done.load(Ordering::Acquire) {
        std::hint::spin_loop();
    }
}

#[test]
fn a_uthread_with_notifications_disabled_is_never_interrupted() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        events::register_handler(EV_USER_IPI, count).unwrap();
        uthread::disable_notifs();
        assert_eq!(uthread::notif_disable_depth(), 1);
        let ticker = common::Ticker::start(Duration::from_micros(100), &[0]);
        // Spin, no yield, while hundreds of ticks are sent to this vcore.
        let mut seen_handled = 0;
        while ticker.sent() < 300 {
            seen_handled = seen_handled.max(handled());
            std::hint::spin_loop();
        }
        assert_eq!(seen_handled, 0, "a tick was handled while notifications were disabled");
        assert!(pending(), "the ticks left a notification pending");
        uthread::enable_notifs();
        // The pending notification was delivered inside enable_notifs.
        let after = handled();
        assert!(after > 0, "nothing was handled by the time enable_notifs returned");
        assert_eq!(uthread::notif_disable_depth(), 0);
        ticker.stop();
        println!("{after} ticks handled at once on re-enabling");
    });
}

#[test]
fn re_enabling_delivers_exactly_the_events_sent_while_disabled() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        events::register_handler(EV_COUNT, count).unwrap();
        assert!(!pending());
        uthread::disable_notifs();
        send_from_plain_thread(5);
        assert_eq!(handled(), 0);
        assert!(pending(), "the sends left a notification pending");
        uthread::enable_notifs();
        assert_eq!(handled(), 5, "all five events were handled before enable_notifs returned");
        assert!(!pending());
    });
}

#[test]
fn nested_disables_deliver_only_when_the_outermost_is_released() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        events::register_handler(EV_COUNT, count).unwrap();
        let outer = NotifGuard::new();
        let inner = NotifGuard::new();
        assert_eq!(uthread::notif_disable_depth(), 2);
        send_from_plain_thread(3);
        drop(inner); // depth 2 -> 1: nothing is delivered
        assert_eq!(uthread::notif_disable_depth(), 1);
        assert_eq!(handled(), 0, "delivered at depth 1");
        assert!(pending());
        // Again with the function pair inside the guard: 2 -> 1 still delivers nothing.
        uthread::disable_notifs();
        uthread::enable_notifs();
        assert_eq!(handled(), 0, "delivered at depth 1");
        drop(outer); // 1 -> 0: delivered at once
        assert_eq!(uthread::notif_disable_depth(), 0);
        assert_eq!(handled(), 3);
    });
}

#[test]
fn the_disable_depth_belongs_to_the_uthread_not_the_vcore() {
    // A disables and yields; B, on the same vcore, runs with depth 0 and can be
    // interrupted; A gets its depth back when it resumes.
    static B_DEPTH: AtomicUsize = AtomicUsize::new(usize::MAX);
    static B_INTERRUPTED: AtomicBool = AtomicBool::new(false);
    static A_DEPTH_AFTER: AtomicUsize = AtomicUsize::new(usize::MAX);
    static B_DONE: AtomicBool = AtomicBool::new(false);
    fn on_tick(_: &EventMsg, _: EventType) {
        if uthread::interrupted().is_some() {
            B_INTERRUPTED.store(true, Ordering::Relaxed);
        }
    }
    isolated!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        events::register_handler(EV_USER_IPI, on_tick).unwrap();
        common::spawn(TlsMode::Backed, || {
            let _g = NotifGuard::new();
            while !B_DONE.load(Ordering::Acquire) {
                common::yield_now();
            }
            A_DEPTH_AFTER.store(uthread::notif_disable_depth() as usize, Ordering::Relaxed);
        });
        common::spawn(TlsMode::Backed, || {
            B_DEPTH.store(uthread::notif_disable_depth() as usize, Ordering::Relaxed);
            // Notify our own vcore: B has depth 0, so it is interrupted at once.
            events::send_event(&EventMsg::default(), EV_USER_IPI, 0).unwrap();
            B_DONE.store(true, Ordering::Release);
        });
        common::wait_all();
        assert_eq!(B_DEPTH.load(Ordering::Relaxed), 0);
        assert!(B_INTERRUPTED.load(Ordering::Relaxed), "B was not interrupted by its own notification");
        assert_eq!(A_DEPTH_AFTER.load(Ordering::Relaxed), 1);
        assert_eq!(uthread::notif_disable_depth(), 0, "main's depth is its own");
    });
}

#[test]
fn enable_notifs_without_a_matching_disable_panics_and_leaves_the_depth_at_zero() {
    let out = child_outcome!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        events::register_handler(EV_COUNT, count).unwrap();
        let r = std::panic::catch_unwind(uthread::enable_notifs);
        assert!(r.is_err(), "enable_notifs at depth 0 returned");
        assert_eq!(uthread::notif_disable_depth(), 0, "the misuse left the depth changed");
        // Notifications still work: disabled and re-enabled properly.
        uthread::disable_notifs();
        send_from_plain_thread(2);
        assert_eq!(handled(), 0);
        uthread::enable_notifs();
        assert_eq!(handled(), 2);
    });
    assert!(out.finished && out.status.is_some_and(|s| s.success()), "child failed\n{}", out.output());
    assert!(
        out.stderr.contains("enable_notifs without a matching disable_notifs"),
        "stderr lacks the panic message\n{}",
        out.output()
    );
}

#[test]
fn disabling_on_a_plain_thread_does_nothing() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        let t = std::thread::spawn(|| {
            uthread::enable_notifs(); // unmatched, yet no panic: there is no uthread
            uthread::disable_notifs();
            uthread::notif_disable_depth()
        });
        common::wait_until(|| t.is_finished());
        assert_eq!(t.join().unwrap(), 0);
        assert_eq!(uthread::notif_disable_depth(), 0, "main's depth is untouched");
    });
}
