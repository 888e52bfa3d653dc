//! Threads created with `upthread_create` or `spawn` run, and `join` hands back what they
//! returned.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use libc::c_void;
use parlib_upthread::thread::{upthread_equal, upthread_self};
use support::{create, join, TIMEOUT};

extern "C" fn double(arg: *mut c_void) -> *mut c_void {
    (arg as usize * 2) as *mut c_void
}

#[test]
fn c_threads_return_their_values_to_join() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let ts: Vec<_> = (1..=32).map(|i| create(double, i)).collect();
        for (i, t) in ts.into_iter().enumerate() {
            assert_eq!(join(t) as usize, (i + 1) * 2);
        }
    });
}

static SEEN_SELF: AtomicUsize = AtomicUsize::new(0);

extern "C" fn record_self(_: *mut c_void) -> *mut c_void {
    SEEN_SELF.store(upthread_self() as usize, Ordering::SeqCst);
    upthread_self() as *mut c_void
}

#[test]
fn self_inside_a_thread_is_the_handle_create_returned() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let main = upthread_self();
        assert_ne!(main, 0, "main has a handle");
        let t = create(record_self, 0);
        assert_eq!(join(t) as u64, t as u64);
        assert_eq!(SEEN_SELF.load(Ordering::SeqCst) as u64, t as u64);
        assert_eq!(upthread_equal(t, t), 1);
        assert_eq!(upthread_equal(t, main), 0);
    });
}

#[test]
fn rust_spawn_returns_values_and_panics_as_err() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let hs: Vec<_> = (0..16u64).map(|i| parlib_upthread::spawn(move || i * i)).collect();
        for (i, h) in hs.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), (i * i) as u64);
        }
        let p = parlib_upthread::spawn(|| -> u32 { panic!("on purpose") });
        let e = p.join().expect_err("a panic is an Err");
        assert_eq!(e.downcast_ref::<&str>().copied(), Some("on purpose"));
    });
}

#[test]
fn spawn_initialises_upthread_on_first_use() {
    parlib_testkit::isolated!(TIMEOUT, {
        assert!(!parlib_upthread::is_initialized());
        let h = parlib_upthread::spawn(|| 7);
        assert!(parlib_upthread::is_initialized());
        assert_eq!(h.join().unwrap(), 7);
        parlib_upthread::init().expect("init again is a no-op");
    });
}
