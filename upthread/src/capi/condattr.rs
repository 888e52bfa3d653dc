//! Condition variable attributes: `pthread_condattr_*`, in `pthread_condattr_t`'s 4
//! bytes. The word holds the clock that timed waits measure their deadline on; all zero
//! bytes are the defaults (`CLOCK_REALTIME`, which is clock id 0, and process-private).
//!
//! Only `CLOCK_REALTIME` and `CLOCK_MONOTONIC` are accepted, as in glibc (whose
//! `pthread_condattr_setclock` refuses every other clock, CPU-time ones included).

use libc::{c_int, clockid_t, pthread_condattr_t};

use super::{get_attr, init_object, object, pshared, set_attr, Storage};

/// What upthread keeps in a `pthread_condattr_t`.
#[repr(C)]
pub(super) struct CondAttr {
    /// `CLOCK_REALTIME` (0) or `CLOCK_MONOTONIC`.
    clock: clockid_t,
}

impl Storage for pthread_condattr_t {
    type Object = CondAttr;
}

fn valid_clock(clock: clockid_t) -> bool {
    clock == libc::CLOCK_REALTIME || clock == libc::CLOCK_MONOTONIC
}

/// The clock `attr` asks for; null means `CLOCK_REALTIME`.
///
/// # Errors
/// `EINVAL` if the attributes hold no valid clock (they were never initialised).
///
/// # Safety
/// `attr` must be null or point to readable attributes.
pub(super) unsafe fn cond_clock(attr: *const pthread_condattr_t) -> Result<clockid_t, c_int> {
    // SAFETY: null or readable, by the caller's contract.
    match unsafe { object(attr) } {
        None => Ok(libc::CLOCK_REALTIME),
        Some(a) if valid_clock(a.clock) => Ok(a.clock),
        Some(_) => Err(libc::EINVAL),
    }
}

/// `pthread_condattr_init`: the default attributes. Returns 0, or `EINVAL` for a null
/// `attr`.
///
/// # Safety
/// `attr` must be null or point to writable storage for a `pthread_condattr_t`.
#[no_mangle]
pub unsafe extern "C" fn upthread_condattr_init(attr: *mut pthread_condattr_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { init_object(attr, CondAttr { clock: libc::CLOCK_REALTIME }) }
}

/// `pthread_condattr_destroy`: nothing to release. Returns 0, or `EINVAL` for a null
/// `attr`.
///
/// # Safety
/// `attr` must be null or point to attributes.
#[no_mangle]
pub unsafe extern "C" fn upthread_condattr_destroy(attr: *mut pthread_condattr_t) -> c_int {
    if attr.is_null() {
        return libc::EINVAL;
    }
    0
}

/// `pthread_condattr_setclock`: `CLOCK_REALTIME` or `CLOCK_MONOTONIC`. Returns 0, or
/// `EINVAL` for another clock or a null `attr`.
///
/// # Safety
/// `attr` must be null or point to initialised attributes.
#[no_mangle]
pub unsafe extern "C" fn upthread_condattr_setclock(
    attr: *mut pthread_condattr_t,
    clock: clockid_t,
) -> c_int {
    if !valid_clock(clock) {
        return libc::EINVAL;
    }
    // SAFETY: forwarded contract.
    unsafe { set_attr(attr, |a| a.clock = clock) }
}

/// `pthread_condattr_getclock`: stores the clock in `*clock`. Returns 0, or `EINVAL`
/// for a null pointer.
///
/// # Safety
/// `attr` must be null or point to initialised attributes; `clock` null or writable.
#[no_mangle]
pub unsafe extern "C" fn upthread_condattr_getclock(
    attr: *const pthread_condattr_t,
    clock: *mut clockid_t,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { get_attr(attr, clock, |a| a.clock) }
}

/// `pthread_condattr_setpshared`: `PTHREAD_PROCESS_PRIVATE` is accepted,
/// `PTHREAD_PROCESS_SHARED` is `ENOTSUP` (see `pshared`), anything else,
/// or a null `attr`, is `EINVAL`.
///
/// # Safety
/// `attr` must be null or point to initialised attributes.
#[no_mangle]
pub unsafe extern "C" fn upthread_condattr_setpshared(
    attr: *mut pthread_condattr_t,
    pshared: c_int,
) -> c_int {
    pshared::set(!attr.is_null(), pshared)
}

/// `pthread_condattr_getpshared`: always `PTHREAD_PROCESS_PRIVATE`. Returns 0, or
/// `EINVAL` for a null pointer.
///
/// # Safety
/// `attr` must be null or point to initialised attributes; `pshared` null or writable.
#[no_mangle]
pub unsafe extern "C" fn upthread_condattr_getpshared(
    attr: *const pthread_condattr_t,
    pshared: *mut c_int,
) -> c_int {
    // SAFETY: null or writable, by the caller's contract.
    unsafe { pshared::get(!attr.is_null(), pshared) }
}
