//! The `pshared` attribute, which every attribute type checks the same way.
//!
//! glibc accepts `PTHREAD_PROCESS_SHARED`. upthread cannot honour it: a waiter is a node
//! on the waiting thread's stack, linked into the object by address, so another process
//! that mapped the object could neither follow the links nor wake a uthread of this
//! process. So `setpshared` refuses it with `ENOTSUP`, the code glibc itself uses for
//! "process-shared is not supported" (`futex_supports_pshared`), and every object is
//! process-private: `getpshared` always reports `PTHREAD_PROCESS_PRIVATE`, and the
//! attributes need not store the value.

use libc::c_int;

/// `pthread_*attr_setpshared` for attributes that exist (`attr_present`): 0 for
/// `PTHREAD_PROCESS_PRIVATE`, `ENOTSUP` for `PTHREAD_PROCESS_SHARED`, `EINVAL` for
/// anything else or a null `attr`.
pub(super) fn set(attr_present: bool, pshared: c_int) -> c_int {
    match pshared {
        _ if !attr_present => libc::EINVAL,
        libc::PTHREAD_PROCESS_PRIVATE => 0,
        libc::PTHREAD_PROCESS_SHARED => libc::ENOTSUP,
        _ => libc::EINVAL,
    }
}

/// `pthread_*attr_getpshared`: stores `PTHREAD_PROCESS_PRIVATE` in `*out`; `EINVAL`
/// for a null `attr` or `out`.
///
/// # Safety
/// `out` must be null or writable.
pub(super) unsafe fn get(attr_present: bool, out: *mut c_int) -> c_int {
    // SAFETY: null or writable, by the caller's contract.
    match unsafe { out.as_mut() } {
        Some(out) if attr_present => {
            *out = libc::PTHREAD_PROCESS_PRIVATE;
            0
        }
        _ => libc::EINVAL,
    }
}
