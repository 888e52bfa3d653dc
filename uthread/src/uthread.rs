//! The `Uthread` record and its state machine.
//!
//! # States, and the handle that holds each
//!
//! Every state but `Running` is owned by exactly one handle (see `handle`), so a safe
//! caller can only ask for the transitions its handle allows.
//!
//! | state | held by | entered by | left by |
//! |---|---|---|---|
//! | `Idle` | the allocator | a fresh or recycled record | `create`; `lib_init` for `main` (to `Running`) |
//! | `Created` | [`Created`](crate::Created) | `create` | `runnable` (or dropping it: freed) |
//! | `Runnable` | [`Runnable`](crate::Runnable), given to the scheduler | `runnable`, `paused` | `run_uthread` |
//! | `Running` | the vcore that runs it | `run_uthread` | `yield_with`, `take_interrupted`, exit |
//! | `Yielding` | [`Yielded`](crate::Yielded), given to a yield callback | `yield_with`, `take_interrupted` | `runnable`, `paused`, `has_blocked`, `blockon_sysc` |
//! | `Blocked` | [`Blocked`](crate::Blocked), kept by whoever will wake it | `has_blocked`, `blockon_sysc` | `runnable` |
//! | `Done` | [`Exited`](crate::Exited), given to `thread_exited` | exit, a fault | dropping it: freed |
//!
//! The library calls still check the state they expect and panic, naming the uthread
//! and its state, on a mismatch: only the `unsafe` raw conversions (`from_raw`) can get
//! there. The checks are a plain load and store, not a compare-and-swap, so they cost no
//! locked instruction on a switch.

use core::cell::UnsafeCell;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

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
    /// state in the scheduler's record, never in `thread_local!` or `errno`. std keeps a
    /// thread's identity in TLS too, so such uthreads share their vcore's
    /// (`std::thread::current()`, and with it `park`/`unpark`): use `Backed` for code that
    /// parks.
    None,
}

/// The base uthread record: what the uthread layer keeps for every uthread. It heads
/// every [`Record`](crate::Record), the allocation that also holds the scheduler's own
/// per-thread data; schedulers see it through their handles (`handle.uthread()`), never
/// build one themselves.
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
    /// What it runs; taken by the uthread itself when it first runs.
    pub(crate) entry: UnsafeCell<Option<Box<dyn FnOnce() + Send>>>,
    pub(crate) stack: UnsafeCell<Option<Stack>>,
    pub(crate) backing: UnsafeCell<Option<NonNull<Backing>>>,
    /// The interrupt slot: how to end its interruptible wait early (`interrupt`).
    pub(crate) wait_interrupt: AtomicUsize,
    /// A call to make on it at its next safe point (`safe_call`); 0 for none.
    pub(crate) safe_call: AtomicUsize,
    /// Whether `ctx` holds an interrupted context (a safe point) rather than one saved
    /// by a yield inside this library. Only the vcore that owns the uthread touches it.
    pub(crate) ctx_interrupted: AtomicBool,
}

// SAFETY: a uthread record is handed between vcores by owned handles, whose transfer
// (through a scheduler's queues and their locks) orders every access to the non-atomic
// fields: only the holder of the uthread's handle, or the vcore running it, touches
// `ctx`, `tls`, `entry`, `stack` and `backing`; `entry` is a `Send` closure.
unsafe impl Sync for Uthread {}
// SAFETY: as above.
unsafe impl Send for Uthread {}

impl Uthread {
    /// A fresh, `Idle` record.
    pub(crate) const fn new() -> Uthread {
        Uthread {
            ctx: UnsafeCell::new(Context::EMPTY),
            tls: UnsafeCell::new(0),
            state: AtomicU8::new(State::Idle as u8),
            notif_depth: AtomicU32::new(0),
            id: AtomicU64::new(0),
            entry: UnsafeCell::new(None),
            stack: UnsafeCell::new(None),
            backing: UnsafeCell::new(None),
            wait_interrupt: AtomicUsize::new(0),
            safe_call: AtomicUsize::new(0),
            ctx_interrupted: AtomicBool::new(false),
        }
    }

    /// Its state now.
    #[inline]
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    /// A process-unique number for messages (`main` is 0), set by `create`.
    #[inline]
    pub fn id(&self) -> u64 {
        self.id.load(Ordering::Relaxed)
    }

    /// Whether it runs on its own TLS.
    #[inline]
    pub fn has_tls(&self) -> bool {
        // SAFETY: `tls` is written by `create` / `lib_init` before the uthread is shared,
        // and by the uthread itself (`swap_running_tls`), never from 0 to non-zero.
        unsafe { *self.tls.get() != 0 }
    }

    /// Its stack's guard range, for fault reports (empty if it has no stack of ours).
    pub fn stack_guard(&self) -> core::ops::Range<usize> {
        // SAFETY: `stack` is written only by `create` and the destruction of the `Exited`
        // handle, when nothing runs on it.
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
