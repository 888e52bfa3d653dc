//! One-time initialisation: `pthread_once` over [`RawOnce`], which has
//! `pthread_once_t`'s size and takes all-zero bytes (`PTHREAD_ONCE_INIT`) as "not run".
//!
//! Callers that arrive while the initialiser runs block (only their uthread) until it
//! has finished. If the initialiser never finishes because its thread is cancelled or
//! calls `upthread_exit` inside it, POSIX wants the once to be as if `pthread_once` had
//! never been called: a cleanup handler pushed around the call (`cleanup`) abandons it
//! ([`RawOnce::abandon`]: back to "not run", waiters woken, one of which then runs the
//! initialiser itself).

use libc::{c_int, c_void, pthread_once_t};
use parlib_sync::RawOnce;

use super::cleanup::on_exit_during;
use super::{object, Storage};

impl Storage for pthread_once_t {
    type Object = RawOnce;
}

/// `pthread_once`: runs `init` if no call on `once` has completed it, else waits until
/// the call that runs it has. Returns 0, or `EINVAL` for a null `once` or `init` (glibc
/// would crash).
///
/// # Safety
/// `once` must be null or point to a `pthread_once_t` initialised to
/// `PTHREAD_ONCE_INIT` (0) and used only by `upthread_once`; `init` must be safe to call.
#[no_mangle]
pub unsafe extern "C" fn upthread_once(
    once: *mut pthread_once_t,
    init: Option<unsafe extern "C" fn()>,
) -> c_int {
    // SAFETY: null or a once word, by the caller's contract.
    let (Some(o), Some(init)) = (unsafe { object(once) }, init) else {
        return libc::EINVAL;
    };
    o.call_once(|| {
        on_exit_during(abandoned, once.cast(), || {
            // SAFETY: `init` is safe to call, by the caller's contract.
            unsafe { init() }
        })
    });
    0
}

/// The cleanup handler: the initialiser's thread exits inside it, so the call is
/// abandoned, as `RawOnce` itself does when an initialiser panics.
extern "C" fn abandoned(once: *mut c_void) {
    // SAFETY: `once` is the once `upthread_once` was called with, and the call is still
    // in progress on this thread, so the once is alive (its waiters still use it).
    let o = unsafe { &*once.cast::<RawOnce>() };
    o.abandon();
}
