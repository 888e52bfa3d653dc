//! One-time initialisation, in `pthread_once_t`'s 4 bytes.
//!
//! | word | meaning |
//! |---|---|
//! | 0 | not run (all-zero storage, `PTHREAD_ONCE_INIT`) |
//! | 1 | running, nobody waiting |
//! | 2 | running, callers waiting on the word (uthread futex) |
//! | 3 | done |
//!
//! If the initialiser panics, the word goes back to 0 and waiters are woken, so a later
//! caller runs it again (as glibc does when an initialiser is cancelled). An initialiser
//! that leaves without unwinding (a C thread that is cancelled or exits inside it) does
//! the same through [`RawOnce::abandon`], called from a cleanup handler.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::futex::{futex_wait, futex_wake};

const NOT_RUN: u32 = 0;
const RUNNING: u32 = 1;
const WAITED: u32 = 2;
const DONE: u32 = 3;

/// A `pthread_once_t`-shaped once cell that blocks only the calling uthread.
#[repr(transparent)]
#[derive(Default)]
pub struct RawOnce(AtomicU32);

const _: () = assert!(core::mem::size_of::<RawOnce>() == 4);
const _: () = assert!(core::mem::size_of::<RawOnce>() == core::mem::size_of::<libc::pthread_once_t>());

impl RawOnce {
    /// Not yet run (the same as all-zero bytes).
    pub const fn new() -> RawOnce {
        RawOnce(AtomicU32::new(NOT_RUN))
    }

    /// Runs `f` if no call has completed it yet; other callers wait until it has.
    pub fn call_once(&self, f: impl FnOnce()) {
        if self.0.load(Ordering::Acquire) == DONE {
            return;
        }
        loop {
            match self.0.compare_exchange(NOT_RUN, RUNNING, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => {
                    let reset = AbandonOnPanic(self);
                    f();
                    core::mem::forget(reset);
                    if self.0.swap(DONE, Ordering::Release) == WAITED {
                        futex_wake(&self.0, u32::MAX);
                    }
                    return;
                }
                Err(DONE) => return,
                Err(s) => {
                    if s == RUNNING {
                        let _ =
                            self.0.compare_exchange(RUNNING, WAITED, Ordering::Relaxed, Ordering::Relaxed);
                    }
                    let _ = futex_wait(&self.0, WAITED);
                    if self.0.load(Ordering::Acquire) == DONE {
                        return;
                    }
                }
            }
        }
    }

    /// Gives up a call in progress: puts the once back to "not run" and wakes every
    /// caller waiting for it, one of which then runs the initialiser itself. For the
    /// initialiser's own thread, when it will never finish (it panics, which `call_once`
    /// handles itself, or exits without unwinding). Does nothing unless a call is in
    /// progress, so it never undoes a completed once.
    ///
    /// Called by anyone but the initialiser's thread, it lets a second initialiser start
    /// while the first still runs: not unsound, but the once no longer runs once.
    pub fn abandon(&self) {
        let mut s = self.0.load(Ordering::Relaxed);
        while s == RUNNING || s == WAITED {
            match self.0.compare_exchange_weak(s, NOT_RUN, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => {
                    if s == WAITED {
                        futex_wake(&self.0, u32::MAX);
                    }
                    return;
                }
                Err(now) => s = now,
            }
        }
    }

    /// Whether it has run to completion.
    pub fn is_completed(&self) -> bool {
        self.0.load(Ordering::Acquire) == DONE
    }
}

/// Abandons the call in progress if the initialiser unwinds (forgotten once it returns).
struct AbandonOnPanic<'a>(&'a RawOnce);

impl Drop for AbandonOnPanic<'_> {
    fn drop(&mut self) {
        self.0.abandon();
    }
}

/// A once cell: runs its initialiser exactly once, other callers wait.
pub type Once = RawOnce;
