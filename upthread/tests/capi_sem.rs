//! `upthread_sem_*`: the `sem_*` convention (-1 and `errno`) with glibc's codes for each
//! misuse, all-zero storage as a semaphore at 0, timed waits that time out, a post
//! racing a timeout that is never lost nor counted twice, and producers and consumers
//! that are uthreads and plain threads at once.

mod capi_common;

use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use capi_common::{
    assert_all_return, errno, mixed, name, realtime_in, run_as, set_errno, start, Shared, Who, BAD_NSEC,
    BOTH, PAST, TIMEOUT,
};
use libc::{sem_t, EAGAIN, EBUSY, EINVAL, EOVERFLOW, ETIMEDOUT};
use parlib_upthread::capi::*;

type Sem = Shared<sem_t>;

/// glibc's `SEM_VALUE_MAX` (`<bits/semaphore.h>`: `__INT_MAX__`), which `libc` lacks.
const SEM_VALUE_MAX: i32 = i32::MAX;

/// A call's result in the `sem_*` convention: `Ok` for 0, `Err(errno)` for -1 (and
/// anything else is a bug).
fn res(r: i32) -> Result<(), i32> {
    match r {
        0 => Ok(()),
        -1 => Err(errno()),
        r => panic!("a sem_* call returned {r}"),
    }
}

fn new_sem(value: u32) -> Sem {
    let s = Sem::zeroed();
    // SAFETY: fresh, leaked storage.
    assert_eq!(unsafe { upthread_sem_init(s.get(), 0, value) }, 0);
    s
}
fn wait(s: Sem) -> Result<(), i32> {
    // SAFETY: leaked semaphore storage.
    res(unsafe { upthread_sem_wait(s.get()) })
}
fn trywait(s: Sem) -> Result<(), i32> {
    // SAFETY: as above.
    res(unsafe { upthread_sem_trywait(s.get()) })
}
fn timedwait(s: Sem, t: libc::timespec) -> Result<(), i32> {
    // SAFETY: as above; `t` is a live timespec.
    res(unsafe { upthread_sem_timedwait(s.get(), &t) })
}
fn post(s: Sem) -> Result<(), i32> {
    // SAFETY: as above.
    res(unsafe { upthread_sem_post(s.get()) })
}
fn value(s: Sem) -> i32 {
    let mut v = -1;
    // SAFETY: as above; `v` is writable.
    assert_eq!(unsafe { upthread_sem_getvalue(s.get(), &mut v) }, 0);
    v
}
fn destroy(s: Sem) -> Result<(), i32> {
    // SAFETY: as above.
    res(unsafe { upthread_sem_destroy(s.get()) })
}

fn check_misuse(who: Who) {
    let s = Sem::zeroed();
    set_errno(0);
    // SAFETY: leaked storage no one uses.
    unsafe {
        assert_eq!(res(upthread_sem_init(s.get(), 0, SEM_VALUE_MAX as u32 + 1)), Err(EINVAL), "on a {who:?}");
        assert_eq!(res(upthread_sem_init(s.get(), 0, u32::MAX)), Err(EINVAL));
        assert_eq!(res(upthread_sem_init(s.get(), 0, SEM_VALUE_MAX as u32)), Ok(()));
    }
    assert_eq!(value(s), SEM_VALUE_MAX);
    assert_eq!(post(s), Err(EOVERFLOW), "post at SEM_VALUE_MAX, on a {who:?}");
    assert_eq!(value(s), SEM_VALUE_MAX, "a refused post adds nothing");
    // SAFETY: as above.
    assert_eq!(res(unsafe { upthread_sem_init(s.get(), 0, 0) }), Ok(()));
    assert_eq!(trywait(s), Err(EAGAIN), "trywait at 0, on a {who:?}");
    assert_eq!(timedwait(s, PAST), Err(ETIMEDOUT));
    assert_eq!(timedwait(s, libc::timespec { tv_sec: -1, tv_nsec: 0 }), Err(ETIMEDOUT));
    assert_eq!(timedwait(s, realtime_in(Duration::from_millis(5))), Err(ETIMEDOUT), "on a {who:?}");
    assert_eq!(timedwait(s, BAD_NSEC), Err(EINVAL));
    assert_eq!(timedwait(s, capi_common::NEGATIVE_NSEC), Err(EINVAL));
    assert_eq!(post(s), Ok(()));
    assert_eq!(timedwait(s, BAD_NSEC), Err(EINVAL), "bad tv_nsec is checked first, as glibc");
    assert_eq!(value(s), 1, "a refused timedwait takes nothing");
    assert_eq!(timedwait(s, PAST), Ok(()), "a unit is taken whatever the deadline");
    assert_eq!(post(s), Ok(()));
    assert_eq!(trywait(s), Ok(()));
    assert_eq!(value(s), 0);
    assert_eq!(destroy(s), Ok(()));
    // A non-zero pshared is accepted, as glibc does, and works between threads.
    // SAFETY: as above.
    assert_eq!(res(unsafe { upthread_sem_init(s.get(), 1, 1) }), Ok(()));
    assert_eq!(run_as(Who::Thread, move || trywait(s)), Ok(()));
    // Null pointers.
    let mut v = 0;
    // SAFETY: null pointers are refused before use.
    unsafe {
        assert_all_return(
            Err(EINVAL),
            &[
                ("upthread_sem_init", res(upthread_sem_init(null_mut(), 0, 0))),
                ("upthread_sem_wait", res(upthread_sem_wait(null_mut()))),
                ("upthread_sem_trywait", res(upthread_sem_trywait(null_mut()))),
                ("upthread_sem_timedwait", res(upthread_sem_timedwait(null_mut(), &PAST))),
                ("upthread_sem_timedwait, null abstime", res(upthread_sem_timedwait(s.get(), null()))),
                ("upthread_sem_post", res(upthread_sem_post(null_mut()))),
                ("upthread_sem_getvalue", res(upthread_sem_getvalue(null_mut(), &mut v))),
                ("upthread_sem_getvalue, null out", res(upthread_sem_getvalue(s.get(), null_mut()))),
                ("upthread_sem_destroy", res(upthread_sem_destroy(null_mut()))),
            ],
        );
    }
}

#[test]
fn misuse_sets_glibcs_errno() {
    parlib_testkit::isolated!(TIMEOUT, { capi_common::check_from_both(check_misuse) });
}

#[test]
fn destroy_with_a_waiter_is_ebusy() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        for who in BOTH {
            let s = new_sem(0);
            let w = start(who, move || wait(s));
            // Until the waiter is queued destroy is rightly fine; poll until it is.
            while destroy(s) == Ok(()) {
                capi_common::sleep(Duration::from_millis(1));
            }
            assert_eq!(destroy(s), Err(EBUSY), "destroy while a {who:?} waits");
            assert_eq!(value(s), 0, "0 while callers wait");
            assert_eq!(post(s), Ok(()));
            assert_eq!(w.join(), Ok(()));
            assert_eq!(destroy(s), Ok(()));
        }
    });
}

#[test]
fn zeroed_storage_is_a_semaphore_at_zero() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        for who in BOTH {
            let s = Sem::zeroed();
            assert_eq!(value(s), 0);
            let w = start(who, move || wait(s));
            assert_eq!(post(s), Ok(()));
            assert_eq!(w.join(), Ok(()));
            assert_eq!(trywait(s), Err(EAGAIN));
        }
    });
}

/// Three uthreads and three plain threads post; three of each wait (half of them with
/// `timedwait` and a far deadline, some with `trywait`). Every unit posted is taken
/// exactly once.
#[test]
fn producers_and_consumers_of_both_kinds() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        const EACH: usize = 6;
        const UNITS: usize = 2_000;
        static TAKEN: AtomicUsize = AtomicUsize::new(0);
        let s = new_sem(0);
        let consumers: Vec<_> = (0..EACH)
            .map(|i| {
                start(mixed(i), move || {
                    for n in 0..UNITS {
                        match (i + n) % 3 {
                            0 => assert_eq!(wait(s), Ok(())),
                            1 => assert_eq!(timedwait(s, realtime_in(Duration::from_secs(60))), Ok(())),
                            _ => {
                                while let Err(e) = trywait(s) {
                                    assert_eq!(e, EAGAIN);
                                    capi_common::pause();
                                }
                            }
                        }
                        TAKEN.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        let producers: Vec<_> = (0..EACH)
            .map(|i| {
                start(mixed(i + 1), move || {
                    for n in 0..UNITS {
                        assert_eq!(post(s), Ok(()));
                        if n.is_multiple_of(64) {
                            capi_common::pause();
                        }
                    }
                })
            })
            .collect();
        for t in producers.into_iter().chain(consumers) {
            t.join();
        }
        assert_eq!(TAKEN.load(Ordering::SeqCst), EACH * UNITS);
        assert_eq!(value(s), 0, "every unit taken once");
        assert_eq!(destroy(s), Ok(()));
    });
}

/// A timed waiter T (deadline 2 ms) and an untimed one U wait on an empty semaphore;
/// one unit is posted between 0 and 4 ms later. If T timed out, the unit must reach U
/// (or the count, for U to take): a lost post leaves U blocked and the watchdog fails
/// the test. If T got it, U needs a second post. Either way the semaphore ends at 0, so
/// no unit was counted twice.
#[test]
fn post_racing_the_timeout_is_never_lost() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        let (mut to_t, mut to_u) = (0, 0);
        for i in 0..200u64 {
            let s = new_sem(0);
            let deadline = realtime_in(Duration::from_millis(2));
            let t = start(mixed(i as usize), move || timedwait(s, deadline));
            let u = start(mixed(i as usize + 1), move || wait(s));
            capi_common::sleep(Duration::from_micros((i * 43) % 4_000));
            assert_eq!(post(s), Ok(()));
            match t.join() {
                Ok(()) => {
                    to_t += 1;
                    assert_eq!(post(s), Ok(()));
                }
                Err(ETIMEDOUT) => to_u += 1,
                Err(e) => panic!("timedwait: {}", name(e)),
            }
            assert_eq!(u.join(), Ok(()));
            assert_eq!(value(s), 0, "a unit was counted twice");
            assert_eq!(destroy(s), Ok(()));
        }
        eprintln!("the post went to the timed waiter {to_t} times, to the other {to_u} times");
    });
}
