//! Timed calls on plain threads: completion, timeout and resume, pause, nesting, panics,
//! cancellation, misuse. Each test runs in its own process under the watchdog.

use std::time::Duration;

use parlib_timed::{self as timed, Cancelled, Outcome, Paused};

mod common;

use common::hash_chain;

/// Resumes `out` until it completes (see `common::drive_with`).
fn drive<T, K: timed::TlsKind>(out: Outcome<T, K>, budget: Duration) -> (T, usize) {
    common::drive_with(out, budget, || {})
}

const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn a_call_within_its_budget_completes_with_its_value() {
    parlib_testkit::isolated!(TIMEOUT, {
        let out = timed::launch(Duration::from_secs(5), || 6 * 7).unwrap();
        assert_eq!(out.completed(), Some(42));
        assert!(!timed::in_call());
    });
}

#[test]
fn a_long_call_times_out_and_resumed_gives_the_unpreempted_value() {
    parlib_testkit::isolated!(TIMEOUT, {
        const STEPS: u64 = 100_000_000;
        let expect = hash_chain(STEPS);
        let out = timed::launch(Duration::from_micros(500), || hash_chain(STEPS)).unwrap();
        assert!(matches!(out, Outcome::Timeout(_)), "a 10^8-step chain outlasts 500 µs: {out:?}");
        let (v, stops) = drive(out, Duration::from_micros(500));
        assert_eq!(v, expect);
        assert!(stops >= 1);
    });
}

#[test]
fn pause_hands_a_continuation_to_the_launcher_and_returns_resumed() {
    parlib_testkit::isolated!(TIMEOUT, {
        assert_eq!(timed::pause(), Paused::NotInCall);
        let out = timed::launch(Duration::from_secs(5), || {
            let a = timed::pause();
            let b = timed::pause();
            (a, b, timed::in_call())
        })
        .unwrap();
        let Outcome::Paused(c) = out else { panic!("expected Paused, got {out:?}") };
        let out = c.resume(Duration::from_secs(5)).unwrap();
        let Outcome::Paused(c) = out else { panic!("expected Paused, got {out:?}") };
        let v = c.resume(Duration::from_secs(5)).unwrap().completed();
        assert_eq!(v, Some((Paused::Resumed, Paused::Resumed, true)));
    });
}

#[test]
fn a_panic_in_the_call_propagates_to_the_launcher() {
    parlib_testkit::isolated!(TIMEOUT, {
        let r = std::panic::catch_unwind(|| {
            timed::launch(Duration::from_secs(5), || -> u32 { panic!("boom in call") })
        });
        let p = r.expect_err("the panic propagates");
        assert_eq!(p.downcast_ref::<&str>(), Some(&"boom in call"));
        // The thread is still usable.
        assert_eq!(timed::launch(Duration::from_secs(5), || 1).unwrap().completed(), Some(1));
    });
}

#[test]
fn cancel_unwinds_a_call_at_its_next_checkpoint_and_drops_what_it_owns() {
    parlib_testkit::isolated!(TIMEOUT, {
        use std::sync::atomic::{AtomicBool, Ordering};
        static DROPPED: AtomicBool = AtomicBool::new(false);
        struct Owned(#[allow(dead_code)] Vec<u8>);
        impl Drop for Owned {
            fn drop(&mut self) {
                DROPPED.store(true, Ordering::SeqCst);
            }
        }
        let out = timed::launch(Duration::from_micros(300), || {
            let _o = Owned(vec![7; 1 << 20]);
            loop {
                std::hint::black_box(hash_chain(1000));
                timed::checkpoint();
            }
        })
        .unwrap();
        let Outcome::Timeout(c) = out else { panic!("an endless loop times out") };
        assert!(!DROPPED.load(Ordering::SeqCst));
        // A grace far beyond the next checkpoint, so a busy machine cannot abandon it.
        assert_eq!(c.cancel_within(Duration::from_secs(20)), Cancelled::Unwound);
        assert!(DROPPED.load(Ordering::SeqCst), "the unwind dropped the call's allocation");
    });
}

#[test]
fn cancel_abandons_a_call_without_cancellation_points() {
    parlib_testkit::isolated!(TIMEOUT, {
        let out = timed::launch(Duration::from_micros(300), || loop {
            std::hint::black_box(hash_chain(1000));
        })
        .unwrap();
        let Outcome::Timeout(c) = out else { panic!("an endless loop times out") };
        assert_eq!(c.cancel(), Cancelled::Abandoned);
    });
}

#[test]
fn nested_calls_stop_at_the_earliest_deadline_and_resume_together() {
    parlib_testkit::isolated!(TIMEOUT, {
        const STEPS: u64 = 30_000_000;
        let expect = hash_chain(STEPS) ^ hash_chain(STEPS / 2);
        let out = timed::launch(Duration::from_millis(2), || {
            // The inner call's budget is long; the outer one's runs out inside it.
            let inner = timed::launch(Duration::from_secs(10), || hash_chain(STEPS)).unwrap();
            let (a, _) = drive(inner, Duration::from_secs(10));
            a ^ hash_chain(STEPS / 2)
        })
        .unwrap();
        assert!(matches!(out, Outcome::Timeout(_)));
        let (v, _) = drive(out, Duration::from_millis(2));
        assert_eq!(v, expect);
    });
}

#[test]
fn a_preemption_inside_a_no_preempt_guard_waits_for_its_end() {
    parlib_testkit::isolated!(TIMEOUT, {
        let out = timed::launch(Duration::from_micros(200), || {
            timed::no_preempt(|| hash_chain(20_000_000)); // far longer than the budget
            "after the guard"
        })
        .unwrap();
        // The guard's end is where the overdue preemption lands.
        let Outcome::Timeout(c) = out else { panic!("the budget ran out inside the guard") };
        assert_eq!(c.resume(Duration::from_secs(5)).unwrap().completed(), Some("after the guard"));
    });
}

#[test]
fn misuse_gets_a_clear_error() {
    parlib_testkit::isolated!(TIMEOUT, {
        let e = timed::launch(Duration::ZERO, || ()).unwrap_err();
        assert_eq!(e, timed::Error::InvalidBudget(Duration::ZERO));
        assert_eq!(e.errno(), libc::EINVAL);
        let huge = Duration::from_secs(400 * 24 * 3600);
        assert_eq!(timed::launch(huge, || ()).unwrap_err(), timed::Error::InvalidBudget(huge));
        assert!(timed::launch(Duration::ZERO, || ()).unwrap_err().to_string().contains("budget"));
    });
}

#[test]
fn ten_thousand_live_continuations_resume_in_random_order() {
    parlib_testkit::isolated!(TIMEOUT, {
        let mut live = Vec::new();
        for i in 0..10_000u64 {
            let out = timed::launch(Duration::from_secs(5), move || {
                timed::pause();
                i * 3
            })
            .unwrap();
            let Outcome::Paused(c) = out else { panic!("call {i} did not pause") };
            live.push((i, c));
        }
        let mut rng = parlib_testkit::Rng::new(7);
        let mut sum = 0;
        while !live.is_empty() {
            let k = rng.below(live.len() as u64) as usize;
            let (i, c) = live.swap_remove(k);
            let v = c.resume(Duration::from_secs(5)).unwrap().completed();
            assert_eq!(v, Some(i * 3));
            sum += i * 3;
        }
        assert_eq!(sum, 3 * (10_000 * 9_999 / 2));
    });
}

#[test]
fn a_call_with_its_own_tls_resumed_on_another_thread_keeps_its_tls_and_errno() {
    parlib_testkit::isolated!(TIMEOUT, {
        use std::cell::Cell;
        thread_local!(static MINE: Cell<u64> = const { Cell::new(0) });
        MINE.with(|m| m.set(1)); // the launcher's
        let launcher = std::thread::current().id();
        let out = timed::Launch::new()
            .own_tls()
            .launch(Duration::from_secs(5), move || {
                assert_eq!(MINE.with(Cell::get), 0, "a fresh TLS block");
                MINE.with(|m| m.set(77));
                // SAFETY: writing this TLS block's errno.
                unsafe { *libc::__errno_location() = 1234 };
                let id = std::thread::current().id();
                assert_ne!(id, launcher);
                timed::pause();
                // Now on another thread: the same TLS, errno and identity.
                // SAFETY: reading errno.
                let errno = unsafe { *libc::__errno_location() };
                (MINE.with(Cell::get), errno, std::thread::current().id() == id)
            })
            .unwrap();
        let Outcome::Paused(c) = out else { panic!("expected Paused, got {out:?}") };
        // Continuation<_, OwnTls> is Send: resume it on another thread.
        let v = std::thread::spawn(move || {
            MINE.with(|m| m.set(5)); // that thread's own
            let v = c.resume(Duration::from_secs(5)).unwrap().completed();
            assert_eq!(MINE.with(Cell::get), 5, "the resumer's TLS is back");
            v
        })
        .join()
        .unwrap();
        assert_eq!(v, Some((77, 1234, true)));
        assert_eq!(MINE.with(Cell::get), 1, "the launcher's TLS untouched");
    });
}

#[test]
fn a_call_with_its_own_tls_is_preempted_and_resumed_across_threads_to_the_exact_value() {
    parlib_testkit::isolated!(TIMEOUT, {
        const STEPS: u64 = 30_000_000;
        let expect = hash_chain(STEPS);
        let mut out =
            timed::Launch::new().own_tls().launch(Duration::from_micros(300), || hash_chain(STEPS)).unwrap();
        let mut hops = 0;
        let v = loop {
            match out {
                Outcome::Completed(v) => break v,
                Outcome::Timeout(c) | Outcome::Paused(c) => {
                    hops += 1;
                    out = std::thread::spawn(move || c.resume(Duration::from_micros(300)).unwrap())
                        .join()
                        .unwrap();
                }
            }
        };
        assert_eq!(v, expect);
        assert!(hops >= 1);
    });
}

#[test]
fn three_nested_calls_with_interleaved_deadlines_stop_where_the_earliest_expires() {
    parlib_testkit::isolated!(TIMEOUT, {
        const STEPS: u64 = 20_000_000;
        // Outer 50 ms, middle 1 ms, inner 20 ms: the middle deadline comes first, so the
        // middle call's launcher (the outer call) gets Timeout while the inner call is
        // running, suspended inside the middle's continuation.
        let out = timed::launch(Duration::from_secs(50), || {
            let middle = timed::launch(Duration::from_millis(1), || {
                let inner = timed::launch(Duration::from_secs(20), || hash_chain(STEPS)).unwrap();
                let (v, inner_stops) = drive(inner, Duration::from_secs(20));
                (v, inner_stops)
            })
            .unwrap();
            let timed_out = matches!(middle, Outcome::Timeout(_));
            let ((v, inner_stops), middle_stops) = drive(middle, Duration::from_millis(1));
            (v, inner_stops, middle_stops, timed_out)
        })
        .unwrap();
        let (v, inner_stops, middle_stops, middle_timed_out) =
            out.completed().expect("the outer budget is ample");
        assert_eq!(v, hash_chain(STEPS));
        assert!(middle_timed_out && middle_stops >= 1, "the middle deadline expired inside the inner call");
        assert_eq!(inner_stops, 0, "the inner call never saw its own launcher get a Timeout");
    });
}

#[test]
fn launch_from_a_signal_handler_is_refused() {
    parlib_testkit::isolated!(TIMEOUT, {
        use std::sync::atomic::{AtomicI32, Ordering};
        static SEEN: AtomicI32 = AtomicI32::new(0);
        extern "C" fn handler(_: libc::c_int) {
            let r = timed::launch(Duration::from_millis(1), || ());
            SEEN.store(if matches!(r, Err(timed::Error::BadContext(_))) { 1 } else { 2 }, Ordering::SeqCst);
        }
        // Create the thread's timed-call state first (it records the alternate stack).
        assert!(timed::launch(Duration::from_millis(1), || ()).unwrap().is_complete());
        // SAFETY: installing a handler for SIGUSR2 that runs on the alternate stack Rust
        // gives every thread; raising it on this thread.
        unsafe {
            let mut sa: libc::sigaction = core::mem::zeroed();
            sa.sa_sigaction = handler as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_ONSTACK;
            assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, core::ptr::null_mut()), 0);
            assert_eq!(libc::raise(libc::SIGUSR2), 0);
        }
        assert_eq!(SEEN.load(Ordering::SeqCst), 1, "launch in a handler must be BadContext");
    });
}

#[test]
fn a_guard_held_across_a_move_to_another_thread_ends_on_that_thread() {
    parlib_testkit::isolated!(TIMEOUT, {
        let out = timed::Launch::new()
            .own_tls()
            .launch(Duration::from_secs(5), || {
                let g = timed::NoPreempt::new();
                timed::pause(); // resumed on another thread, the guard still held
                drop(g);
                // Preemption works again there: spin past a short budget's deadline.
                timed::pause();
                hash_chain(30_000_000)
            })
            .unwrap();
        let Outcome::Paused(c) = out else { panic!("expected Paused, got {out:?}") };
        let v = std::thread::spawn(move || {
            let out = c.resume(Duration::from_secs(5)).unwrap();
            let Outcome::Paused(c) = out else { panic!("expected the second pause, got {out:?}") };
            let out = c.resume(Duration::from_micros(300)).unwrap();
            assert!(matches!(out, Outcome::Timeout(_)), "preempted after the guard ended: {out:?}");
            drive(out, Duration::from_secs(5))
        })
        .join()
        .unwrap();
        assert_eq!(v.0, hash_chain(30_000_000));
    });
}

#[test]
fn a_cancel_never_abandons_a_call_with_its_own_tls_that_holds_a_lock() {
    parlib_testkit::isolated!(TIMEOUT, {
        static LOCK: parlib_sync::Mutex<u64> = parlib_sync::Mutex::new(0);
        let out = timed::Launch::new()
            .own_tls()
            .launch(Duration::from_secs(5), || {
                timed::pause(); // started: the next budget is all the locked section's
                {
                    let mut g = LOCK.lock(); // counted on the call's own TLS
                    *g = hash_chain(20_000_000); // held across the deadline
                }
                loop {
                    std::hint::black_box(hash_chain(1000)); // no cancellation point
                }
            })
            .unwrap();
        let Outcome::Paused(c) = out else { panic!("expected Paused, got {out:?}") };
        let out = c.resume(Duration::from_millis(1)).unwrap();
        let Outcome::Timeout(c) = out else { panic!("expected Timeout, got {out:?}") };
        // No grace: only the lock keeps it from being abandoned at once.
        assert_eq!(c.cancel_within(Duration::ZERO), timed::Cancelled::Abandoned);
        assert!(LOCK.try_lock().is_some(), "the cancel left the call's lock held");
    });
}
