//! The `Uthread` record and its state machine.
//!
//! # States
//!
//! | state | meaning | entered by | left by |
//! |---|---|---|---|
//! | `Idle` | not initialised (new, or after `cleanup`) | `Uthread::new`, `cleanup` | `init` |
//! | `Created` | initialised, not yet handed to the scheduler | `init` | `runnable` |
//! | `Runnable` | the scheduler holds it and may run it | `runnable`, `paused` | `run_uthread` |
//! | `Running` | it runs on a vcore | `run_uthread` | `yield_with` |
//! | `Yielding` | switched out; its yield callback is deciding its fate | `yield_with` | `runnable`, `paused`, `has_blocked` |
//! | `Blocked` | a sync primitive or service holds it | `has_blocked` | `runnable` |
//! | `Done` | it exited; its record and stack are still allocated | `exit_with` | `cleanup` |
//!
//! Every library call checks the state it expects and panics, naming the uthread and
//! its state, on a mismatch (running a uthread twice, waking one that was never
//! blocked...). The checks are a plain load and store, not a compare-and-swap: they
//! catch misuse by one party reliably, and two vcores racing to run the same uthread
//! with high probability, without putting a locked instruction on every switch.

use core::cell::UnsafeCell;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use parlib_vcore::arch::Context;
use parlib_vcore::Stack;

use crate::tls::Backing;

/// The state of a uthread; see the module docs for the transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Not initialised.
    Idle = 0,
    /// Initialised, not yet runnable.
    Created = 1,
    /// Held by the scheduler, may run.
    Runnable = 2,
    /// Running on a vcore.
    Running = 3,
    /// Switched out, its yield callback running.
    Yielding = 4,
    /// Blocked on something that will make it runnable.
    Blocked = 5,
    /// Exited.
    Done = 6,
}

impl State {
    #[inline]
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Idle,
            1 => State::Created,
            2 => State::Runnable,
            3 => State::Running,
            4 => State::Yielding,
            5 => State::Blocked,
            _ => State::Done,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Which TLS a uthread runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Its own glibc-valid TLS, from a backing thread: `errno`, `thread_local!` and
    /// glibc's per-thread state belong to the uthread and follow it across vcores.
    Backed,
    /// No TLS of its own: it runs on the TLS of whichever vcore runs it. Far cheaper to
    /// create, and a switch skips the FS base write; for code that keeps its per-thread
    /// state in the scheduler's record, never in `thread_local!` or `errno`.
    None,
}

/// The base uthread record. A scheduler embeds it as the *first* field of its own
/// `#[repr(C)]` thread struct and converts back with an offset (`memoffset`), as parlib's
/// C code does with casts:
///
/// ```
/// use parlib_uthread::Uthread;
/// #[repr(C)]
/// struct MyThread {
///     uth: Uthread,   // first, so a NonNull<Uthread> is also a pointer to MyThread
///     ticket: u64,
/// }
/// assert_eq!(memoffset::offset_of!(MyThread, uth), 0);
/// ```
///
/// The scheduler allocates and frees the record; the uthread layer never does.
#[repr(C)]
pub struct Uthread {
    /// Saved context while switched out.
    pub(crate) ctx: UnsafeCell<Context>,
    /// FS base it runs with; 0 for TLS-less uthreads (they use the vcore's).
    pub(crate) tls: UnsafeCell<usize>,
    pub(crate) state: AtomicU8,
    /// Notification disable depth (see `notif`).
    pub(crate) notif_depth: AtomicU32,
    pub(crate) id: AtomicU64,
    pub(crate) entry: UnsafeCell<Option<fn(*mut ()) -> !>>,
    pub(crate) arg: UnsafeCell<*mut ()>,
    pub(crate) stack: UnsafeCell<Option<Stack>>,
    pub(crate) backing: UnsafeCell<Option<NonNull<Backing>>>,
    /// The interrupt slot: how to end its interruptible wait early (`interrupt`).
    pub(crate) wait_interrupt: AtomicUsize,
}

// SAFETY: a uthread record is handed between vcores by the scheduler, whose queues (and
// their locks) order every access to the non-atomic fields: only the vcore that runs or
// switches the uthread out touches `ctx`, `tls`, `entry`, `arg`, `stack` and `backing`.
unsafe impl Sync for Uthread {}
// SAFETY: as above.
unsafe impl Send for Uthread {}

impl Default for Uthread {
    fn default() -> Self {
        Uthread::new()
    }
}

impl Uthread {
    /// A fresh, `Idle` record; give it to `init` before use.
    pub const fn new() -> Uthread {
        Uthread {
            ctx: UnsafeCell::new(Context::EMPTY),
            tls: UnsafeCell::new(0),
            state: AtomicU8::new(State::Idle as u8),
            notif_depth: AtomicU32::new(0),
            id: AtomicU64::new(0),
            entry: UnsafeCell::new(None),
            arg: UnsafeCell::new(core::ptr::null_mut()),
            stack: UnsafeCell::new(None),
            backing: UnsafeCell::new(None),
            wait_interrupt: AtomicUsize::new(0),
        }
    }

    /// Its state now.
    #[inline]
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    /// A process-unique number for messages (`main` is 0), set by `init`.
    #[inline]
    pub fn id(&self) -> u64 {
        self.id.load(Ordering::Relaxed)
    }

    /// Whether it runs on its own TLS.
    #[inline]
    pub fn has_tls(&self) -> bool {
        // SAFETY: `tls` is written only by init / lib_init before the uthread is shared.
        unsafe { *self.tls.get() != 0 }
    }

    /// Its stack's guard range, for fault reports (empty if it has no stack of ours).
    pub fn stack_guard(&self) -> core::ops::Range<usize> {
        // SAFETY: `stack` is written only by init and cleanup, when nothing runs on it.
        unsafe { (*self.stack.get()).as_ref().map_or(0..0, Stack::guard_range) }
    }

    #[inline]
    pub(crate) fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// Checks the state is one of `expected` and moves it to `to`, or panics naming the
    /// misuse.
    #[inline]
    pub(crate) fn transition(&self, what: &str, expected: &[State], to: State) {
        self.expect_state(what, expected);
        self.set_state(to);
    }

    /// Panics, naming `what`, unless the state is one of `expected`; stores nothing.
    #[inline]
    pub(crate) fn expect_state(&self, what: &str, expected: &[State]) {
        let s = self.state();
        if !expected.contains(&s) {
            transition_failed(what, self.id(), s, expected);
        }
    }
}

#[cold]
#[inline(never)]
fn transition_failed(what: &str, id: u64, s: State, expected: &[State]) -> ! {
    match s {
        State::Running => panic!("{what}: uthread {id} is already running"),
        _ => panic!("{what}: uthread {id} is {s}, expected one of {expected:?}"),
    }
}

impl fmt::Debug for Uthread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Uthread").field("id", &self.id()).field("state", &self.state()).finish()
    }
}
