//! Barriers: `pthread_barrier_*` over [`RawBarrier`], which has `pthread_barrier_t`'s
//! size and alignment. All-zero bytes are a barrier that was never initialised: `wait`
//! on it is `EINVAL`.
//!
//! | call | result |
//! |---|---|
//! | `init` | 0; `EINVAL` for a count of 0 or of `INT_MAX` and more (glibc's limit, `BARRIER_IN_THRESHOLD`) |
//! | `wait` | `PTHREAD_BARRIER_SERIAL_THREAD` (-1) for exactly one caller per phase, 0 for the others; `EINVAL` if never initialised |
//! | `destroy` | 0; `EBUSY` while callers wait at it (glibc waits for them instead; POSIX recommends `EBUSY`) |
//!
//! `wait` is not a cancellation point (POSIX).

use libc::{c_int, c_uint, pthread_barrier_t, pthread_barrierattr_t};
use parlib_sync::RawBarrier;

use super::errors::code;
use super::{init_object, with_object, Storage};

/// `PTHREAD_BARRIER_SERIAL_THREAD` (glibc's `<pthread.h>`; the `libc` crate lacks it).
pub const PTHREAD_BARRIER_SERIAL_THREAD: c_int = -1;

/// The largest count glibc accepts: it refuses `count >= BARRIER_IN_THRESHOLD`, which is
/// `UINT_MAX / 2` (`nptl/pthread_barrier_init.c`, `sysdeps/nptl/internaltypes.h`).
const MAX_COUNT: c_uint = c_uint::MAX / 2 - 1;

impl Storage for pthread_barrier_t {
    type Object = RawBarrier;
}

/// `pthread_barrier_init`: a barrier for `count` callers per phase. `attr` may be null.
/// Returns 0, or `EINVAL` for a null `barrier` or a bad count (module table).
///
/// # Safety
/// `barrier` must be null or point to writable storage for a `pthread_barrier_t` that
/// no one is using; `attr` null or initialised attributes.
#[no_mangle]
pub unsafe extern "C" fn upthread_barrier_init(
    barrier: *mut pthread_barrier_t,
    attr: *const pthread_barrierattr_t,
    count: c_uint,
) -> c_int {
    let _ = attr; // process-private is all there is (see `pshared`)
    if count == 0 || count > MAX_COUNT {
        return libc::EINVAL;
    }
    // SAFETY: forwarded contract.
    unsafe { init_object(barrier, RawBarrier::new(count)) }
}

/// `pthread_barrier_destroy`. Returns 0, `EBUSY` while callers wait, or `EINVAL` for a
/// null pointer.
///
/// # Safety
/// `barrier` must be null or point to a barrier.
#[no_mangle]
pub unsafe extern "C" fn upthread_barrier_destroy(barrier: *mut pthread_barrier_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { with_object(barrier, |b| code(b.destroy())) }
}

/// `pthread_barrier_wait`: blocks only the calling uthread until `count` callers have
/// arrived. Returns [`PTHREAD_BARRIER_SERIAL_THREAD`] to one of them, 0 to the others,
/// or `EINVAL` (null, or never initialised).
///
/// # Safety
/// `barrier` must be null or point to a barrier.
#[no_mangle]
pub unsafe extern "C" fn upthread_barrier_wait(barrier: *mut pthread_barrier_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        with_object(barrier, |b| match b.wait() {
            Ok(true) => PTHREAD_BARRIER_SERIAL_THREAD,
            Ok(false) => 0,
            Err(e) => e.0,
        })
    }
}
