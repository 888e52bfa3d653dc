//! Barrier attributes: `pthread_barrierattr_*`, in `pthread_barrierattr_t`'s 4 bytes.
//! The only barrier attribute is `pshared`, and upthread objects are always
//! process-private (see `pshared`), so the attributes hold nothing.

use libc::{c_int, pthread_barrierattr_t};

use super::pshared;

/// `pthread_barrierattr_init`: the default attributes. Returns 0, or `EINVAL` for a null
/// `attr`.
///
/// # Safety
/// `attr` must be null or point to writable storage for a `pthread_barrierattr_t`.
#[no_mangle]
pub unsafe extern "C" fn upthread_barrierattr_init(attr: *mut pthread_barrierattr_t) -> c_int {
    if attr.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: non-null and writable, by the caller's contract; zero bytes are a valid
    // `pthread_barrierattr_t`.
    unsafe { attr.write(core::mem::zeroed()) };
    0
}

/// `pthread_barrierattr_destroy`: nothing to release. Returns 0, or `EINVAL` for a null
/// `attr`.
///
/// # Safety
/// `attr` must be null or point to attributes.
#[no_mangle]
pub unsafe extern "C" fn upthread_barrierattr_destroy(attr: *mut pthread_barrierattr_t) -> c_int {
    if attr.is_null() {
        return libc::EINVAL;
    }
    0
}

/// `pthread_barrierattr_setpshared`: `PTHREAD_PROCESS_PRIVATE` is accepted,
/// `PTHREAD_PROCESS_SHARED` is `ENOTSUP` (see `pshared`), anything else, or a null
/// `attr`, is `EINVAL`.
///
/// # Safety
/// `attr` must be null or point to initialised attributes.
#[no_mangle]
pub unsafe extern "C" fn upthread_barrierattr_setpshared(
    attr: *mut pthread_barrierattr_t,
    pshared: c_int,
) -> c_int {
    pshared::set(!attr.is_null(), pshared)
}

/// `pthread_barrierattr_getpshared`: always `PTHREAD_PROCESS_PRIVATE`. Returns 0, or
/// `EINVAL` for a null pointer.
///
/// # Safety
/// `attr` must be null or point to initialised attributes; `pshared` null or writable.
#[no_mangle]
pub unsafe extern "C" fn upthread_barrierattr_getpshared(
    attr: *const pthread_barrierattr_t,
    pshared: *mut c_int,
) -> c_int {
    // SAFETY: null or writable, by the caller's contract.
    unsafe { pshared::get(!attr.is_null(), pshared) }
}
