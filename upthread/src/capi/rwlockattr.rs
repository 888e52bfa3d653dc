//! Reader-writer lock attributes: `pthread_rwlockattr_*`, in `pthread_rwlockattr_t`'s 8
//! bytes (all zero: the defaults).
//!
//! The kind (`pthread_rwlockattr_setkind_np`) is stored and reported back but changes
//! nothing: every upthread rwlock queues new readers behind a waiting writer, which is
//! glibc's `PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP` (see `rwlock`).

use libc::{c_int, pthread_rwlockattr_t};

use super::{get_attr, init_object, pshared, set_attr, Storage};

/// glibc's `PTHREAD_RWLOCK_PREFER_READER_NP` (`<pthread.h>`), its default kind.
pub const PTHREAD_RWLOCK_PREFER_READER_NP: c_int = 0;
/// glibc's `PTHREAD_RWLOCK_PREFER_WRITER_NP`.
pub const PTHREAD_RWLOCK_PREFER_WRITER_NP: c_int = 1;
/// glibc's `PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP`: what upthread's rwlocks do.
pub const PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP: c_int = 2;

/// What upthread keeps in a `pthread_rwlockattr_t`.
#[repr(C, align(8))]
pub(super) struct RwLockAttr {
    /// The kind, as given to `setkind_np` (0 ..= 2).
    kind: c_int,
    _reserved: c_int,
}

impl Storage for pthread_rwlockattr_t {
    type Object = RwLockAttr;
}

/// `pthread_rwlockattr_init`: the default attributes. Returns 0, or `EINVAL` for a null
/// `attr`.
///
/// # Safety
/// `attr` must be null or point to writable storage for a `pthread_rwlockattr_t`.
#[no_mangle]
pub unsafe extern "C" fn upthread_rwlockattr_init(attr: *mut pthread_rwlockattr_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { init_object(attr, RwLockAttr { kind: PTHREAD_RWLOCK_PREFER_READER_NP, _reserved: 0 }) }
}

/// `pthread_rwlockattr_destroy`: nothing to release. Returns 0, or `EINVAL` for a null
/// `attr`.
///
/// # Safety
/// `attr` must be null or point to attributes.
#[no_mangle]
pub unsafe extern "C" fn upthread_rwlockattr_destroy(attr: *mut pthread_rwlockattr_t) -> c_int {
    if attr.is_null() {
        return libc::EINVAL;
    }
    0
}

/// `pthread_rwlockattr_setkind_np`: one of glibc's three kinds, stored (module docs).
/// Returns 0, or `EINVAL` for another value or a null `attr`.
///
/// # Safety
/// `attr` must be null or point to initialised attributes.
#[no_mangle]
pub unsafe extern "C" fn upthread_rwlockattr_setkind_np(
    attr: *mut pthread_rwlockattr_t,
    kind: c_int,
) -> c_int {
    if !(PTHREAD_RWLOCK_PREFER_READER_NP..=PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP).contains(&kind) {
        return libc::EINVAL;
    }
    // SAFETY: forwarded contract.
    unsafe { set_attr(attr, |a| a.kind = kind) }
}

/// `pthread_rwlockattr_getkind_np`: stores the kind in `*kind`. Returns 0, or `EINVAL`
/// for a null pointer.
///
/// # Safety
/// `attr` must be null or point to initialised attributes; `kind` null or writable.
#[no_mangle]
pub unsafe extern "C" fn upthread_rwlockattr_getkind_np(
    attr: *const pthread_rwlockattr_t,
    kind: *mut c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { get_attr(attr, kind, |a| a.kind) }
}

/// `pthread_rwlockattr_setpshared`: `PTHREAD_PROCESS_PRIVATE` is accepted,
/// `PTHREAD_PROCESS_SHARED` is `ENOTSUP` (see `pshared`), anything else,
/// or a null `attr`, is `EINVAL`.
///
/// # Safety
/// `attr` must be null or point to initialised attributes.
#[no_mangle]
pub unsafe extern "C" fn upthread_rwlockattr_setpshared(
    attr: *mut pthread_rwlockattr_t,
    pshared: c_int,
) -> c_int {
    pshared::set(!attr.is_null(), pshared)
}

/// `pthread_rwlockattr_getpshared`: always `PTHREAD_PROCESS_PRIVATE`. Returns 0, or
/// `EINVAL` for a null pointer.
///
/// # Safety
/// `attr` must be null or point to initialised attributes; `pshared` null or writable.
#[no_mangle]
pub unsafe extern "C" fn upthread_rwlockattr_getpshared(
    attr: *const pthread_rwlockattr_t,
    pshared: *mut c_int,
) -> c_int {
    // SAFETY: null or writable, by the caller's contract.
    unsafe { pshared::get(!attr.is_null(), pshared) }
}
