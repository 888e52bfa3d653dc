//! Which condvars measure their timed waits on `CLOCK_MONOTONIC`.
//!
//! glibc keeps a condvar's clock inside its `pthread_cond_t`. `parlib_sync::RawCondvar`
//! fills those 48 bytes and has no public field for a clock, so upthread remembers the
//! condvars that `upthread_cond_init` gave `CLOCK_MONOTONIC` in this side table, keyed
//! by address. Every other condvar, including all-zero `PTHREAD_COND_INITIALIZER` ones,
//! uses `CLOCK_REALTIME`.
//!
//! | event | table |
//! |---|---|
//! | `init` with `CLOCK_MONOTONIC` | the address is added |
//! | `init` with `CLOCK_REALTIME` | the address is removed (the storage may be reused) |
//! | `destroy` (successful) | the address is removed |
//! | `timedwait` | looked up, only while the table is not empty |
//!
//! The cost of a table: memory that held a monotonic condvar and is freed *without*
//! `pthread_cond_destroy`, then reused for a condvar that is never passed to
//! `pthread_cond_init` (static or zeroed), would still be read as monotonic. Programs
//! that never ask for `CLOCK_MONOTONIC` never touch the table at all.
//!
//! The table is a [`PdrSpinLock`]: a uthread holding it cannot be interrupted, so no
//! other uthread of its vcore can spin on it behind a preempted holder.

use core::sync::atomic::{AtomicUsize, Ordering};
use std::collections::BTreeSet;

use libc::clockid_t;
use parlib_sync::PdrSpinLock;

/// Addresses of the condvars initialised with `CLOCK_MONOTONIC`.
static MONOTONIC: PdrSpinLock<BTreeSet<usize>> = PdrSpinLock::new(BTreeSet::new());
/// `MONOTONIC.len()`, readable without the lock: the fast path for programs that never
/// use monotonic condvars.
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// Records the clock of the condvar at `addr` (at `init`).
pub(super) fn set(addr: usize, clock: clockid_t) {
    if clock != libc::CLOCK_MONOTONIC && COUNT.load(Ordering::Acquire) == 0 {
        return;
    }
    let mut set = MONOTONIC.lock();
    if clock == libc::CLOCK_MONOTONIC {
        set.insert(addr);
    } else {
        set.remove(&addr);
    }
    COUNT.store(set.len(), Ordering::Release);
}

/// Forgets the condvar at `addr` (at `destroy`).
pub(super) fn forget(addr: usize) {
    set(addr, libc::CLOCK_REALTIME);
}

/// The clock of the condvar at `addr`.
pub(super) fn get(addr: usize) -> clockid_t {
    if COUNT.load(Ordering::Acquire) == 0 {
        return libc::CLOCK_REALTIME;
    }
    if MONOTONIC.lock().contains(&addr) {
        libc::CLOCK_MONOTONIC
    } else {
        libc::CLOCK_REALTIME
    }
}
