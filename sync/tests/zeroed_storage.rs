//! Every raw primitive fits in the storage of its glibc counterpart and treats all-zero
//! bytes as a valid initial state (DESIGN §8), so C code's static initialisers
//! (`PTHREAD_MUTEX_INITIALIZER`, `PTHREAD_COND_INITIALIZER`, `PTHREAD_RWLOCK_INITIALIZER`,
//! `PTHREAD_ONCE_INIT`) and zeroed allocations work unchanged:
//!
//! | zeroed | is |
//! |---|---|
//! | `RawMutex` | an unlocked normal mutex |
//! | `RawCondvar` | a condvar with no waiters |
//! | `RawRwLock` | an unlocked rwlock |
//! | `RawOnce` | not yet run |
//! | `RawSemaphore` | a semaphore at 0 |
//! | `RawBarrier` | not initialised: `wait` is `EINVAL` until `init` |
//!
//! The sizes are also checked at compile time inside the crate; these tests document
//! them against the `libc` crate's types and glibc's numbers (x86-64).

use parlib_testsched as common;
mod support;

use std::alloc::{alloc_zeroed, Layout};
use std::mem::{align_of, size_of};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_sync::{
    Errno, RawBarrier, RawCondvar, RawMutex, RawOnce, RawRwLock, RawSemaphore, MUTEX_ERRORCHECK,
    MUTEX_NORMAL, MUTEX_RECURSIVE,
};
use parlib_testkit::isolated;
use parlib_uthread::TlsMode;
use support::Who;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A `T` in fresh, all-zero heap memory that is never freed.
fn zeroed_box<T>() -> &'static T {
    let layout = Layout::new::<T>();
    assert!(layout.size() > 0);
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { alloc_zeroed(layout) };
    assert!(!p.is_null(), "allocation failed");
    // SAFETY: `p` is aligned and sized for `T` and never freed. All-zero bytes are a
    // valid *Rust* value of every type used here (atomics, null raw pointers); whether
    // they are a valid *initialised primitive* is what these tests check.
    unsafe { &*p.cast::<T>() }
}

/// The bytes of a value of a type without padding.
fn bytes_of<T>(v: &T) -> &[u8] {
    // SAFETY: `v` is a live reference; the types passed here have no padding (their
    // fields are 4- and 8-byte atomics and pointers laid out without gaps), so every
    // byte is initialised.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

// Statics made of zero bytes, as a C program's `static pthread_mutex_t m;` would be.
// SAFETY: all-zero bytes are a valid Rust value of the type (atomics, null pointers);
// whether they are a valid unlocked mutex is what the tests check.
static ZERO_MUTEX: RawMutex = unsafe { std::mem::zeroed() };
// SAFETY: as above, for a condvar with no waiters.
static ZERO_CONDVAR: RawCondvar = unsafe { std::mem::zeroed() };
// SAFETY: as above, for an unlocked rwlock.
static ZERO_RWLOCK: RawRwLock = unsafe { std::mem::zeroed() };
// SAFETY: as above, for a once that has not run.
static ZERO_ONCE: RawOnce = unsafe { std::mem::zeroed() };

#[test]
fn sizes_and_alignments_match_glibc() {
    // glibc x86-64: pthread_mutex_t 40, pthread_cond_t 48, pthread_rwlock_t 56,
    // pthread_barrier_t 32, sem_t 32, pthread_once_t 4 (an int).
    assert_eq!(size_of::<RawMutex>(), 40);
    assert_eq!(size_of::<RawCondvar>(), 48);
    assert_eq!(size_of::<RawRwLock>(), 56);
    assert_eq!(size_of::<RawBarrier>(), 32);
    assert_eq!(size_of::<RawSemaphore>(), 32);
    assert_eq!(size_of::<RawOnce>(), 4);
    assert_eq!(size_of::<RawMutex>(), size_of::<libc::pthread_mutex_t>());
    assert_eq!(size_of::<RawCondvar>(), size_of::<libc::pthread_cond_t>());
    assert_eq!(size_of::<RawRwLock>(), size_of::<libc::pthread_rwlock_t>());
    assert_eq!(size_of::<RawBarrier>(), size_of::<libc::pthread_barrier_t>());
    assert_eq!(size_of::<RawSemaphore>(), size_of::<libc::sem_t>());
    assert_eq!(size_of::<RawOnce>(), size_of::<libc::pthread_once_t>());
    // A C struct embedding one must lay out the same: the alignment must not exceed
    // glibc's (8 for the unions with a `long` member, 4 for an int).
    assert_eq!(align_of::<RawMutex>(), align_of::<libc::pthread_mutex_t>());
    assert_eq!(align_of::<RawCondvar>(), align_of::<libc::pthread_cond_t>());
    assert_eq!(align_of::<RawRwLock>(), align_of::<libc::pthread_rwlock_t>());
    assert_eq!(align_of::<RawBarrier>(), align_of::<libc::pthread_barrier_t>());
    assert_eq!(align_of::<RawSemaphore>(), align_of::<libc::sem_t>());
    assert_eq!(align_of::<RawOnce>(), align_of::<libc::pthread_once_t>());
    assert_eq!([align_of::<RawMutex>(), align_of::<RawCondvar>(), align_of::<RawRwLock>()], [8, 8, 8]);
    assert_eq!([align_of::<RawBarrier>(), align_of::<RawSemaphore>(), align_of::<RawOnce>()], [8, 8, 4]);
}

#[test]
fn the_constructors_of_the_default_states_are_all_zero_bytes() {
    // `new()` and zeroed storage are the same state, not merely equivalent ones.
    assert!(bytes_of(&RawMutex::new()).iter().all(|&b| b == 0), "RawMutex::new()");
    assert!(bytes_of(&RawCondvar::new()).iter().all(|&b| b == 0), "RawCondvar::new()");
    assert!(bytes_of(&RawRwLock::new()).iter().all(|&b| b == 0), "RawRwLock::new()");
    assert!(bytes_of(&RawOnce::new()).iter().all(|&b| b == 0), "RawOnce::new()");
    assert!(bytes_of(&RawSemaphore::new(0)).iter().all(|&b| b == 0), "RawSemaphore::new(0)");
    // And glibc's static initialisers are zero bytes too, so storage initialised by C
    // is one of ours.
    let m = libc::PTHREAD_MUTEX_INITIALIZER;
    let c = libc::PTHREAD_COND_INITIALIZER;
    let r = libc::PTHREAD_RWLOCK_INITIALIZER;
    assert!(bytes_of(&m).iter().all(|&b| b == 0));
    assert!(bytes_of(&c).iter().all(|&b| b == 0));
    assert!(bytes_of(&r).iter().all(|&b| b == 0));
    assert_eq!(libc::PTHREAD_ONCE_INIT, 0);
}

/// A condvar records the clock its deadlines are given on in its own storage, and zero
/// bytes (`PTHREAD_COND_INITIALIZER`) mean `CLOCK_REALTIME`, as in glibc.
#[test]
fn a_condvar_keeps_its_clock_and_zeroed_storage_is_realtime() {
    assert_eq!(ZERO_CONDVAR.clock(), libc::CLOCK_REALTIME);
    assert_eq!(RawCondvar::new().clock(), libc::CLOCK_REALTIME);
    assert_eq!(zeroed_box::<RawCondvar>().clock(), libc::CLOCK_REALTIME);
    let mono = RawCondvar::with_clock(libc::CLOCK_MONOTONIC);
    assert_eq!(mono.clock(), libc::CLOCK_MONOTONIC);
    assert_eq!(mono.destroy(), Ok(()), "otherwise a condvar without waiters");
    // SAFETY: same size (checked above); zero bytes are a valid Rust value of it.
    let c: RawCondvar = unsafe { std::mem::transmute(libc::PTHREAD_COND_INITIALIZER) };
    assert_eq!(c.clock(), libc::CLOCK_REALTIME);
}

/// glibc's other static mutex initialisers are zero bytes but for `__kind` at byte 16
/// (`PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP` 1, `PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP`
/// 2, `PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP` 3): read as a `RawMutex`, each is an
/// unlocked mutex of that kind, adaptive being normal.
#[test]
fn glibc_kind_initialisers_are_unlocked_mutexes_of_their_kind() {
    let cases = [
        (libc::PTHREAD_MUTEX_INITIALIZER, MUTEX_NORMAL),
        (libc::PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP, MUTEX_RECURSIVE),
        (libc::PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP, MUTEX_ERRORCHECK),
        (libc::PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP, MUTEX_NORMAL),
    ];
    for (glibc, kind) in cases {
        // SAFETY: same size (checked above); every byte pattern of atomics and null
        // pointers is a valid Rust value.
        let m: RawMutex = unsafe { std::mem::transmute(glibc) };
        assert_eq!(m.kind(), kind);
        assert!(!m.is_locked());
        assert_eq!(m.destroy(), Ok(()));
    }
    // And our constructors write the kind where glibc's initialisers do.
    for kind in [MUTEX_RECURSIVE, MUTEX_ERRORCHECK] {
        let m = RawMutex::with_kind(kind);
        let b = bytes_of(&m);
        assert_eq!(u32::from_ne_bytes(b[16..20].try_into().unwrap()), kind, "kind at byte 16");
        assert!(b.iter().enumerate().all(|(i, &x)| x == 0 || (16..20).contains(&i)));
    }
}

/// Checks a zeroed mutex, condvar, rwlock, once, semaphore and barrier from the caller
/// (a uthread or a plain thread), using others of kind `who` for contention.
fn zeroed_primitives_work(who: Who, m: &'static RawMutex, cv: &'static RawCondvar, rw: &'static RawRwLock) {
    // Mutex: unlocked, normal, and its blocking path works from zero state.
    assert_eq!(m.kind(), MUTEX_NORMAL, "a zeroed mutex is a normal one");
    assert!(!m.is_locked());
    assert_eq!(m.destroy(), Ok(()));
    assert_eq!(m.unlock(), Err(Errno::PERM), "a zeroed mutex is not locked");
    m.lock().expect("lock a zeroed mutex");
    let arrived: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let held = support::start(who, move || {
        arrived.store(true, Ordering::Release);
        // Blocks (most likely) on a mutex whose queue started as zero bytes.
        m.lock().unwrap();
        m.unlock().unwrap();
    });
    support::wait_for(|| arrived.load(Ordering::Acquire));
    m.unlock().unwrap();
    held.join();
    assert!(!m.is_locked());

    // Condvar: no waiters, and a wait/signal round trip works.
    assert_eq!(cv.destroy(), Ok(()), "a zeroed condvar has no waiters");
    cv.signal();
    cv.broadcast();
    let flag: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let waiter = support::start(who, move || {
        m.lock().unwrap();
        while !flag.load(Ordering::Relaxed) {
            cv.wait(m).unwrap();
        }
        m.unlock().unwrap();
    });
    support::wait_for(|| cv.destroy() == Err(Errno::BUSY));
    m.lock().unwrap();
    flag.store(true, Ordering::Relaxed);
    cv.signal();
    m.unlock().unwrap();
    waiter.join();
    assert_eq!(cv.destroy(), Ok(()));

    // Rwlock: unlocked; readers share, a writer excludes, a queued writer is granted.
    assert_eq!(rw.destroy(), Ok(()), "a zeroed rwlock is not held");
    assert_eq!(rw.unlock(), Err(Errno::PERM));
    rw.read_lock().unwrap();
    assert_eq!(support::run_as(who, move || rw.try_read_lock().and_then(|()| rw.unlock())), Ok(()));
    let writer = support::start(who, move || {
        rw.write_lock().unwrap();
        rw.unlock().unwrap();
    });
    // The writer cannot finish while we hold a read lock; once it is queued, new
    // readers are turned away (writers do not starve).
    support::wait_for(|| match rw.try_read_lock() {
        Err(e) => {
            assert_eq!(e, Errno::BUSY);
            true
        }
        Ok(()) => {
            rw.unlock().unwrap(); // not queued yet: undo and look again
            false
        }
    });
    rw.unlock().unwrap();
    writer.join();
    assert_eq!(rw.destroy(), Ok(()));

    // Semaphore: at 0.
    let s: &'static RawSemaphore = zeroed_box();
    assert_eq!(s.value(), 0);
    assert_eq!(s.try_wait(), Err(Errno::AGAIN));
    let taker = support::start(who, move || s.wait());
    s.post().unwrap();
    taker.join();
    assert_eq!(s.value(), 0);
    assert_eq!(s.destroy(), Ok(()));

    // Barrier: zero count means not initialised.
    let b: &'static RawBarrier = zeroed_box();
    assert_eq!(b.wait(), Err(Errno::INVAL), "a zeroed barrier is not initialised");
    assert_eq!(b.destroy(), Ok(()));
    b.init(2).unwrap();
    let other = support::start(who, move || b.wait());
    let mine = b.wait().unwrap();
    let theirs = other.join().unwrap();
    assert!(mine ^ theirs, "exactly one serial arrival (mine {mine}, theirs {theirs})");
}

/// Checks a zeroed once: not run; runs exactly once among several callers.
fn zeroed_once_runs_once(who: Who, once: &'static RawOnce) {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    assert!(!once.is_completed(), "a zeroed once has not run");
    fn init() {
        RUNS.fetch_add(1, Ordering::Relaxed);
    }
    let before = RUNS.load(Ordering::Relaxed);
    let others: Vec<_> = (0..4).map(|_| support::start(who, move || once.call_once(init))).collect();
    once.call_once(init);
    others.into_iter().for_each(support::Task::join);
    assert!(once.is_completed());
    assert_eq!(RUNS.load(Ordering::Relaxed) - before, 1, "the initialiser ran exactly once");
}

#[test]
fn zeroed_heap_storage_is_a_valid_initial_state_on_uthreads() {
    isolated!(TIMEOUT, {
        common::init();
        for who in support::BOTH {
            zeroed_primitives_work(who, zeroed_box(), zeroed_box(), zeroed_box());
            zeroed_once_runs_once(who, zeroed_box());
        }
    });
}

#[test]
fn zeroed_heap_storage_is_a_valid_initial_state_on_plain_threads() {
    isolated!(TIMEOUT, {
        common::init();
        support::on_plain_thread(|| {
            for who in support::BOTH {
                zeroed_primitives_work(who, zeroed_box(), zeroed_box(), zeroed_box());
                zeroed_once_runs_once(who, zeroed_box());
            }
        });
    });
}

#[test]
fn zeroed_statics_are_a_valid_initial_state() {
    isolated!(TIMEOUT, {
        common::init();
        zeroed_primitives_work(Who::Uthread, &ZERO_MUTEX, &ZERO_CONDVAR, &ZERO_RWLOCK);
        zeroed_once_runs_once(Who::Uthread, &ZERO_ONCE);
    });
}

#[test]
fn glibc_static_initialisers_are_a_valid_initial_state() {
    // Storage a C program initialised with PTHREAD_*_INITIALIZER, used through ours.
    isolated!(TIMEOUT, {
        common::init();
        // SAFETY: sizes match (checked above); glibc's initialisers are all-zero bytes,
        // which are valid Rust values of our types. Leaked: lives for the process.
        let m: &'static RawMutex = Box::leak(Box::new(unsafe {
            std::mem::transmute::<libc::pthread_mutex_t, RawMutex>(libc::PTHREAD_MUTEX_INITIALIZER)
        }));
        // SAFETY: as above.
        let cv: &'static RawCondvar = Box::leak(Box::new(unsafe {
            std::mem::transmute::<libc::pthread_cond_t, RawCondvar>(libc::PTHREAD_COND_INITIALIZER)
        }));
        // SAFETY: as above.
        let rw: &'static RawRwLock = Box::leak(Box::new(unsafe {
            std::mem::transmute::<libc::pthread_rwlock_t, RawRwLock>(libc::PTHREAD_RWLOCK_INITIALIZER)
        }));
        // SAFETY: pthread_once_t is a c_int; PTHREAD_ONCE_INIT is 0.
        let once: &'static RawOnce = Box::leak(Box::new(unsafe {
            std::mem::transmute::<libc::pthread_once_t, RawOnce>(libc::PTHREAD_ONCE_INIT)
        }));
        zeroed_primitives_work(Who::Thread, m, cv, rw);
        zeroed_once_runs_once(Who::Thread, once);
    });
}

#[test]
fn a_zeroed_mutex_counts_exactly_under_contention() {
    // The blocking path (queue lock, wait queue, state 2) starting from zero bytes, with
    // many uthreads and a few threads contending.
    const UTHREADS: usize = 32;
    const THREADS: usize = 2;
    const ROUNDS: u64 = 500;
    static COUNT: AtomicU64 = AtomicU64::new(0);
    isolated!(TIMEOUT, {
        common::init();
        let m: &'static RawMutex = zeroed_box();
        let bump = move |yield_inside: bool| {
            for _ in 0..ROUNDS {
                m.lock().unwrap();
                // Read-modify-write in two steps: a lost update shows as a short count.
                let v = COUNT.load(Ordering::Relaxed);
                if yield_inside {
                    common::yield_now(); // others queue on the mutex meanwhile
                }
                COUNT.store(v + 1, Ordering::Relaxed);
                m.unlock().unwrap();
            }
        };
        for i in 0..UTHREADS {
            common::spawn(TlsMode::Backed, move || bump(i.is_multiple_of(2)));
        }
        let threads: Vec<_> = (0..THREADS).map(|_| support::spawn_plain(move || bump(false))).collect();
        common::wait_all();
        common::wait_until(|| threads.iter().all(|t| t.is_finished()));
        assert_eq!(COUNT.load(Ordering::Relaxed), (UTHREADS + THREADS) as u64 * ROUNDS);
        assert!(!m.is_locked());
    });
}
