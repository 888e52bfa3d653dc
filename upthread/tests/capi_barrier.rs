//! `upthread_barrier_*` and `upthread_barrierattr_*`: glibc's limits on the count, a
//! zeroed barrier refusing to wait, exactly one serial caller per phase among uthreads
//! and plain threads, and destroy while callers wait.

mod capi_common;

use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use capi_common::{check_pshared, mixed, start, wait_until, Shared, BOTH, TIMEOUT};
use libc::{pthread_barrier_t, pthread_barrierattr_t, EBUSY, EINVAL};
use parlib_upthread::capi::*;

type Barrier = Shared<pthread_barrier_t>;

fn init(b: Barrier, count: u32) -> i32 {
    // SAFETY: leaked storage no one uses.
    unsafe { upthread_barrier_init(b.get(), null(), count) }
}
fn wait(b: Barrier) -> i32 {
    // SAFETY: leaked barrier storage.
    unsafe { upthread_barrier_wait(b.get()) }
}
fn destroy(b: Barrier) -> i32 {
    // SAFETY: as above.
    unsafe { upthread_barrier_destroy(b.get()) }
}

#[test]
fn counts_outside_glibcs_range_are_einval() {
    parlib_testkit::isolated!(TIMEOUT, {
        let b = Barrier::zeroed();
        assert_eq!(init(b, 0), EINVAL);
        assert_eq!(init(b, i32::MAX as u32), EINVAL, "glibc refuses INT_MAX and above");
        assert_eq!(init(b, u32::MAX), EINVAL);
        assert_eq!(init(b, i32::MAX as u32 - 1), 0, "glibc's largest count");
        assert_eq!(destroy(b), 0);
        assert_eq!(init(b, 1), 0);
        assert_eq!(wait(b), PTHREAD_BARRIER_SERIAL_THREAD, "a barrier of one: every call is serial");
        assert_eq!(wait(b), PTHREAD_BARRIER_SERIAL_THREAD);
        assert_eq!(destroy(b), 0);
        // SAFETY: null pointers are refused before use.
        unsafe {
            assert_eq!(upthread_barrier_init(null_mut(), null(), 1), EINVAL);
            assert_eq!(upthread_barrier_wait(null_mut()), EINVAL);
            assert_eq!(upthread_barrier_destroy(null_mut()), EINVAL);
        }
    });
}

#[test]
fn zeroed_storage_is_an_uninitialised_barrier() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        for who in BOTH {
            let b = Barrier::zeroed();
            assert_eq!(
                capi_common::run_as(who, move || wait(b)),
                EINVAL,
                "wait on a zeroed barrier, on a {who:?}"
            );
        }
    });
}

#[test]
fn attributes_are_process_private() {
    parlib_testkit::isolated!(TIMEOUT, {
        let a = Shared::<pthread_barrierattr_t>::zeroed();
        let b = Barrier::zeroed();
        // SAFETY: leaked storage; null pointers are refused before use.
        unsafe {
            assert_eq!(upthread_barrierattr_init(a.get()), 0);
            check_pshared(upthread_barrierattr_setpshared, upthread_barrierattr_getpshared, a.get());
            assert_eq!(upthread_barrier_init(b.get(), a.get(), 1), 0);
            assert_eq!(upthread_barrier_wait(b.get()), PTHREAD_BARRIER_SERIAL_THREAD);
            assert_eq!(upthread_barrierattr_destroy(a.get()), 0);
            assert_eq!(upthread_barrierattr_init(null_mut()), EINVAL);
        }
    });
}

/// Six participants, uthreads and plain threads alternately, cross the barrier 300
/// times. In every phase exactly one of them gets `PTHREAD_BARRIER_SERIAL_THREAD` and
/// the others 0; and nobody starts phase k+1 before everyone has arrived at phase k.
#[test]
fn exactly_one_serial_caller_per_phase() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        const PARTIES: usize = 6;
        const PHASES: usize = 300;
        static SERIAL: [AtomicUsize; PHASES] = [const { AtomicUsize::new(0) }; PHASES];
        static ARRIVED: [AtomicUsize; PHASES] = [const { AtomicUsize::new(0) }; PHASES];
        let b = Barrier::zeroed();
        assert_eq!(init(b, PARTIES as u32), 0);
        let tasks: Vec<_> = (0..PARTIES)
            .map(|i| {
                start(mixed(i), move || {
                    for phase in 0..PHASES {
                        ARRIVED[phase].fetch_add(1, Ordering::SeqCst);
                        match wait(b) {
                            PTHREAD_BARRIER_SERIAL_THREAD => {
                                SERIAL[phase].fetch_add(1, Ordering::SeqCst);
                            }
                            0 => {}
                            r => panic!("barrier_wait: {}", capi_common::name(r)),
                        }
                        assert_eq!(
                            ARRIVED[phase].load(Ordering::SeqCst),
                            PARTIES,
                            "released before all arrived"
                        );
                    }
                })
            })
            .collect();
        for t in tasks {
            t.join();
        }
        for (phase, s) in SERIAL.iter().enumerate() {
            assert_eq!(s.load(Ordering::SeqCst), 1, "serial callers in phase {phase}");
        }
        assert_eq!(destroy(b), 0);
    });
}

#[test]
fn destroy_while_callers_wait_is_ebusy() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        for who in BOTH {
            let b = Barrier::zeroed();
            assert_eq!(init(b, 2), 0);
            static ENTERED: AtomicUsize = AtomicUsize::new(0);
            ENTERED.store(0, Ordering::SeqCst);
            let w = start(who, move || {
                ENTERED.store(1, Ordering::SeqCst);
                wait(b)
            });
            wait_until(|| ENTERED.load(Ordering::SeqCst) == 1);
            // Until the waiter has arrived nobody waits and destroy is rightly 0; poll
            // until it has.
            let mut r = destroy(b);
            while r == 0 {
                capi_common::sleep(Duration::from_millis(1));
                r = destroy(b);
            }
            assert_eq!(r, EBUSY, "destroy while a {who:?} waits");
            let mine = wait(b);
            let theirs = w.join();
            let mut got = [mine, theirs];
            got.sort();
            assert_eq!(got, [PTHREAD_BARRIER_SERIAL_THREAD, 0]);
            assert_eq!(destroy(b), 0, "destroy right after the phase ended");
        }
    });
}
