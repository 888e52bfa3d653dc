//! Timed waits time out no earlier than their deadline and wake correctly, on uthreads
//! (where the alarms layer is `parlib-sync`'s timeout service) and on plain threads
//! (futex timeouts), and a wake-up that arrives together with the timeout is never lost
//! (`sync/src/timeout.rs`: "whoever unlinks the waiter first decides the outcome").
//!
//! Deadlines a waiter must *not* reach are an hour away: only a lost wake-up gets there,
//! and the watchdog fails the test long before.

use parlib_testsched as common;
mod support;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parlib_sync::{
    Condvar, Deadline, Errno, Mutex, RawCondvar, RawMutex, RawSemaphore, Semaphore, MUTEX_ERRORCHECK,
};
use parlib_testkit::isolated;
use parlib_vcore as vcore;
use support::{now, Rng, Task};

const TIMEOUT: Duration = Duration::from_secs(120);
/// How long waits that must time out wait.
const SHORT: Duration = Duration::from_millis(20);
/// How long waits that must be woken would wait.
const FOREVER: Duration = Duration::from_secs(3600);

fn forever() -> Deadline {
    Deadline::after(FOREVER)
}

/// Where a waiter (or poster) runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum On {
    /// A new uthread, on any vcore.
    Uthread,
    /// A new plain Linux thread.
    Thread,
}

const BOTH: [On; 2] = [On::Uthread, On::Thread];

impl On {
    fn run<T: Send + 'static>(self, f: impl FnOnce() -> T + Send + 'static) -> Task<T> {
        match self {
            On::Uthread => Task::uthread(f),
            On::Thread => Task::thread(f),
        }
    }
}

/// Gives waiters started just now the time to block (not needed for correctness: a
/// waiter that has not blocked yet must get the same result).
fn let_them_block() {
    parlib_alarms::sleep(Duration::from_millis(5));
}

// ---------------------------------------------------------------------------------------
// Mutex.

#[test]
fn timed_lock_of_a_held_mutex_times_out_no_earlier_than_its_deadline_and_leaves_it_usable() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        static M: RawMutex = RawMutex::new();
        M.lock().unwrap();
        let attempt = || {
            let d = Deadline::after(SHORT);
            let r = M.timed_lock(d);
            (r, d.has_passed())
        };
        for on in BOTH {
            let (r, passed) = on.run(attempt).join();
            assert_eq!(r, Err(Errno::TIMEDOUT), "{on:?}: timed_lock of a held mutex");
            assert!(passed, "{on:?}: timed_lock gave up before its deadline");
        }
        // Both kinds at once.
        let tasks = BOTH.map(|on| (on, on.run(attempt)));
        for (on, t) in tasks {
            let (r, passed) = t.join();
            assert_eq!(r, Err(Errno::TIMEDOUT), "{on:?}: concurrent timed_lock of a held mutex");
            assert!(passed, "{on:?}: concurrent timed_lock gave up before its deadline");
        }
        assert!(M.is_locked(), "the timeouts released the holder's mutex");

        // Usable afterwards: no stale waiter left behind. Block lockers of both kinds on
        // it, then release it to them.
        let lockers = BOTH.map(|on| {
            on.run(|| {
                M.lock().unwrap();
                M.unlock().unwrap();
            })
        });
        let_them_block();
        M.unlock().unwrap();
        for t in lockers {
            t.join();
        }
        assert_eq!(M.try_lock(), Ok(()), "the mutex is not free after everyone unlocked");
        M.unlock().unwrap();
    });
}

#[test]
fn timed_lock_succeeds_when_the_mutex_is_released_before_the_deadline() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        static M: RawMutex = RawMutex::new();
        M.lock().unwrap();
        let waiters = BOTH.map(|on| {
            (
                on,
                on.run(|| {
                    let r = M.timed_lock(forever());
                    if r.is_ok() {
                        M.unlock().unwrap();
                    }
                    r
                }),
            )
        });
        let_them_block();
        M.unlock().unwrap();
        for (on, t) in waiters {
            assert_eq!(t.join(), Ok(()), "{on:?}: timed_lock with the mutex released before the deadline");
        }
        assert!(!M.is_locked());
    });
}

// ---------------------------------------------------------------------------------------
// Condvar.

#[test]
fn condvar_timed_waits_time_out_no_earlier_than_the_deadline_with_the_mutex_held() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        static M: Mutex<u32> = Mutex::new(0);
        static CV: Condvar = Condvar::new();
        // An error-checking mutex knows its owner: unlock succeeds only for the caller
        // that holds it.
        static RM: RawMutex = RawMutex::with_kind(MUTEX_ERRORCHECK);
        static RC: RawCondvar = RawCondvar::new();
        for on in BOTH {
            let (timed_out, slept, held) = on
                .run(|| {
                    let g = M.lock();
                    let t0 = now();
                    let (mut g, timed_out) = CV.wait_timeout(g, SHORT);
                    let slept = now() - t0;
                    let held = M.raw().is_locked();
                    *g += 1;
                    (timed_out, slept, held)
                })
                .join();
            assert!(timed_out, "{on:?}: Condvar::wait_timeout without a notify did not time out");
            assert!(u128::from(slept) >= SHORT.as_nanos(), "{on:?}: wait_timeout returned after {slept} ns");
            assert!(held, "{on:?}: wait_timeout returned without the mutex");

            let (r, passed, unlocked) = on
                .run(|| {
                    RM.lock().unwrap();
                    let d = Deadline::after(SHORT);
                    let r = RC.timed_wait(&RM, d);
                    (r, d.has_passed(), RM.unlock())
                })
                .join();
            assert_eq!(r, Err(Errno::TIMEDOUT), "{on:?}: RawCondvar::timed_wait without a signal");
            assert!(passed, "{on:?}: RawCondvar::timed_wait gave up before its deadline");
            assert_eq!(unlocked, Ok(()), "{on:?}: timed_wait returned without the caller owning the mutex");
        }
        assert_eq!(*M.lock(), 2);
        assert!(!RM.is_locked());
    });
}

#[test]
fn condvar_timed_waits_are_woken_by_notify_and_broadcast() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        static READY: Mutex<bool> = Mutex::new(false);
        static CV: Condvar = Condvar::new();
        for on in BOTH {
            *READY.lock() = false;
            let waiter = on.run(|| {
                let mut g = READY.lock();
                let mut timeouts = 0;
                while !*g {
                    let (g2, timed_out) = CV.wait_timeout(g, FOREVER);
                    g = g2;
                    timeouts += usize::from(timed_out);
                }
                timeouts
            });
            let_them_block();
            *READY.lock() = true;
            CV.notify_one();
            assert_eq!(waiter.join(), 0, "{on:?}: the notified waiter timed out instead");
        }

        static RM: RawMutex = RawMutex::with_kind(MUTEX_ERRORCHECK);
        static RC: RawCondvar = RawCondvar::new();
        static GO: AtomicBool = AtomicBool::new(false);
        let waiters = BOTH.map(|on| {
            (
                on,
                on.run(|| {
                    RM.lock().unwrap();
                    let mut results = Vec::new();
                    while !GO.load(Ordering::Relaxed) {
                        results.push(RC.timed_wait(&RM, forever()));
                    }
                    (results, RM.unlock())
                }),
            )
        });
        let_them_block();
        RM.lock().unwrap();
        GO.store(true, Ordering::Relaxed);
        RM.unlock().unwrap();
        RC.broadcast();
        for (on, t) in waiters {
            let (results, unlocked) = t.join();
            assert!(results.iter().all(|r| r.is_ok()), "{on:?}: broadcast waiter got {results:?}");
            assert_eq!(unlocked, Ok(()), "{on:?}: woken without owning the mutex");
        }
    });
}

// ---------------------------------------------------------------------------------------
// Semaphore.

#[test]
fn semaphore_timed_waits_time_out_no_earlier_than_the_deadline_and_succeed_on_post() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        static S: RawSemaphore = RawSemaphore::new(0);
        static SEM: Semaphore = Semaphore::new(0);
        for on in BOTH {
            let (r, passed) = on
                .run(|| {
                    let d = Deadline::after(SHORT);
                    (S.timed_wait(d), d.has_passed())
                })
                .join();
            assert_eq!(r, Err(Errno::TIMEDOUT), "{on:?}: RawSemaphore::timed_wait on an empty semaphore");
            assert!(passed, "{on:?}: RawSemaphore::timed_wait gave up before its deadline");
            let (got, waited) = on
                .run(|| {
                    let t0 = now();
                    (SEM.acquire_timeout(SHORT), now() - t0)
                })
                .join();
            assert!(!got, "{on:?}: Semaphore::acquire_timeout on an empty semaphore succeeded");
            assert!(
                u128::from(waited) >= SHORT.as_nanos(),
                "{on:?}: acquire_timeout gave up after {waited} ns"
            );
            assert_eq!((S.value(), SEM.value()), (0, 0));

            let waiter = on.run(|| S.timed_wait(forever()));
            let_them_block();
            S.post().unwrap();
            assert_eq!(waiter.join(), Ok(()), "{on:?}: a post did not end RawSemaphore::timed_wait");
            let waiter = on.run(|| SEM.acquire_timeout(FOREVER));
            let_them_block();
            SEM.release();
            assert!(waiter.join(), "{on:?}: a release did not end Semaphore::acquire_timeout");
            assert_eq!((S.value(), SEM.value()), (0, 0), "{on:?}: a unit was handed over and also counted");

            // A unit already there is taken even if the deadline has passed.
            S.post().unwrap();
            let r = on.run(|| S.timed_wait(Deadline::at_monotonic_ns(1))).join();
            assert_eq!(r, Ok(()), "{on:?}: timed_wait with an expired deadline ignored an available unit");
        }
    });
}

// ---------------------------------------------------------------------------------------
// Wake-ups racing the deadline.

/// Rounds per race test.
const ROUNDS: usize = 3000;
/// Each round's waiter waits this long...
const WAIT_NS: u64 = 300_000;
/// ... and the poster posts within this much of the deadline, before or after.
const JITTER_NS: u64 = 150_000;

/// A round-by-round handshake between one waiter and one poster. Both sides block on
/// semaphores between rounds rather than spin, so that a plain-thread party is not
/// starved of CPU by a vcore spinning on the same one.
struct Rounds {
    /// The current round's deadline.
    deadline: AtomicU64,
    /// Waiter to poster: a round has started.
    go: RawSemaphore,
    /// Poster to waiter: this round's post is done.
    posted: RawSemaphore,
}

impl Rounds {
    fn new() -> Rounds {
        Rounds { deadline: AtomicU64::new(0), go: RawSemaphore::new(0), posted: RawSemaphore::new(0) }
    }

    /// Waiter: start a round; returns its deadline.
    fn begin(&self) -> Deadline {
        let d = now() + WAIT_NS;
        self.deadline.store(d, Ordering::Relaxed);
        self.go.post().unwrap();
        Deadline::at_monotonic_ns(d)
    }

    /// Waiter: wait for the round's post.
    fn await_post(&self) {
        self.posted.wait();
    }

    /// Poster: wait for a round, then until a random moment around its deadline.
    fn await_moment(&self, rng: &mut Rng) {
        self.go.wait();
        let target = self.deadline.load(Ordering::Relaxed) + rng.below(2 * JITTER_NS) - JITTER_NS;
        while now() < target {
            if parlib_uthread::current().is_some() {
                common::yield_now(); // it may share its vcore with the waiter
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// Poster: the round is posted.
    fn done(&self) {
        self.posted.post().unwrap();
    }
}

/// Starts the poster: a uthread pinned to the last vcore (so it races a waiter on another
/// vcore when there is one), or a plain thread.
fn start_poster(on: On, f: impl FnOnce() + Send + 'static) -> Task<()> {
    match on {
        On::Uthread => Task::uthread_on(vcore::max_vcores() - 1, f),
        On::Thread => Task::thread(f),
    }
}

/// Runs `waiter` on the main uthread or a plain thread.
fn run_waiter<T: Send + 'static>(on: On, waiter: impl FnOnce() -> T + Send + 'static) -> T {
    match on {
        On::Uthread => waiter(),
        On::Thread => Task::thread(waiter).join(),
    }
}

/// Each round the waiter `timed_wait`s on an empty semaphore while the poster posts it
/// around the deadline. Whatever the waiter's result, the post must end up somewhere:
/// with the waiter (`Ok`) or in the count (taken back with `try_wait`).
fn semaphore_post_race(waiter_on: On, poster_on: On) {
    let sem = Arc::new(RawSemaphore::new(0));
    let rounds = Arc::new(Rounds::new());
    let (s, r) = (sem.clone(), rounds.clone());
    let mut rng = Rng::new(support::seed());
    let poster = start_poster(poster_on, move || {
        for _ in 0..ROUNDS {
            r.await_moment(&mut rng);
            s.post().unwrap();
            r.done();
        }
    });
    let (s, r) = (sem.clone(), rounds.clone());
    let (got, timed_out, recovered) = run_waiter(waiter_on, move || {
        let (mut got, mut timed_out, mut recovered) = (0, 0, 0);
        for _ in 0..ROUNDS {
            match s.timed_wait(r.begin()) {
                Ok(()) => got += 1,
                Err(Errno::TIMEDOUT) => timed_out += 1,
                Err(e) => panic!("RawSemaphore::timed_wait: {e}"),
            }
            r.await_post();
            if s.try_wait().is_ok() {
                recovered += 1;
            }
        }
        (got, timed_out, recovered)
    });
    poster.join();
    println!(
        "waiter on {waiter_on:?}, poster on {poster_on:?}: {got} handed over, {timed_out} timed out, \
         {recovered} found in the count afterwards"
    );
    assert_eq!(got + timed_out, ROUNDS);
    assert_eq!(
        got + recovered + sem.value() as usize,
        ROUNDS,
        "posts lost or duplicated: {got} handed to the waiter + {recovered} taken from the count + {} left, \
         for {ROUNDS} posts",
        sem.value()
    );
}

#[test]
fn a_semaphore_post_racing_a_uthreads_deadline_is_never_lost() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        semaphore_post_race(On::Uthread, On::Uthread);
        semaphore_post_race(On::Uthread, On::Thread);
    });
}

#[test]
fn a_semaphore_post_racing_a_threads_deadline_is_never_lost() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        semaphore_post_race(On::Thread, On::Uthread);
    });
}

/// Each round the waiter `timed_wait`s on a condvar for a unit while the poster adds one
/// under the mutex and signals, around the deadline. Every return of `timed_wait` must
/// hold the mutex (the error-checking mutex's `unlock` and a critical-section flag check
/// it), the waiter must never be woken twice or not at all (a double `runnable` panics, a
/// lost one hangs), and no unit is lost.
fn condvar_signal_race(waiter_on: On, poster_on: On) {
    struct Shared {
        m: RawMutex,
        cv: RawCondvar,
        units: AtomicU32,
        in_cs: AtomicBool,
        overlaps: AtomicUsize,
    }
    impl Shared {
        fn enter(&self) {
            if self.in_cs.swap(true, Ordering::Relaxed) {
                self.overlaps.fetch_add(1, Ordering::Relaxed);
            }
        }
        fn leave(&self) {
            self.in_cs.store(false, Ordering::Relaxed);
        }
    }
    let shared = Arc::new(Shared {
        m: RawMutex::with_kind(MUTEX_ERRORCHECK),
        cv: RawCondvar::new(),
        units: AtomicU32::new(0),
        in_cs: AtomicBool::new(false),
        overlaps: AtomicUsize::new(0),
    });
    let rounds = Arc::new(Rounds::new());
    let (sh, r) = (shared.clone(), rounds.clone());
    let mut rng = Rng::new(support::seed());
    let poster = start_poster(poster_on, move || {
        for i in 0..ROUNDS {
            r.await_moment(&mut rng);
            sh.m.lock().unwrap();
            sh.enter();
            sh.units.fetch_add(1, Ordering::Relaxed);
            sh.leave();
            if i % 2 == 0 {
                sh.cv.signal(); // under the mutex
                sh.m.unlock().unwrap();
            } else {
                sh.m.unlock().unwrap();
                sh.cv.signal(); // after it
            }
            r.done();
        }
    });
    let (sh, r) = (shared.clone(), rounds.clone());
    let (consumed, recovered, woken, timed_out, bad_unlocks) = run_waiter(waiter_on, move || {
        let (mut consumed, mut recovered, mut woken, mut timed_out, mut bad_unlocks) = (0, 0, 0, 0, 0);
        for _ in 0..ROUNDS {
            sh.m.lock().unwrap();
            sh.enter();
            let d = r.begin();
            loop {
                if sh.units.load(Ordering::Relaxed) > 0 {
                    sh.units.fetch_sub(1, Ordering::Relaxed);
                    consumed += 1;
                    break;
                }
                sh.leave();
                let res = sh.cv.timed_wait(&sh.m, d);
                sh.enter();
                match res {
                    Ok(()) => woken += 1, // Mesa: re-check
                    Err(Errno::TIMEDOUT) => {
                        timed_out += 1;
                        if sh.units.load(Ordering::Relaxed) > 0 {
                            sh.units.fetch_sub(1, Ordering::Relaxed);
                            consumed += 1;
                        }
                        break;
                    }
                    Err(e) => panic!("RawCondvar::timed_wait: {e}"),
                }
            }
            sh.leave();
            if sh.m.unlock().is_err() {
                bad_unlocks += 1;
            }
            // A unit posted after the timeout waits for us; take it, so that every round
            // starts with none.
            r.await_post();
            sh.m.lock().unwrap();
            sh.enter();
            if sh.units.load(Ordering::Relaxed) > 0 {
                sh.units.fetch_sub(1, Ordering::Relaxed);
                recovered += 1;
            }
            sh.leave();
            sh.m.unlock().unwrap();
        }
        (consumed, recovered, woken, timed_out, bad_unlocks)
    });
    poster.join();
    let left = shared.units.load(Ordering::Relaxed) as usize;
    println!(
        "waiter on {waiter_on:?}, poster on {poster_on:?}: {woken} woken, {timed_out} timed out, {consumed} \
         units consumed waiting, {recovered} after, {left} left"
    );
    assert_eq!(bad_unlocks, 0, "timed_wait returned without the waiter owning the mutex");
    assert_eq!(
        shared.overlaps.load(Ordering::Relaxed),
        0,
        "waiter and poster were inside the mutex together"
    );
    assert_eq!(consumed + recovered + left, ROUNDS, "units lost or duplicated");
}

#[test]
fn a_condvar_signal_racing_the_deadline_wakes_the_waiter_exactly_once() {
    isolated!(TIMEOUT, {
        support::init_runtime(common::init);
        condvar_signal_race(On::Uthread, On::Uthread);
        condvar_signal_race(On::Thread, On::Uthread);
        condvar_signal_race(On::Uthread, On::Thread);
    });
}
