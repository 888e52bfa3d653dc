//! Semaphores: `sem_*` over [`RawSemaphore`], which has `sem_t`'s size and alignment and
//! takes all-zero bytes as a semaphore at 0.
//!
//! The `sem_*` convention: 0 on success, else -1 with the error in `errno` (the calling
//! uthread's own).
//!
//! | call | errno on failure |
//! |---|---|
//! | `init` | `EINVAL` if `value` exceeds `SEM_VALUE_MAX` |
//! | `wait` | `EINTR` after a uthread-directed signal's handler installed without `SA_RESTART` |
//! | `trywait` | `EAGAIN` at 0 |
//! | `timedwait` | `ETIMEDOUT`; `EINTR` as `wait`; `EINVAL` for a bad `tv_nsec`, checked first (as glibc, even with units available) |
//! | `post` | `EOVERFLOW` at `SEM_VALUE_MAX` |
//! | `getvalue` | never fails (0 while callers wait, as glibc) |
//! | `destroy` | `EBUSY` while callers wait (glibc returns 0; POSIX lists `EBUSY`) |
//!
//! Every call is `EINVAL` for a null pointer. `wait` and `timedwait` are cancellation
//! points before they block; after a wake-up that handed them a unit they return it
//! (acting on a cancel then would lose the unit); a `timedwait` that timed out is one
//! again. A cancel (or an unmasked uthread-directed signal) sent while the caller waits
//! ends the wait without a unit (`RawSemaphore::wait_interruptible`: a post racing it
//! either reached the waiter first, and the wait returns 0 with the unit, or goes to the
//! next waiter or the count); the caller then acts on the cancel, or runs the signal's
//! handler and fails with `EINTR` (handler without `SA_RESTART`) or waits again.
//!
//! `pshared` may be non-zero, as glibc allows; the semaphore then works between the
//! threads of this process like any other. Sharing it with another process is not
//! supported (see `pshared` for why).

use libc::{c_int, c_uint, sem_t, timespec};
use parlib_sync::{Errno, RawSemaphore, SEM_VALUE_MAX};

use super::deadline;
use super::errors::sem_code;
use super::{init_object, object, Storage};
use crate::cancel::{after_interrupt, testcancel};

impl Storage for sem_t {
    type Object = RawSemaphore;
}

/// Runs `f` on the semaphore at `s` and applies the `sem_*` convention (a null pointer
/// is -1 with `errno` `EINVAL`).
///
/// # Safety
/// As for [`object`].
unsafe fn with(s: *mut sem_t, f: impl FnOnce(&RawSemaphore) -> Result<(), c_int>) -> c_int {
    // SAFETY: forwarded contract.
    sem_code(unsafe { object(s) }.ok_or(libc::EINVAL).and_then(f))
}

fn errno(r: Result<(), Errno>) -> Result<(), c_int> {
    r.map_err(|e| e.0)
}

/// The cancellation point around a semaphore wait: acts on a cancel before each try and
/// after a timeout. After an interrupted try it runs the pending handlers, then fails
/// with `EINTR` if one was installed without `SA_RESTART`, else tries again.
fn wait_point(mut wait: impl FnMut() -> Result<(), Errno>) -> Result<(), c_int> {
    loop {
        testcancel();
        match wait() {
            Err(Errno::INTR) => {
                if after_interrupt().no_restart {
                    return Err(libc::EINTR);
                }
            }
            r => {
                if r == Err(Errno::TIMEDOUT) {
                    testcancel();
                }
                return errno(r);
            }
        }
    }
}

/// `sem_init`: a semaphore holding `value` units. Returns 0, or -1 with `errno` `EINVAL`
/// (`value` above `SEM_VALUE_MAX`, or a null `sem`).
///
/// # Safety
/// `sem` must be null or point to writable storage for a `sem_t` that no one is using.
#[no_mangle]
pub unsafe extern "C" fn upthread_sem_init(sem: *mut sem_t, pshared: c_int, value: c_uint) -> c_int {
    let _ = pshared; // module docs
    if sem.is_null() || value > SEM_VALUE_MAX {
        return sem_code(Err(libc::EINVAL));
    }
    // SAFETY: forwarded contract; not null, so `init_object` returns 0.
    unsafe { init_object(sem, RawSemaphore::new(value)) }
}

/// `sem_destroy`. Returns 0, or -1 with `errno` `EBUSY` (callers wait) or `EINVAL`.
///
/// # Safety
/// `sem` must be null or point to an initialised semaphore.
#[no_mangle]
pub unsafe extern "C" fn upthread_sem_destroy(sem: *mut sem_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with(sem, |s| errno(s.destroy())) }
}

/// `sem_wait`: takes a unit, blocking only the calling uthread while there is none.
/// Returns 0, or -1 with `errno` `EINTR` (module table) or `EINVAL` for a null pointer.
/// A cancellation point.
///
/// # Safety
/// `sem` must be null or point to an initialised semaphore.
#[no_mangle]
pub unsafe extern "C" fn upthread_sem_wait(sem: *mut sem_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with(sem, |s| wait_point(|| s.wait_interruptible())) }
}

/// `sem_trywait`: takes a unit if there is one. Returns 0, or -1 with `errno` `EAGAIN`
/// or `EINVAL`.
///
/// # Safety
/// `sem` must be null or point to an initialised semaphore.
#[no_mangle]
pub unsafe extern "C" fn upthread_sem_trywait(sem: *mut sem_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with(sem, |s| errno(s.try_wait())) }
}

/// `sem_timedwait`: like `sem_wait`, but gives up at `abstime`, an absolute
/// `CLOCK_REALTIME` time. Returns 0, or -1 with `errno` `ETIMEDOUT` or `EINVAL` (module
/// table). A cancellation point.
///
/// # Safety
/// `sem` must be null or point to an initialised semaphore; `abstime` null or readable.
#[no_mangle]
pub unsafe extern "C" fn upthread_sem_timedwait(sem: *mut sem_t, abstime: *const timespec) -> c_int {
    // SAFETY: null or readable, by the caller's contract.
    let d = match unsafe { deadline::realtime(abstime) } {
        Ok(d) => d,
        Err(e) => return sem_code(Err(e)),
    };
    // SAFETY: forwarded contract.
    unsafe { with(sem, |s| wait_point(|| s.timed_wait_interruptible(d))) }
}

/// `sem_post`: adds a unit, handing it to the first waiter if there is one. Returns 0,
/// or -1 with `errno` `EOVERFLOW` or `EINVAL`.
///
/// # Safety
/// `sem` must be null or point to an initialised semaphore.
#[no_mangle]
pub unsafe extern "C" fn upthread_sem_post(sem: *mut sem_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with(sem, |s| errno(s.post())) }
}

/// `sem_getvalue`: stores the number of units in `*value` (0 while callers wait).
/// Returns 0, or -1 with `errno` `EINVAL` for a null pointer.
///
/// # Safety
/// `sem` must be null or point to an initialised semaphore; `value` null or writable.
#[no_mangle]
pub unsafe extern "C" fn upthread_sem_getvalue(sem: *mut sem_t, value: *mut c_int) -> c_int {
    // SAFETY: null or writable, by the caller's contract.
    let Some(out) = (unsafe { value.as_mut() }) else { return sem_code(Err(libc::EINVAL)) };
    // SAFETY: forwarded contract.
    unsafe {
        with(sem, |s| {
            // At most SEM_VALUE_MAX (= INT_MAX), so it fits.
            *out = s.value() as c_int;
            Ok(())
        })
    }
}
