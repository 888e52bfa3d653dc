//! Mutex attributes: `pthread_mutexattr_*`, in `pthread_mutexattr_t`'s 4 bytes.
//!
//! The only attribute a mutex takes from them is its type. The word holds the type as
//! the caller gave it (glibc's numbers), so `gettype` returns what `settype` stored; all
//! zero bytes are the default attributes (`PTHREAD_MUTEX_DEFAULT`, process-private).
//!
//! | type | glibc value | upthread mutex kind |
//! |---|---|---|
//! | `PTHREAD_MUTEX_NORMAL` = `PTHREAD_MUTEX_DEFAULT` | 0 | `MUTEX_NORMAL` |
//! | `PTHREAD_MUTEX_RECURSIVE` | 1 | `MUTEX_RECURSIVE` |
//! | `PTHREAD_MUTEX_ERRORCHECK` | 2 | `MUTEX_ERRORCHECK` |
//! | `PTHREAD_MUTEX_ADAPTIVE_NP` | 3 | `MUTEX_NORMAL` (glibc's spins a while before it sleeps; the semantics are normal's) |

use libc::{c_int, pthread_mutexattr_t};
use parlib_sync::{MUTEX_ERRORCHECK, MUTEX_NORMAL, MUTEX_RECURSIVE};

use super::{get_attr, init_object, object, pshared, set_attr, Storage};

/// glibc's `PTHREAD_MUTEX_ADAPTIVE_NP` (`<pthread.h>`), which the `libc` crate lacks.
pub const PTHREAD_MUTEX_ADAPTIVE_NP: c_int = 3;

/// What upthread keeps in a `pthread_mutexattr_t`.
#[repr(C)]
pub(super) struct MutexAttr {
    /// The type, as given to `settype` (0 ..= 3).
    kind: c_int,
}

impl Storage for pthread_mutexattr_t {
    type Object = MutexAttr;
}

/// The upthread mutex kind (`MUTEX_*`) that `attr` asks for; null means the default.
///
/// # Errors
/// `EINVAL` if the attributes hold no valid type (they were never initialised).
///
/// # Safety
/// `attr` must be null or point to readable attributes.
pub(super) unsafe fn mutex_kind(attr: *const pthread_mutexattr_t) -> Result<u32, c_int> {
    // SAFETY: null or readable, by the caller's contract.
    let kind = match unsafe { object(attr) } {
        None => return Ok(MUTEX_NORMAL),
        Some(a) => a.kind,
    };
    match kind {
        libc::PTHREAD_MUTEX_NORMAL | PTHREAD_MUTEX_ADAPTIVE_NP => Ok(MUTEX_NORMAL),
        libc::PTHREAD_MUTEX_RECURSIVE => Ok(MUTEX_RECURSIVE),
        libc::PTHREAD_MUTEX_ERRORCHECK => Ok(MUTEX_ERRORCHECK),
        _ => Err(libc::EINVAL),
    }
}

/// `pthread_mutexattr_init`: the default attributes. Returns 0, or `EINVAL` for a null
/// `attr`.
///
/// # Safety
/// `attr` must be null or point to writable storage for a `pthread_mutexattr_t`.
#[no_mangle]
pub unsafe extern "C" fn upthread_mutexattr_init(attr: *mut pthread_mutexattr_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { init_object(attr, MutexAttr { kind: libc::PTHREAD_MUTEX_DEFAULT }) }
}

/// `pthread_mutexattr_destroy`: nothing to release. Returns 0, or `EINVAL` for a null
/// `attr`.
///
/// # Safety
/// `attr` must be null or point to attributes.
#[no_mangle]
pub unsafe extern "C" fn upthread_mutexattr_destroy(attr: *mut pthread_mutexattr_t) -> c_int {
    if attr.is_null() {
        return libc::EINVAL;
    }
    0
}

/// `pthread_mutexattr_settype`: `PTHREAD_MUTEX_NORMAL` (= `DEFAULT`), `RECURSIVE`,
/// `ERRORCHECK` or `ADAPTIVE_NP`. Returns 0, or `EINVAL` for another type or a null
/// `attr`.
///
/// # Safety
/// `attr` must be null or point to initialised attributes.
#[no_mangle]
pub unsafe extern "C" fn upthread_mutexattr_settype(attr: *mut pthread_mutexattr_t, kind: c_int) -> c_int {
    if !(libc::PTHREAD_MUTEX_NORMAL..=PTHREAD_MUTEX_ADAPTIVE_NP).contains(&kind) {
        return libc::EINVAL;
    }
    // SAFETY: forwarded contract.
    unsafe { set_attr(attr, |a| a.kind = kind) }
}

/// `pthread_mutexattr_gettype`: stores the type in `*kind`. Returns 0, or `EINVAL` for
/// a null pointer.
///
/// # Safety
/// `attr` must be null or point to initialised attributes; `kind` null or writable.
#[no_mangle]
pub unsafe extern "C" fn upthread_mutexattr_gettype(
    attr: *const pthread_mutexattr_t,
    kind: *mut c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { get_attr(attr, kind, |a| a.kind) }
}

/// `pthread_mutexattr_setpshared`: `PTHREAD_PROCESS_PRIVATE` is accepted;
/// `PTHREAD_PROCESS_SHARED` is `ENOTSUP` (glibc accepts it; see `pshared`
/// for why upthread cannot); anything else, or a null `attr`, is `EINVAL`.
///
/// # Safety
/// `attr` must be null or point to initialised attributes.
#[no_mangle]
pub unsafe extern "C" fn upthread_mutexattr_setpshared(
    attr: *mut pthread_mutexattr_t,
    pshared: c_int,
) -> c_int {
    pshared::set(!attr.is_null(), pshared)
}

/// `pthread_mutexattr_getpshared`: always `PTHREAD_PROCESS_PRIVATE`. Returns 0, or
/// `EINVAL` for a null pointer.
///
/// # Safety
/// `attr` must be null or point to initialised attributes; `pshared` null or writable.
#[no_mangle]
pub unsafe extern "C" fn upthread_mutexattr_getpshared(
    attr: *const pthread_mutexattr_t,
    pshared: *mut c_int,
) -> c_int {
    // SAFETY: null or writable, by the caller's contract.
    unsafe { pshared::get(!attr.is_null(), pshared) }
}
