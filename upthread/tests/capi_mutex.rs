//! `upthread_mutex_*` and `upthread_mutexattr_*`: glibc's error codes for each misuse,
//! all-zero storage as `PTHREAD_MUTEX_INITIALIZER`, mutual exclusion between uthreads and
//! plain threads, and timed locks that time out and never lose a wake-up that races the
//! timeout.

mod capi_common;

use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use capi_common::{
    assert_all_return, check_pshared, mixed, name, realtime_in, run_as, start, Shared, Who, BAD_NSEC, BOTH,
    PAST, TIMEOUT,
};
use libc::{pthread_mutex_t, pthread_mutexattr_t, EBUSY, EDEADLK, EINVAL, EPERM, ETIMEDOUT};
use parlib_upthread::capi::*;

fn new_mutex(kind: i32) -> Shared<pthread_mutex_t> {
    let m = Shared::<pthread_mutex_t>::zeroed();
    let a = Shared::<pthread_mutexattr_t>::zeroed();
    // SAFETY: fresh, leaked storage.
    unsafe {
        assert_eq!(upthread_mutexattr_init(a.get()), 0);
        assert_eq!(upthread_mutexattr_settype(a.get(), kind), 0);
        assert_eq!(upthread_mutex_init(m.get(), a.get()), 0);
        assert_eq!(upthread_mutexattr_destroy(a.get()), 0);
    }
    m
}

fn lock(m: Shared<pthread_mutex_t>) -> i32 {
    // SAFETY: an initialised, leaked mutex.
    unsafe { upthread_mutex_lock(m.get()) }
}

fn trylock(m: Shared<pthread_mutex_t>) -> i32 {
    // SAFETY: as above.
    unsafe { upthread_mutex_trylock(m.get()) }
}

fn unlock(m: Shared<pthread_mutex_t>) -> i32 {
    // SAFETY: as above.
    unsafe { upthread_mutex_unlock(m.get()) }
}

fn timedlock(m: Shared<pthread_mutex_t>, t: libc::timespec) -> i32 {
    // SAFETY: as above; `t` is a live timespec.
    unsafe { upthread_mutex_timedlock(m.get(), &t) }
}

fn destroy(m: Shared<pthread_mutex_t>) -> i32 {
    // SAFETY: as above.
    unsafe { upthread_mutex_destroy(m.get()) }
}

/// The checks of `misuse_gets_glibc_error_codes`, from whichever caller runs them.
fn check_misuse(who: Who) {
    let ctx = |what: &str| format!("{what} (on a {who:?})");
    // Normal: relock is not checked, but trylock and destroy are.
    let m = new_mutex(libc::PTHREAD_MUTEX_NORMAL);
    assert_eq!(lock(m), 0);
    assert_eq!(trylock(m), EBUSY, "{}", ctx("normal trylock while held"));
    assert_eq!(destroy(m), EBUSY, "{}", ctx("normal destroy while held"));
    assert_eq!(timedlock(m, PAST), ETIMEDOUT, "{}", ctx("normal timedlock, held, past deadline"));
    assert_eq!(timedlock(m, BAD_NSEC), EINVAL, "{}", ctx("normal timedlock, held, bad tv_nsec"));
    assert_eq!(unlock(m), 0);
    assert_eq!(timedlock(m, BAD_NSEC), 0, "{}", ctx("timedlock of a free mutex ignores abstime (as glibc)"));
    assert_eq!(unlock(m), 0);
    assert_eq!(destroy(m), 0);

    // Error-checking: relock, foreign unlock and unlock of a free mutex.
    let e = new_mutex(libc::PTHREAD_MUTEX_ERRORCHECK);
    assert_eq!(unlock(e), EPERM, "{}", ctx("errorcheck unlock while free"));
    assert_eq!(lock(e), 0);
    assert_eq!(lock(e), EDEADLK, "{}", ctx("errorcheck relock"));
    assert_eq!(trylock(e), EBUSY, "{}", ctx("errorcheck trylock by the owner"));
    assert_eq!(timedlock(e, PAST), EDEADLK, "{}", ctx("errorcheck timedlock by the owner"));
    assert_eq!(timedlock(e, BAD_NSEC), EDEADLK, "{}", ctx("errorcheck timedlock by the owner, bad tv_nsec"));
    for other in BOTH {
        assert_eq!(run_as(other, move || unlock(e)), EPERM, "{}", ctx("errorcheck unlock by another"));
    }
    assert_eq!(destroy(e), EBUSY, "{}", ctx("errorcheck destroy while held"));
    assert_eq!(unlock(e), 0);
    assert_eq!(destroy(e), 0);

    // Recursive: relock counts, foreign unlock fails, the last unlock frees it.
    let r = new_mutex(libc::PTHREAD_MUTEX_RECURSIVE);
    assert_eq!(unlock(r), EPERM, "{}", ctx("recursive unlock while free"));
    assert_eq!(lock(r), 0);
    assert_eq!(lock(r), 0, "{}", ctx("recursive relock"));
    assert_eq!(trylock(r), 0, "{}", ctx("recursive trylock by the owner"));
    assert_eq!(timedlock(r, BAD_NSEC), 0, "{}", ctx("recursive timedlock by the owner"));
    for other in BOTH {
        assert_eq!(run_as(other, move || unlock(r)), EPERM, "{}", ctx("recursive unlock by another"));
        assert_eq!(run_as(other, move || trylock(r)), EBUSY, "{}", ctx("recursive trylock by another"));
    }
    for _ in 0..3 {
        assert_eq!(unlock(r), 0);
    }
    assert_eq!(destroy(r), EBUSY, "{}", ctx("recursive destroy while held once"));
    assert_eq!(unlock(r), 0);
    assert_eq!(unlock(r), EPERM, "{}", ctx("recursive unlock once too often"));
    assert_eq!(destroy(r), 0);
}

#[test]
fn misuse_gets_glibc_error_codes() {
    parlib_testkit::isolated!(TIMEOUT, { capi_common::check_from_both(check_misuse) });
}

#[test]
fn null_pointers_are_einval() {
    parlib_testkit::isolated!(TIMEOUT, {
        let m = Shared::<pthread_mutex_t>::zeroed();
        let a = Shared::<pthread_mutexattr_t>::zeroed();
        let mut out = 0;
        // SAFETY: null pointers and leaked storage only.
        unsafe {
            assert_all_return(
                EINVAL,
                &[
                    ("upthread_mutex_init", upthread_mutex_init(null_mut(), null())),
                    ("upthread_mutex_lock", upthread_mutex_lock(null_mut())),
                    ("upthread_mutex_trylock", upthread_mutex_trylock(null_mut())),
                    ("upthread_mutex_timedlock", upthread_mutex_timedlock(null_mut(), &PAST)),
                    ("upthread_mutex_unlock", upthread_mutex_unlock(null_mut())),
                    ("upthread_mutex_destroy", upthread_mutex_destroy(null_mut())),
                    ("upthread_mutexattr_init", upthread_mutexattr_init(null_mut())),
                    ("upthread_mutexattr_settype", upthread_mutexattr_settype(null_mut(), 0)),
                    ("upthread_mutexattr_gettype", upthread_mutexattr_gettype(null(), &mut out)),
                    ("upthread_mutexattr_gettype, null out", upthread_mutexattr_gettype(a.get(), null_mut())),
                ],
            );
            // A null abstime on a free mutex: taken without looking at it, as a free
            // mutex is taken whatever the deadline.
            assert_eq!(upthread_mutex_init(m.get(), null()), 0);
            assert_eq!(upthread_mutex_timedlock(m.get(), null()), 0);
            assert_eq!(upthread_mutex_timedlock(m.get(), null()), EINVAL);
        }
    });
}

#[test]
fn attributes_accept_glibc_types_and_refuse_others() {
    parlib_testkit::isolated!(TIMEOUT, {
        let a = Shared::<pthread_mutexattr_t>::zeroed();
        let mut v = -1;
        // SAFETY: leaked storage; `v` is writable.
        unsafe {
            assert_eq!(upthread_mutexattr_init(a.get()), 0);
            assert_eq!(upthread_mutexattr_gettype(a.get(), &mut v), 0);
            assert_eq!(v, libc::PTHREAD_MUTEX_DEFAULT);
            for kind in [
                libc::PTHREAD_MUTEX_NORMAL,
                libc::PTHREAD_MUTEX_RECURSIVE,
                libc::PTHREAD_MUTEX_ERRORCHECK,
                PTHREAD_MUTEX_ADAPTIVE_NP,
            ] {
                assert_eq!(upthread_mutexattr_settype(a.get(), kind), 0, "settype({kind})");
                assert_eq!(upthread_mutexattr_gettype(a.get(), &mut v), 0);
                assert_eq!(v, kind, "gettype returns what settype stored");
            }
            for bad in [-1, 4, 1000] {
                assert_eq!(upthread_mutexattr_settype(a.get(), bad), EINVAL, "settype({bad})");
            }
            assert_eq!(v, PTHREAD_MUTEX_ADAPTIVE_NP, "a refused type changes nothing");
            check_pshared(upthread_mutexattr_setpshared, upthread_mutexattr_getpshared, a.get());
            assert_eq!(upthread_mutexattr_destroy(a.get()), 0);
            // An adaptive mutex behaves as a normal one.
            let m = Shared::<pthread_mutex_t>::zeroed();
            assert_eq!(upthread_mutexattr_init(a.get()), 0);
            assert_eq!(upthread_mutexattr_settype(a.get(), PTHREAD_MUTEX_ADAPTIVE_NP), 0);
            assert_eq!(upthread_mutex_init(m.get(), a.get()), 0);
            assert_eq!(upthread_mutex_lock(m.get()), 0);
            assert_eq!(upthread_mutex_trylock(m.get()), EBUSY);
            assert_eq!(upthread_mutex_unlock(m.get()), 0);
        }
    });
}

#[test]
fn zeroed_storage_is_an_unlocked_normal_mutex() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        // Zeroed heap memory, and libc's PTHREAD_MUTEX_INITIALIZER (all zeros in glibc).
        let initializer = Shared(Box::into_raw(Box::new(libc::PTHREAD_MUTEX_INITIALIZER)));
        for m in [Shared::<pthread_mutex_t>::zeroed(), initializer] {
            for who in BOTH {
                run_as(who, move || {
                    assert_eq!(trylock(m), 0, "a zeroed mutex is free");
                    assert_eq!(trylock(m), EBUSY);
                    assert_eq!(unlock(m), 0);
                    assert_eq!(lock(m), 0);
                    assert_eq!(lock_from_other_times_out(m), ETIMEDOUT);
                    assert_eq!(unlock(m), 0);
                    assert_eq!(destroy(m), 0);
                });
            }
        }
    });
}

/// glibc's `PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP`, `PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP`
/// and `PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP` are all zero except `__kind` (1, 2, 3) at
/// byte 16. A C program that uses them and is recompiled against upthread must get the
/// kind it asked for without calling `init`: the recursive one relocks, the
/// error-checking one refuses a relock, the adaptive one is a normal mutex.
#[test]
fn glibc_static_initialisers_give_their_mutex_kind() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        // The `libc` crate builds them as glibc's `<pthread.h>` does; check the bytes we
        // rely on, then use them as they are.
        let kind_at_16 = |m: &pthread_mutex_t| {
            // SAFETY: `pthread_mutex_t` is 40 plain bytes.
            let b: [u8; 40] = unsafe { std::mem::transmute_copy(m) };
            assert!(b.iter().enumerate().all(|(i, &x)| x == 0 || (16..20).contains(&i)), "{b:?}");
            i32::from_ne_bytes(b[16..20].try_into().unwrap())
        };
        assert_eq!(kind_at_16(&libc::PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP), libc::PTHREAD_MUTEX_RECURSIVE);
        assert_eq!(
            kind_at_16(&libc::PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP),
            libc::PTHREAD_MUTEX_ERRORCHECK
        );
        assert_eq!(kind_at_16(&libc::PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP), PTHREAD_MUTEX_ADAPTIVE_NP);
        let fresh = |init: pthread_mutex_t| Shared(Box::into_raw(Box::new(init)));
        for who in BOTH {
            let r = fresh(libc::PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP);
            let e = fresh(libc::PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP);
            let a = fresh(libc::PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP);
            run_as(who, move || {
                assert_eq!(lock(r), 0);
                assert_eq!(lock(r), 0, "a recursive initialiser relocks, on a {who:?}");
                assert_eq!(run_as(Who::Thread, move || trylock(r)), EBUSY, "and excludes others");
                assert_eq!(unlock(r), 0);
                assert_eq!(destroy(r), EBUSY, "one unlock still owed");
                assert_eq!(unlock(r), 0);
                assert_eq!(unlock(r), EPERM);
                assert_eq!(destroy(r), 0);

                assert_eq!(unlock(e), EPERM, "an error-checking initialiser checks unlocks");
                assert_eq!(lock(e), 0);
                assert_eq!(lock(e), EDEADLK, "an error-checking initialiser refuses a relock, on a {who:?}");
                assert_eq!(run_as(Who::Thread, move || unlock(e)), EPERM);
                assert_eq!(unlock(e), 0);
                assert_eq!(destroy(e), 0);

                assert_eq!(lock(a), 0);
                assert_eq!(trylock(a), EBUSY, "an adaptive initialiser is a normal mutex");
                assert_eq!(unlock(a), 0);
                assert_eq!(unlock(a), EPERM, "nobody holds it");
                assert_eq!(destroy(a), 0);
            });
        }
    });
}

fn lock_from_other_times_out(m: Shared<pthread_mutex_t>) -> i32 {
    run_as(Who::Thread, move || timedlock(m, realtime_in(Duration::from_millis(5))))
}

#[test]
fn uthreads_and_threads_exclude_each_other() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        const CALLERS: usize = 6;
        const ROUNDS: u64 = 2_000;
        static INSIDE: AtomicUsize = AtomicUsize::new(0);
        static TOTAL: AtomicU64 = AtomicU64::new(0);
        for kind in
            [libc::PTHREAD_MUTEX_NORMAL, libc::PTHREAD_MUTEX_RECURSIVE, libc::PTHREAD_MUTEX_ERRORCHECK]
        {
            TOTAL.store(0, Ordering::Relaxed);
            let m = new_mutex(kind);
            let tasks: Vec<_> = (0..CALLERS)
                .map(|i| {
                    start(mixed(i), move || {
                        for n in 0..ROUNDS {
                            let r = if n.is_multiple_of(3) {
                                timedlock(m, realtime_in(Duration::from_secs(60)))
                            } else {
                                lock(m)
                            };
                            assert_eq!(r, 0);
                            assert_eq!(INSIDE.fetch_add(1, Ordering::Relaxed), 0, "two holders at once");
                            // A plain read-modify-write: only correct under exclusion.
                            let t = TOTAL.load(Ordering::Relaxed);
                            if n.is_multiple_of(16) {
                                capi_common::pause();
                            }
                            TOTAL.store(t + 1, Ordering::Relaxed);
                            INSIDE.fetch_sub(1, Ordering::Relaxed);
                            assert_eq!(unlock(m), 0);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.join();
            }
            assert_eq!(TOTAL.load(Ordering::Relaxed), CALLERS as u64 * ROUNDS, "kind {kind}");
            assert_eq!(destroy(m), 0);
        }
    });
}

#[test]
fn timedlock_times_out_while_another_holds_it() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        let m = new_mutex(libc::PTHREAD_MUTEX_ERRORCHECK);
        assert_eq!(lock(m), 0);
        for who in BOTH {
            let r = run_as(who, move || {
                [
                    timedlock(m, realtime_in(Duration::from_millis(20))),
                    timedlock(m, PAST),
                    timedlock(m, libc::timespec { tv_sec: -1, tv_nsec: 0 }),
                    timedlock(m, BAD_NSEC),
                    timedlock(m, capi_common::NEGATIVE_NSEC),
                ]
            });
            assert_eq!(
                r,
                [ETIMEDOUT, ETIMEDOUT, ETIMEDOUT, EINVAL, EINVAL],
                "on a {who:?}: {:?}",
                r.map(name)
            );
        }
        assert_eq!(unlock(m), 0);
        assert_eq!(destroy(m), 0, "timed-out waiters left nothing queued");
    });
}

/// A holder releases the mutex right around a timed waiter's deadline, with an untimed
/// waiter queued as well. Whatever the timed waiter's outcome, the release must reach
/// someone: if the timed waiter gave up, the untimed one gets the mutex (a lost wake-up
/// would leave it blocked, and the watchdog would fail the test).
#[test]
fn wakeup_racing_the_timeout_is_never_lost() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        let (mut got, mut timed_out) = (0, 0);
        for i in 0..200u64 {
            let m = new_mutex(libc::PTHREAD_MUTEX_NORMAL);
            assert_eq!(lock(m), 0);
            let deadline = realtime_in(Duration::from_millis(2));
            let timed = start(mixed(i as usize), move || {
                let r = timedlock(m, deadline);
                if r == 0 {
                    assert_eq!(unlock(m), 0);
                }
                r
            });
            let untimed = start(mixed(i as usize + 1), move || {
                assert_eq!(lock(m), 0);
                assert_eq!(unlock(m), 0);
            });
            // Release between 1 and 3 ms from the start: before, at or after the deadline.
            capi_common::sleep(Duration::from_micros(1_000 + (i * 37) % 2_000));
            assert_eq!(unlock(m), 0);
            match timed.join() {
                0 => got += 1,
                ETIMEDOUT => timed_out += 1,
                r => panic!("timedlock: {}", name(r)),
            }
            untimed.join();
            assert_eq!(trylock(m), 0, "the mutex ends up free");
            assert_eq!(unlock(m), 0);
        }
        eprintln!("timed waiter got the mutex {got} times, timed out {timed_out} times");
    });
}
