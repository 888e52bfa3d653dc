//! # parlib-upthread: the canonical scheduler and a pthread-compatible API
//!
//! The top layer of parlib-rs (`DESIGN.md` §9). It provides the scheduler most programs
//! want (per-vcore run queues, round robin, work stealing, optional preemption) and, on
//! top of it, threads with the pthread API: a C ABI of `upthread_*` functions with
//! glibc's signatures and error codes, and a Rust API shaped like `std::thread`.
//!
//! ## Where it sits
//!
//! ```text
//!   C programs (libupthread, upthread/clib)   Rust programs
//!            \                                  /
//!   parlib-upthread   this crate: scheduler, threads, keys, cancellation, signals
//!   parlib-syscalls   blocking system calls that block only the thread
//!   parlib-alarms     per-vcore timers: preemption ticks, sleeps, timed waits
//!   parlib-sync       mutexes, condvars... (the C face of them is `capi`)
//!   parlib-uthread    Uthread, the Scheduler trait this crate implements, TLS
//!   parlib-events     event queues the idle vcores poll; notifications
//!   parlib-vcore      vcores, park / request, spinlocks, stacks
//! ```
//!
//! ## Map
//!
//! | module | what |
//! |---|---|
//! | [`sched`] | the `Scheduler`: queues, placement, stealing, parking, the vcore knobs |
//! | [`preempt`] | per-vcore alarm ticks for [`set_sched_period`] |
//! | [`env`](mod@env) | the knobs as `UPTHREAD_*` environment variables, read by [`init`] |
//! | `record` | the thread's data in its `parlib_uthread::Record` (which the uthread layer colours and recycles), the live-handle registry |
//! | [`thread`] | create / join / detach / exit / self / equal / yield |
//! | [`attr`] | thread attributes in a `pthread_attr_t`-sized object |
//! | [`keys`] | thread-specific data and destructors |
//! | [`cancel`] | deferred cancellation and cleanup handlers |
//! | [`signal`] | `upthread_kill` / `upthread_sigmask`: signals aimed at one uthread |
//! | [`spawn`](mod@spawn) | the Rust API: [`spawn()`], [`Builder`], [`scope`], [`yield_now`] |
//! | [`capi`] | the C functions for mutexes, condvars, rwlocks, barriers, spinlocks, once, semaphores |
//!
//! ## Starting
//!
//! [`init`] starts everything, in the order the layers need: the vcore layer, the
//! scheduler's per-vcore state, `parlib_uthread::lib_init` with this scheduler (the
//! caller becomes the thread `main`, a uthread on vcore 0), then the alarm service, then
//! the syscall service. The C library calls it from a constructor, so `main` already
//! runs as a uthread; Rust programs call it first thing, or let the first
//! [`spawn()`] / `upthread_create` call it.
//!
//! ## Example
//!
//! ```no_run
//! # // As a user of the facade crate `parlib` writes it; here, its paths mapped.
//! # mod parlib { pub(crate) use parlib_upthread as upthread; }
//! use parlib::upthread;
//!
//! upthread::init().expect("start upthread");
//! let v = vec![1, 2, 3];
//! let h = upthread::spawn(|| 6 * 7);
//! let sum = upthread::scope(|s| {
//!     let a = s.spawn(|| v.iter().sum::<i32>()); // borrows `v`
//!     a.join().unwrap()
//! });
//! assert_eq!((h.join().unwrap(), sum), (42, 6));
//! ```
//!
//! ## Inside threads
//!
//! Threads are uthreads, and std works on them: [`init`] sets up `parlib-syscalls`,
//! whose wrappers (the `interpose` feature, on by default) make std's locks (`Mutex`, `RwLock`, `Condvar`, `Once`, the lock behind
//! `println!`), thread parking, `thread::sleep`, `std::net` and `std::fs` block only the
//! calling thread, also under preemption (`UPTHREAD_SCHED_PERIOD_US`). Still blocking the
//! whole vcore: name resolution (`getaddrinfo`), `std::process` waits, and joining a
//! `std::thread` (the `parlib_syscalls` crate docs have the full list); run those on a
//! plain thread. `parlib::sync`, `parlib::alarms::sleep` and `parlib::syscalls::io` are
//! the direct faces. A section that must not be preempted goes inside a
//! [`NotifGuard`]. Every thread has its own TLS (its `errno`, `thread_local!` values and
//! glibc state follow it across vcores); a thread named with [`Builder::name`] carries
//! the name in std too (`std::thread::current().name()`, panic messages).
//!
//! ## Differences from glibc
//!
//! * Cancellation is deferred; the asynchronous type acts at a few more points, not at
//!   any instruction ([`cancel`]). A cancel wakes a thread blocked in a cancellation
//!   point except offloaded system calls (regular files, `open`, `poll` with a timeout),
//!   which act on it when they return.
//! * Uthread-directed signals run at defined points, not at any instruction
//!   ([`signal`]); `SIGUSR1` and the synchronous fault signals are parlib's.
//! * Exit and cancellation do not unwind the stack: cleanup handlers run, but C++
//!   destructors and Rust drops of the abandoned frames do not.
//! * `upthread_join` of `main` is `EINVAL`; the guard size is always one page.

#![warn(missing_docs)]

pub mod attr;
pub mod cancel;
pub mod capi;
pub mod env;
pub mod keys;
pub mod preempt;
mod record;
pub mod sched;
pub mod signal;
pub mod spawn;
pub mod thread;

use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

pub use cancel::{testcancel, CleanupBuffer, PTHREAD_CANCELED};
pub use keys::upthread_key_t;
pub use parlib_uthread::NotifGuard;
pub use preempt::{sched_period, set_sched_period, MIN_SCHED_PERIOD_US};
pub use sched::{can_vcore_request, can_vcore_steal, num_vcores, set_num_vcores};
pub use spawn::{current_name, scope, spawn, yield_now, Builder, JoinHandle, Scope, ScopedJoinHandle};
pub use thread::upthread_t;

/// What went wrong starting upthread.
#[derive(Debug)]
pub enum Error {
    /// The vcore layer could not start.
    Vcore(parlib_vcore::Error),
    /// The uthread layer refused (for example: called on a vcore of another scheduler).
    Uthread(parlib_uthread::Error),
    /// The alarm service could not start.
    Alarms(parlib_alarms::Error),
    /// The syscall service could not start.
    Syscalls(std::io::Error),
}

impl Error {
    /// The errno a C caller would get for this error.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Vcore(e) => e.errno(),
            Error::Uthread(e) => e.errno(),
            Error::Alarms(_) => libc::EAGAIN,
            Error::Syscalls(e) => e.raw_os_error().unwrap_or(libc::EAGAIN),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Vcore(e) => write!(f, "upthread: vcores: {e}"),
            Error::Uthread(e) => write!(f, "upthread: uthreads: {e}"),
            Error::Alarms(e) => write!(f, "upthread: alarms: {e}"),
            Error::Syscalls(e) => write!(f, "upthread: syscalls: {e}"),
        }
    }
}

impl std::error::Error for Error {}

const INIT_NONE: u8 = 0;
const INIT_RUNNING: u8 = 1;
const INIT_DONE: u8 = 2;
static INIT: AtomicU8 = AtomicU8::new(INIT_NONE);

/// Whether [`init`] has completed.
#[inline]
pub fn is_initialized() -> bool {
    INIT.load(Ordering::Acquire) == INIT_DONE
}

/// Starts upthread (see the crate docs for the order): afterwards the caller runs as the
/// thread `main`, a uthread on vcore 0. Reads the `UPTHREAD_*` knobs ([`env`](mod@env)) once.
/// Idempotent: later calls return `Ok` at once. Call it from the program's main thread.
///
/// # Errors
/// The error of the layer that failed; after an error upthread is not usable.
pub fn init() -> Result<(), Error> {
    loop {
        match INIT.compare_exchange(INIT_NONE, INIT_RUNNING, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            Err(INIT_DONE) => return Ok(()),
            // Another plain thread is initialising (a uthread cannot exist before the
            // first init is far enough along to have moved main): wait for it.
            Err(_) => std::thread::yield_now(),
        }
    }
    let r = init_layers();
    INIT.store(if r.is_ok() { INIT_DONE } else { INIT_NONE }, Ordering::Release);
    r
}

fn init_layers() -> Result<(), Error> {
    if !parlib_vcore::is_initialized() {
        parlib_vcore::lib_init().map_err(Error::Vcore)?;
    }
    env::apply(&env::read());
    sched::setup();
    parlib_uthread::lib_init(&sched::SCHED, record::Thread::new(record::Start::None, false, true))
        .map_err(Error::Uthread)?;
    // Now main, a uthread on vcore 0, whose record lives for the rest of the process.
    let main = parlib_uthread::main_uthread().expect("lib_init made main a uthread");
    record::register(main.as_ptr() as usize);
    parlib_alarms::init().map_err(Error::Alarms)?;
    parlib_syscalls::init().map_err(Error::Syscalls)?;
    parlib_syscalls::set_interrupt_policy(cancel::syscall_interrupt_policy);
    parlib_syscalls::set_cancellation_point(cancel::testcancel);
    if !sched::requesting() {
        sched::request_active();
    }
    Ok(())
}

/// [`init`] if it has not run.
pub(crate) fn ensure_init() -> Result<(), Error> {
    if is_initialized() {
        return Ok(());
    }
    init()
}
