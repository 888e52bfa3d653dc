//! A primitive may be destroyed, and its storage freed or reused, as soon as its last
//! user is done with it, as POSIX and glibc allow for the pthread objects the raw types
//! stand in for:
//!
//! * a mutex: "It shall be safe to destroy an initialized mutex that is unlocked"
//!   (POSIX `pthread_mutex_destroy`, whose rationale shows an object freed by the last
//!   holder of its reference count); an unlock that is still in progress in another
//!   caller must not touch the mutex after releasing it (glibc bug 13690);
//! * a barrier: the serial waiter may destroy it at once (glibc's
//!   `pthread_barrier_destroy` waits for released waiters to leave);
//! * a condvar: "can be destroyed immediately after all the threads that are blocked on
//!   it are awakened" (POSIX `pthread_cond_destroy`);
//! * a semaphore: a waiter whose wait returned may destroy it (the post that woke it is
//!   done with it).
//!
//! "Reuse" is simulated by overwriting the storage right after a successful `destroy`:
//! with a fresh object where the protocol allows a clean check, or with `0xff` bytes
//! ("freed, reused for something else") where any later write shows. A caller that
//! still touches the object afterwards either changes those bytes (seen) or sees them
//! (re-blocks, spins), and the test names it instead of hanging.

use parlib_testsched as common;
mod support;

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_sync::{Errno, RawBarrier, RawCondvar, RawMutex, RawSemaphore};
use parlib_testkit::isolated;
use parlib_uthread::{State, TlsMode, Uthread};
use parlib_vcore as vcore;

const TIMEOUT: Duration = Duration::from_secs(60);
const ONE_VCORE: &[(&str, &str)] = &[(vcore::VCORE_LIMIT_ENV, "1")];

/// Storage for one `T` (at most 64 bytes, 8-aligned) that the test can overwrite
/// wholesale, as an allocator reusing freed memory would.
struct Storage {
    words: &'static [AtomicU64; 8],
}

impl Storage {
    fn new<T>() -> Storage {
        assert!(std::mem::size_of::<T>() <= 64 && std::mem::align_of::<T>() <= 8);
        Storage { words: Box::leak(Box::new([const { AtomicU64::new(0) }; 8])) }
    }

    /// Puts a fresh `value` in the storage and returns it.
    fn put<T>(&self, value: T) -> &'static T {
        let p = self.words.as_ptr().cast::<T>().cast_mut();
        // SAFETY: the storage is big and aligned enough (checked in `new`) and lives for
        // the process. The test only calls this when the previous object's users are done
        // with it, or, when the point is to catch a user that is not, right after
        // `destroy` succeeded: then any overlap with that user's accesses is the bug.
        unsafe {
            p.write(value);
            &*p
        }
    }

    /// Overwrites the first `n` words with `pattern`. Atomic stores: a straggling user
    /// of the destroyed object may still access it concurrently (that is what is tested).
    fn fill(&self, n: usize, pattern: u64) {
        self.words[..n].iter().for_each(|w| w.store(pattern, Ordering::SeqCst));
    }

    fn all_are(&self, n: usize, pattern: u64) -> bool {
        self.words[..n].iter().all(|w| w.load(Ordering::SeqCst) == pattern)
    }
}

fn state_of(uth: NonNull<Uthread>) -> State {
    // SAFETY: callers pass uthreads that live until the end of the test.
    unsafe { uth.as_ref() }.state()
}

// ---------------------------------------------------------------------------------------
// Barrier.

#[test]
fn the_serial_waiter_may_destroy_and_reuse_a_barrier_at_once() {
    // One vcore, so the order is fixed: the waiter blocks; main arrives last (serial),
    // which makes the waiter runnable; main destroys the barrier and puts a fresh one
    // in its storage before the waiter runs again. The released waiter must return
    // without looking at the barrier again; if it re-checks the (new) barrier it finds
    // generation 0 again and blocks on the new barrier: then main rescues it.
    const ROUNDS: usize = 50;
    static GO: AtomicUsize = AtomicUsize::new(0);
    static RETURNED: AtomicUsize = AtomicUsize::new(0);
    static BARRIER: AtomicU64 = AtomicU64::new(0);
    isolated!(TIMEOUT, env = ONE_VCORE, {
        common::init();
        assert_eq!(vcore::max_vcores(), 1, "run with VCORE_LIMIT=1");
        let storage = Storage::new::<RawBarrier>();
        let mut b = storage.put(RawBarrier::new(2));
        BARRIER.store(b as *const RawBarrier as u64, Ordering::Release);
        let waiter = common::spawn(TlsMode::Backed, || {
            for round in 0..ROUNDS {
                common::wait_until(|| GO.load(Ordering::Acquire) > round);
                // SAFETY: the storage lives for the process; main re-initialises it only
                // between our rounds (or after `destroy`, which is what is tested).
                let b = unsafe { &*(BARRIER.load(Ordering::Acquire) as *const RawBarrier) };
                assert_eq!(b.wait(), Ok(false), "the waiter is not the serial one");
                RETURNED.store(round + 1, Ordering::Release);
            }
        });
        let mut stuck_rounds = Vec::new();
        for round in 0..ROUNDS {
            GO.store(round + 1, Ordering::Release);
            // The waiter cannot exit before its last round returns.
            common::wait_until(|| state_of(waiter) == State::Blocked);
            assert_eq!(b.wait(), Ok(true), "main arrives last: serial");
            assert_eq!(b.destroy(), Ok(()), "round {round}: destroy right after the serial wait");
            b = storage.put(RawBarrier::new(2)); // reuse the storage for a new barrier
            common::wait_until(|| {
                RETURNED.load(Ordering::Acquire) > round || state_of(waiter) == State::Blocked
            });
            if RETURNED.load(Ordering::Acquire) <= round {
                // It re-checked the destroyed barrier, saw the new one and queued on it.
                stuck_rounds.push(round);
                b.init(1).unwrap();
                b.wait().unwrap(); // a new generation: the stray waiter leaves
                common::wait_until(|| RETURNED.load(Ordering::Acquire) > round);
                b = storage.put(RawBarrier::new(2));
            }
        }
        common::wait_all();
        assert!(
            stuck_rounds.is_empty(),
            "in {} of {ROUNDS} rounds (first: {:?}) a waiter released by the serial arrival \
             still used the barrier after the serial waiter had destroyed it and reused its \
             storage (it re-took the queue lock and re-read the generation)",
            stuck_rounds.len(),
            &stuck_rounds[..stuck_rounds.len().min(5)]
        );
    });
}

// ---------------------------------------------------------------------------------------
// Mutex.

/// The mutex of `mutex_destroyed_by_the_last_user`, shared with the unlocker.
static MUTEX: AtomicU64 = AtomicU64::new(0);
static REFS: AtomicU32 = AtomicU32::new(0);
static GO: AtomicUsize = AtomicUsize::new(0);
static UNLOCKED: AtomicUsize = AtomicUsize::new(0);

fn the_mutex() -> &'static RawMutex {
    // SAFETY: the storage lives for the process.
    unsafe { &*(MUTEX.load(Ordering::Acquire) as *const RawMutex) }
}

/// The reference-count pattern of POSIX's rationale, many times over. Each round, a
/// fresh mutex has two users, each holding one reference:
///
/// 1. the *last user* (pinned to vcore 0) locks it; the *unlocker* (pinned to vcore 1)
///    tries to lock it and blocks;
/// 2. the last user unlocks, waking the unlocker, which takes the mutex over the contended path
///    (so the mutex's state records possible waiters), drops its reference and unlocks;
/// 3. the last user, spinning on `try_lock` on vcore 0, gets the mutex the instant that unlock
///    releases it, drops the last reference, unlocks, destroys the mutex and frees it
///    (overwrites its storage with `0xff` bytes).
///
/// If the unlocker's `unlock` touches the mutex after releasing it, it writes to the
/// freed storage (seen: the last user then zeroes the storage, an unlocked mutex, so it can
/// finish) or reads garbage.
fn mutex_destroyed_by_the_last_user(rounds: usize) {
    const WORDS: usize = std::mem::size_of::<RawMutex>() / 8;
    const FREED: u64 = u64::MAX;
    common::init();
    common::require_vcores(2);
    // Shown with the output if the test fails: the straggling unlock may also crash on
    // the garbage it reads (a "waiter" at 0xffff...) before the check below can see it.
    eprintln!(
        "note: a crash in RawMutex::unlock / wake_one below means an unlock that had \
         already released the mutex used it after another caller destroyed and freed it"
    );
    let storage = Storage::new::<RawMutex>();
    MUTEX.store(storage.put(RawMutex::new()) as *const RawMutex as u64, Ordering::Release);
    let unlocker = common::spawn_on(1, TlsMode::Backed, move || {
        for round in 0..rounds {
            common::wait_until(|| {
                GO.load(Ordering::Acquire) > round || STOP_AT.load(Ordering::Relaxed) <= round
            });
            if STOP_AT.load(Ordering::Relaxed) <= round {
                break;
            }
            let m = the_mutex();
            m.lock().unwrap(); // blocks: main holds it
            REFS.fetch_sub(1, Ordering::AcqRel);
            m.unlock().unwrap();
            UNLOCKED.store(round + 1, Ordering::Release);
        }
    });
    static TOUCHED_AFTER_FREE: AtomicUsize = AtomicUsize::new(0);
    // Rounds the unlocker runs: all of them, unless the last user stops early.
    static STOP_AT: AtomicUsize = AtomicUsize::new(usize::MAX);
    // The other user, pinned to vcore 0 so that the two always run at once (main could
    // migrate onto vcore 1 and starve the unlocker while it spins).
    let unlocker = unlocker.as_ptr() as usize; // a plain address, to send it
    common::spawn_on(0, TlsMode::Backed, move || {
        let unlocker = NonNull::new(unlocker as *mut Uthread).expect("spawned");
        for round in 0..rounds {
            let m = storage.put(RawMutex::new());
            REFS.store(2, Ordering::Release);
            m.lock().unwrap();
            GO.store(round + 1, Ordering::Release);
            // The unlocker cannot exit before its last round.
            common::wait_until(|| state_of(unlocker) == State::Blocked);
            m.unlock().unwrap();
            // Take it the moment the unlocker's unlock releases it.
            loop {
                if m.try_lock().is_ok() {
                    if REFS.load(Ordering::Acquire) == 1 {
                        break; // the unlocker has dropped its reference: we are the last
                    }
                    m.unlock().unwrap(); // too early: the unlocker has not had it yet
                }
                std::hint::spin_loop();
            }
            REFS.store(0, Ordering::Release);
            m.unlock().unwrap();
            assert_eq!(m.destroy(), Ok(()), "round {round}: destroy after the last unlock");
            storage.fill(WORDS, FREED);
            // Until the unlocker's unlock returns, any change to the freed storage is its.
            loop {
                if UNLOCKED.load(Ordering::Acquire) > round {
                    break;
                }
                if !storage.all_are(WORDS, FREED) {
                    TOUCHED_AFTER_FREE.fetch_add(1, Ordering::Relaxed);
                    STOP_AT.store(round + 1, Ordering::Relaxed); // seen once is enough
                    storage.fill(WORDS, 0); // an unlocked mutex: let it finish
                    while UNLOCKED.load(Ordering::Acquire) <= round {
                        std::hint::spin_loop();
                    }
                    break;
                }
                std::hint::spin_loop();
            }
            if STOP_AT.load(Ordering::Relaxed) != usize::MAX {
                break; // the unlocker stops too (before reading its record again)
            }
        }
    });
    common::wait_all();
    let touched_after_free = TOUCHED_AFTER_FREE.load(Ordering::Relaxed);
    assert_eq!(
        touched_after_free, 0,
        "in {touched_after_free} of {rounds} rounds an unlock that had already released the \
         mutex wrote to it after another caller had locked, unlocked and destroyed it"
    );
}

#[test]
fn a_mutex_may_be_destroyed_as_soon_as_its_last_user_unlocks() {
    isolated!(TIMEOUT, {
        mutex_destroyed_by_the_last_user(5000);
    });
}

// ---------------------------------------------------------------------------------------
// Condvar and semaphore: the last waiter to wake destroys and reuses the storage.

#[test]
fn a_condvar_may_be_destroyed_once_a_broadcast_has_woken_its_waiters() {
    // POSIX's example: the broadcaster holds the mutex; each woken waiter takes the
    // mutex; the last one destroys the condvar and reuses its storage (0xff bytes), then
    // waits for the broadcaster to be done: nothing may have touched the storage.
    const WAITERS: usize = 4;
    const ROUNDS: usize = 200;
    static M: RawMutex = RawMutex::new();
    static CV_PTR: AtomicU64 = AtomicU64::new(0);
    static FLAG: AtomicUsize = AtomicUsize::new(0);
    static LEFT: AtomicUsize = AtomicUsize::new(0);
    static QUEUED: AtomicUsize = AtomicUsize::new(0);
    static TOUCHED: AtomicUsize = AtomicUsize::new(0);
    static BROADCAST_DONE: AtomicUsize = AtomicUsize::new(0);
    const WORDS: usize = std::mem::size_of::<RawCondvar>() / 8;
    isolated!(TIMEOUT, {
        common::init();
        let storage: &'static Storage = Box::leak(Box::new(Storage::new::<RawCondvar>()));
        for round in 0..ROUNDS {
            let cv = storage.put(RawCondvar::new());
            CV_PTR.store(cv as *const RawCondvar as u64, Ordering::Release);
            LEFT.store(WAITERS, Ordering::Release);
            for _ in 0..WAITERS {
                common::spawn(TlsMode::Backed, move || {
                    // SAFETY: the storage lives for the process.
                    let cv = unsafe { &*(CV_PTR.load(Ordering::Acquire) as *const RawCondvar) };
                    M.lock().unwrap();
                    // Counted under the mutex, which `wait` releases only once queued.
                    QUEUED.fetch_add(1, Ordering::Relaxed);
                    while FLAG.load(Ordering::Relaxed) <= round {
                        cv.wait(&M).unwrap();
                    }
                    let last = LEFT.fetch_sub(1, Ordering::AcqRel) == 1;
                    M.unlock().unwrap();
                    if last {
                        assert_eq!(cv.destroy(), Ok(()));
                        storage.fill(WORDS, u64::MAX);
                        common::wait_until(|| BROADCAST_DONE.load(Ordering::Acquire) > round);
                        if !storage.all_are(WORDS, u64::MAX) {
                            TOUCHED.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
            // Wait until all are queued, then wake them all under the mutex.
            common::wait_until(|| {
                M.lock().unwrap();
                let queued = QUEUED.load(Ordering::Relaxed) == WAITERS * (round + 1);
                M.unlock().unwrap();
                queued
            });
            assert_eq!(cv.destroy(), Err(Errno::BUSY), "waiters are queued");
            M.lock().unwrap();
            FLAG.store(round + 1, Ordering::Relaxed);
            cv.broadcast();
            M.unlock().unwrap();
            BROADCAST_DONE.store(round + 1, Ordering::Release);
            common::wait_all();
        }
        assert_eq!(TOUCHED.load(Ordering::Relaxed), 0, "the condvar's storage was written after its destroy");
    });
}

#[test]
fn a_semaphore_may_be_destroyed_by_the_waiter_its_post_woke() {
    // The waiter returns from `wait` only once the post handed it the unit; it destroys
    // the semaphore and reuses the storage (0xff bytes) while the poster may still be in
    // `post`: nothing may touch the storage afterwards.
    const ROUNDS: usize = 500;
    static SEM_PTR: AtomicU64 = AtomicU64::new(0);
    static POSTED: AtomicUsize = AtomicUsize::new(0);
    static TOUCHED: AtomicUsize = AtomicUsize::new(0);
    static DESTROYED: AtomicBool = AtomicBool::new(false);
    const WORDS: usize = std::mem::size_of::<RawSemaphore>() / 8;
    isolated!(TIMEOUT, {
        common::init();
        let storage: &'static Storage = Box::leak(Box::new(Storage::new::<RawSemaphore>()));
        for round in 0..ROUNDS {
            let s = storage.put(RawSemaphore::new(0));
            SEM_PTR.store(s as *const RawSemaphore as u64, Ordering::Release);
            DESTROYED.store(false, Ordering::Release);
            let waiter = common::spawn(TlsMode::Backed, move || {
                // SAFETY: the storage lives for the process.
                let s = unsafe { &*(SEM_PTR.load(Ordering::Acquire) as *const RawSemaphore) };
                s.wait();
                assert_eq!(s.destroy(), Ok(()));
                storage.fill(WORDS, u64::MAX);
                DESTROYED.store(true, Ordering::Release);
                common::wait_until(|| POSTED.load(Ordering::Acquire) > round);
                if !storage.all_are(WORDS, u64::MAX) {
                    TOUCHED.fetch_add(1, Ordering::Relaxed);
                }
            });
            // The waiter cannot exit before it is posted.
            common::wait_until(|| state_of(waiter) == State::Blocked);
            let poster = support::start(
                if round.is_multiple_of(2) { support::Who::Uthread } else { support::Who::Thread },
                move || {
                    s.post().unwrap();
                    POSTED.store(round + 1, Ordering::Release);
                },
            );
            poster.join();
            common::wait_all();
            assert!(DESTROYED.load(Ordering::Acquire));
        }
        assert_eq!(
            TOUCHED.load(Ordering::Relaxed),
            0,
            "the semaphore's storage was written after its destroy"
        );
    });
}
