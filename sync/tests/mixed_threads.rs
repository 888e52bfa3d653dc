//! Plain Linux threads and uthreads may contend for the same primitive (crate docs,
//! "Outside uthreads"): a thread blocks by sleeping on a futex, a uthread by yielding,
//! and each wakes the other kind correctly. Checked with exact counts under heavy
//! contention, and with directed hand-overs in both directions where the waiter is
//! known to be queued before it is woken.

use parlib_testsched as common;
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_sync::{Condvar, Mutex, RawMutex, Semaphore};
use parlib_testkit::isolated;
use parlib_uthread::TlsMode;
use support::{spawn_plain, Failures};

const TIMEOUT: Duration = Duration::from_secs(60);
const THREADS: usize = 4;
const UTHREADS: usize = 32;

static FAILURES: Failures = Failures::new();
/// Participants that have started, and the gate that lets them all go at once (so
/// threads and uthreads overlap: backed uthreads take a while to create).
static STARTED: AtomicUsize = AtomicUsize::new(0);
static GO: AtomicBool = AtomicBool::new(false);

fn gate() {
    STARTED.fetch_add(1, Ordering::AcqRel);
    support::wait_for(|| GO.load(Ordering::Acquire));
}

/// Starts `THREADS` plain threads and `UTHREADS` uthreads running `body(index)`, opens
/// the gate once all have started, and waits for all of them.
fn run_mixed(body: fn(usize)) {
    let threads: Vec<_> = (0..THREADS).map(|i| spawn_plain(move || body(i))).collect();
    for i in 0..UTHREADS {
        common::spawn(TlsMode::Backed, move || body(THREADS + i));
    }
    common::wait_until(|| STARTED.load(Ordering::Acquire) == THREADS + UTHREADS);
    GO.store(true, Ordering::Release);
    common::wait_all();
    common::wait_until(|| threads.iter().all(|t| t.is_finished()));
    for t in threads {
        t.join().expect("a plain thread panicked");
    }
    FAILURES.assert_none("mixed threads and uthreads");
}

#[test]
fn threads_and_uthreads_increment_one_mutex_exactly() {
    const ROUNDS: u64 = 1000;
    static M: Mutex<u64> = Mutex::new(0);
    static HELD: AtomicBool = AtomicBool::new(false);
    /// Rounds that found the mutex held: [by threads, by uthreads].
    static CONTENDED: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
    isolated!(TIMEOUT, {
        common::init();
        run_mixed(|i| {
            gate();
            let kind = (i >= THREADS) as usize;
            for r in 0..ROUNDS {
                let mut g = match M.try_lock() {
                    Some(g) => g,
                    None => {
                        CONTENDED[kind].fetch_add(1, Ordering::Relaxed);
                        M.lock()
                    }
                };
                if HELD.swap(true, Ordering::AcqRel) {
                    FAILURES.record(|| "two holders of the mutex at once".into());
                }
                let v = *g;
                if r.is_multiple_of(8) {
                    support::pause(); // hold it across a yield: others queue meanwhile
                }
                *g = v + 1;
                HELD.store(false, Ordering::Release);
            }
        });
        assert_eq!(*M.lock(), (THREADS + UTHREADS) as u64 * ROUNDS, "lost or doubled increments");
        println!(
            "rounds that found the mutex held: threads {}, uthreads {}",
            CONTENDED[0].load(Ordering::Relaxed),
            CONTENDED[1].load(Ordering::Relaxed)
        );
    });
}

#[test]
fn a_semaphore_pool_shared_by_threads_and_uthreads_never_exceeds_its_units() {
    const UNITS: u32 = 3;
    const ROUNDS: u64 = 500;
    static POOL: Semaphore = Semaphore::new(UNITS);
    static IN_USE: AtomicUsize = AtomicUsize::new(0);
    static MAX_IN_USE: AtomicUsize = AtomicUsize::new(0);
    static ACQUIRED: AtomicU64 = AtomicU64::new(0);
    static RELEASED: AtomicU64 = AtomicU64::new(0);
    isolated!(TIMEOUT, {
        common::init();
        run_mixed(|_| {
            gate();
            for r in 0..ROUNDS {
                POOL.acquire();
                ACQUIRED.fetch_add(1, Ordering::Relaxed);
                let now = IN_USE.fetch_add(1, Ordering::AcqRel) + 1;
                MAX_IN_USE.fetch_max(now, Ordering::Relaxed);
                if now > UNITS as usize {
                    FAILURES.record(|| format!("{now} holders of a {UNITS}-unit pool"));
                }
                if r.is_multiple_of(4) {
                    support::pause(); // hold the unit across a yield
                }
                IN_USE.fetch_sub(1, Ordering::AcqRel);
                RELEASED.fetch_add(1, Ordering::Relaxed);
                POOL.release();
            }
        });
        let total = (THREADS + UTHREADS) as u64 * ROUNDS;
        assert_eq!(ACQUIRED.load(Ordering::Relaxed), total);
        assert_eq!(RELEASED.load(Ordering::Relaxed), total);
        assert_eq!(POOL.value(), UNITS, "every unit came back");
        assert!(MAX_IN_USE.load(Ordering::Relaxed) <= UNITS as usize);
        println!("most units in use at once: {}", MAX_IN_USE.load(Ordering::Relaxed));
    });
}

// ---------------------------------------------------------------------------------------
// Directed hand-overs: the waiter is known to be queued (a uthread `Blocked`, a thread
// asleep in the kernel) before the other kind wakes it.

#[test]
fn a_mutex_hands_over_from_a_uthread_to_a_thread_and_back() {
    static M: RawMutex = RawMutex::new();
    static TID: AtomicUsize = AtomicUsize::new(0);
    static THREAD_HAD_IT: AtomicBool = AtomicBool::new(false);
    static RELEASE: AtomicBool = AtomicBool::new(false);
    isolated!(TIMEOUT, {
        common::init();
        // A uthread (main) holds it; a thread blocks; main's unlock wakes the thread.
        M.lock().unwrap();
        let t = spawn_plain(|| {
            TID.store(support::gettid() as usize, Ordering::Release);
            M.lock().unwrap();
            THREAD_HAD_IT.store(true, Ordering::Release);
            M.unlock().unwrap();
        });
        common::wait_until(|| TID.load(Ordering::Acquire) != 0);
        support::wait_until_asleep(TID.load(Ordering::Acquire) as i32);
        assert!(!THREAD_HAD_IT.load(Ordering::Acquire));
        M.unlock().unwrap();
        common::wait_until(|| t.is_finished());
        assert!(THREAD_HAD_IT.load(Ordering::Acquire), "the thread got the mutex");

        // A thread holds it; a uthread blocks; the thread's unlock wakes the uthread.
        static HELD_BY_THREAD: AtomicBool = AtomicBool::new(false);
        static UTHREAD_HAD_IT: AtomicBool = AtomicBool::new(false);
        let t = spawn_plain(|| {
            M.lock().unwrap();
            HELD_BY_THREAD.store(true, Ordering::Release);
            while !RELEASE.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_micros(100));
            }
            M.unlock().unwrap();
        });
        common::wait_until(|| HELD_BY_THREAD.load(Ordering::Acquire));
        let u = common::spawn(TlsMode::Backed, || {
            M.lock().unwrap();
            UTHREAD_HAD_IT.store(true, Ordering::Release);
            M.unlock().unwrap();
        });
        // SAFETY: the uthread cannot finish before the thread releases the mutex.
        unsafe { support::wait_until_blocked(u) };
        RELEASE.store(true, Ordering::Release);
        common::wait_all();
        common::wait_until(|| t.is_finished());
        assert!(UTHREAD_HAD_IT.load(Ordering::Acquire), "the uthread got the mutex");
        assert!(!M.is_locked());
    });
}

#[test]
fn a_condvar_signal_wakes_the_other_kind_of_waiter() {
    static M: Mutex<u32> = Mutex::new(0);
    static CV: Condvar = Condvar::new();
    static TID: AtomicUsize = AtomicUsize::new(0);
    isolated!(TIMEOUT, {
        common::init();
        // A thread waits; a uthread (main) signals.
        let t = spawn_plain(|| {
            let mut g = M.lock();
            TID.store(support::gettid() as usize, Ordering::Release);
            while *g < 1 {
                g = CV.wait(g);
            }
        });
        common::wait_until(|| TID.load(Ordering::Acquire) != 0);
        support::wait_until_asleep(TID.load(Ordering::Acquire) as i32);
        *M.lock() = 1;
        CV.notify_one();
        common::wait_until(|| t.is_finished());
        t.join().unwrap();

        // A uthread waits; a thread signals.
        let u = common::spawn(TlsMode::Backed, || {
            let mut g = M.lock();
            while *g < 2 {
                g = CV.wait(g);
            }
        });
        // SAFETY: the uthread cannot finish before it is signalled.
        unsafe { support::wait_until_blocked(u) };
        let t = spawn_plain(|| {
            *M.lock() = 2;
            CV.notify_one();
        });
        common::wait_all();
        common::wait_until(|| t.is_finished());
        assert_eq!(*M.lock(), 2);
    });
}

#[test]
fn a_semaphore_post_hands_its_unit_to_the_other_kind_of_waiter() {
    static S: Semaphore = Semaphore::new(0);
    static TID: AtomicUsize = AtomicUsize::new(0);
    isolated!(TIMEOUT, {
        common::init();
        // A thread waits; a uthread (main) posts.
        let t = spawn_plain(|| {
            TID.store(support::gettid() as usize, Ordering::Release);
            S.acquire();
        });
        common::wait_until(|| TID.load(Ordering::Acquire) != 0);
        support::wait_until_asleep(TID.load(Ordering::Acquire) as i32);
        S.release();
        common::wait_until(|| t.is_finished());
        assert_eq!(S.value(), 0, "the unit went to the thread");

        // A uthread waits; a thread posts.
        let u = common::spawn(TlsMode::Backed, || S.acquire());
        // SAFETY: the uthread cannot finish before it is posted.
        unsafe { support::wait_until_blocked(u) };
        let t = spawn_plain(|| S.release());
        common::wait_all();
        common::wait_until(|| t.is_finished());
        assert_eq!(S.value(), 0, "the unit went to the uthread");
    });
}
