//! Spinlocks: `pthread_spin_*` in `pthread_spinlock_t`'s one `int`.
//!
//! # The word
//!
//! | value | meaning |
//! |---|---|
//! | 0 | unlocked (so all-zero storage is an unlocked spinlock) |
//! | 1 (`LOCKED`) | held by a plain thread (or vcore context) |
//! | 3 (`LOCKED` + `PDR`) | held by a uthread that disabled notifications to take it |
//!
//! # Why a uthread never spins forever behind a holder on its own vcore
//!
//! The danger is a spinner occupying the very vcore its holder needs to run on. Three
//! steps rule it out:
//!
//! 1. **PDR.** A uthread takes the lock with notifications disabled (one level of its
//!    disable depth) and keeps them disabled until it unlocks; the `PDR` bit tells the
//!    unlocker to re-enable them. So a holder is never interrupted, hence never
//!    preempted: while it holds the lock it keeps running on its vcore.
//! 2. **Spin with notifications enabled.** Only the compare-and-swap that takes the lock
//!    runs with them disabled; while it waits, a spinner can itself be preempted.
//! 3. **Give way.** A holder can still leave its vcore of its own accord while holding
//!    the lock (it blocks on a mutex, sleeps, yields: poor style, but legal). So after
//!    [`SPINS_BEFORE_YIELD`] failed looks a spinning uthread yields (it stays runnable,
//!    behind whatever else is queued) and then spins again; a plain thread calls
//!    `sched_yield`. Vcore context may not yield: like every lock it takes, a spinlock
//!    taken there must never be held by a uthread that blocks.
//!
//! Costs: holding a spinlock delays a uthread's preemption until it unlocks (it is meant
//! for short critical sections), and misuse that glibc tolerates silently has one more
//! effect here: a uthread's lock unlocked by someone else leaves that uthread with
//! notifications disabled, so it is no longer preempted.
//!
//! | call | result |
//! |---|---|
//! | `init` | 0 for any `pshared` (as glibc: a lone word works across processes) |
//! | `lock` | 0; relocking deadlocks, as in glibc |
//! | `trylock` | 0; `EBUSY` |
//! | `unlock` | 0 |
//! | `destroy` | 0; `EBUSY` while held (glibc returns 0; POSIX recommends `EBUSY`) |

use core::sync::atomic::{AtomicI32, Ordering};

use libc::{c_int, pthread_spinlock_t};

const UNLOCKED: c_int = 0;
const LOCKED: c_int = 1;
const PDR: c_int = 2;

/// Failed looks at a held lock before a spinner gives way (step 3). glibc's adaptive
/// mutex spins for the same count before it sleeps (its `glibc.pthread.mutex_spin_count`
/// tunable, default 100): long enough for a short critical section on another core to
/// end, short enough that a holder waiting for this vcore waits only microseconds.
const SPINS_BEFORE_YIELD: u32 = 100;

/// The lock word at `lock`, or `None` for a null pointer.
///
/// # Safety
/// `lock` must be null or point to a `pthread_spinlock_t` that outlives `'a` and is only
/// accessed atomically meanwhile.
unsafe fn word<'a>(lock: *mut pthread_spinlock_t) -> Option<&'a AtomicI32> {
    if lock.is_null() {
        return None;
    }
    // SAFETY: non-null, aligned (an int) and accessed atomically, by the caller's
    // contract.
    Some(unsafe { AtomicI32::from_ptr(lock) })
}

/// One attempt: the compare-and-swap of step 1, with notifications disabled on a uthread
/// and left disabled if it succeeds.
fn try_take(w: &AtomicI32) -> bool {
    let pdr = parlib_vcore::notif::disable_if_uthread();
    let held = if pdr { LOCKED | PDR } else { LOCKED };
    if w.compare_exchange(UNLOCKED, held, Ordering::Acquire, Ordering::Relaxed).is_ok() {
        return true;
    }
    if pdr {
        parlib_events::enable_notifs();
    }
    false
}

/// Step 3: lets the holder run if it waits for this vcore (or this CPU).
fn give_way() {
    if parlib_uthread::current().is_some() {
        parlib_uthread::yield_with(parlib_uthread::paused);
    } else if !parlib_vcore::in_vcore_context() {
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
}

/// `pthread_spin_init`: an unlocked spinlock; `pshared` is not looked at (module table).
/// Returns 0, or `EINVAL` for a null pointer.
///
/// # Safety
/// `lock` must be null or point to writable storage for a `pthread_spinlock_t` that no
/// one is using.
#[no_mangle]
pub unsafe extern "C" fn upthread_spin_init(lock: *mut pthread_spinlock_t, pshared: c_int) -> c_int {
    let _ = pshared;
    // SAFETY: forwarded contract.
    match unsafe { word(lock) } {
        Some(w) => {
            w.store(UNLOCKED, Ordering::Release);
            0
        }
        None => libc::EINVAL,
    }
}

/// `pthread_spin_destroy`. Returns 0, `EBUSY` while held, or `EINVAL` for a null
/// pointer.
///
/// # Safety
/// `lock` must be null or point to a spinlock.
#[no_mangle]
pub unsafe extern "C" fn upthread_spin_destroy(lock: *mut pthread_spinlock_t) -> c_int {
    // SAFETY: forwarded contract.
    match unsafe { word(lock) } {
        Some(w) if w.load(Ordering::Relaxed) != UNLOCKED => libc::EBUSY,
        Some(_) => 0,
        None => libc::EINVAL,
    }
}

/// `pthread_spin_lock`: spins until the lock is the caller's (module docs for how a
/// uthread avoids spinning forever). Returns 0, or `EINVAL` for a null pointer.
///
/// # Safety
/// `lock` must be null or point to a spinlock.
#[no_mangle]
pub unsafe extern "C" fn upthread_spin_lock(lock: *mut pthread_spinlock_t) -> c_int {
    // SAFETY: forwarded contract.
    let Some(w) = (unsafe { word(lock) }) else { return libc::EINVAL };
    loop {
        if try_take(w) {
            return 0;
        }
        let mut looks = 0;
        while w.load(Ordering::Relaxed) != UNLOCKED {
            looks += 1;
            if looks == SPINS_BEFORE_YIELD {
                give_way();
                looks = 0;
            } else {
                core::hint::spin_loop();
            }
        }
    }
}

/// `pthread_spin_trylock`. Returns 0, `EBUSY` if held, or `EINVAL` for a null pointer.
///
/// # Safety
/// `lock` must be null or point to a spinlock.
#[no_mangle]
pub unsafe extern "C" fn upthread_spin_trylock(lock: *mut pthread_spinlock_t) -> c_int {
    // SAFETY: forwarded contract.
    match unsafe { word(lock) } {
        Some(w) if try_take(w) => 0,
        Some(_) => libc::EBUSY,
        None => libc::EINVAL,
    }
}

/// `pthread_spin_unlock`: releases the lock, then re-enables the notifications the
/// holder disabled to take it. Returns 0, or `EINVAL` for a null pointer.
///
/// # Safety
/// `lock` must be null or point to a spinlock.
#[no_mangle]
pub unsafe extern "C" fn upthread_spin_unlock(lock: *mut pthread_spinlock_t) -> c_int {
    // SAFETY: forwarded contract.
    let Some(w) = (unsafe { word(lock) }) else { return libc::EINVAL };
    let was = w.swap(UNLOCKED, Ordering::Release);
    // Only a uthread with a depth to give back: an unlock by someone other than the
    // holder (undefined behaviour) must not take another's level, or panic at 0.
    if was & PDR != 0 && parlib_uthread::notif_disable_depth() > 0 {
        parlib_events::enable_notifs();
    }
    0
}
