//! `upthread_cond_*` and `upthread_condattr_*`: glibc's error codes for each misuse,
//! all-zero storage as `PTHREAD_COND_INITIALIZER`, timed waits on both clocks that time
//! out, a signal racing a timeout that is never lost, and uthreads and plain threads
//! waiting on the same condvar.

mod capi_common;

use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use capi_common::{
    assert_all_return, check_pshared, mixed, monotonic_in, name, realtime_in, start, wait_until, Shared, Who,
    BAD_NSEC, BOTH, PAST, TIMEOUT,
};
use libc::{
    pthread_cond_t, pthread_condattr_t, pthread_mutex_t, pthread_mutexattr_t, EBUSY, EINVAL, EPERM, ETIMEDOUT,
};
use parlib_upthread::capi::*;

type Cond = Shared<pthread_cond_t>;
type Mutex = Shared<pthread_mutex_t>;

fn new_cond(clock: libc::clockid_t) -> Cond {
    let c = Cond::zeroed();
    let a = Shared::<pthread_condattr_t>::zeroed();
    // SAFETY: fresh, leaked storage.
    unsafe {
        assert_eq!(upthread_condattr_init(a.get()), 0);
        assert_eq!(upthread_condattr_setclock(a.get(), clock), 0);
        assert_eq!(upthread_cond_init(c.get(), a.get()), 0);
        assert_eq!(upthread_condattr_destroy(a.get()), 0);
    }
    c
}

fn new_mutex(kind: i32) -> Mutex {
    let m = Mutex::zeroed();
    let a = Shared::<pthread_mutexattr_t>::zeroed();
    // SAFETY: fresh, leaked storage.
    unsafe {
        assert_eq!(upthread_mutexattr_init(a.get()), 0);
        assert_eq!(upthread_mutexattr_settype(a.get(), kind), 0);
        assert_eq!(upthread_mutex_init(m.get(), a.get()), 0);
    }
    m
}

fn lock(m: Mutex) {
    // SAFETY: an initialised, leaked mutex.
    assert_eq!(unsafe { upthread_mutex_lock(m.get()) }, 0);
}

fn unlock(m: Mutex) {
    // SAFETY: as above.
    assert_eq!(unsafe { upthread_mutex_unlock(m.get()) }, 0);
}

/// Whether the caller holds the error-checking mutex `m`: relocking it is `EDEADLK`.
fn holds(m: Mutex) -> bool {
    // SAFETY: as above.
    unsafe { upthread_mutex_lock(m.get()) == libc::EDEADLK }
}

fn wait(c: Cond, m: Mutex) -> i32 {
    // SAFETY: initialised, leaked objects.
    unsafe { upthread_cond_wait(c.get(), m.get()) }
}

fn timedwait(c: Cond, m: Mutex, t: libc::timespec) -> i32 {
    // SAFETY: as above; `t` is a live timespec.
    unsafe { upthread_cond_timedwait(c.get(), m.get(), &t) }
}

fn signal(c: Cond) {
    // SAFETY: as above.
    assert_eq!(unsafe { upthread_cond_signal(c.get()) }, 0);
}

fn broadcast(c: Cond) {
    // SAFETY: as above.
    assert_eq!(unsafe { upthread_cond_broadcast(c.get()) }, 0);
}

fn destroy(c: Cond) -> i32 {
    // SAFETY: as above.
    unsafe { upthread_cond_destroy(c.get()) }
}

fn check_misuse(who: Who) {
    let c = new_cond(libc::CLOCK_REALTIME);
    let e = new_mutex(libc::PTHREAD_MUTEX_ERRORCHECK);
    // Waiting without holding an error-checking mutex: EPERM, even past the deadline
    // (glibc releases the mutex before it looks at the time).
    assert_eq!(wait(c, e), EPERM, "wait without the mutex, on a {who:?}");
    assert_eq!(timedwait(c, e, PAST), EPERM, "timedwait without the mutex, on a {who:?}");
    lock(e);
    // A bad tv_nsec is EINVAL before anything else, with the mutex untouched.
    assert_eq!(timedwait(c, e, BAD_NSEC), EINVAL, "on a {who:?}");
    assert_eq!(timedwait(c, e, capi_common::NEGATIVE_NSEC), EINVAL, "on a {who:?}");
    assert!(holds(e), "EINVAL leaves the mutex held");
    // A deadline that has passed: ETIMEDOUT with the mutex held again.
    assert_eq!(timedwait(c, e, PAST), ETIMEDOUT, "on a {who:?}");
    assert!(holds(e), "ETIMEDOUT returns with the mutex held");
    assert_eq!(timedwait(c, e, libc::timespec { tv_sec: -1, tv_nsec: 0 }), ETIMEDOUT);
    assert_eq!(timedwait(c, e, realtime_in(Duration::from_millis(5))), ETIMEDOUT, "on a {who:?}");
    assert!(holds(e));
    unlock(e);
    // A normal mutex that is not held: glibc times out without looking at it.
    let n = new_mutex(libc::PTHREAD_MUTEX_NORMAL);
    assert_eq!(timedwait(c, n, PAST), ETIMEDOUT);
    let r = new_mutex(libc::PTHREAD_MUTEX_RECURSIVE);
    // A recursive mutex held twice: the timed-out wait returns with both levels held.
    lock(r);
    lock(r);
    assert_eq!(timedwait(c, r, PAST), ETIMEDOUT);
    unlock(r);
    unlock(r);
    // SAFETY: leaked mutex; unlocking it a third time is the checked misuse.
    assert_eq!(unsafe { upthread_mutex_unlock(r.get()) }, EPERM);
    // Signal and broadcast without waiters are fine; destroy of an idle condvar too.
    signal(c);
    broadcast(c);
    assert_eq!(destroy(c), 0);
}

#[test]
fn misuse_gets_glibc_error_codes() {
    parlib_testkit::isolated!(TIMEOUT, { capi_common::check_from_both(check_misuse) });
}

#[test]
fn destroy_with_a_waiter_is_ebusy() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        for who in BOTH {
            let (c, m) = (new_cond(libc::CLOCK_REALTIME), new_mutex(libc::PTHREAD_MUTEX_NORMAL));
            static WAITING: AtomicBool = AtomicBool::new(false);
            static GO: AtomicBool = AtomicBool::new(false);
            WAITING.store(false, Ordering::SeqCst);
            GO.store(false, Ordering::SeqCst);
            let w = start(who, move || {
                lock(m);
                WAITING.store(true, Ordering::SeqCst);
                while !GO.load(Ordering::SeqCst) {
                    assert_eq!(wait(c, m), 0);
                }
                unlock(m);
            });
            // Once the waiter's flag is seen under the mutex, it has queued: it sets the
            // flag holding the mutex and releases it only inside the wait.
            wait_until(|| {
                lock(m);
                let w = WAITING.load(Ordering::SeqCst);
                unlock(m);
                w
            });
            assert_eq!(destroy(c), EBUSY, "destroy while a {who:?} waits");
            lock(m);
            GO.store(true, Ordering::SeqCst);
            signal(c);
            unlock(m);
            w.join();
            assert_eq!(destroy(c), 0, "destroy after the waiter left");
        }
    });
}

#[test]
fn attributes_accept_the_two_clocks_and_refuse_others() {
    parlib_testkit::isolated!(TIMEOUT, {
        let a = Shared::<pthread_condattr_t>::zeroed();
        let mut clock: libc::clockid_t = -1;
        // SAFETY: leaked storage; the out-pointers are writable.
        unsafe {
            assert_eq!(upthread_condattr_init(a.get()), 0);
            assert_eq!(upthread_condattr_getclock(a.get(), &mut clock), 0);
            assert_eq!(clock, libc::CLOCK_REALTIME, "the default clock");
            assert_eq!(upthread_condattr_setclock(a.get(), libc::CLOCK_MONOTONIC), 0);
            assert_eq!(upthread_condattr_getclock(a.get(), &mut clock), 0);
            assert_eq!(clock, libc::CLOCK_MONOTONIC);
            for bad in
                [libc::CLOCK_PROCESS_CPUTIME_ID, libc::CLOCK_MONOTONIC_RAW, libc::CLOCK_BOOTTIME, -1, 1000]
            {
                assert_eq!(upthread_condattr_setclock(a.get(), bad), EINVAL, "setclock({bad})");
            }
            assert_eq!(upthread_condattr_getclock(a.get(), &mut clock), 0);
            assert_eq!(clock, libc::CLOCK_MONOTONIC, "a refused clock changes nothing");
            check_pshared(upthread_condattr_setpshared, upthread_condattr_getpshared, a.get());
            assert_eq!(upthread_condattr_destroy(a.get()), 0);
            let (c, m) = (Cond::zeroed(), Mutex::zeroed());
            assert_eq!(upthread_mutex_lock(m.get()), 0);
            assert_all_return(
                EINVAL,
                &[
                    ("upthread_condattr_init", upthread_condattr_init(null_mut())),
                    (
                        "upthread_condattr_setclock",
                        upthread_condattr_setclock(null_mut(), libc::CLOCK_MONOTONIC),
                    ),
                    ("upthread_condattr_getclock", upthread_condattr_getclock(null(), &mut clock)),
                    ("upthread_cond_init", upthread_cond_init(null_mut(), null())),
                    ("upthread_cond_wait", upthread_cond_wait(null_mut(), null_mut())),
                    ("upthread_cond_timedwait", upthread_cond_timedwait(null_mut(), null_mut(), &PAST)),
                    ("upthread_cond_signal", upthread_cond_signal(null_mut())),
                    ("upthread_cond_broadcast", upthread_cond_broadcast(null_mut())),
                    ("upthread_cond_destroy", upthread_cond_destroy(null_mut())),
                    (
                        "upthread_cond_timedwait, null abstime",
                        upthread_cond_timedwait(c.get(), m.get(), null()),
                    ),
                ],
            );
        }
    });
}

#[test]
fn timedwait_times_out_on_either_clock() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::check_from_both(|who| {
            let m = new_mutex(libc::PTHREAD_MUTEX_ERRORCHECK);
            let real = new_cond(libc::CLOCK_REALTIME);
            let mono = new_cond(libc::CLOCK_MONOTONIC);
            lock(m);
            let d = Duration::from_millis(10);
            assert_eq!(timedwait(real, m, realtime_in(d)), ETIMEDOUT, "realtime, on a {who:?}");
            assert!(holds(m));
            assert_eq!(timedwait(mono, m, monotonic_in(d)), ETIMEDOUT, "monotonic, on a {who:?}");
            assert!(holds(m));
            // The epoch on the monotonic clock is boot time: long past.
            assert_eq!(timedwait(mono, m, PAST), ETIMEDOUT);
            unlock(m);
            assert_eq!(destroy(real), 0);
            assert_eq!(destroy(mono), 0);
        });
    });
}

/// A monotonic condvar reads its deadline on `CLOCK_MONOTONIC`: a realtime "now + 1 h"
/// is decades away there, so a signal, not the timeout, must end the wait; and a
/// monotonic "now + 1 h" on a realtime condvar is long past.
#[test]
fn each_condvar_reads_deadlines_on_its_own_clock() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        let m = new_mutex(libc::PTHREAD_MUTEX_NORMAL);
        let real = new_cond(libc::CLOCK_REALTIME);
        lock(m);
        assert_eq!(timedwait(real, m, monotonic_in(Duration::from_secs(3600))), ETIMEDOUT);
        unlock(m);
        let mono = new_cond(libc::CLOCK_MONOTONIC);
        static DONE: AtomicBool = AtomicBool::new(false);
        let w = start(Who::Uthread, move || {
            lock(m);
            let mut r = 0;
            while !DONE.load(Ordering::SeqCst) && r == 0 {
                r = timedwait(mono, m, monotonic_in(Duration::from_secs(3600)));
            }
            unlock(m);
            r
        });
        capi_common::sleep(Duration::from_millis(20));
        lock(m);
        DONE.store(true, Ordering::SeqCst);
        broadcast(mono);
        unlock(m);
        assert_eq!(w.join(), 0, "woken by the broadcast");
        // Re-initialising the same storage with the default clock forgets the monotonic one.
        // SAFETY: leaked storage no one uses any more.
        assert_eq!(unsafe { upthread_cond_init(mono.get(), null()) }, 0);
        lock(m);
        assert_eq!(timedwait(mono, m, monotonic_in(Duration::from_secs(3600))), ETIMEDOUT);
        unlock(m);
        // The clock lives in the condvar's own storage: memory that held a monotonic
        // condvar and is reused, zeroed, without `destroy` (as a static or calloc'd
        // condvar would be) is a realtime condvar.
        let reused = new_cond(libc::CLOCK_MONOTONIC);
        // SAFETY: leaked storage no one uses any more; zero bytes are a valid condvar.
        unsafe { std::ptr::write_bytes(reused.get(), 0, 1) };
        lock(m);
        assert_eq!(timedwait(reused, m, monotonic_in(Duration::from_secs(3600))), ETIMEDOUT);
        unlock(m);
    });
}

#[test]
fn zeroed_storage_is_a_condvar_without_waiters() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        let initializer = Shared(Box::into_raw(Box::new(libc::PTHREAD_COND_INITIALIZER)));
        for c in [Cond::zeroed(), initializer] {
            let m = Mutex::zeroed();
            static FLAG: AtomicUsize = AtomicUsize::new(0);
            FLAG.store(0, Ordering::SeqCst);
            let waiters: Vec<_> = (0..4)
                .map(|i| {
                    start(mixed(i), move || {
                        lock(m);
                        while FLAG.load(Ordering::SeqCst) == 0 {
                            assert_eq!(wait(c, m), 0);
                        }
                        unlock(m);
                    })
                })
                .collect();
            capi_common::sleep(Duration::from_millis(5));
            lock(m);
            FLAG.store(1, Ordering::SeqCst);
            broadcast(c);
            unlock(m);
            for w in waiters {
                w.join();
            }
            assert_eq!(destroy(c), 0);
        }
    });
}

/// Uthreads and plain threads pass a token around a ring through one condvar: each
/// waits for its turn with `wait` (or `timedwait` with a far deadline) and signals by
/// broadcast. Every turn needs a wake-up to reach the right waiter.
#[test]
fn uthreads_and_threads_wait_on_the_same_condvar() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        const MEMBERS: usize = 4;
        const LAPS: usize = 300;
        static TURN: AtomicUsize = AtomicUsize::new(0);
        let (c, m) = (new_cond(libc::CLOCK_REALTIME), new_mutex(libc::PTHREAD_MUTEX_NORMAL));
        let members: Vec<_> = (0..MEMBERS)
            .map(|me| {
                start(mixed(me), move || {
                    for lap in 0..LAPS {
                        lock(m);
                        while TURN.load(Ordering::SeqCst) != lap * MEMBERS + me {
                            let r = if lap.is_multiple_of(2) {
                                wait(c, m)
                            } else {
                                timedwait(c, m, realtime_in(Duration::from_secs(60)))
                            };
                            assert_eq!(r, 0, "{}", name(r));
                        }
                        TURN.fetch_add(1, Ordering::SeqCst);
                        broadcast(c);
                        unlock(m);
                    }
                })
            })
            .collect();
        for t in members {
            t.join();
        }
        assert_eq!(TURN.load(Ordering::SeqCst), MEMBERS * LAPS);
    });
}

/// Two waiters: W1 with a deadline, queued first, and W2 without. One signal is sent
/// right around W1's deadline. Either W1 takes it (and returns 0) or W1 timed out first
/// and the signal must go to W2: it is never lost (W2 would then wait forever, and the
/// watchdog would fail the test), and never delivered twice.
#[test]
fn signal_racing_the_timeout_is_never_lost() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        static IN: AtomicUsize = AtomicUsize::new(0);
        static W2_WOKEN: AtomicBool = AtomicBool::new(false);
        let (mut to_w1, mut to_w2) = (0, 0);
        for i in 0..200u64 {
            let (c, m) = (new_cond(libc::CLOCK_REALTIME), new_mutex(libc::PTHREAD_MUTEX_NORMAL));
            IN.store(0, Ordering::SeqCst);
            W2_WOKEN.store(false, Ordering::SeqCst);
            let deadline = realtime_in(Duration::from_millis(2));
            let w1 = start(mixed(i as usize), move || {
                lock(m);
                IN.fetch_add(1, Ordering::SeqCst);
                let r = timedwait(c, m, deadline);
                unlock(m);
                r
            });
            // The flag is set under the mutex, which W1 gives up only inside its wait:
            // seeing it under the mutex means W1 is queued. Likewise for W2 after it.
            let queued = |n| {
                move || {
                    lock(m);
                    let k = IN.load(Ordering::SeqCst);
                    unlock(m);
                    k == n
                }
            };
            wait_until(queued(1));
            let w2 = start(mixed(i as usize + 1), move || {
                lock(m);
                IN.fetch_add(1, Ordering::SeqCst);
                let r = wait(c, m); // no predicate: this implementation has no spurious wake-ups
                W2_WOKEN.store(true, Ordering::SeqCst);
                unlock(m);
                r
            });
            wait_until(queued(2));
            capi_common::sleep(Duration::from_micros((i * 53) % 3_000));
            signal(c);
            match w1.join() {
                0 => {
                    to_w1 += 1;
                    assert!(!W2_WOKEN.load(Ordering::SeqCst), "one signal woke both waiters");
                    lock(m);
                    broadcast(c);
                    unlock(m);
                }
                ETIMEDOUT => to_w2 += 1,
                r => panic!("timedwait: {}", name(r)),
            }
            assert_eq!(w2.join(), 0);
            assert_eq!(destroy(c), 0, "nobody left queued");
        }
        eprintln!("the signal went to the timed waiter {to_w1} times, to the other {to_w2} times");
    });
}

/// What a cancelled waiter is given: its condvar, mutex, and whether to use `timedwait`.
struct Cancelled {
    c: Cond,
    m: Mutex,
    timed: bool,
}

static QUEUED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn unlock_on_exit(m: *mut libc::c_void) {
    // SAFETY: the leaked mutex the waiter holds when its cancel acts.
    assert_eq!(unsafe { upthread_mutex_unlock(m.cast()) }, 0);
}

/// An upthread thread that waits until it is cancelled, with the usual C cleanup
/// handler that unlocks the mutex.
extern "C" fn wait_until_cancelled(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `arg` is a leaked `Cancelled`.
    let w = unsafe { &*arg.cast::<Cancelled>() };
    let mut buf = std::mem::MaybeUninit::<parlib_upthread::CleanupBuffer>::uninit();
    lock(w.m);
    // SAFETY: `buf` stays in this frame, which never returns.
    unsafe {
        parlib_upthread::cancel::upthread_cleanup_push_impl(
            buf.as_mut_ptr(),
            Some(unlock_on_exit),
            w.m.get().cast(),
        )
    };
    QUEUED.fetch_add(1, Ordering::SeqCst);
    loop {
        let r =
            if w.timed { timedwait(w.c, w.m, realtime_in(Duration::from_secs(60))) } else { wait(w.c, w.m) };
        assert_eq!(r, 0);
    }
}

/// W1 waits and is cancelled while it waits (it acts only once woken); W2 waits behind
/// it. The one signal sent wakes W1, which then acts on its cancel: it must pass the
/// signal on to W2 instead of swallowing it (POSIX), or W2 would wait forever and the
/// watchdog would fail the test.
#[test]
fn a_cancelled_waiter_passes_its_signal_on() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        for (i, timed) in [false, true, false, true].into_iter().enumerate() {
            let (c, m) = (new_cond(libc::CLOCK_REALTIME), new_mutex(libc::PTHREAD_MUTEX_NORMAL));
            QUEUED.store(0, Ordering::SeqCst);
            let queued = move |n| {
                lock(m);
                let k = QUEUED.load(Ordering::SeqCst);
                unlock(m);
                k == n
            };
            let arg = Box::into_raw(Box::new(Cancelled { c, m, timed }));
            let mut w1 = 0;
            // SAFETY: `w1` is writable; `arg` is leaked.
            let r = unsafe {
                parlib_upthread::thread::upthread_create(
                    &mut w1,
                    null(),
                    Some(wait_until_cancelled),
                    arg.cast(),
                )
            };
            assert_eq!(r, 0);
            wait_until(|| queued(1));
            let w2 = start(mixed(i), move || {
                lock(m);
                QUEUED.fetch_add(1, Ordering::SeqCst);
                let r = wait(c, m);
                unlock(m);
                r
            });
            wait_until(|| queued(2));
            assert_eq!(parlib_upthread::cancel::upthread_cancel(w1), 0);
            signal(c);
            let mut rv = std::ptr::null_mut();
            // SAFETY: `rv` is writable.
            assert_eq!(unsafe { parlib_upthread::thread::upthread_join(w1, &mut rv) }, 0);
            assert_eq!(rv, parlib_upthread::PTHREAD_CANCELED);
            assert_eq!(w2.join(), 0, "W2 got the signal W1 took");
            assert_eq!(destroy(c), 0);
        }
    });
}
