//! Reader-writer locks: `pthread_rwlock_*` over [`RawRwLock`], which has
//! `pthread_rwlock_t`'s size and alignment and takes all-zero bytes
//! (`PTHREAD_RWLOCK_INITIALIZER`) as an unlocked rwlock.
//!
//! | call | result |
//! |---|---|
//! | `rdlock` | 0; `EDEADLK` if the caller holds it for writing; `EAGAIN` at the reader limit |
//! | `wrlock` | 0; `EDEADLK` if the caller holds it for writing |
//! | `tryrdlock`, `trywrlock` | 0; `EBUSY` |
//! | `timedrdlock`, `timedwrlock` | 0; `ETIMEDOUT`; `EDEADLK` if the caller holds it for writing; `EAGAIN` (read) at the reader limit; `EINVAL` for a bad `tv_nsec`, checked first (as glibc) |
//! | `unlock` | 0; `EPERM` if it is not held, or held for writing by another (glibc returns 0 and corrupts the lock) |
//! | `destroy` | 0; `EBUSY` while held (glibc returns 0; POSIX recommends `EBUSY`) |
//!
//! Policy: a new reader queues behind a waiting writer, so writers never starve; this is
//! glibc's `PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP`, whatever kind the attributes
//! name. A thread that takes a read lock twice while a writer waits deadlocks, which
//! POSIX allows and glibc's default kind avoids. The timed calls queue like the untimed
//! ones, in the same order (`RawRwLock::timed_read_lock`, `timed_write_lock`).

use libc::{c_int, pthread_rwlock_t, pthread_rwlockattr_t, timespec};
use parlib_sync::{Deadline, Errno, RawRwLock};

use super::deadline;
use super::errors::code;
use super::{init_object, with_object, Storage};

impl Storage for pthread_rwlock_t {
    type Object = RawRwLock;
}

/// `pthread_rwlock_init`: an unlocked rwlock. `attr` may be null; its kind changes
/// nothing (module docs). Returns 0, or `EINVAL` for a null `rwlock`.
///
/// # Safety
/// `rwlock` must be null or point to writable storage for a `pthread_rwlock_t` that no
/// one is using; `attr` null or initialised attributes.
#[no_mangle]
pub unsafe extern "C" fn upthread_rwlock_init(
    rwlock: *mut pthread_rwlock_t,
    attr: *const pthread_rwlockattr_t,
) -> c_int {
    let _ = attr;
    // SAFETY: forwarded contract.
    unsafe { init_object(rwlock, RawRwLock::new()) }
}

/// `pthread_rwlock_destroy`. Returns 0, `EBUSY` while held, or `EINVAL` for a null
/// pointer.
///
/// # Safety
/// `rwlock` must be null or point to an initialised rwlock.
#[no_mangle]
pub unsafe extern "C" fn upthread_rwlock_destroy(rwlock: *mut pthread_rwlock_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_object(rwlock, |l| code(l.destroy())) }
}

/// `pthread_rwlock_rdlock`: blocks only the calling uthread while a writer holds or
/// waits for the lock. Returns 0, `EDEADLK`, `EAGAIN` (module table) or `EINVAL` for a
/// null pointer.
///
/// # Safety
/// `rwlock` must be null or point to an initialised rwlock.
#[no_mangle]
pub unsafe extern "C" fn upthread_rwlock_rdlock(rwlock: *mut pthread_rwlock_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_object(rwlock, |l| code(l.read_lock())) }
}

/// `pthread_rwlock_tryrdlock`. Returns 0, `EBUSY`, `EAGAIN` or `EINVAL` for a null
/// pointer.
///
/// # Safety
/// `rwlock` must be null or point to an initialised rwlock.
#[no_mangle]
pub unsafe extern "C" fn upthread_rwlock_tryrdlock(rwlock: *mut pthread_rwlock_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_object(rwlock, |l| code(l.try_read_lock())) }
}

/// `pthread_rwlock_timedrdlock`: like `rdlock`, but gives up at `abstime`, an absolute
/// `CLOCK_REALTIME` time. Returns 0, `ETIMEDOUT`, `EDEADLK`, `EAGAIN` or `EINVAL`
/// (module table).
///
/// # Safety
/// `rwlock` must be null or point to an initialised rwlock; `abstime` null or readable.
#[no_mangle]
pub unsafe extern "C" fn upthread_rwlock_timedrdlock(
    rwlock: *mut pthread_rwlock_t,
    abstime: *const timespec,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { timed(rwlock, abstime, RawRwLock::timed_read_lock) }
}

/// `pthread_rwlock_wrlock`: blocks only the calling uthread while anyone holds the
/// lock. Returns 0, `EDEADLK` or `EINVAL` for a null pointer.
///
/// # Safety
/// `rwlock` must be null or point to an initialised rwlock.
#[no_mangle]
pub unsafe extern "C" fn upthread_rwlock_wrlock(rwlock: *mut pthread_rwlock_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_object(rwlock, |l| code(l.write_lock())) }
}

/// `pthread_rwlock_trywrlock`. Returns 0, `EBUSY` or `EINVAL` for a null pointer.
///
/// # Safety
/// `rwlock` must be null or point to an initialised rwlock.
#[no_mangle]
pub unsafe extern "C" fn upthread_rwlock_trywrlock(rwlock: *mut pthread_rwlock_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_object(rwlock, |l| code(l.try_write_lock())) }
}

/// `pthread_rwlock_timedwrlock`: like `wrlock`, but gives up at `abstime`, an absolute
/// `CLOCK_REALTIME` time. Returns 0, `ETIMEDOUT`, `EDEADLK` or `EINVAL` (module
/// table).
///
/// # Safety
/// `rwlock` must be null or point to an initialised rwlock; `abstime` null or readable.
#[no_mangle]
pub unsafe extern "C" fn upthread_rwlock_timedwrlock(
    rwlock: *mut pthread_rwlock_t,
    abstime: *const timespec,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { timed(rwlock, abstime, RawRwLock::timed_write_lock) }
}

/// `pthread_rwlock_unlock`: releases a read or a write hold. Returns 0, `EPERM` (module
/// table) or `EINVAL` for a null pointer.
///
/// # Safety
/// `rwlock` must be null or point to an initialised rwlock.
#[no_mangle]
pub unsafe extern "C" fn upthread_rwlock_unlock(rwlock: *mut pthread_rwlock_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_object(rwlock, |l| code(l.unlock())) }
}

/// The two timed calls: checks `abstime` first (glibc does, even for a free lock), then
/// runs `lock` (`RawRwLock::timed_read_lock` or `timed_write_lock`).
///
/// # Safety
/// As for `upthread_rwlock_timedrdlock`.
unsafe fn timed(
    rwlock: *mut pthread_rwlock_t,
    abstime: *const timespec,
    lock: fn(&RawRwLock, Deadline) -> Result<(), Errno>,
) -> c_int {
    // SAFETY: null or readable, by the caller's contract.
    let d = match unsafe { deadline::realtime(abstime) } {
        Ok(d) => d,
        Err(e) => return e,
    };
    // SAFETY: forwarded contract.
    unsafe { with_object(rwlock, |l| code(lock(l, d))) }
}
