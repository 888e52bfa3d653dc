//! Timed calls on uthreads: preempted through the vcore's notification and alarm
//! machinery, while the vcore goes on running other uthreads.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_testsched as testsched;
use parlib_timed::{self as timed, Outcome};
use parlib_uthread::TlsMode;

mod common;

use common::hash_chain;

/// Resumes `out` until it completes (see `common::drive_with`).
fn drive<T, K: timed::TlsKind>(out: Outcome<T, K>, budget: Duration) -> (T, usize) {
    common::drive_with(out, budget, testsched::yield_now)
}

const TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn a_call_on_a_uthread_times_out_and_resumes_to_the_exact_value() {
    parlib_testkit::isolated!(TIMEOUT, {
        testsched::init();
        parlib_alarms::init().unwrap();
        const STEPS: u64 = 50_000_000;
        let expect = hash_chain(STEPS);
        let out = timed::launch(Duration::from_micros(500), || hash_chain(STEPS)).unwrap();
        assert!(matches!(out, Outcome::Timeout(_)), "{out:?}");
        let (v, stops) = drive(out, Duration::from_micros(500));
        assert_eq!(v, expect);
        assert!(stops >= 1);
    });
}

#[test]
fn timed_calls_on_64_uthreads_across_all_vcores_complete_exactly() {
    parlib_testkit::isolated!(TIMEOUT, {
        testsched::init();
        parlib_alarms::init().unwrap();
        static DONE: AtomicUsize = AtomicUsize::new(0);
        static STOPS: AtomicU64 = AtomicU64::new(0);
        const STEPS: u64 = 5_000_000;
        let expect = hash_chain(STEPS);
        for i in 0..64u64 {
            testsched::spawn(TlsMode::Backed, move || {
                let out = timed::launch(Duration::from_micros(300), move || hash_chain(STEPS) ^ i).unwrap();
                let (v, stops) = drive(out, Duration::from_micros(300));
                assert_eq!(v, expect ^ i, "uthread {i}");
                STOPS.fetch_add(stops as u64, Ordering::Relaxed);
                DONE.fetch_add(1, Ordering::Release);
            });
        }
        testsched::wait_until(|| DONE.load(Ordering::Acquire) == 64);
        assert!(STOPS.load(Ordering::Relaxed) >= 64, "every call was preempted at least once");
    });
}

#[test]
fn a_call_blocked_in_a_sleep_times_out_after_the_wait_ends() {
    parlib_testkit::isolated!(TIMEOUT, {
        testsched::init();
        parlib_alarms::init().unwrap();
        let out = timed::launch(Duration::from_millis(1), || {
            parlib_alarms::sleep(Duration::from_millis(5)); // past the deadline, blocked
            hash_chain(20_000_000) // the first safe points after the wait
        })
        .unwrap();
        assert!(matches!(out, Outcome::Timeout(_)), "{out:?}");
        let (v, _) = drive(out, Duration::from_secs(10));
        assert_eq!(v, hash_chain(20_000_000));
    });
}

#[test]
fn a_uthread_without_tls_gets_a_clear_error() {
    parlib_testkit::isolated!(TIMEOUT, {
        testsched::init();
        static SEEN: AtomicUsize = AtomicUsize::new(0);
        testsched::spawn(TlsMode::None, || {
            let e = timed::launch(Duration::from_millis(1), || ()).unwrap_err();
            assert_eq!(e, timed::Error::NoTls);
            SEEN.store(1, Ordering::Release);
        });
        testsched::wait_until(|| SEEN.load(Ordering::Acquire) == 1);
    });
}

#[test]
fn an_own_tls_continuation_moves_between_uthreads_with_its_tls_and_errno() {
    parlib_testkit::isolated!(TIMEOUT, {
        use parlib_sync::Mutex;
        use std::cell::Cell;
        testsched::init();
        parlib_alarms::init().unwrap();
        thread_local!(static MINE: Cell<u64> = const { Cell::new(0) });
        type Cont = timed::Continuation<(u64, i32, u64), timed::OwnTls>;
        static SLOT: Mutex<Option<Cont>> = Mutex::new(None);
        static RESULT: AtomicU64 = AtomicU64::new(0);
        testsched::spawn(TlsMode::Backed, || {
            MINE.with(|m| m.set(1));
            let out = timed::Launch::new()
                .own_tls()
                .launch(Duration::from_secs(5), || {
                    MINE.with(|m| m.set(88));
                    // SAFETY: this TLS block's errno.
                    unsafe { *libc::__errno_location() = 4321 };
                    timed::pause();
                    let spins = hash_chain(2_000_000); // preempted on the other uthread
                                                       // SAFETY: reading errno.
                    (MINE.with(Cell::get), unsafe { *libc::__errno_location() }, spins)
                })
                .unwrap();
            let Outcome::Paused(c) = out else { panic!("expected Paused") };
            *SLOT.lock() = Some(c);
            assert_eq!(MINE.with(Cell::get), 1);
        });
        testsched::spawn(TlsMode::Backed, || {
            MINE.with(|m| m.set(2));
            let c = loop {
                if let Some(c) = SLOT.lock().take() {
                    break c;
                }
                testsched::yield_now();
            };
            let (v, _) = drive(c.resume(Duration::from_micros(300)).unwrap(), Duration::from_micros(300));
            assert_eq!(v, (88, 4321, hash_chain(2_000_000)));
            assert_eq!(MINE.with(Cell::get), 2, "the resumer's TLS is back");
            RESULT.store(1, Ordering::Release);
        });
        testsched::wait_until(|| RESULT.load(Ordering::Acquire) == 1);
    });
}

#[test]
fn a_call_blocked_in_a_wrapped_read_blocks_only_its_uthread() {
    parlib_testkit::isolated!(TIMEOUT, {
        use std::sync::atomic::AtomicBool;
        testsched::init(); // main stays on vcore 0
        parlib_alarms::init().unwrap();
        parlib_syscalls::init().unwrap();
        static TICKS: AtomicU64 = AtomicU64::new(0);
        static STOP: AtomicBool = AtomicBool::new(false);
        let mut fds = [0; 2];
        // SAFETY: a pipe into a two-int array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (r, w) = (fds[0], fds[1]);
        // Runs on vcore 0 only while main is blocked.
        testsched::spawn_on(0, TlsMode::Backed, || {
            while !STOP.load(Ordering::Relaxed) {
                TICKS.fetch_add(1, Ordering::Relaxed);
                testsched::yield_now();
            }
        });
        testsched::spawn(TlsMode::Backed, move || {
            parlib_alarms::sleep(Duration::from_millis(5));
            assert_eq!(parlib_syscalls::io::write(w, b"x").unwrap(), 1);
        });
        let out = timed::launch(Duration::from_millis(1), move || {
            let before = TICKS.load(Ordering::Relaxed);
            let mut b = [0u8; 1];
            assert_eq!(parlib_syscalls::io::read(r, &mut b).unwrap(), 1); // blocks past the deadline
            let during = TICKS.load(Ordering::Relaxed) - before;
            (during, hash_chain(20_000_000))
        })
        .unwrap();
        assert!(matches!(out, Outcome::Timeout(_)), "the deadline passed during the wait: {out:?}");
        let ((during, v), _) = drive(out, Duration::from_secs(10));
        STOP.store(true, Ordering::Relaxed);
        assert!(during > 0, "vcore 0 ran another uthread while the call waited in read");
        assert_eq!(v, hash_chain(20_000_000));
        testsched::wait_until(testsched::all_exited);
    });
}
