//! 10 000 short-lived threads created and joined one after the other, and as many
//! detached ones: records, stacks and backing threads are recycled, not leaked.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use libc::c_void;
use support::{create, join, wait_until, TIMEOUT};

extern "C" fn inc(arg: *mut c_void) -> *mut c_void {
    (arg as usize + 1) as *mut c_void
}

static DONE: AtomicUsize = AtomicUsize::new(0);

extern "C" fn done(_: *mut c_void) -> *mut c_void {
    DONE.fetch_add(1, Ordering::SeqCst);
    core::ptr::null_mut()
}

#[test]
fn ten_thousand_threads_created_and_joined() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        for i in 0..10_000usize {
            assert_eq!(join(create(inc, i)) as usize, i + 1);
        }
        // In batches too, so several are alive at once.
        for b in 0..100usize {
            let ts: Vec<_> = (0..100).map(|i| create(inc, b * 100 + i)).collect();
            for (i, t) in ts.into_iter().enumerate() {
                assert_eq!(join(t) as usize, b * 100 + i + 1);
            }
        }
    });
}

#[test]
fn ten_thousand_detached_threads_free_themselves() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        for _ in 0..10_000 {
            let t = create(done, 0);
            assert_eq!(parlib_upthread::thread::upthread_detach(t), 0);
        }
        wait_until(|| DONE.load(Ordering::SeqCst) == 10_000);
    });
}
