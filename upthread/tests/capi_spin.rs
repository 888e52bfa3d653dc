//! `upthread_spin_*`: error codes and zeroed storage, the PDR rule (a uthread holding a
//! spinlock has notifications disabled, so it is never preempted), a spinner that gives
//! way to a holder that left its vcore of its own accord, and mutual exclusion between
//! uthreads and plain threads under preemption.

mod capi_common;

use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use capi_common::{mixed, run_as, start, wait_until, Shared, Who, TIMEOUT};
use libc::{pthread_spinlock_t, EBUSY, EINVAL};
use parlib_upthread::capi::*;

type Spin = Shared<pthread_spinlock_t>;

fn lock(s: Spin) -> i32 {
    // SAFETY: leaked spinlock storage.
    unsafe { upthread_spin_lock(s.get()) }
}
fn trylock(s: Spin) -> i32 {
    // SAFETY: as above.
    unsafe { upthread_spin_trylock(s.get()) }
}
fn unlock(s: Spin) -> i32 {
    // SAFETY: as above.
    unsafe { upthread_spin_unlock(s.get()) }
}
fn destroy(s: Spin) -> i32 {
    // SAFETY: as above.
    unsafe { upthread_spin_destroy(s.get()) }
}

#[test]
fn misuse_gets_error_codes_and_zeroed_storage_is_unlocked() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::check_from_both(|who| {
            let s = Spin::zeroed();
            assert_eq!(trylock(s), 0, "zeroed storage is unlocked, on a {who:?}");
            assert_eq!(trylock(s), EBUSY);
            assert_eq!(run_as(Who::Thread, move || trylock(s)), EBUSY);
            assert_eq!(destroy(s), EBUSY, "destroy while held");
            assert_eq!(unlock(s), 0);
            assert_eq!(destroy(s), 0);
            // glibc ignores pshared; so does upthread.
            for pshared in [libc::PTHREAD_PROCESS_PRIVATE, libc::PTHREAD_PROCESS_SHARED, 5] {
                // SAFETY: leaked storage no one uses.
                assert_eq!(unsafe { upthread_spin_init(s.get(), pshared) }, 0);
            }
            assert_eq!(lock(s), 0);
            assert_eq!(unlock(s), 0);
            assert_eq!(unlock(s), 0, "unlocking a free spinlock is 0, as glibc");
            // SAFETY: null pointers are refused before use.
            unsafe {
                assert_eq!(upthread_spin_init(null_mut(), 0), EINVAL);
                assert_eq!(upthread_spin_lock(null_mut()), EINVAL);
                assert_eq!(upthread_spin_trylock(null_mut()), EINVAL);
                assert_eq!(upthread_spin_unlock(null_mut()), EINVAL);
                assert_eq!(upthread_spin_destroy(null_mut()), EINVAL);
            }
        });
    });
}

#[test]
fn a_uthread_holding_a_spinlock_has_notifications_disabled() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        let s = Spin::zeroed();
        let depth = parlib_uthread::notif_disable_depth;
        let before = depth();
        assert_eq!(lock(s), 0);
        assert_eq!(depth(), before + 1, "lock disables notifications");
        assert_eq!(unlock(s), 0);
        assert_eq!(depth(), before, "unlock gives them back");
        assert_eq!(trylock(s), 0);
        assert_eq!(depth(), before + 1, "so does trylock");
        assert_eq!(trylock(s), EBUSY);
        assert_eq!(depth(), before + 1, "a failed trylock leaves the depth alone");
        assert_eq!(unlock(s), 0);
        assert_eq!(depth(), before);
        // A lock taken by a plain thread and released by this uthread (undefined
        // behaviour in POSIX) must not take a level this uthread does not have.
        assert_eq!(run_as(Who::Thread, move || lock(s)), 0);
        assert_eq!(unlock(s), 0);
        assert_eq!(depth(), before);
    });
}

/// One vcore. A holds the lock and yields several times while holding it (leaving its
/// vcore of its own accord); B, on the same vcore, spins for the lock meanwhile. If B
/// never gave way, A could never run again to release it and the watchdog would fail
/// the test.
#[test]
fn a_spinner_gives_way_to_a_holder_waiting_for_its_vcore() {
    parlib_testkit::isolated!(TIMEOUT, env = &[("UPTHREAD_VCORES", "1")], {
        capi_common::init();
        static HELD: AtomicBool = AtomicBool::new(false);
        static RELEASED: AtomicBool = AtomicBool::new(false);
        let s = Spin::zeroed();
        let a = start(Who::Uthread, move || {
            assert_eq!(lock(s), 0);
            HELD.store(true, Ordering::SeqCst);
            for _ in 0..20 {
                parlib_upthread::yield_now();
            }
            RELEASED.store(true, Ordering::SeqCst);
            assert_eq!(unlock(s), 0);
        });
        let b = start(Who::Uthread, move || {
            wait_until(|| HELD.load(Ordering::SeqCst));
            assert_eq!(lock(s), 0);
            let after_release = RELEASED.load(Ordering::SeqCst);
            assert_eq!(unlock(s), 0);
            after_release
        });
        a.join();
        assert!(b.join(), "B got the lock only after A released it");
    });
}

/// Uthreads (on one vcore, preempted every 100 µs) and plain threads increment a counter
/// with a plain read-modify-write under the spinlock: the total is exact only if they
/// excluded each other, and the test finishes only if no uthread spun forever behind a
/// preempted holder.
#[test]
fn uthreads_and_threads_exclude_each_other_under_preemption() {
    parlib_testkit::isolated!(
        TIMEOUT,
        env = &[("UPTHREAD_VCORES", "1"), ("UPTHREAD_SCHED_PERIOD_US", "100")],
        {
            capi_common::init();
            const CALLERS: usize = 6;
            const ROUNDS: u64 = 20_000;
            static INSIDE: AtomicUsize = AtomicUsize::new(0);
            static TOTAL: AtomicU64 = AtomicU64::new(0);
            let s = Spin::zeroed();
            let tasks: Vec<_> = (0..CALLERS)
                .map(|i| {
                    start(mixed(i), move || {
                        for n in 0..ROUNDS {
                            let r = if n.is_multiple_of(2) { lock(s) } else { loop_trylock(s) };
                            assert_eq!(r, 0);
                            assert_eq!(INSIDE.fetch_add(1, Ordering::Relaxed), 0, "two holders");
                            let t = TOTAL.load(Ordering::Relaxed);
                            for _ in 0..50 {
                                std::hint::spin_loop(); // a window for a preemption tick
                            }
                            TOTAL.store(t + 1, Ordering::Relaxed);
                            INSIDE.fetch_sub(1, Ordering::Relaxed);
                            assert_eq!(unlock(s), 0);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.join();
            }
            assert_eq!(TOTAL.load(Ordering::Relaxed), CALLERS as u64 * ROUNDS);
            assert_eq!(destroy(s), 0);
        }
    );
}

/// `trylock` until it succeeds, giving others a turn in between.
fn loop_trylock(s: Spin) -> i32 {
    loop {
        match trylock(s) {
            EBUSY => capi_common::pause(),
            r => return r,
        }
    }
}
