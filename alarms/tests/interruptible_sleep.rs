//! `sleep_until_interruptible` (DESIGN §6, `alarms/src/sleep.rs`): an interrupt
//! (`parlib_uthread::interrupt_wait`) ends the sleep early with `Interrupted`, one that
//! came before the sleep ends it at once and only it, and interrupts racing the
//! deadline end each sleep exactly once, never before its deadline unless interrupted.

use parlib_testsched as common;
mod support;

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_alarms::{sleep_until_interruptible, Deadline};
use parlib_testkit::isolated;
use parlib_uthread::{Interrupted, State, Uthread};
use support::{now, Rng, Task};

const TIMEOUT: Duration = Duration::from_secs(60);
/// A sleep that only an interrupt ends within the test.
const LONG: Duration = Duration::from_secs(3600);

/// The running uthread, as an address a plain thread may hold.
fn me() -> usize {
    parlib_uthread::current().expect("a uthread").as_ptr() as usize
}

/// The uthread at `addr`.
///
/// # Safety
/// It must stay alive while the caller uses it: the tests' sleepers wait for their
/// interrupters before they exit.
unsafe fn uthread<'a>(addr: usize) -> &'a Uthread {
    // SAFETY: the caller's contract.
    unsafe { &*(addr as *const Uthread) }
}

/// `interrupt_wait` on the uthread at `addr`.
///
/// # Safety
/// As for [`uthread`].
unsafe fn interrupt(addr: usize) -> bool {
    // SAFETY: the caller's contract.
    unsafe { parlib_uthread::interrupt_wait(NonNull::from(uthread(addr))) }
}

/// Gives the CPU away: a yield on a uthread, `sched_yield` on a plain thread.
fn pause() {
    if parlib_uthread::current().is_some() {
        common::yield_now();
    } else {
        std::thread::yield_now();
    }
}

/// A uthread sleeping for an hour is woken at once by an interrupt, whether it comes
/// from a plain thread or from another uthread.
#[test]
fn an_interrupt_from_a_thread_or_a_uthread_ends_an_interruptible_sleep_early() {
    static SLEEPER: AtomicUsize = AtomicUsize::new(0);
    static INTERRUPTED: AtomicBool = AtomicBool::new(false);
    fn interrupt_once() {
        while SLEEPER.load(Ordering::Acquire) == 0 {
            pause();
        }
        let s = SLEEPER.load(Ordering::Acquire);
        // SAFETY: the sleeper stays alive until INTERRUPTED.
        while unsafe { uthread(s) }.state() != State::Blocked {
            pause();
        }
        // SAFETY: as above.
        unsafe { interrupt(s) };
        INTERRUPTED.store(true, Ordering::Release);
    }
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        for from_thread in [true, false] {
            SLEEPER.store(0, Ordering::Release);
            INTERRUPTED.store(false, Ordering::Release);
            let sleeper = Task::uthread(|| {
                SLEEPER.store(me(), Ordering::Release);
                let t0 = now();
                let r = sleep_until_interruptible(Deadline::after(LONG));
                common::wait_until(|| INTERRUPTED.load(Ordering::Acquire));
                (r, Duration::from_nanos(now() - t0))
            });
            let interrupter =
                if from_thread { Task::thread(interrupt_once) } else { Task::uthread(interrupt_once) };
            interrupter.join();
            let (r, took) = sleeper.join();
            let from = if from_thread { "a plain thread" } else { "a uthread" };
            assert_eq!(r, Err(Interrupted), "an interrupt from {from}");
            assert!(took < TIMEOUT, "an interrupt from {from}: the sleep took {took:?}");
        }
    });
}

/// An interrupt that comes while the uthread is not in an interruptible wait ends its
/// next interruptible sleep at once, and only that one: the sleep after it lasts.
#[test]
fn an_interrupt_before_an_interruptible_sleep_ends_only_the_next_one_at_once() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        // SAFETY: our own uthread, alive while we run.
        assert!(!unsafe { interrupt(me()) }, "no wait was in progress to end");
        let t0 = now();
        assert_eq!(sleep_until_interruptible(Deadline::after(LONG)), Err(Interrupted));
        assert!(Duration::from_nanos(now() - t0) < TIMEOUT);
        let t = Deadline::after(Duration::from_millis(5));
        assert_eq!(sleep_until_interruptible(t), Ok(()), "the pending interrupt was used up");
        assert!(t.has_passed(), "an uninterrupted sleep returned before its deadline");
    });
}

/// On a plain thread, which cannot be interrupted, an interruptible sleep is a plain
/// sleep: it returns `Ok` at its deadline, not before.
#[test]
fn an_interruptible_sleep_on_a_plain_thread_lasts_until_its_deadline() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        let t = std::thread::spawn(|| {
            let t = Deadline::after(Duration::from_millis(5));
            let r = sleep_until_interruptible(t);
            (r, t.has_passed())
        });
        common::wait_until(|| t.is_finished());
        assert_eq!(t.join().expect("the sleeping thread"), (Ok(()), true));
    });
}

/// Short sleeps (0-20 µs) while a plain thread and a uthread keep interrupting: each
/// sleep ends once (a second wake-up of the same sleep panics in `runnable`, a lost one
/// hangs), an `Ok` never comes before the deadline, and every interrupt that reported
/// ending a sleep shows up as an `Interrupted`.
#[test]
fn interrupts_racing_the_deadline_end_each_interruptible_sleep_once_and_never_early() {
    const ROUNDS: usize = 10_000;
    const NEAR_NS: u64 = 20_000;
    static SLEEPER: AtomicUsize = AtomicUsize::new(0);
    static SLEEPS_DONE: AtomicBool = AtomicBool::new(false);
    static INTERRUPTERS_LEFT: AtomicUsize = AtomicUsize::new(2);
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    static WON: AtomicUsize = AtomicUsize::new(0);
    fn interrupter() {
        let mut rng = Rng::new(support::seed());
        while SLEEPER.load(Ordering::Acquire) == 0 {
            pause();
        }
        let s = SLEEPER.load(Ordering::Acquire);
        while !SLEEPS_DONE.load(Ordering::Acquire) {
            CALLS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the sleeper stays alive until every interrupter is done.
            if unsafe { interrupt(s) } {
                WON.fetch_add(1, Ordering::Relaxed);
            }
            let until = now() + rng.below(NEAR_NS);
            while now() < until {
                core::hint::spin_loop();
            }
            pause();
        }
        INTERRUPTERS_LEFT.fetch_sub(1, Ordering::AcqRel);
    }
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        let sleeper = Task::uthread(|| {
            SLEEPER.store(me(), Ordering::Release);
            let mut rng = Rng::new(support::seed());
            let (mut ok, mut interrupted, mut early) = (0, 0, 0);
            for _ in 0..ROUNDS {
                let t = Deadline::at_monotonic_ns(now() + rng.below(NEAR_NS));
                match sleep_until_interruptible(t) {
                    Ok(()) if !t.has_passed() => early += 1,
                    Ok(()) => ok += 1,
                    Err(Interrupted) => interrupted += 1,
                }
            }
            SLEEPS_DONE.store(true, Ordering::Release);
            common::wait_until(|| INTERRUPTERS_LEFT.load(Ordering::Acquire) == 0);
            (ok, interrupted, early)
        });
        let thread = Task::thread(interrupter);
        let uthread = Task::uthread(interrupter);
        let (ok, interrupted, early) = sleeper.join();
        thread.join();
        uthread.join();
        let (calls, won) = (CALLS.load(Ordering::Relaxed), WON.load(Ordering::Relaxed));
        println!(
            "{ok} sleeps to the deadline, {interrupted} interrupted; {calls} interrupts, {won} ended a sleep"
        );
        assert_eq!(early, 0, "sleeps that returned Ok before their deadline");
        assert!(
            won <= interrupted,
            "interrupts that ended a sleep ({won}) > interrupted sleeps ({interrupted})"
        );
        assert!(interrupted <= calls, "interrupted sleeps ({interrupted}) > interrupts ({calls})");
        assert!(ok > 0 && won > 0, "the interrupts never raced the deadline");
    });
}
