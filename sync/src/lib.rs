//! # parlib-sync: locks and blocking primitives for uthreads
//!
//! The synchronization layer of parlib-rs (`DESIGN.md` §8). Two families:
//!
//! * **Spinning locks**, for short critical sections and for vcore context, which may
//!   never block: [`SpinLock`], [`McsLock`], and their PDR variants ([`PdrSpinLock`],
//!   [`McsLock::new_pdr`]), which keep notifications disabled while a uthread holds
//!   them so it cannot be interrupted holding a lock vcore context needs.
//! * **Blocking primitives** that block only the calling uthread: [`Mutex`] (normal,
//!   recursive, error-checking), [`Condvar`], [`RwLock`] (writers never starve),
//!   [`Barrier`], [`Semaphore`], [`futex_wait`]/[`futex_wake`], [`Once`]. They follow
//!   parlib's pattern (see `waitq`): queue lock, test, and yield with a callback that
//!   marks the uthread blocked and releases the queue lock in vcore context.
//!
//! ## Interruptible waits
//!
//! The waits POSIX makes cancellation points have interruptible variants:
//! [`RawCondvar::wait_interruptible`], [`RawCondvar::timed_wait_interruptible`],
//! [`RawSemaphore::wait_interruptible`], [`RawSemaphore::timed_wait_interruptible`].
//! `parlib_uthread::interrupt_wait` ends them early with `EINTR` (a condvar waiter has its
//! mutex back; a semaphore waiter took no unit); a racing wake-up is never lost (see
//! `waitq`). upthread uses them for `pthread_cancel` and uthread-directed signals. Mutex,
//! rwlock and barrier waits are not interruptible.
//!
//! ## Where it sits
//!
//! ```text
//!   upthread, applications         pthread_mutex_* ... over the Raw* types
//!   parlib-sync                    this crate
//!   parlib-uthread                 yield_with, has_blocked, runnable
//!   parlib-events / parlib-vcore   notification disable depth, futexes, spinlocks
//! ```
//!
//! ## Two faces
//!
//! The Rust face has guards: `Mutex<T>`, `RwLock<T>`, `Condvar`, ... The raw face
//! ([`RawMutex`], [`RawCondvar`], [`RawRwLock`], [`RawBarrier`], [`RawSemaphore`],
//! [`RawOnce`]) is pthread-shaped: errno results, and exactly the size and alignment of
//! glibc's `pthread_mutex_t` (40 bytes), `pthread_cond_t` (48), `pthread_rwlock_t` (56),
//! `pthread_barrier_t` (32), `sem_t` (32) and `pthread_once_t` (4), checked at compile
//! time. All-zero bytes are an unlocked mutex, a fresh condvar and rwlock and a not-yet-run
//! once, so `PTHREAD_MUTEX_INITIALIZER` and friends work unchanged. Beyond the zeros:
//!
//! * a mutex keeps its kind where glibc keeps `__kind` (byte 16), so glibc's
//!   `PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP` and `PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP`
//!   give recursive and error-checking mutexes, and `PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP`
//!   a normal one;
//! * a condvar keeps the clock its callers give deadlines on ([`RawCondvar::with_clock`],
//!   [`RawCondvar::clock`]), 0 being `CLOCK_REALTIME`, so zeroed storage is realtime.
//!
//! Timed variants block with a [`Deadline`] (on `CLOCK_MONOTONIC`): `RawMutex::timed_lock`,
//! `RawCondvar::timed_wait`, `RawRwLock::timed_read_lock` and `timed_write_lock`,
//! `RawSemaphore::timed_wait`. On uthreads they need a [`TimeoutService`] (the alarms
//! layer installs itself as one); plain threads use kernel futex timeouts. A once whose
//! initialiser's thread will never return (a C thread cancelled inside it) is put back to
//! "not run" with [`RawOnce::abandon`].
//!
//! ## Outside uthreads
//!
//! Every primitive also works from plain Linux threads (C programs, backing threads):
//! there, blocking sleeps the thread on a futex. Uthreads and threads may contend for the
//! same primitive. Only vcore context may not block: it panics, naming the call.
//!
//! ## Example
//!
//! ```
//! # // As a user of the facade crate `parlib` writes it; here, its paths mapped.
//! # mod parlib { pub(crate) use parlib_sync as sync; }
//! use parlib::sync::{Condvar, Mutex};
//! // Works the same on uthreads; here, from plain threads.
//! static READY: Mutex<bool> = Mutex::new(false);
//! static CV: Condvar = Condvar::new();
//! let t = std::thread::spawn(|| {
//!     *READY.lock() = true;
//!     CV.notify_all();
//! });
//! let mut g = READY.lock();
//! while !*g {
//!     g = CV.wait(g);
//! }
//! t.join().unwrap();
//! ```

#![warn(missing_docs)]

mod barrier;
mod condvar;
mod errno;
mod futex;
mod held;
mod mcs;
mod mutex;
mod once;
mod rwlock;
mod semaphore;
mod timeout;
mod waitq;

pub use barrier::{Barrier, RawBarrier};
pub use condvar::{Condvar, RawCondvar};
pub use errno::Errno;
pub use futex::{futex_wait, futex_wait_until, futex_wake};
pub use held::held_locks;
pub use mcs::McsLock;
pub use mutex::{Mutex, MutexGuard, RawMutex, MUTEX_ERRORCHECK, MUTEX_NORMAL, MUTEX_RECURSIVE};
pub use once::{Once, RawOnce};
pub use parlib_vcore::spin::{PdrGuard, PdrSpinLock, SpinGuard, SpinLock};
pub use rwlock::{RawRwLock, ReadGuard, RwLock, WriteGuard};
pub use semaphore::{RawSemaphore, Semaphore, SEM_VALUE_MAX};
pub use timeout::{now_ns, set_timeout_service, Deadline, TimeoutService, TimeoutSlot};
