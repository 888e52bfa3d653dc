//! Condition variable attributes: `pthread_condattr_*`, in `pthread_condattr_t`'s 4
//! bytes. The word holds the clock that timed waits measure their deadline on; all zero
//! bytes are the defaults (`CLOCK_REALTIME`, which is clock id 0, and process-private).
//!
//! Only `CLOCK_REALTIME` and `CLOCK_MONOTONIC` are accepted, as in glibc (whose
//! `pthread_condattr_setclock` refuses every other clock, CPU-time ones included).

use core::mem::{align_of, size_of};

use libc::{c_int, clockid_t, pthread_condattr_t};

use super::pshared;

/// What upthread keeps in a `pthread_condattr_t`.
#[repr(C)]
struct CondAttr {
    /// `CLOCK_REALTIME` (0) or `CLOCK_MONOTONIC`.
    clock: clockid_t,
}

const _: () = assert!(
    size_of::<CondAttr>() == size_of::<pthread_condattr_t>()
        && align_of::<CondAttr>() == align_of::<pthread_condattr_t>()
);

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
    // SAFETY: null or readable, by the caller's contract; the layouts match (above).
    match unsafe { attr.cast::<CondAttr>().as_ref() } {
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
    if attr.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: non-null and writable; the layouts match.
    unsafe { attr.cast::<CondAttr>().write(CondAttr { clock: libc::CLOCK_REALTIME }) };
    0
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
    // SAFETY: null or writable, by the caller's contract; the layouts match.
    match unsafe { attr.cast::<CondAttr>().as_mut() } {
        Some(a) => {
            a.clock = clock;
            0
        }
        None => libc::EINVAL,
    }
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
    // SAFETY: null or valid, by the caller's contract; the layouts match.
    match unsafe { (attr.cast::<CondAttr>().as_ref(), clock.as_mut()) } {
        (Some(a), Some(out)) => {
            *out = a.clock;
            0
        }
        _ => libc::EINVAL,
    }
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
