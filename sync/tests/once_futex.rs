//! `Once` and the futex calls (DESIGN §8).
//!
//! * `Once` runs its initialiser exactly once however many uthreads and threads race
//!   for it; every caller returns only once the initialiser has completed, so it sees
//!   its effects. A panicking initialiser leaves it not run (as glibc does for a
//!   cancelled one): waiters wake, and the next call runs its own initialiser.
//!   `abandon` does the same for an initialiser whose thread never comes back (a C
//!   thread cancelled inside it), and does nothing to a once that is not running.
//! * `futex_wait` refuses with `EAGAIN` when the word already differs; `futex_wake`
//!   wakes exactly the number asked for (or every waiter, if fewer), uthreads and
//!   threads alike, and only waiters of its own word even when words share a hash
//!   bucket.

use parlib_testsched as common;
mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_sync::{futex_wait, futex_wake, Errno, Once};
use parlib_testkit::isolated;
use parlib_uthread::{TlsMode, Uthread};
use support::{spawn_plain, Failures, Who};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Prefix of the panics raised on purpose; the hook stays quiet for them.
const EXPECTED: &str = "expected test panic";

fn quiet_expected_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info.payload().downcast_ref::<&str>().copied().unwrap_or("");
        if !msg.starts_with(EXPECTED) {
            default(info);
        }
    }));
}

#[test]
fn once_runs_its_initialiser_exactly_once_and_every_caller_sees_it_done() {
    const UTHREADS: usize = 48;
    const THREADS: usize = 4;
    const CALLERS: usize = UTHREADS + THREADS + 1; // and main
    static ONCE: Once = Once::new();
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    static VALUE: AtomicU64 = AtomicU64::new(0);
    static ARRIVED: AtomicUsize = AtomicUsize::new(0);
    static FOUND_IT_RUNNING: AtomicUsize = AtomicUsize::new(0);
    static GO: AtomicBool = AtomicBool::new(false);
    static FAILURES: Failures = Failures::new();
    fn init() {
        RUNS.fetch_add(1, Ordering::SeqCst);
        // Keep the others waiting: finish only once every caller has arrived at the
        // once (they count themselves just before calling it), then a little longer.
        support::wait_for(|| ARRIVED.load(Ordering::SeqCst) == CALLERS);
        for _ in 0..20 {
            support::pause();
        }
        VALUE.store(42, Ordering::Relaxed); // published by the once's completion
    }
    fn caller() {
        support::wait_for(|| GO.load(Ordering::Acquire));
        ARRIVED.fetch_add(1, Ordering::SeqCst);
        if RUNS.load(Ordering::SeqCst) == 1 && !ONCE.is_completed() {
            FOUND_IT_RUNNING.fetch_add(1, Ordering::Relaxed);
        }
        ONCE.call_once(init);
        if !ONCE.is_completed() {
            FAILURES.record(|| "call_once returned before the once completed".into());
        }
        let v = VALUE.load(Ordering::Relaxed);
        if v != 42 {
            FAILURES.record(|| format!("call_once returned, yet the initialiser's effect is {v}"));
        }
    }
    isolated!(TIMEOUT, {
        common::init();
        assert!(!ONCE.is_completed());
        let threads: Vec<_> = (0..THREADS).map(|_| spawn_plain(caller)).collect();
        for _ in 0..UTHREADS {
            common::spawn(TlsMode::Backed, caller);
        }
        GO.store(true, Ordering::Release);
        caller();
        common::wait_all();
        common::wait_until(|| threads.iter().all(|t| t.is_finished()));
        FAILURES.assert_none("Once");
        assert_eq!(RUNS.load(Ordering::SeqCst), 1, "the initialiser ran more than once");
        assert!(ONCE.is_completed());
        println!(
            "{} of {CALLERS} callers found the initialiser running",
            FOUND_IT_RUNNING.load(Ordering::Relaxed)
        );
        // Later calls return at once without running anything.
        ONCE.call_once(|| panic!("a completed once ran again"));
        assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    });
}

/// A panicking initialiser, then a proper one, on the calling kind of caller.
fn panicking_initialiser_then_a_good_one() {
    let once: &'static Once = Box::leak(Box::new(Once::new()));
    let r = catch_unwind(AssertUnwindSafe(|| once.call_once(|| panic!("{EXPECTED}: first initialiser"))));
    assert!(r.is_err(), "the panic propagates to the caller");
    assert!(!once.is_completed(), "a panicking initialiser does not complete the once");
    let mut ran = false;
    once.call_once(|| ran = true);
    assert!(ran, "the next call ran its initialiser");
    assert!(once.is_completed());
    once.call_once(|| panic!("a completed once ran again"));
}

#[test]
fn a_panicking_initialiser_leaves_the_once_not_run_so_a_later_call_runs() {
    isolated!(TIMEOUT, {
        quiet_expected_panics();
        common::init();
        panicking_initialiser_then_a_good_one(); // on a uthread (main)
        support::on_plain_thread(panicking_initialiser_then_a_good_one);
    });
}

#[test]
fn a_caller_waiting_on_a_panicking_initialiser_wakes_and_runs_its_own() {
    static ONCE: Once = Once::new();
    static WAITER: AtomicU64 = AtomicU64::new(0);
    static WAITER_RAN: AtomicBool = AtomicBool::new(false);
    isolated!(TIMEOUT, {
        quiet_expected_panics();
        common::init();
        let r = catch_unwind(|| {
            ONCE.call_once(|| {
                // While we run, a second caller arrives and blocks on the once.
                let w = common::spawn(TlsMode::Backed, || {
                    ONCE.call_once(|| WAITER_RAN.store(true, Ordering::SeqCst))
                });
                WAITER.store(w.as_ptr() as u64, Ordering::Relaxed);
                // SAFETY: the waiter cannot finish while this initialiser runs.
                unsafe { support::wait_until_blocked(w) };
                panic!("{EXPECTED}: initialiser fails while another caller waits");
            })
        });
        assert!(r.is_err());
        common::wait_all();
        assert!(WAITER_RAN.load(Ordering::SeqCst), "the waiting caller ran its initialiser after the panic");
        assert!(ONCE.is_completed());
    });
}

/// An initialiser's thread abandons the call and never returns (as a C thread that is
/// cancelled inside `pthread_once` does): the caller waiting for it wakes and runs its
/// own initialiser, and `abandon` on a once that is done changes nothing.
#[test]
fn abandon_wakes_a_waiting_caller_which_runs_its_own_initialiser() {
    isolated!(TIMEOUT, {
        static ONCE: Once = Once::new();
        static WAITER_TID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
        static SECOND_RAN: AtomicBool = AtomicBool::new(false);
        ONCE.abandon();
        assert!(!ONCE.is_completed(), "abandoning a once that never ran leaves it not run");
        let started: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        // Detached: this thread stays parked inside its initialiser for good.
        drop(spawn_plain(move || {
            ONCE.call_once(|| {
                started.store(true, Ordering::SeqCst);
                // Wait until the other caller sleeps on the once (the only place it can).
                support::wait_for(|| {
                    let tid = WAITER_TID.load(Ordering::SeqCst);
                    tid != 0 && support::task_asleep(tid)
                });
                ONCE.abandon();
                loop {
                    std::thread::park();
                }
            })
        }));
        support::wait_for(|| started.load(Ordering::SeqCst));
        let waiter = spawn_plain(|| {
            WAITER_TID.store(support::gettid(), Ordering::SeqCst);
            ONCE.call_once(|| SECOND_RAN.store(true, Ordering::SeqCst));
        });
        waiter.join().unwrap();
        assert!(SECOND_RAN.load(Ordering::SeqCst), "the woken caller ran its own initialiser");
        assert!(ONCE.is_completed());
        ONCE.abandon();
        assert!(ONCE.is_completed(), "abandon leaves a completed once alone");
        ONCE.call_once(|| panic!("a completed once ran again"));
    });
}

// ---------------------------------------------------------------------------------------
// Futexes.

fn futex_refusals() {
    let word = AtomicU32::new(5);
    assert_eq!(futex_wait(&word, 4), Err(Errno::AGAIN), "the word differs");
    assert_eq!(futex_wait(&word, u32::MAX), Err(Errno::AGAIN));
    assert_eq!(futex_wake(&word, 10), 0, "nobody waits");
    assert_eq!(futex_wake(&word, 0), 0);
}

#[test]
fn futex_wait_returns_eagain_when_the_word_differs() {
    isolated!(TIMEOUT, {
        futex_refusals(); // no runtime
        common::init();
        futex_refusals(); // on a uthread
        support::on_plain_thread(futex_refusals);
    });
}

#[test]
fn futex_wake_wakes_exactly_n_of_m_uthread_and_thread_waiters() {
    const UTHREADS: usize = 5;
    const THREADS: usize = 3;
    const M: usize = UTHREADS + THREADS;
    static WORD: AtomicU32 = AtomicU32::new(0);
    static WOKEN: AtomicUsize = AtomicUsize::new(0);
    static TIDS: [AtomicUsize; THREADS] = [const { AtomicUsize::new(0) }; THREADS];
    static FAILURES: Failures = Failures::new();
    fn wait_once() {
        // Exactly one wait each: no spurious return is allowed to hide a missed wake.
        if let Err(e) = futex_wait(&WORD, 0) {
            FAILURES.record(|| format!("futex_wait: {e:?}"));
        }
        WOKEN.fetch_add(1, Ordering::SeqCst);
    }
    isolated!(TIMEOUT, {
        common::init();
        let uthreads: Vec<NonNull<Uthread>> =
            (0..UTHREADS).map(|_| common::spawn(TlsMode::Backed, wait_once)).collect();
        let threads: Vec<_> = (0..THREADS)
            .map(|i| {
                spawn_plain(move || {
                    TIDS[i].store(support::gettid() as usize, Ordering::Release);
                    wait_once();
                })
            })
            .collect();
        // Everybody queued: uthreads Blocked, threads asleep in the kernel.
        for &u in &uthreads {
            // SAFETY: a waiter cannot exit before it is woken.
            unsafe { support::wait_until_blocked(u) };
        }
        for tid in &TIDS {
            common::wait_until(|| tid.load(Ordering::Acquire) != 0);
            support::wait_until_asleep(tid.load(Ordering::Acquire) as i32);
        }
        assert_eq!(WOKEN.load(Ordering::SeqCst), 0);
        for (n, total) in [(0, 0), (3, 3), (1, 4)] {
            assert_eq!(futex_wake(&WORD, n), n, "futex_wake({n}) with more waiters than that");
            common::wait_until(|| WOKEN.load(Ordering::SeqCst) == total);
        }
        // The rest are still queued: waking all finds exactly them.
        assert_eq!(futex_wake(&WORD, u32::MAX), (M - 4) as u32, "the waiters left after waking 4");
        common::wait_until(|| WOKEN.load(Ordering::SeqCst) == M);
        common::wait_all();
        common::wait_until(|| threads.iter().all(|t| t.is_finished()));
        assert_eq!(futex_wake(&WORD, u32::MAX), 0, "nobody left");
        assert_eq!(WOKEN.load(Ordering::SeqCst), M);
        FAILURES.assert_none("futex waiters");
    });
}

#[test]
fn futex_wake_wakes_only_waiters_of_its_own_word_even_in_a_shared_bucket() {
    // More words than the futex table has buckets (256), one waiter each, plus several
    // waiters on one more word: by pigeonhole some words share a bucket with it.
    const WORDS: usize = 300;
    const ON_TARGET: usize = 4;
    static TARGET: AtomicU32 = AtomicU32::new(0);
    static WOKEN_TARGET: AtomicUsize = AtomicUsize::new(0);
    static WOKEN_OTHERS: AtomicUsize = AtomicUsize::new(0);
    isolated!(TIMEOUT, {
        common::init();
        let words: &'static [AtomicU32] = Box::leak((0..WORDS).map(|_| AtomicU32::new(7)).collect());
        let mut waiters = Vec::new();
        for w in words {
            waiters.push(common::spawn(TlsMode::None, move || {
                futex_wait(w, 7).expect("the word holds 7");
                WOKEN_OTHERS.fetch_add(1, Ordering::SeqCst);
            }));
        }
        for _ in 0..ON_TARGET {
            waiters.push(common::spawn(TlsMode::None, || {
                futex_wait(&TARGET, 0).expect("the word holds 0");
                WOKEN_TARGET.fetch_add(1, Ordering::SeqCst);
            }));
        }
        for &u in &waiters {
            // SAFETY: a waiter cannot exit before it is woken.
            unsafe { support::wait_until_blocked(u) };
        }
        assert_eq!(futex_wake(&TARGET, u32::MAX), ON_TARGET as u32, "wakes exactly the target's waiters");
        common::wait_until(|| WOKEN_TARGET.load(Ordering::SeqCst) == ON_TARGET);
        assert_eq!(WOKEN_OTHERS.load(Ordering::SeqCst), 0, "a waiter of another word woke");
        // Every other word still has its one waiter, and wakes exactly it.
        for (i, w) in words.iter().enumerate() {
            assert_eq!(futex_wake(w, u32::MAX), 1, "word {i}");
        }
        common::wait_all();
        assert_eq!(WOKEN_OTHERS.load(Ordering::SeqCst), WORDS);
    });
}

#[test]
fn futex_waiters_of_both_kinds_see_every_change_of_a_counter() {
    // A futex-based event count: a uthread and a thread each wait for every value of a
    // counter in turn, the main uthread bumps it only after both have seen the previous
    // value. A lost wake-up hangs (and the watchdog fails the test).
    const ROUNDS: u32 = 500;
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    static SEEN: [AtomicU32; 2] = [const { AtomicU32::new(0) }; 2];
    fn follower(slot: usize) {
        for expect in 1..=ROUNDS {
            loop {
                let v = COUNTER.load(Ordering::SeqCst);
                if v >= expect {
                    break;
                }
                let _ = futex_wait(&COUNTER, v); // EAGAIN if it moved meanwhile
            }
            SEEN[slot].store(expect, Ordering::SeqCst);
        }
    }
    isolated!(TIMEOUT, {
        common::init();
        let follow = [Who::Uthread, Who::Thread].map(|w| {
            let slot = (w == Who::Thread) as usize;
            support::start(w, move || follower(slot))
        });
        for round in 1..=ROUNDS {
            COUNTER.store(round, Ordering::SeqCst);
            futex_wake(&COUNTER, u32::MAX);
            common::wait_until(|| SEEN.iter().all(|s| s.load(Ordering::SeqCst) == round));
        }
        follow.into_iter().for_each(support::Task::join);
    });
}
