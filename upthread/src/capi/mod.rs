//! The pthread synchronization functions for C: mutexes, condition variables, rwlocks,
//! barriers, spinlocks, once and semaphores, as `#[no_mangle] extern "C"` functions
//! named `upthread_*` after the glibc function they stand for (`upthread_sem_*` for
//! `sem_*`), with its signature, types and error codes.
//!
//! ## Map
//!
//! | module | glibc functions | object |
//! |---|---|---|
//! | `mutex`, `mutexattr` | `pthread_mutex_*`, `pthread_mutexattr_*` | [`parlib_sync::RawMutex`] in a `pthread_mutex_t` |
//! | `cond`, `condattr` | `pthread_cond_*`, `pthread_condattr_*` | [`parlib_sync::RawCondvar`] in a `pthread_cond_t` |
//! | `rwlock`, `rwlockattr` | `pthread_rwlock_*`, `pthread_rwlockattr_*` | [`parlib_sync::RawRwLock`] in a `pthread_rwlock_t` |
//! | `barrier`, `barrierattr` | `pthread_barrier_*`, `pthread_barrierattr_*` | [`parlib_sync::RawBarrier`] in a `pthread_barrier_t` |
//! | `spin` | `pthread_spin_*` | a PDR spinlock word in a `pthread_spinlock_t` |
//! | `once` | `pthread_once` | [`parlib_sync::RawOnce`] in a `pthread_once_t` |
//! | `sem` | `sem_*` (unnamed semaphores) | [`parlib_sync::RawSemaphore`] in a `sem_t` |
//! | `deadline`, `errors`, `pshared`, `cleanup` | | absolute `timespec` deadlines, return conventions, the `pshared` attribute, cleanup handlers for the C API's own state |
//!
//! ## Conventions
//!
//! * **Storage.** Every object lives in the glibc type's own storage, which the
//!   `parlib-sync` object fits exactly (each module names the object its glibc type
//!   holds, `Storage`, and the one accessor, `object`, checks the fit at compile time),
//!   and all-zero bytes are a valid initial state: `PTHREAD_MUTEX_INITIALIZER`,
//!   `PTHREAD_COND_INITIALIZER`, `PTHREAD_RWLOCK_INITIALIZER`, `PTHREAD_ONCE_INIT`, and
//!   zeroed or static memory work without an `init` call. `init` overwrites whatever
//!   the storage held (it may be fresh `malloc` memory).
//! * **Who may call.** Uthreads (upthread threads, and uthreads of any scheduler) and
//!   plain Linux threads alike, on the same object at once: a blocking call blocks only
//!   the calling uthread, or sleeps a plain thread on a futex. Vcore context may not
//!   block: a blocking call there aborts with a message naming it.
//! * **Results.** glibc's: an error number returned (never `errno`), except the `sem_*`
//!   functions, which return -1 and set `errno` (the calling uthread's own).
//! * **Bad input.** Gets glibc's error code. Null pointers, which glibc does not check
//!   (it crashes), are `EINVAL`.
//! * **Timed calls** take absolute deadlines on `CLOCK_REALTIME` (or a condvar's
//!   `CLOCK_MONOTONIC`), converted once to the timeout service's monotonic clock
//!   (`deadline`). On a uthread they need the alarms layer, which `upthread::init`
//!   starts; without it they are `EINVAL`.
//! * **Cancellation points**: `cond_wait`, `cond_timedwait`, `sem_wait`,
//!   `sem_timedwait` (each module says where exactly). Mutex, rwlock, barrier and
//!   spinlock calls are not, as in POSIX. A thread that exits inside a call (cancelled,
//!   or `upthread_exit` in a `pthread_once` initialiser) leaves the object consistent:
//!   the condvar passes on a signal it took, the once goes back to "not run".
//!
//! ## Where upthread differs from glibc
//!
//! | case | glibc | upthread | why |
//! |---|---|---|---|
//! | `setpshared(PTHREAD_PROCESS_SHARED)` on any attributes | 0 | `ENOTSUP` | waiters are linked by address (`pshared`) |
//! | `cond_destroy` with waiters | blocks until they leave (forever if none is signalled) | `EBUSY` | POSIX's recommendation |
//! | `rwlock_destroy`, `spin_destroy` while held; `barrier_destroy` with waiters; `sem_destroy` with waiters | 0 (or waits) | `EBUSY` | POSIX's recommendation |
//! | `mutex_unlock` of an unlocked normal mutex; `rwlock_unlock` of an unlocked rwlock | 0, state corrupted | `EPERM` | `parlib-sync` checks |
//! | read lock taken again while a writer waits | granted (default kind) | deadlock, like glibc's `PREFER_WRITER_NONRECURSIVE_NP` | `RawRwLock` queues readers behind writers |
//! | a realtime deadline when the clock is set during the wait | follows the clock | keeps the interval | the timeout service runs on `CLOCK_MONOTONIC` |

use core::mem::{align_of, size_of};

use libc::c_int;

mod barrier;
mod barrierattr;
mod cleanup;
mod cond;
mod condattr;
mod deadline;
mod errors;
mod mutex;
mod mutexattr;
mod once;
mod pshared;
mod rwlock;
mod rwlockattr;
mod sem;
mod spin;

pub use barrier::{
    upthread_barrier_destroy, upthread_barrier_init, upthread_barrier_wait, PTHREAD_BARRIER_SERIAL_THREAD,
};
pub use barrierattr::{
    upthread_barrierattr_destroy, upthread_barrierattr_getpshared, upthread_barrierattr_init,
    upthread_barrierattr_setpshared,
};
pub use cond::{
    upthread_cond_broadcast, upthread_cond_destroy, upthread_cond_init, upthread_cond_signal,
    upthread_cond_timedwait, upthread_cond_wait,
};
pub use condattr::{
    upthread_condattr_destroy, upthread_condattr_getclock, upthread_condattr_getpshared,
    upthread_condattr_init, upthread_condattr_setclock, upthread_condattr_setpshared,
};
pub use mutex::{
    upthread_mutex_destroy, upthread_mutex_init, upthread_mutex_lock, upthread_mutex_timedlock,
    upthread_mutex_trylock, upthread_mutex_unlock,
};
pub use mutexattr::{
    upthread_mutexattr_destroy, upthread_mutexattr_getpshared, upthread_mutexattr_gettype,
    upthread_mutexattr_init, upthread_mutexattr_setpshared, upthread_mutexattr_settype,
    PTHREAD_MUTEX_ADAPTIVE_NP,
};
pub use once::upthread_once;
pub use rwlock::{
    upthread_rwlock_destroy, upthread_rwlock_init, upthread_rwlock_rdlock, upthread_rwlock_timedrdlock,
    upthread_rwlock_timedwrlock, upthread_rwlock_tryrdlock, upthread_rwlock_trywrlock,
    upthread_rwlock_unlock, upthread_rwlock_wrlock,
};
pub use rwlockattr::{
    upthread_rwlockattr_destroy, upthread_rwlockattr_getkind_np, upthread_rwlockattr_getpshared,
    upthread_rwlockattr_init, upthread_rwlockattr_setkind_np, upthread_rwlockattr_setpshared,
    PTHREAD_RWLOCK_PREFER_READER_NP, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP,
    PTHREAD_RWLOCK_PREFER_WRITER_NP,
};
pub use sem::{
    upthread_sem_destroy, upthread_sem_getvalue, upthread_sem_init, upthread_sem_post,
    upthread_sem_timedwait, upthread_sem_trywait, upthread_sem_wait,
};
pub use spin::{
    upthread_spin_destroy, upthread_spin_init, upthread_spin_lock, upthread_spin_trylock,
    upthread_spin_unlock,
};

/// A glibc type whose storage holds one of upthread's objects (module map): each module
/// implements it for its glibc types, so the accessors below know what a pointer holds
/// and no call can take a `sem_t` for a barrier that happens to have its size.
trait Storage {
    /// The object in the storage. It must have the glibc type's size and alignment,
    /// which every use checks at compile time ([`slot`]).
    type Object;
}

/// `p` as a pointer to the object its storage holds. Compiling it for a `G` checks that
/// `G::Object` fits `G` exactly: same size and same alignment.
fn slot<G: Storage>(p: *const G) -> *mut G::Object {
    const {
        assert!(
            size_of::<G::Object>() == size_of::<G>() && align_of::<G::Object>() == align_of::<G>(),
            "an upthread object must have its glibc type's size and alignment"
        )
    };
    p.cast_mut().cast()
}

/// The object in `p`'s storage, or `None` for a null pointer.
///
/// # Safety
/// `p` must be null or point to storage holding a valid `G::Object` (made by its `init`,
/// or all-zero bytes where its module says they are valid) that outlives `'a` and is
/// written meanwhile only through shared references (the object's interior mutability).
unsafe fn object<'a, G: Storage>(p: *const G) -> Option<&'a G::Object> {
    // SAFETY: null or a valid object that outlives `'a`, by the caller's contract; it
    // fits `G`'s storage (`slot`).
    unsafe { slot(p).cast_const().as_ref() }
}

/// Runs `f` on the object at `p` and returns its result, or `EINVAL` for a null pointer:
/// the pthread convention for an object the call does not create.
///
/// # Safety
/// As for [`object`].
unsafe fn with_object<G: Storage>(p: *const G, f: impl FnOnce(&G::Object) -> c_int) -> c_int {
    // SAFETY: forwarded contract.
    match unsafe { object(p) } {
        Some(o) => f(o),
        None => libc::EINVAL,
    }
}

/// Puts `value` in the storage at `p` and returns 0, or returns `EINVAL` for a null
/// pointer: the `init` functions. A plain write, so whatever the storage held before
/// (fresh `malloc` memory, a destroyed object) is neither read nor dropped.
///
/// # Safety
/// `p` must be null or point to writable storage for a `G` that no one is using.
unsafe fn init_object<G: Storage>(p: *mut G, value: G::Object) -> c_int {
    if p.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: non-null, writable and unused, by the caller's contract; the object fits
    // `G`'s storage (`slot`).
    unsafe { slot(p).write(value) };
    0
}

/// Runs `set` on the attributes at `p` and returns 0, or returns `EINVAL` for a null
/// pointer: the attribute setters, once the value is known to be valid.
///
/// # Safety
/// `p` must be null or point to initialised attributes that no one else uses meanwhile.
unsafe fn set_attr<G: Storage>(p: *mut G, set: impl FnOnce(&mut G::Object)) -> c_int {
    // SAFETY: null or initialised and unshared, by the caller's contract; the attributes
    // fit `G`'s storage (`slot`).
    match unsafe { slot(p).as_mut() } {
        Some(a) => {
            set(a);
            0
        }
        None => libc::EINVAL,
    }
}

/// Stores `get` of the attributes at `p` in `*out` and returns 0, or returns `EINVAL` if
/// either pointer is null: the attribute getters.
///
/// # Safety
/// `p` must be null or point to initialised attributes; `out` null or writable.
unsafe fn get_attr<G: Storage, V: Copy>(
    p: *const G,
    out: *mut V,
    get: impl FnOnce(&G::Object) -> V,
) -> c_int {
    // SAFETY: null or valid, by the caller's contract (for `p`, as `object` asks).
    match unsafe { (object(p), out.as_mut()) } {
        (Some(a), Some(out)) => {
            *out = get(a);
            0
        }
        _ => libc::EINVAL,
    }
}
