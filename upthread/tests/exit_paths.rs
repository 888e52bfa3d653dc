//! Every way out of a thread (return, `upthread_exit`, cancellation) runs its cleanup
//! handlers and key destructors exactly once, and hands the right value to `join`.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use libc::c_void;
use parlib_upthread::cancel::*;
use parlib_upthread::keys::*;
use parlib_upthread::thread::*;
use support::{create, join, TIMEOUT};

static KEY: AtomicUsize = AtomicUsize::new(0);
static DTORS: AtomicUsize = AtomicUsize::new(0);
static HANDLERS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_dtor(_: *mut c_void) {
    DTORS.fetch_add(1, Ordering::SeqCst);
}

extern "C" fn count_handler(_: *mut c_void) {
    HANDLERS.fetch_add(1, Ordering::SeqCst);
}

/// Sets a key value and pushes a handler, then leaves the way `how` says.
extern "C" fn leave(how: *mut c_void) -> *mut c_void {
    assert_eq!(
        upthread_setspecific(KEY.load(Ordering::SeqCst) as upthread_key_t, core::ptr::dangling::<c_void>()),
        0
    );
    let mut buf = core::mem::MaybeUninit::<CleanupBuffer>::uninit();
    // SAFETY: the buffer stays in this frame until popped (or until the thread exits).
    unsafe { upthread_cleanup_push_impl(buf.as_mut_ptr(), Some(count_handler), core::ptr::null_mut()) };
    match how as usize {
        0 => {
            // Return: pop (running the handler, as `pthread_cleanup_pop(1)` does).
            // SAFETY: the buffer pushed above.
            unsafe { upthread_cleanup_pop_impl(buf.as_mut_ptr(), 1) };
            10 as *mut c_void
        }
        1 => upthread_exit(11usize as *mut c_void),
        _ => {
            upthread_cancel(upthread_self());
            upthread_testcancel();
            unreachable!("a pending cancel acts at testcancel");
        }
    }
}

#[test]
fn return_exit_and_cancel_each_clean_up_once() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let mut k = 0;
        // SAFETY: `k` is writable.
        assert_eq!(unsafe { upthread_key_create(&mut k, Some(count_dtor)) }, 0);
        KEY.store(k as usize, Ordering::SeqCst);
        for (n, (how, expect)) in
            [(0, 10usize), (1, 11), (2, PTHREAD_CANCELED as usize)].into_iter().enumerate()
        {
            let t = create(leave, how);
            assert_eq!(join(t) as usize, expect, "exit value of path {how}");
            assert_eq!(HANDLERS.load(Ordering::SeqCst), n + 1, "cleanup handlers after path {how}");
            assert_eq!(DTORS.load(Ordering::SeqCst), n + 1, "key destructors after path {how}");
        }
    });
}

extern "C" fn exit_in_handler(_: *mut c_void) {
    HANDLERS.fetch_add(1, Ordering::SeqCst);
    upthread_exit(99 as *mut c_void); // an exit inside the exit path does not restart it
}

extern "C" fn exit_twice(_: *mut c_void) -> *mut c_void {
    let mut buf = core::mem::MaybeUninit::<CleanupBuffer>::uninit();
    // SAFETY: the buffer stays in this frame until the thread exits.
    unsafe { upthread_cleanup_push_impl(buf.as_mut_ptr(), Some(exit_in_handler), core::ptr::null_mut()) };
    upthread_exit(core::ptr::dangling_mut::<c_void>())
}

#[test]
fn exit_from_a_cleanup_handler_does_not_run_it_again() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let t = create(exit_twice, 0);
        assert_eq!(join(t) as usize, 99);
        assert_eq!(HANDLERS.load(Ordering::SeqCst), 1);
    });
}

extern "C" fn finish_late(_: *mut c_void) -> *mut c_void {
    for _ in 0..100 {
        parlib_upthread::yield_now();
    }
    let msg = b"\nlast thread done\n";
    // SAFETY: writing a valid buffer to stdout.
    unsafe { libc::write(1, msg.as_ptr().cast(), msg.len()) };
    core::ptr::null_mut()
}

#[test]
fn exit_from_main_waits_for_the_other_threads_then_exits_zero() {
    let out = parlib_testkit::child_outcome!(TIMEOUT, {
        support::init();
        let t = create(finish_late, 0);
        assert_eq!(upthread_detach(t), 0);
        upthread_exit(core::ptr::null_mut());
    });
    let status = out.status.expect("the child exited by itself");
    assert!(status.success(), "exit status 0\n{}", out.output());
    assert!(!out.finished, "upthread_exit from main does not return\n{}", out.output());
    assert!(out.stdout.contains("last thread done"), "the other thread finished first\n{}", out.output());
}
