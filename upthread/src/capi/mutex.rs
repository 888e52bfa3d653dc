//! Mutexes: `pthread_mutex_*` over [`RawMutex`], which has `pthread_mutex_t`'s size and
//! alignment and takes all-zero bytes (`PTHREAD_MUTEX_INITIALIZER`) as an unlocked
//! normal mutex.
//!
//! | call | result |
//! |---|---|
//! | `lock` | 0; `EDEADLK` relocking an error-checking mutex; `EAGAIN` at the recursion limit |
//! | `trylock` | 0; `EBUSY` if held (by anyone, for an error-checking mutex) |
//! | `timedlock` | 0; `ETIMEDOUT`; `EINVAL` for a bad `tv_nsec` when it would have to wait |
//! | `unlock` | 0; `EPERM` if a recursive or error-checking mutex is not the caller's, or any mutex is unlocked |
//! | `destroy` | 0; `EBUSY` if locked |
//!
//! None of them is a cancellation point (POSIX).

use libc::{c_int, pthread_mutex_t, pthread_mutexattr_t, timespec};
use parlib_sync::{Errno, RawMutex};

use super::deadline::{self, PAST};
use super::errors::code;
use super::mutexattr::mutex_kind;
use super::{init_object, object, with_object, Storage};

impl Storage for pthread_mutex_t {
    type Object = RawMutex;
}

/// `pthread_mutex_init`: an unlocked mutex of the type `attr` names (null: normal).
/// Returns 0, or `EINVAL` for a null `mutex` or attributes without a valid type.
///
/// Like glibc it does not look at what `mutex` held before: initialising a mutex in use
/// is undefined behaviour.
///
/// # Safety
/// `mutex` must be null or point to writable storage for a `pthread_mutex_t` that no
/// one is using; `attr` null or initialised attributes.
#[no_mangle]
pub unsafe extern "C" fn upthread_mutex_init(
    mutex: *mut pthread_mutex_t,
    attr: *const pthread_mutexattr_t,
) -> c_int {
    // SAFETY: null or initialised attributes, by the caller's contract.
    match unsafe { mutex_kind(attr) } {
        // SAFETY: forwarded contract.
        Ok(kind) => unsafe { init_object(mutex, RawMutex::with_kind(kind)) },
        Err(e) => e,
    }
}

/// `pthread_mutex_destroy`. Returns 0, `EBUSY` if it is locked, or `EINVAL` for a null
/// pointer.
///
/// # Safety
/// `mutex` must be null or point to an initialised mutex.
#[no_mangle]
pub unsafe extern "C" fn upthread_mutex_destroy(mutex: *mut pthread_mutex_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_object(mutex, |m| code(m.destroy())) }
}

/// `pthread_mutex_lock`: blocks only the calling uthread (a plain thread sleeps).
/// Returns 0, `EDEADLK`, `EAGAIN` (module table) or `EINVAL` for a null pointer.
///
/// # Safety
/// `mutex` must be null or point to an initialised mutex.
#[no_mangle]
pub unsafe extern "C" fn upthread_mutex_lock(mutex: *mut pthread_mutex_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_object(mutex, |m| code(m.lock())) }
}

/// `pthread_mutex_trylock`. Returns 0, `EBUSY`, `EAGAIN` (module table) or `EINVAL`
/// for a null pointer.
///
/// # Safety
/// `mutex` must be null or point to an initialised mutex.
#[no_mangle]
pub unsafe extern "C" fn upthread_mutex_trylock(mutex: *mut pthread_mutex_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_object(mutex, |m| code(m.try_lock())) }
}

/// `pthread_mutex_timedlock`: like `lock`, but gives up at `abstime`, an absolute
/// `CLOCK_REALTIME` time. Returns 0, `ETIMEDOUT`, `EDEADLK`, `EAGAIN`, or `EINVAL` (a
/// null pointer; `tv_nsec` outside `0..1e9` when the mutex cannot be taken at once, as
/// glibc, since POSIX lets a free mutex be taken without looking at `abstime`).
///
/// # Safety
/// `mutex` must be null or point to an initialised mutex; `abstime` null or readable.
#[no_mangle]
pub unsafe extern "C" fn upthread_mutex_timedlock(
    mutex: *mut pthread_mutex_t,
    abstime: *const timespec,
) -> c_int {
    // SAFETY: forwarded contract.
    let Some(m) = (unsafe { object(mutex) }) else { return libc::EINVAL };
    // SAFETY: null or readable, by the caller's contract.
    match unsafe { deadline::realtime(abstime) } {
        Ok(d) => code(m.timed_lock(d)),
        // A deadline that has passed still takes a free mutex and still reports a
        // relock (EDEADLK) first, as glibc does; only a real wait becomes EINVAL.
        Err(e) => match m.timed_lock(PAST) {
            Err(Errno::TIMEDOUT) => e,
            r => code(r),
        },
    }
}

/// `pthread_mutex_unlock`. Returns 0, `EPERM` (module table) or `EINVAL` for a null
/// pointer.
///
/// # Safety
/// `mutex` must be null or point to an initialised mutex.
#[no_mangle]
pub unsafe extern "C" fn upthread_mutex_unlock(mutex: *mut pthread_mutex_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_object(mutex, |m| code(m.unlock())) }
}
