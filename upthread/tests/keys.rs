//! Thread-specific data: values are per thread, destructors run at exit (repeatedly while
//! they set values again, at most PTHREAD_DESTRUCTOR_ITERATIONS rounds), keys run out at
//! PTHREAD_KEYS_MAX, deleted keys read as null.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use libc::c_void;
use parlib_upthread::keys::*;
use support::{create, join, TIMEOUT};

static KEY: AtomicUsize = AtomicUsize::new(0);
static DTOR_CALLS: AtomicUsize = AtomicUsize::new(0);
static DTOR_SUM: AtomicUsize = AtomicUsize::new(0);

extern "C" fn sum_dtor(v: *mut c_void) {
    DTOR_CALLS.fetch_add(1, Ordering::SeqCst);
    DTOR_SUM.fetch_add(v as usize, Ordering::SeqCst);
}

extern "C" fn set_and_check(arg: *mut c_void) -> *mut c_void {
    let key = KEY.load(Ordering::SeqCst) as upthread_key_t;
    assert!(upthread_getspecific(key).is_null(), "a new thread starts with null");
    assert_eq!(upthread_setspecific(key, arg), 0);
    parlib_upthread::yield_now(); // let the others set theirs
    upthread_getspecific(key)
}

fn make_key(dtor: Option<extern "C" fn(*mut c_void)>) -> upthread_key_t {
    let mut k = 0;
    // SAFETY: `k` is writable.
    assert_eq!(unsafe { upthread_key_create(&mut k, dtor) }, 0);
    k
}

#[test]
fn values_are_per_thread_and_destructors_run_at_exit() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        KEY.store(make_key(Some(sum_dtor)) as usize, Ordering::SeqCst);
        let ts: Vec<_> = (1..=50).map(|i| create(set_and_check, i)).collect();
        for (i, t) in ts.into_iter().enumerate() {
            assert_eq!(join(t) as usize, i + 1, "each thread sees its own value");
        }
        assert_eq!(DTOR_CALLS.load(Ordering::SeqCst), 50);
        assert_eq!(DTOR_SUM.load(Ordering::SeqCst), (1..=50).sum::<usize>());
    });
}

static RESET_CALLS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn resetting_dtor(v: *mut c_void) {
    RESET_CALLS.fetch_add(1, Ordering::SeqCst);
    // Set a value again: the destructor runs again, up to the iteration limit.
    assert_eq!(upthread_setspecific(KEY.load(Ordering::SeqCst) as upthread_key_t, v), 0);
}

extern "C" fn set_once(_: *mut c_void) -> *mut c_void {
    assert_eq!(
        upthread_setspecific(
            KEY.load(Ordering::SeqCst) as upthread_key_t,
            core::ptr::dangling_mut::<c_void>()
        ),
        0
    );
    core::ptr::null_mut()
}

#[test]
fn a_destructor_that_sets_again_runs_at_most_four_times() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        KEY.store(make_key(Some(resetting_dtor)) as usize, Ordering::SeqCst);
        join(create(set_once, 0));
        assert_eq!(RESET_CALLS.load(Ordering::SeqCst), PTHREAD_DESTRUCTOR_ITERATIONS);
    });
}

extern "C" fn set_twice_dtor(v: *mut c_void) {
    RESET_CALLS.fetch_add(1, Ordering::SeqCst);
    if v as usize == 1 {
        // The second round sees 2, and stops.
        assert_eq!(upthread_setspecific(KEY.load(Ordering::SeqCst) as upthread_key_t, 2 as *mut c_void), 0);
    }
}

#[test]
fn a_value_set_in_a_destructor_gets_destroyed_in_the_next_round() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        KEY.store(make_key(Some(set_twice_dtor)) as usize, Ordering::SeqCst);
        join(create(set_once, 0));
        assert_eq!(RESET_CALLS.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn keys_run_out_at_the_limit_and_deleted_keys_read_null() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let keys: Vec<_> = (0..PTHREAD_KEYS_MAX).map(|_| make_key(None)).collect();
        let mut k = 0;
        // SAFETY: `k` is writable.
        assert_eq!(unsafe { upthread_key_create(&mut k, None) }, libc::EAGAIN);
        // SAFETY: a null key pointer is refused, not written.
        assert_eq!(unsafe { upthread_key_create(core::ptr::null_mut(), None) }, libc::EINVAL);
        let k0 = keys[0];
        assert_eq!(upthread_setspecific(k0, 5 as *const c_void), 0);
        assert_eq!(upthread_getspecific(k0) as usize, 5);
        assert_eq!(upthread_key_delete(k0), 0);
        assert_eq!(upthread_key_delete(k0), libc::EINVAL, "deleted twice");
        assert!(upthread_getspecific(k0).is_null());
        assert_eq!(upthread_setspecific(k0, 5 as *const c_void), libc::EINVAL);
        assert_eq!(upthread_key_delete(PTHREAD_KEYS_MAX as upthread_key_t), libc::EINVAL);
        assert!(upthread_getspecific(u32::MAX).is_null());
        // The freed slot is reused, and does not show the old value.
        let again = make_key(None);
        assert_eq!(again, k0);
        assert!(upthread_getspecific(again).is_null());
    });
}
