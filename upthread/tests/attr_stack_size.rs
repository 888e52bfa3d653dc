//! Huge stack sizes: `upthread_attr_setstacksize` and `upthread_create` answer them as
//! glibc's `pthread_attr_setstacksize` and `pthread_create` do. Measured with glibc 2.36
//! (4 KiB pages, default one-page guard):
//!
//! | size | setstacksize | create |
//! |---|---|---|
//! | `SIZE_MAX` .. `SIZE_MAX - 4095` (size + guard wraps) | 0 | `EINVAL` |
//! | `SIZE_MAX - 4096` and below, too large to map | 0 | `EAGAIN` |
//! | below `PTHREAD_STACK_MIN` (16384) | `EINVAL` | - |
//!
//! The sizes that wrap used to wrap inside `Stack::new` too: a release build gave the
//! thread a stack of no usable page, so it faulted in its guard page; a debug build
//! panicked in `upthread_create`.

mod support;

use core::mem::MaybeUninit;
use core::ptr::null_mut;

use libc::{c_void, EAGAIN, EINVAL};
use parlib_upthread::attr::{
    upthread_attr_destroy, upthread_attr_getstacksize, upthread_attr_init, upthread_attr_setstacksize,
    UpthreadAttr, PTHREAD_STACK_MIN,
};
use parlib_upthread::thread::upthread_create;
use parlib_upthread::upthread_t;
use support::{errno_name, join, TIMEOUT};

extern "C" fn echo(arg: *mut c_void) -> *mut c_void {
    arg
}

fn page() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// The sizes of the table above, around both boundaries.
fn huge_sizes() -> Vec<usize> {
    let page = page();
    vec![
        usize::MAX,
        usize::MAX - 1,
        usize::MAX - page + 1,
        usize::MAX - page,
        usize::MAX - 2 * page,
        usize::MAX / 2 + 1,
        1 << 60,
    ]
}

/// What glibc answers here: `pthread_attr_setstacksize(size)`, then `pthread_create`.
fn glibc_answers(size: usize) -> (i32, i32) {
    // SAFETY: a local attribute object, initialised before use and destroyed after; a
    // thread that does get created is joined.
    unsafe {
        let mut a: libc::pthread_attr_t = core::mem::zeroed();
        libc::pthread_attr_init(&mut a);
        let set = libc::pthread_attr_setstacksize(&mut a, size);
        let mut t: libc::pthread_t = 0;
        let created = libc::pthread_create(&mut t, &a, echo, null_mut());
        if created == 0 {
            libc::pthread_join(t, null_mut());
        }
        libc::pthread_attr_destroy(&mut a);
        (set, created)
    }
}

/// An initialised upthread attribute object.
struct Attr(MaybeUninit<UpthreadAttr>);

impl Attr {
    fn new() -> Attr {
        let mut a = Attr(MaybeUninit::uninit());
        // SAFETY: writable storage for an attribute object.
        assert_eq!(unsafe { upthread_attr_init(a.0.as_mut_ptr()) }, 0);
        a
    }

    fn set_stack_size(&mut self, size: usize) -> i32 {
        // SAFETY: initialised by `new`.
        unsafe { upthread_attr_setstacksize(self.0.as_mut_ptr(), size) }
    }

    fn stack_size(&self) -> usize {
        let mut size = 0;
        // SAFETY: initialised by `new`; `size` is writable.
        assert_eq!(unsafe { upthread_attr_getstacksize(self.0.as_ptr(), &mut size) }, 0);
        size
    }

    /// `upthread_create(echo, arg)` with these attributes: the handle, or the error.
    fn create(&self, arg: usize) -> Result<upthread_t, i32> {
        let mut t: upthread_t = 0;
        // SAFETY: `t` is writable, the attribute object initialised; `echo` takes any arg.
        match unsafe { upthread_create(&mut t, self.0.as_ptr(), Some(echo), arg as *mut c_void) } {
            0 => Ok(t),
            e => Err(e),
        }
    }
}

impl Drop for Attr {
    fn drop(&mut self) {
        // SAFETY: initialised by `new`.
        unsafe { upthread_attr_destroy(self.0.as_mut_ptr()) };
    }
}

#[test]
fn setstacksize_accepts_any_size_from_the_minimum_up_as_glibc_does() {
    parlib_testkit::isolated!(TIMEOUT, {
        let mut a = Attr::new();
        for size in huge_sizes() {
            assert_eq!(a.set_stack_size(size), glibc_answers(size).0, "setstacksize({size:#x})");
            assert_eq!(a.set_stack_size(size), 0, "setstacksize({size:#x})");
            assert_eq!(a.stack_size(), size, "the size is stored as given");
        }
        assert_eq!(a.set_stack_size(PTHREAD_STACK_MIN - 1), EINVAL);
        assert_eq!(glibc_answers(PTHREAD_STACK_MIN - 1).0, EINVAL);
    });
}

#[test]
fn create_with_a_huge_stack_fails_with_glibcs_error_and_starts_nothing() {
    parlib_testkit::isolated!(TIMEOUT, {
        let page = page();
        // Asked of glibc before upthread starts, on this plain thread.
        let glibc: Vec<_> = huge_sizes().into_iter().map(|s| (s, glibc_answers(s).1)).collect();
        support::init();
        let mut a = Attr::new();
        for &(size, expected) in &glibc {
            assert_eq!(a.set_stack_size(size), 0);
            let got = a.create(7);
            assert_eq!(
                got,
                Err(expected),
                "size {size:#x}: upthread {got:?}, glibc {}",
                errno_name(expected)
            );
            let wraps = size.checked_add(page).is_none();
            assert_eq!(got, Err(if wraps { EINVAL } else { EAGAIN }), "size {size:#x}: glibc 2.36's answer");
        }
    });
}

#[test]
fn an_attr_that_was_refused_creates_threads_again_once_its_size_is_fixed() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let mut a = Attr::new();
        assert_eq!(a.set_stack_size(usize::MAX), 0);
        assert_eq!(a.create(1), Err(EINVAL));
        assert_eq!(a.set_stack_size(1 << 20), 0);
        let t = a.create(42).expect("a 1 MiB stack");
        assert_eq!(join(t) as usize, 42);
    });
}
