//! Deferred cancellation: a pending cancel acts at a cancellation point, runs the cleanup
//! handlers newest first, and the thread exits with PTHREAD_CANCELED; a disabled cancel
//! state defers it until cancellation is enabled again.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use libc::c_void;
use parlib_sync::Mutex;
use parlib_upthread::cancel::*;
use parlib_upthread::thread::*;
use support::{create, join, wait_until, TIMEOUT};

static ORDER: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static READY: AtomicBool = AtomicBool::new(false);

extern "C" fn note(arg: *mut c_void) {
    ORDER.lock().push(arg as usize);
}

extern "C" fn push_three_then_wait(_: *mut c_void) -> *mut c_void {
    let mut bufs: [core::mem::MaybeUninit<CleanupBuffer>; 3] =
        [const { core::mem::MaybeUninit::uninit() }; 3];
    for (i, b) in bufs.iter_mut().enumerate() {
        // SAFETY: the buffers stay in this frame until the thread exits.
        unsafe { upthread_cleanup_push_impl(b.as_mut_ptr(), Some(note), (i + 1) as *mut c_void) };
    }
    READY.store(true, Ordering::SeqCst);
    loop {
        upthread_testcancel();
        parlib_upthread::yield_now();
    }
}

#[test]
fn cancel_runs_cleanup_handlers_lifo_and_exits_with_canceled() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let t = create(push_three_then_wait, 0);
        wait_until(|| READY.load(Ordering::SeqCst));
        assert_eq!(upthread_cancel(t), 0);
        assert_eq!(join(t), PTHREAD_CANCELED);
        assert_eq!(*ORDER.lock(), vec![3, 2, 1], "handlers run newest first");
        assert_eq!(upthread_cancel(t), libc::ESRCH, "a joined thread is gone");
    });
}

static CANCELLED: AtomicBool = AtomicBool::new(false);
static SURVIVED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn disable_then_enable(_: *mut c_void) -> *mut c_void {
    let mut old = -1;
    // SAFETY: `old` is writable.
    assert_eq!(unsafe { upthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &mut old) }, 0);
    assert_eq!(old, PTHREAD_CANCEL_ENABLE);
    READY.store(true, Ordering::SeqCst);
    wait_until(|| CANCELLED.load(Ordering::SeqCst));
    for _ in 0..10 {
        upthread_testcancel(); // disabled: the cancel stays pending
        SURVIVED.fetch_add(1, Ordering::SeqCst);
    }
    // SAFETY: a null `old` is allowed.
    assert_eq!(unsafe { upthread_setcancelstate(PTHREAD_CANCEL_ENABLE, core::ptr::null_mut()) }, 0);
    upthread_testcancel();
    unreachable!("the pending cancel acts once enabled");
}

#[test]
fn a_disabled_cancel_state_defers_the_cancel() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let t = create(disable_then_enable, 0);
        wait_until(|| READY.load(Ordering::SeqCst));
        assert_eq!(upthread_cancel(t), 0);
        CANCELLED.store(true, Ordering::SeqCst);
        assert_eq!(join(t), PTHREAD_CANCELED);
        assert_eq!(SURVIVED.load(Ordering::SeqCst), 10);
    });
}

static TARGET: AtomicUsize = AtomicUsize::new(0);

extern "C" fn join_target(_: *mut c_void) -> *mut c_void {
    READY.store(true, Ordering::SeqCst);
    wait_until(|| CANCELLED.load(Ordering::SeqCst));
    // join is a cancellation point: the pending cancel acts before it blocks.
    // SAFETY: a null retval is allowed.
    unsafe { upthread_join(TARGET.load(Ordering::SeqCst) as upthread_t, core::ptr::null_mut()) };
    unreachable!("join acts on the pending cancel");
}

extern "C" fn idle(_: *mut c_void) -> *mut c_void {
    core::ptr::null_mut()
}

#[test]
fn join_is_a_cancellation_point() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let target = create(idle, 0);
        TARGET.store(target as usize, Ordering::SeqCst);
        let t = create(join_target, 0);
        wait_until(|| READY.load(Ordering::SeqCst));
        assert_eq!(upthread_cancel(t), 0);
        CANCELLED.store(true, Ordering::SeqCst);
        assert_eq!(join(t), PTHREAD_CANCELED);
        join(target); // still joinable: the cancelled join never claimed it
    });
}

#[test]
fn bad_cancel_arguments_are_einval() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        // SAFETY: null `old` pointers are allowed.
        unsafe {
            assert_eq!(upthread_setcancelstate(5, core::ptr::null_mut()), libc::EINVAL);
            assert_eq!(upthread_setcanceltype(5, core::ptr::null_mut()), libc::EINVAL);
            let mut old = -1;
            assert_eq!(upthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, &mut old), 0);
            assert_eq!(old, PTHREAD_CANCEL_DEFERRED);
            assert_eq!(upthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, &mut old), 0);
            assert_eq!(old, PTHREAD_CANCEL_ASYNCHRONOUS);
        }
        assert_eq!(upthread_cancel(0), libc::ESRCH);
    });
}
