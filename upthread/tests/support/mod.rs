//! Helpers shared by the upthread test files (`mod support;`).

#![allow(dead_code)]

use std::time::Duration;

use libc::c_void;
use parlib_upthread::upthread_t;

/// A watchdog long enough for a loaded machine running a debug build: the tests never
/// assert on speed, so this only bounds a hang.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// Starts upthread in a test child: the test thread becomes `main`, a uthread.
pub fn init() {
    parlib_upthread::init().expect("parlib_upthread::init");
}

/// `upthread_create` with default attributes, which must succeed.
pub fn create(f: extern "C" fn(*mut c_void) -> *mut c_void, arg: usize) -> upthread_t {
    let mut t: upthread_t = 0;
    // SAFETY: `t` is writable; a null attr means defaults.
    let r = unsafe {
        parlib_upthread::thread::upthread_create(&mut t, core::ptr::null(), Some(f), arg as *mut c_void)
    };
    assert_eq!(r, 0, "upthread_create: {}", errno_name(r));
    t
}

/// `upthread_join`, which must succeed; returns the exit value.
pub fn join(t: upthread_t) -> *mut c_void {
    let mut rv = core::ptr::null_mut();
    // SAFETY: `rv` is writable.
    let r = unsafe { parlib_upthread::thread::upthread_join(t, &mut rv) };
    assert_eq!(r, 0, "upthread_join: {}", errno_name(r));
    rv
}

/// `EINVAL (22)` and the like, for messages.
pub fn errno_name(e: i32) -> String {
    format!("{} ({e})", std::io::Error::from_raw_os_error(e))
}

/// Yields until `done()` holds.
pub fn wait_until(mut done: impl FnMut() -> bool) {
    while !done() {
        parlib_upthread::yield_now();
    }
}
