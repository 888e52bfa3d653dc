//! Condition variables: `pthread_cond_*` over [`RawCondvar`], which has
//! `pthread_cond_t`'s size and alignment and takes all-zero bytes
//! (`PTHREAD_COND_INITIALIZER`) as a condvar without waiters.
//!
//! | call | result |
//! |---|---|
//! | `wait` | 0 (spurious wake-ups possible); `EPERM` if the mutex is not the caller's (checked for recursive and error-checking mutexes; a normal one only if it is unlocked) |
//! | `timedwait` | as `wait`, and `ETIMEDOUT`; `EINVAL` for a bad `tv_nsec`, before anything else |
//! | `signal`, `broadcast` | 0 |
//! | `destroy` | 0; `EBUSY` while someone waits (glibc blocks until the waiters leave, forever if none is ever signalled; POSIX recommends `EBUSY`) |
//!
//! The mutex is held again whenever `wait` or `timedwait` returns, error or not, except
//! for `EPERM` and `EINVAL`.
//!
//! # Cancellation
//!
//! Both waits are cancellation points: before they block, and after they wake with the
//! mutex held again (the thread's cleanup handlers then run with it held, as in glibc).
//! A waiter that acts on a cancel after a signal woke it must not swallow that signal
//! while others wait (POSIX): a cleanup handler pushed around the second point
//! (`cleanup`) signals the condvar once more on the way out. If the wake-up was a
//! broadcast or a timeout, that extra signal is one spurious wake-up, which waiters
//! tolerate anyway.
//!
//! A cancel (or an unmasked uthread-directed signal) sent while the thread waits ends the
//! wait (`parlib_sync::RawCondvar::wait_interruptible`): the waiter leaves the queue
//! without taking anyone's wake-up, re-acquires the mutex and acts on the cancel there,
//! so its cleanup handlers run with the mutex held, as in glibc. After a signal's handler
//! the wait returns 0, a spurious wake-up.

use libc::{c_int, c_void, pthread_cond_t, pthread_condattr_t, pthread_mutex_t, timespec};
use parlib_sync::{Errno, RawCondvar, MUTEX_NORMAL};

use super::cleanup::on_exit_during;
use super::condattr::cond_clock;
use super::deadline;
use super::errors::code;
use super::{init_object, object, with_object, Storage};
use crate::cancel::{after_interrupt, testcancel};

impl Storage for pthread_cond_t {
    type Object = RawCondvar;
}

/// `pthread_cond_init`: a condvar without waiters, timing its waits on the clock `attr`
/// names (null: `CLOCK_REALTIME`). Returns 0, or `EINVAL` for a null `cond` or invalid
/// attributes.
///
/// # Safety
/// `cond` must be null or point to writable storage for a `pthread_cond_t` that no one
/// is using; `attr` null or initialised attributes.
#[no_mangle]
pub unsafe extern "C" fn upthread_cond_init(
    cond: *mut pthread_cond_t,
    attr: *const pthread_condattr_t,
) -> c_int {
    // SAFETY: null or initialised attributes, by the caller's contract.
    match unsafe { cond_clock(attr) } {
        // SAFETY: forwarded contract.
        Ok(clock) => unsafe { init_object(cond, RawCondvar::with_clock(clock)) },
        Err(e) => e,
    }
}

/// `pthread_cond_destroy`. Returns 0, `EBUSY` while uthreads or threads wait on it, or
/// `EINVAL` for a null pointer.
///
/// # Safety
/// `cond` must be null or point to an initialised condvar.
#[no_mangle]
pub unsafe extern "C" fn upthread_cond_destroy(cond: *mut pthread_cond_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_object(cond, |cv| code(cv.destroy())) }
}

/// `pthread_cond_wait`: releases `mutex`, waits for a signal, takes `mutex` again.
/// Returns 0, `EPERM` (module table) or `EINVAL` for a null pointer. A cancellation
/// point.
///
/// # Safety
/// `cond` and `mutex` must be null or point to an initialised condvar and mutex.
#[no_mangle]
pub unsafe extern "C" fn upthread_cond_wait(cond: *mut pthread_cond_t, mutex: *mut pthread_mutex_t) -> c_int {
    // SAFETY: forwarded contract.
    let (Some(cv), Some(m)) = (unsafe { (object(cond), object(mutex)) }) else { return libc::EINVAL };
    testcancel();
    match cv.wait_interruptible(m) {
        Ok(()) => {
            testcancel_after_wake(cond);
            0
        }
        Err(Errno::INTR) => {
            // A cancel or a signal ended the wait; the mutex is held again. Act on it
            // here (cleanup handlers run with the mutex held); otherwise the wait ends
            // as a spurious wake-up.
            after_interrupt();
            0
        }
        Err(e) => e.0,
    }
}

/// `pthread_cond_timedwait`: like `wait`, but gives up at `abstime`, an absolute time on
/// the condvar's clock (`CLOCK_REALTIME` unless its attributes chose `CLOCK_MONOTONIC`).
/// Returns 0, `ETIMEDOUT`, `EPERM`, or `EINVAL` (a null pointer or a `tv_nsec` outside
/// `0..1e9`, checked first, as glibc, with the mutex untouched). A cancellation point.
///
/// # Safety
/// `cond` and `mutex` must be null or point to an initialised condvar and mutex;
/// `abstime` null or readable.
#[no_mangle]
pub unsafe extern "C" fn upthread_cond_timedwait(
    cond: *mut pthread_cond_t,
    mutex: *mut pthread_mutex_t,
    abstime: *const timespec,
) -> c_int {
    // SAFETY: forwarded contract.
    let (Some(cv), Some(m)) = (unsafe { (object(cond), object(mutex)) }) else { return libc::EINVAL };
    // SAFETY: null or readable, by the caller's contract.
    let d = match unsafe { deadline::on_clock(abstime, cv.clock()) } {
        Ok(d) => d,
        Err(e) => return e,
    };
    testcancel();
    if d.has_passed() && m.kind() != MUTEX_NORMAL {
        // glibc releases the mutex before it looks at the time, so a mutex that knows
        // its owner reports EPERM even for a deadline that has passed. Release and take
        // it back, as a wait that timed out at once would.
        if let Err(e) = m.unlock() {
            return e.0;
        }
        return match m.lock() {
            Ok(()) => libc::ETIMEDOUT,
            Err(e) => e.0,
        };
    }
    let r = cv.timed_wait_interruptible(m, d);
    match r {
        Ok(()) => testcancel_after_wake(cond),
        Err(Errno::TIMEDOUT) => testcancel(),
        Err(Errno::INTR) => {
            after_interrupt(); // as in `upthread_cond_wait`
            return 0;
        }
        Err(_) => {}
    }
    code(r)
}

/// `pthread_cond_signal`: wakes one waiter, if any. Returns 0, or `EINVAL` for a null
/// pointer.
///
/// # Safety
/// `cond` must be null or point to an initialised condvar.
#[no_mangle]
pub unsafe extern "C" fn upthread_cond_signal(cond: *mut pthread_cond_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_object(cond, |cv| {
            cv.signal();
            0
        })
    }
}

/// `pthread_cond_broadcast`: wakes every waiter. Returns 0, or `EINVAL` for a null
/// pointer.
///
/// # Safety
/// `cond` must be null or point to an initialised condvar.
#[no_mangle]
pub unsafe extern "C" fn upthread_cond_broadcast(cond: *mut pthread_cond_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_object(cond, |cv| {
            cv.broadcast();
            0
        })
    }
}

/// The cancellation point after a wake-up: if the thread acts on a cancel here, the
/// wake-up it may have taken from a signal goes on to another waiter (module docs).
fn testcancel_after_wake(cond: *mut pthread_cond_t) {
    on_exit_during(forward_signal, cond.cast(), testcancel);
}

/// The cleanup handler of [`testcancel_after_wake`].
extern "C" fn forward_signal(cond: *mut c_void) {
    // SAFETY: the condvar this thread was waiting on; it cannot be destroyed before the
    // wait it was passed to returns, and that wait is still in progress.
    unsafe { upthread_cond_signal(cond.cast()) };
}
