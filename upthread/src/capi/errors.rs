//! The two return conventions of the C API.

use libc::c_int;
use parlib_sync::Errno;

/// The pthread convention: 0 on success, else the error number, returned.
pub(super) fn code(r: Result<(), Errno>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.0,
    }
}

/// The `sem_*` convention: 0 on success, else -1 with the error number in the calling
/// thread's `errno` (a uthread's own: every upthread thread has its own TLS).
pub(super) fn sem_code(r: Result<(), c_int>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => {
            // SAFETY: `__errno_location` returns the calling thread's errno, always valid.
            unsafe { *libc::__errno_location() = e };
            -1
        }
    }
}
