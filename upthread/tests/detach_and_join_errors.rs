//! Detached threads free themselves; `join` and `detach` refuse what glibc refuses, with
//! glibc's codes, and never crash on bad handles.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use libc::c_void;
use parlib_upthread::attr::*;
use parlib_upthread::thread::*;
use support::{create, errno_name, join, wait_until, TIMEOUT};

static FINISHED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn finish(_: *mut c_void) -> *mut c_void {
    FINISHED.fetch_add(1, Ordering::SeqCst);
    core::ptr::null_mut()
}

fn join_code(t: upthread_t) -> i32 {
    // SAFETY: a null retval is allowed.
    unsafe { upthread_join(t, core::ptr::null_mut()) }
}

#[test]
fn detached_threads_run_and_cannot_be_joined() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        // Detached through the attribute.
        let mut attr = core::mem::MaybeUninit::<UpthreadAttr>::uninit();
        // SAFETY: attr storage is writable; every call gets initialised storage.
        unsafe {
            assert_eq!(upthread_attr_init(attr.as_mut_ptr()), 0);
            assert_eq!(upthread_attr_setdetachstate(attr.as_mut_ptr(), PTHREAD_CREATE_DETACHED), 0);
            let mut st = -1;
            assert_eq!(upthread_attr_getdetachstate(attr.as_ptr(), &mut st), 0);
            assert_eq!(st, PTHREAD_CREATE_DETACHED);
            for _ in 0..100 {
                let mut t = 0;
                assert_eq!(upthread_create(&mut t, attr.as_ptr(), Some(finish), core::ptr::null_mut()), 0);
            }
            assert_eq!(upthread_attr_destroy(attr.as_mut_ptr()), 0);
        }
        // Detached after creation.
        for _ in 0..100 {
            let t = create(finish, 0);
            assert_eq!(upthread_detach(t), 0);
        }
        wait_until(|| FINISHED.load(Ordering::SeqCst) == 200);
    });
}

#[test]
fn join_errors_match_glibc() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let me = upthread_self();
        assert_eq!(join_code(me), libc::EDEADLK, "joining oneself");
        assert_eq!(join_code(0), libc::ESRCH, "a null handle");
        assert_eq!(join_code(0xdead_beef0), libc::ESRCH, "a handle that never was a thread");

        let t = create(finish, 0);
        assert_eq!(upthread_detach(t), 0);
        let r = join_code(t);
        // Still running: EINVAL (detached); already exited and freed: ESRCH.
        assert!(r == libc::EINVAL || r == libc::ESRCH, "join of a detached thread: {}", errno_name(r));

        let t = create(finish, 0);
        join(t);
        assert_eq!(join_code(t), libc::ESRCH, "joining twice");
        assert_eq!(upthread_detach(t), libc::ESRCH, "detaching a joined thread");
        assert_eq!(upthread_detach(0), libc::ESRCH);

        let t = create(finish, 0);
        assert_eq!(upthread_detach(t), 0);
        let r = upthread_detach(t);
        assert!(r == libc::EINVAL || r == libc::ESRCH, "detaching twice: {}", errno_name(r));
    });
}

static MAIN: AtomicUsize = AtomicUsize::new(0);

extern "C" fn join_main(_: *mut c_void) -> *mut c_void {
    join_code(MAIN.load(Ordering::SeqCst) as upthread_t) as usize as *mut c_void
}

#[test]
fn joining_main_is_refused() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        MAIN.store(upthread_self() as usize, Ordering::SeqCst);
        let t = create(join_main, 0);
        assert_eq!(join(t) as i32, libc::EINVAL);
    });
}

#[test]
fn bad_attributes_are_einval() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let mut attr = core::mem::MaybeUninit::<UpthreadAttr>::zeroed();
        // SAFETY: zeroed storage is a valid (uninitialised) attr object to pass.
        unsafe {
            let mut t = 0;
            assert_eq!(
                upthread_create(&mut t, attr.as_ptr(), Some(finish), core::ptr::null_mut()),
                libc::EINVAL,
                "an attr that was never initialised"
            );
            assert_eq!(upthread_create(&mut t, core::ptr::null(), None, core::ptr::null_mut()), libc::EINVAL);
            assert_eq!(upthread_attr_init(attr.as_mut_ptr()), 0);
            assert_eq!(upthread_attr_setdetachstate(attr.as_mut_ptr(), 7), libc::EINVAL);
            assert_eq!(upthread_attr_setstacksize(attr.as_mut_ptr(), PTHREAD_STACK_MIN - 1), libc::EINVAL);
            assert_eq!(upthread_attr_setstacksize(attr.as_mut_ptr(), 64 * 1024), 0);
            let mut sz = 0;
            assert_eq!(upthread_attr_getstacksize(attr.as_ptr(), &mut sz), 0);
            assert_eq!(sz, 64 * 1024);
            assert_eq!(
                upthread_attr_setstack(attr.as_mut_ptr(), core::ptr::null_mut(), 1 << 20),
                libc::EINVAL
            );
            assert_eq!(upthread_attr_setguardsize(attr.as_mut_ptr(), 8192), 0);
            assert_eq!(upthread_attr_getguardsize(attr.as_ptr(), &mut sz), 0);
            assert_eq!(sz, 8192);
            assert_eq!(upthread_attr_init(core::ptr::null_mut()), libc::EINVAL);
            assert_eq!(upthread_attr_destroy(attr.as_mut_ptr()), 0);
            assert_eq!(upthread_attr_destroy(attr.as_mut_ptr()), libc::EINVAL, "destroyed twice");
        }
    });
}

extern "C" fn deep(arg: *mut c_void) -> *mut c_void {
    // Touch the stack well below the top, to show it is ours.
    let mut buf = [0u8; 32 * 1024];
    buf[arg as usize % buf.len()] = 1;
    std::hint::black_box(&mut buf);
    std::hint::black_box(buf.as_ptr() as usize) as *mut c_void
}

#[test]
fn a_user_provided_stack_is_used() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let size = 256 * 1024;
        let mut mem = vec![0u8; size];
        let lo = mem.as_mut_ptr() as usize;
        let mut attr = core::mem::MaybeUninit::<UpthreadAttr>::uninit();
        // SAFETY: `mem` outlives the thread (joined below) and nothing else uses it.
        let t = unsafe {
            assert_eq!(upthread_attr_init(attr.as_mut_ptr()), 0);
            assert_eq!(upthread_attr_setstack(attr.as_mut_ptr(), lo as *mut c_void, size), 0);
            let (mut a, mut s) = (core::ptr::null_mut(), 0);
            assert_eq!(upthread_attr_getstack(attr.as_ptr(), &mut a, &mut s), 0);
            assert_eq!((a as usize, s), (lo, size));
            let mut t = 0;
            assert_eq!(upthread_create(&mut t, attr.as_ptr(), Some(deep), 5 as *mut c_void), 0);
            t
        };
        let frame = join(t) as usize;
        assert!((lo..lo + size).contains(&frame), "the thread's frame {frame:#x} is in the given stack");
        drop(mem);
    });
}
