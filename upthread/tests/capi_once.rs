//! `upthread_once`: the initialiser runs exactly once however many uthreads and plain
//! threads call at once, every caller returns only after it has finished,
//! `PTHREAD_ONCE_INIT` (zero) works, null pointers are `EINVAL`, and an initialiser whose
//! thread is cancelled inside it leaves the once as if it had never been called.

mod capi_common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use capi_common::{mixed, start, Shared, TIMEOUT};
use libc::{c_void, pthread_once_t, EINVAL};
use parlib_upthread::capi::upthread_once;

fn once(o: Shared<pthread_once_t>, init: unsafe extern "C" fn()) -> i32 {
    // SAFETY: leaked once storage; `init` is one of this file's initialisers.
    unsafe { upthread_once(o.get(), Some(init)) }
}

static RUNS: AtomicUsize = AtomicUsize::new(0);
static FINISHED: AtomicBool = AtomicBool::new(false);

/// A slow initialiser: sleeps (blocking only its caller), so others arrive meanwhile.
extern "C" fn slow_init() {
    RUNS.fetch_add(1, Ordering::SeqCst);
    capi_common::sleep(Duration::from_millis(20));
    FINISHED.store(true, Ordering::SeqCst);
}

#[test]
fn the_initialiser_runs_once_and_everyone_waits_for_it() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        let o = Shared::<pthread_once_t>::zeroed();
        let callers: Vec<_> = (0..8)
            .map(|i| {
                start(mixed(i), move || {
                    assert_eq!(once(o, slow_init), 0);
                    FINISHED.load(Ordering::SeqCst)
                })
            })
            .collect();
        for c in callers {
            assert!(c.join(), "a caller returned before the initialiser finished");
        }
        assert_eq!(once(o, slow_init), 0);
        assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn once_init_constant_and_null_pointers() {
    parlib_testkit::isolated!(TIMEOUT, {
        let o = Shared(Box::into_raw(Box::new(libc::PTHREAD_ONCE_INIT)));
        assert_eq!(once(o, slow_init), 0);
        assert_eq!(once(o, slow_init), 0);
        assert_eq!(RUNS.load(Ordering::SeqCst), 1);
        // SAFETY: null pointers are refused before use.
        unsafe {
            assert_eq!(upthread_once(std::ptr::null_mut(), Some(slow_init)), EINVAL);
            assert_eq!(upthread_once(o.get(), None), EINVAL);
        }
    });
}

static ATTEMPTS: AtomicUsize = AtomicUsize::new(0);
static WAITER_IN: AtomicBool = AtomicBool::new(false);

/// The first attempt cancels its own thread from inside; later ones complete.
extern "C" fn cancelled_the_first_time() {
    if ATTEMPTS.fetch_add(1, Ordering::SeqCst) == 0 {
        // Let a second caller arrive and wait on the once.
        capi_common::wait_until(|| WAITER_IN.load(Ordering::SeqCst));
        capi_common::sleep(Duration::from_millis(5));
        // Cancel the calling thread; it acts at the next cancellation point.
        assert_eq!(parlib_upthread::cancel::upthread_cancel(parlib_upthread::thread::upthread_self()), 0);
        parlib_upthread::cancel::upthread_testcancel();
        unreachable!("the cancel acts at testcancel");
    }
}

#[test]
fn an_initialiser_cancelled_inside_leaves_the_once_not_run() {
    parlib_testkit::isolated!(TIMEOUT, {
        capi_common::init();
        let o = Shared::<pthread_once_t>::zeroed();
        extern "C" fn first(arg: *mut c_void) -> *mut c_void {
            let o = Shared(arg.cast::<pthread_once_t>());
            once(o, cancelled_the_first_time);
            std::ptr::null_mut()
        }
        let mut t = 0;
        // SAFETY: `t` is writable; `first` gets the leaked once.
        let r = unsafe {
            parlib_upthread::thread::upthread_create(&mut t, std::ptr::null(), Some(first), o.get().cast())
        };
        assert_eq!(r, 0);
        // A second caller, arriving while the first attempt runs: it must end up running
        // the initialiser itself once the first attempt is abandoned.
        let second = start(capi_common::Who::Uthread, move || {
            // Only once the first attempt has begun, or this caller would be the first.
            capi_common::wait_until(|| ATTEMPTS.load(Ordering::SeqCst) == 1);
            WAITER_IN.store(true, Ordering::SeqCst);
            once(o, cancelled_the_first_time)
        });
        let mut rv = std::ptr::null_mut();
        // SAFETY: `rv` is writable.
        assert_eq!(unsafe { parlib_upthread::thread::upthread_join(t, &mut rv) }, 0);
        assert_eq!(rv, parlib_upthread::PTHREAD_CANCELED, "the first caller was cancelled");
        assert_eq!(second.join(), 0);
        assert_eq!(ATTEMPTS.load(Ordering::SeqCst), 2, "the waiter ran the initialiser again");
        assert_eq!(once(o, cancelled_the_first_time), 0);
        assert_eq!(ATTEMPTS.load(Ordering::SeqCst), 2, "and then it counts as done");
    });
}
