//! `upthread_rwlock_*` and `upthread_rwlockattr_*`: glibc's error codes for each misuse,
//! all-zero storage as `PTHREAD_RWLOCK_INITIALIZER`, timed locks that time out or get
//! the lock when it is released around their deadline, a timed-out writer that lets in
//! the readers queued behind it, hand-overs racing a timeout that are never lost, and
//! readers and writers of both kinds excluding each other.

mod capi_common;

use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use capi_common::{
    assert_all_return, check_pshared, mixed, name, realtime_in, run_as, start, Shared, Who, BAD_NSEC, BOTH,
    PAST, TIMEOUT,
};
use libc::{pthread_rwlock_t, pthread_rwlockattr_t, EBUSY, EDEADLK, EINVAL, EPERM, ETIMEDOUT};
use parlib_upthread::capi::*;

type RwLock = Shared<pthread_rwlock_t>;

fn new_rwlock() -> RwLock {
    let l = RwLock::zeroed();
    let a = Shared::<pthread_rwlockattr_t>::zeroed();
    // SAFETY: fresh, leaked storage.
    unsafe {
        assert_eq!(upthread_rwlockattr_init(a.get()), 0);
        assert_eq!(upthread_rwlock_init(l.get(), a.get()), 0);
    }
    l
}

fn rdlock(l: RwLock) -> i32 {
    // SAFETY: an initialised, leaked rwlock.
    unsafe { upthread_rwlock_rdlock(l.get()) }
}
fn wrlock(l: RwLock) -> i32 {
    // SAFETY: as above.
    unsafe { upthread_rwlock_wrlock(l.get()) }
}
fn tryrdlock(l: RwLock) -> i32 {
    // SAFETY: as above.
    unsafe { upthread_rwlock_tryrdlock(l.get()) }
}
fn trywrlock(l: RwLock) -> i32 {
    // SAFETY: as above.
    unsafe { upthread_rwlock_trywrlock(l.get()) }
}
fn timedrdlock(l: RwLock, t: libc::timespec) -> i32 {
    // SAFETY: as above; `t` is a live timespec.
    unsafe { upthread_rwlock_timedrdlock(l.get(), &t) }
}
fn timedwrlock(l: RwLock, t: libc::timespec) -> i32 {
    // SAFETY: as above.
    unsafe { upthread_rwlock_timedwrlock(l.get(), &t) }
}
fn unlock(l: RwLock) -> i32 {
    // SAFETY: as above.
    unsafe { upthread_rwlock_unlock(l.get()) }
}
fn destroy(l: RwLock) -> i32 {
    // SAFETY: as above.
    unsafe { upthread_rwlock_destroy(l.get()) }
}

fn check_misuse(who: Who) {
    let l = new_rwlock();
    assert_eq!(unlock(l), EPERM, "unlock of a free rwlock, on a {who:?}");
    assert_eq!(timedrdlock(l, BAD_NSEC), EINVAL, "bad tv_nsec is checked even for a free lock");
    assert_eq!(timedwrlock(l, BAD_NSEC), EINVAL);
    // Held for writing by the caller.
    assert_eq!(wrlock(l), 0);
    assert_eq!(rdlock(l), EDEADLK, "rdlock by the writer, on a {who:?}");
    assert_eq!(wrlock(l), EDEADLK, "wrlock by the writer, on a {who:?}");
    assert_eq!(tryrdlock(l), EBUSY);
    assert_eq!(trywrlock(l), EBUSY);
    assert_eq!(timedwrlock(l, BAD_NSEC), EINVAL, "tv_nsec is checked before ownership (as glibc)");
    let far = realtime_in(Duration::from_secs(3600));
    assert_eq!(timedrdlock(l, far), EDEADLK, "timedrdlock by the writer, on a {who:?}");
    assert_eq!(timedwrlock(l, far), EDEADLK, "timedwrlock by the writer, on a {who:?}");
    assert_eq!(timedwrlock(l, PAST), EDEADLK, "ownership is checked before the deadline");
    assert_eq!(destroy(l), EBUSY, "destroy while held for writing");
    for other in BOTH {
        assert_eq!(run_as(other, move || unlock(l)), EPERM, "unlock by another than the writer");
        assert_eq!(run_as(other, move || timedrdlock(l, PAST)), ETIMEDOUT);
        assert_eq!(run_as(other, move || timedwrlock(l, PAST)), ETIMEDOUT);
    }
    assert_eq!(unlock(l), 0);
    // Held for reading.
    assert_eq!(rdlock(l), 0);
    assert_eq!(tryrdlock(l), 0, "readers share");
    assert_eq!(timedrdlock(l, PAST), 0, "a free-for-readers lock is taken whatever the deadline");
    assert_eq!(trywrlock(l), EBUSY);
    assert_eq!(timedwrlock(l, PAST), ETIMEDOUT);
    assert_eq!(timedwrlock(l, realtime_in(Duration::from_millis(5))), ETIMEDOUT);
    assert_eq!(destroy(l), EBUSY, "destroy while held for reading");
    for _ in 0..3 {
        assert_eq!(unlock(l), 0);
    }
    assert_eq!(unlock(l), EPERM, "one unlock too many");
    assert_eq!(destroy(l), 0);
}

#[test]
fn misuse_gets_glibc_error_codes() {
    parlib_testkit::isolated!(TIMEOUT, { capi_common::check_from_both(check_misuse) });
}

#[test]
fn attributes_and_null_pointers() {
    parlib_testkit::isolated!(TIMEOUT, {
        let a = Shared::<pthread_rwlockattr_t>::zeroed();
        let mut v = -1;
        // SAFETY: leaked storage; `v` is writable.
        unsafe {
            assert_eq!(upthread_rwlockattr_init(a.get()), 0);
            assert_eq!(upthread_rwlockattr_getkind_np(a.get(), &mut v), 0);
            assert_eq!(v, PTHREAD_RWLOCK_PREFER_READER_NP, "glibc's default kind");
            for kind in [
                PTHREAD_RWLOCK_PREFER_READER_NP,
                PTHREAD_RWLOCK_PREFER_WRITER_NP,
                PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP,
            ] {
                assert_eq!(upthread_rwlockattr_setkind_np(a.get(), kind), 0);
                assert_eq!(upthread_rwlockattr_getkind_np(a.get(), &mut v), 0);
                assert_eq!(v, kind);
            }
            assert_eq!(upthread_rwlockattr_setkind_np(a.get(), 3), EINVAL);
            assert_eq!(upthread_rwlockattr_setkind_np(a.get(), -1), EINVAL);
            check_pshared(upthread_rwlockattr_setpshared, upthread_rwlockattr_getpshared, a.get());
            assert_eq!(upthread_rwlockattr_destroy(a.get()), 0);
            let l = RwLock::zeroed();
            assert_all_return(
                EINVAL,
                &[
                    ("upthread_rwlockattr_init", upthread_rwlockattr_init(null_mut())),
                    ("upthread_rwlockattr_getkind_np", upthread_rwlockattr_getkind_np(null(), &mut v)),
                    ("upthread_rwlock_init", upthread_rwlock_init(null_mut(), null())),
                    ("upthread_rwlock_rdlock", upthread_rwlock_rdlock(null_mut())),
                    ("upthread_rwlock_wrlock", upthread_rwlock_wrlock(null_mut())),
                    ("upthread_rwlock_tryrdlock", upthread_rwlock_tryrdlock(null_mut())),
                    ("upthread_rwlock_trywrlock", upthread_rwlock_trywrlock(null_mut())),
                    ("upthread_rwlock_timedrdlock", upthread_rwlock_timedrdlock(null_mut(), &PAST)),
                    ("upthread_rwlock_timedwrlock", upthread_rwlock_timedwrlock(null_mut(), &PAST)),
                    ("upthread_rwlock_unlock", upthread_rwlock_unlock(null_mut())),
                    ("upthread_rwlock_destroy", upthread_rwlock_destroy(null_mut())),
                    (
                        "upthread_rwlock_timedwrlock, null abstime",
                        upthread_rwlock_timedwrlock(l.get(), null()),
                    ),
                ],
            );
        }
    });
}

#[test]
fn zeroed_storage_is_an_unlocked_rwlock() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        let initializer = Shared(Box::into_raw(Box::new(libc::PTHREAD_RWLOCK_INITIALIZER)));
        for l in [RwLock::zeroed(), initializer] {
            for who in BOTH {
                run_as(who, move || {
                    assert_eq!(tryrdlock(l), 0);
                    assert_eq!(unlock(l), 0);
                    assert_eq!(trywrlock(l), 0);
                    assert_eq!(unlock(l), 0);
                    assert_eq!(destroy(l), 0);
                });
            }
        }
    });
}

/// A writer holds the lock and releases it between 0 and 4 ms after timed readers and
/// writers (deadline 2 ms) start. Each gets 0 or `ETIMEDOUT`, never anything else, and
/// those that got it hold it as they should (readers together, a writer alone); the
/// lock is free and destroyable at the end.
#[test]
fn timed_locks_time_out_or_get_the_lock_released_around_the_deadline() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        static WRITERS_IN: AtomicI64 = AtomicI64::new(0);
        let (mut got, mut timed_out) = (0u32, 0u32);
        for i in 0..100u64 {
            let l = new_rwlock();
            assert_eq!(wrlock(l), 0);
            let deadline = realtime_in(Duration::from_millis(2));
            let tasks: Vec<_> = (0..4)
                .map(|k| {
                    start(mixed(k + i as usize), move || {
                        let write = k % 2 == 1;
                        let r = if write { timedwrlock(l, deadline) } else { timedrdlock(l, deadline) };
                        if r == 0 {
                            if write {
                                assert_eq!(WRITERS_IN.fetch_add(1, Ordering::SeqCst), 0, "two writers");
                                capi_common::pause();
                                WRITERS_IN.fetch_sub(1, Ordering::SeqCst);
                            } else {
                                assert_eq!(WRITERS_IN.load(Ordering::SeqCst), 0, "a reader beside a writer");
                            }
                            assert_eq!(unlock(l), 0);
                        }
                        r
                    })
                })
                .collect();
            capi_common::sleep(Duration::from_micros((i * 41) % 4_000));
            assert_eq!(unlock(l), 0);
            for t in tasks {
                match t.join() {
                    0 => got += 1,
                    ETIMEDOUT => timed_out += 1,
                    r => panic!("timed lock: {}", name(r)),
                }
            }
            assert_eq!(destroy(l), 0, "the lock ends up free");
        }
        eprintln!("timed callers got the lock {got} times and timed out {timed_out} times");
    });
}

/// Readers hold the lock; a timed writer queues, then a reader queues behind it. When
/// the writer times out, the reader must get in beside the holder: no unlock is coming
/// to hand it the lock (the watchdog fails the test if it stays queued).
#[test]
fn a_timed_out_writer_does_not_strand_queued_readers() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        for i in 0..8 {
            let l = new_rwlock();
            assert_eq!(rdlock(l), 0);
            let mut writer = start(mixed(i), move || timedwrlock(l, realtime_in(Duration::from_millis(30))));
            // Once the writer is queued, new readers are turned away (or, on a machine so
            // slow that it already timed out, the test checks less and still passes).
            capi_common::wait_until(|| {
                if writer.is_finished() {
                    return true;
                }
                match tryrdlock(l) {
                    0 => {
                        assert_eq!(unlock(l), 0);
                        false
                    }
                    r => {
                        assert_eq!(r, EBUSY);
                        true
                    }
                }
            });
            let reader = start(mixed(i + 1), move || {
                let r = rdlock(l);
                assert_eq!(r, 0);
                unlock(l)
            });
            assert_eq!(writer.join(), ETIMEDOUT, "we hold our read lock throughout");
            assert_eq!(reader.join(), 0, "the reader got in beside us");
            assert_eq!(tryrdlock(l), 0, "no writer is counted as waiting");
            assert_eq!(unlock(l), 0);
            assert_eq!(unlock(l), 0);
            assert_eq!(destroy(l), 0);
        }
    });
}

/// A writer holds the lock and releases it right around a timed waiter's deadline,
/// with an untimed waiter queued too. Whatever the timed waiter's outcome, the release
/// must reach someone: if it gave up, the untimed one gets the lock (a lost hand-over
/// would leave it blocked, and the watchdog would fail the test).
#[test]
fn a_hand_over_racing_the_timeout_is_never_lost() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        let (mut got, mut timed_out) = (0, 0);
        for i in 0..200u64 {
            let l = new_rwlock();
            assert_eq!(wrlock(l), 0);
            let deadline = realtime_in(Duration::from_millis(2));
            let timed_writes = i % 2 == 0;
            let timed = start(mixed(i as usize), move || {
                let r = if timed_writes { timedwrlock(l, deadline) } else { timedrdlock(l, deadline) };
                if r == 0 {
                    assert_eq!(unlock(l), 0);
                }
                r
            });
            let untimed = start(mixed(i as usize / 2 + 1), move || {
                let r = if i % 3 == 0 { rdlock(l) } else { wrlock(l) };
                assert_eq!(r, 0);
                unlock(l)
            });
            // Release between 1 and 3 ms from the start: before, at or after the deadline.
            capi_common::sleep(Duration::from_micros(1_000 + (i * 37) % 2_000));
            assert_eq!(unlock(l), 0);
            match timed.join() {
                0 => got += 1,
                ETIMEDOUT => timed_out += 1,
                r => panic!("timed lock: {}", name(r)),
            }
            assert_eq!(untimed.join(), 0);
            assert_eq!(trywrlock(l), 0, "the lock ends up free");
            assert_eq!(unlock(l), 0);
            assert_eq!(destroy(l), 0);
        }
        eprintln!("timed waiters got the lock {got} times, timed out {timed_out} times");
    });
}

#[test]
fn readers_and_writers_of_both_kinds_exclude_each_other() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        const CALLERS: usize = 6;
        const ROUNDS: u64 = 1_000;
        static STATE: AtomicI64 = AtomicI64::new(0); // readers in, or -1 for a writer
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let l = new_rwlock();
        let tasks: Vec<_> = (0..CALLERS)
            .map(|i| {
                start(mixed(i), move || {
                    for n in 0..ROUNDS {
                        if (n + i as u64).is_multiple_of(4) {
                            let r = if n.is_multiple_of(8) {
                                timedwrlock(l, realtime_in(Duration::from_secs(60)))
                            } else {
                                wrlock(l)
                            };
                            assert_eq!(r, 0);
                            assert_eq!(STATE.swap(-1, Ordering::SeqCst), 0, "a writer beside others");
                            let w = WRITES.load(Ordering::Relaxed);
                            capi_common::pause();
                            WRITES.store(w + 1, Ordering::Relaxed);
                            assert_eq!(STATE.swap(0, Ordering::SeqCst), -1);
                        } else {
                            let r = if n % 8 == 1 {
                                timedrdlock(l, realtime_in(Duration::from_secs(60)))
                            } else {
                                rdlock(l)
                            };
                            assert_eq!(r, 0);
                            assert!(STATE.fetch_add(1, Ordering::SeqCst) >= 0, "a reader beside a writer");
                            if n % 16 == 1 {
                                capi_common::pause();
                            }
                            STATE.fetch_sub(1, Ordering::SeqCst);
                        }
                        assert_eq!(unlock(l), 0);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.join();
        }
        assert_eq!(WRITES.load(Ordering::Relaxed), CALLERS as u64 * ROUNDS / 4);
        assert_eq!(destroy(l), 0);
    });
}
