//! How many `parlib-sync` locks the calling thread holds: a per-thread count of
//! [`RawMutex`](crate::RawMutex) and [`RawRwLock`](crate::RawRwLock) holds (each
//! recursive lock and each read hold counts once), kept for parlib-timed, which must
//! never abandon a cancelled call that still holds one.
//!
//! It lives in TLS, so it is the thread's, or the uthread's if the uthread has TLS of
//! its own; on uthreads without TLS it is their vcore's and means nothing. Wrapping
//! arithmetic: an unlock on another thread than the lock (allowed for rwlocks' readers
//! in some programs) skews two threads' counts, never panics.

use core::cell::Cell;

use crate::Errno;

thread_local! {
    static HELD: Cell<u32> = const { Cell::new(0) };
}

/// How many `parlib-sync` locks the calling thread holds (module docs).
#[inline]
pub fn held_locks() -> u32 {
    HELD.with(Cell::get)
}

/// Runs `take`, a lock acquisition, counting the lock from *before* it is taken: a
/// preemption between the acquisition and the count would otherwise see a held lock
/// uncounted. A failed acquisition uncounts it again.
#[inline]
pub(crate) fn taking(take: impl FnOnce() -> Result<(), Errno>) -> Result<(), Errno> {
    HELD.with(|h| h.set(h.get().wrapping_add(1)));
    let r = take();
    if r.is_err() {
        HELD.with(|h| h.set(h.get().wrapping_sub(1)));
    }
    r
}

/// Counts a lock released, if `r` says it was: after the release, so the count errs on
/// the side of "held".
#[inline]
pub(crate) fn released(r: Result<(), Errno>) -> Result<(), Errno> {
    if r.is_ok() {
        HELD.with(|h| h.set(h.get().wrapping_sub(1)));
    }
    r
}
