//! `nanosleep`, `usleep` and `sleep` on a uthread sleep with an alarm (DESIGN §7 and the
//! crate docs): they block only the calling uthread (another uthread on the same, single
//! vcore keeps running meanwhile) and never return before the time asked, by the
//! monotonic clock; zero-length sleeps return. Through the safe Rust face (`Duration`s),
//! the raw layer under it (`timespec`, microseconds, seconds) and the C face, and on a
//! plain thread, where they are the plain calls.

use parlib_testsched as common;
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_syscalls::{cabi, io, raw};
use parlib_testkit::isolated;
use parlib_uthread::TlsMode;
use parlib_vcore as vcore;
use support::{errno_of, now_ns, Rng, ONE_VCORE, TIMEOUT};

/// Yields made by the spinner uthread.
static SPINS: AtomicU64 = AtomicU64::new(0);
static STOP_SPINNING: AtomicBool = AtomicBool::new(false);

/// A uthread that counts yields until told to stop.
fn start_spinner() {
    support::spawn(TlsMode::None, || {
        while !STOP_SPINNING.load(Ordering::Acquire) {
            SPINS.fetch_add(1, Ordering::Relaxed);
            common::yield_now();
        }
    });
}

fn c_usleep(us: libc::useconds_t) -> i32 {
    // SAFETY: no pointers.
    unsafe { cabi::parlib_usleep(us) }
}

fn c_sleep(secs: u32) -> u32 {
    // SAFETY: no pointers.
    unsafe { cabi::parlib_sleep(secs) }
}

/// A way to sleep, and the nanoseconds it asks for.
struct Sleep {
    name: &'static str,
    ns: u64,
    run: fn(),
}

const SLEEPS: &[Sleep] = &[
    Sleep {
        name: "raw::nanosleep(30 ms)",
        ns: 30_000_000,
        run: || {
            let mut rem = libc::timespec { tv_sec: 7, tv_nsec: 7 };
            raw::nanosleep(&libc::timespec { tv_sec: 0, tv_nsec: 30_000_000 }, Some(&mut rem))
                .expect("nanosleep");
            // A completed sleep leaves no remainder on a uthread (only an interrupted one,
            // under upthread, reports one). On a plain thread the kernel writes it only
            // when a signal cuts the sleep short.
            let want = if support::on_uthread() { (0, 0) } else { (7, 7) };
            assert_eq!((rem.tv_sec, rem.tv_nsec), want, "a completed sleep's remainder");
        },
    },
    Sleep {
        name: "io::nanosleep(1 s + 1 ns)",
        ns: 1_000_000_001,
        run: || io::nanosleep(Duration::new(1, 1)).expect("nanosleep"),
    },
    Sleep {
        name: "io::sleep(20 ms)",
        ns: 20_000_000,
        run: || assert_eq!(io::sleep(Duration::from_millis(20)), Duration::ZERO, "sleep's time left"),
    },
    Sleep { name: "raw::usleep(20 000)", ns: 20_000_000, run: || raw::usleep(20_000).expect("usleep") },
    Sleep { name: "raw::usleep(1)", ns: 1_000, run: || raw::usleep(1).expect("usleep") },
    Sleep {
        name: "raw::sleep(1)",
        ns: 1_000_000_000,
        run: || assert_eq!(raw::sleep(1), 0, "sleep's unslept seconds"),
    },
    Sleep {
        name: "parlib_nanosleep(25 ms)",
        ns: 25_000_000,
        run: || {
            let ts = libc::timespec { tv_sec: 0, tv_nsec: 25_000_000 };
            // SAFETY: a valid request; no remainder wanted.
            assert_eq!(unsafe { cabi::parlib_nanosleep(&ts, core::ptr::null_mut()) }, 0);
        },
    },
    Sleep { name: "parlib_usleep(15 000)", ns: 15_000_000, run: || assert_eq!(c_usleep(15_000), 0) },
    Sleep { name: "parlib_sleep(1)", ns: 1_000_000_000, run: || assert_eq!(c_sleep(1), 0) },
];

const ZERO_SLEEPS: &[Sleep] = &[
    Sleep { name: "io::nanosleep(0)", ns: 0, run: || io::nanosleep(Duration::ZERO).expect("nanosleep") },
    Sleep { name: "io::sleep(0)", ns: 0, run: || assert_eq!(io::sleep(Duration::ZERO), Duration::ZERO) },
    Sleep {
        name: "raw::nanosleep(0)",
        ns: 0,
        run: || raw::nanosleep(&libc::timespec { tv_sec: 0, tv_nsec: 0 }, None).expect("nanosleep"),
    },
    Sleep { name: "raw::usleep(0)", ns: 0, run: || raw::usleep(0).expect("usleep") },
    Sleep { name: "raw::sleep(0)", ns: 0, run: || assert_eq!(raw::sleep(0), 0) },
    Sleep { name: "parlib_usleep(0)", ns: 0, run: || assert_eq!(c_usleep(0), 0) },
    Sleep { name: "parlib_sleep(0)", ns: 0, run: || assert_eq!(c_sleep(0), 0) },
];

/// On one vcore: each sleep, made by a uthread while a spinner uthread yields in a loop,
/// lasts at least its time and lets the spinner run. On one vcore with a FIFO run queue
/// this is exact: while the sleeper sleeps, the spinner is the only runnable uthread
/// besides `main` (which waits by yielding), so it must have advanced when the sleeper
/// comes back, unless the sleep blocked the vcore.
#[test]
fn sleeping_uthreads_let_others_run_and_never_wake_early() {
    static CHECKED: AtomicUsize = AtomicUsize::new(0);
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        assert_eq!(vcore::max_vcores(), 1, "VCORE_LIMIT=1 should leave one vcore");
        start_spinner();
        // Backed TLS: the C face's errno would be the sleeper's own.
        support::spawn(TlsMode::Backed, || {
            for s in SLEEPS {
                let spins = SPINS.load(Ordering::Relaxed);
                let t0 = now_ns();
                (s.run)();
                let slept = now_ns() - t0;
                assert!(slept >= s.ns, "{} returned after {slept} ns, before its {} ns", s.name, s.ns);
                assert!(
                    SPINS.load(Ordering::Relaxed) > spins,
                    "{}: the other uthread did not run while this one slept (the vcore blocked)",
                    s.name
                );
                CHECKED.fetch_add(1, Ordering::Relaxed);
            }
            for s in ZERO_SLEEPS {
                (s.run)(); // returns, at once or after a yield
                CHECKED.fetch_add(1, Ordering::Relaxed);
            }
            STOP_SPINNING.store(true, Ordering::Release);
        });
        common::wait_all();
        assert_eq!(CHECKED.load(Ordering::Relaxed), SLEEPS.len() + ZERO_SLEEPS.len());
    });
}

/// Many uthreads sleep random times at once on one vcore; none wakes early and the
/// spinner keeps running through each sleep.
#[test]
fn concurrent_sleepers_on_one_vcore_all_wake_no_earlier_than_asked() {
    const SLEEPERS: usize = 200;
    static EARLY: AtomicUsize = AtomicUsize::new(0);
    static NO_PROGRESS: AtomicUsize = AtomicUsize::new(0);
    static AWAKE: AtomicUsize = AtomicUsize::new(0);
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        start_spinner();
        for k in 0..SLEEPERS {
            support::spawn(TlsMode::None, move || {
                let mut rng = Rng::new(k as u64 + 1);
                for round in 0..3 {
                    let us = rng.range(0, 20_000) as u64;
                    let spins = SPINS.load(Ordering::Relaxed);
                    let t0 = now_ns();
                    match round {
                        0 => raw::usleep(us).expect("usleep"),
                        1 => {
                            let ts = libc::timespec { tv_sec: 0, tv_nsec: (us * 1000) as i64 };
                            raw::nanosleep(&ts, None).expect("nanosleep")
                        }
                        _ => io::nanosleep(Duration::from_micros(us)).expect("nanosleep"),
                    }
                    if now_ns() - t0 < us * 1000 {
                        EARLY.fetch_add(1, Ordering::Relaxed);
                    }
                    if us > 0 && SPINS.load(Ordering::Relaxed) == spins {
                        NO_PROGRESS.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if AWAKE.fetch_add(1, Ordering::AcqRel) + 1 == SLEEPERS {
                    STOP_SPINNING.store(true, Ordering::Release);
                }
            });
        }
        common::wait_all();
        assert_eq!(AWAKE.load(Ordering::Relaxed), SLEEPERS, "not every sleeper finished");
        assert_eq!(EARLY.load(Ordering::Relaxed), 0, "sleeps that returned before their time");
        assert_eq!(NO_PROGRESS.load(Ordering::Relaxed), 0, "sleeps during which the spinner did not run");
    });
}

/// `poll` with a timeout runs on the backing thread of a backed uthread (raw.rs): it
/// blocks only that uthread, for at least its timeout when nothing is ready, and reports
/// a ready descriptor; with a zero timeout it is the plain, non-blocking call.
#[test]
fn poll_with_a_timeout_blocks_only_the_polling_uthread() {
    static CHECKED: AtomicBool = AtomicBool::new(false);
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        start_spinner();
        let [r, w] = support::pipe();
        support::spawn(TlsMode::Backed, move || {
            let mut p = [libc::pollfd { fd: r, events: libc::POLLIN, revents: 0 }];
            assert_eq!(errno_of(io::poll(&mut p, 0)), Ok(0), "a zero-timeout poll of an empty pipe");
            let spins = SPINS.load(Ordering::Relaxed);
            let t0 = now_ns();
            assert_eq!(errno_of(io::poll(&mut p, 50)), Ok(0), "a 50 ms poll of an empty pipe");
            let waited = now_ns() - t0;
            assert!(waited >= 50_000_000, "poll returned after {waited} ns, before its 50 ms timeout");
            assert!(
                SPINS.load(Ordering::Relaxed) > spins,
                "the other uthread did not run while this one polled"
            );
            support::write_all(w, b"x");
            assert_eq!(errno_of(io::poll(&mut p, 10_000)), Ok(1), "a poll of a readable pipe");
            assert_ne!(p[0].revents & libc::POLLIN, 0, "revents of a readable pipe");
            CHECKED.store(true, Ordering::Release);
            STOP_SPINNING.store(true, Ordering::Release);
        });
        common::wait_all();
        assert!(CHECKED.load(Ordering::Acquire));
        support::close(r);
        support::close(w);
    });
}

/// On a plain thread the wrappers are the plain calls: they sleep the thread for at
/// least the time asked, and `nanosleep`'s remainder pointer is the kernel's to fill.
#[test]
fn sleeps_on_a_plain_thread_sleep_the_thread_at_least_the_time_asked() {
    isolated!(TIMEOUT, {
        support::init_runtime();
        let results = support::on_plain_thread(|| {
            assert!(!support::on_uthread());
            SLEEPS
                .iter()
                .chain(ZERO_SLEEPS)
                .map(|s| {
                    let t0 = now_ns();
                    (s.run)();
                    (s.name, s.ns, now_ns() - t0)
                })
                .collect::<Vec<_>>()
        });
        for (name, ns, slept) in results {
            assert!(slept >= ns, "{name} on a plain thread returned after {slept} ns, before its {ns} ns");
        }
    });
}
