//! The thread record: what upthread keeps per thread, and the registry of live thread
//! handles.
//!
//! [`Thread`] is upthread's per-thread data, the scheduler's `Thread` type: the uthread
//! layer keeps it in every uthread's [`Record`] (allocated at a random cache colour and
//! recycled there), and the handles the scheduler receives reach it through `Deref`. An
//! `upthread_t` is the address of the whole record ([`Rec`]), which is also the address
//! of its `Uthread`.
//!
//! # Lifecycle word (`life`)
//!
//! | value | meaning | left by |
//! |---|---|---|
//! | `JOINABLE` | running, joinable, nobody joining | detach (→ `DETACHED`), a joiner (→ `CLAIMED`), exit (→ `EXITED`) |
//! | `DETACHED` | running, detached | exit: the exit callback frees the record |
//! | `CLAIMED` | running; a joiner claimed it and is about to block | the joiner's yield callback (→ its pointer), exit (→ `EXITED`) |
//! | pointer (≥ 8) | running; this joiner is blocked on it | exit (→ `EXITED`, and it wakes the joiner) |
//! | `EXITED` | exited, joinable: waiting for a join or detach | join or detach (→ `REAPED`), which frees the record |
//! | `REAPED` | taken by the one join or detach that frees it | — |
//!
//! Exactly one party frees a record: the exit callback of a detached thread, or the join
//! or detach that took it from `EXITED` to `REAPED`.

use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize};
use std::collections::BTreeSet;

use libc::{c_int, c_void};
use parlib_uthread::{Record, Uthread};
use parlib_vcore::spin::PdrSpinLock;

use crate::cancel::CancelState;
use crate::keys::KeyValues;
use crate::signal::SignalState;

pub(crate) const JOINABLE: usize = 0;
pub(crate) const DETACHED: usize = 1;
pub(crate) const CLAIMED: usize = 2;
pub(crate) const EXITED: usize = 3;
pub(crate) const REAPED: usize = 4;

/// `last_vcore` of a thread that has never run.
pub(crate) const NO_VCORE: usize = usize::MAX;

/// What a new thread runs.
pub(crate) enum Start {
    /// Nothing (main, or a thread that has started).
    None,
    /// A C start routine and its argument.
    C(extern "C" fn(*mut c_void) -> *mut c_void, *mut c_void),
    /// A Rust closure; its result is the thread's exit value.
    Rust(Box<dyn FnOnce() -> *mut c_void + Send>),
}

/// One upthread thread: what the scheduler and the pthread functions keep for it.
pub(crate) struct Thread {
    /// The vcore that last ran it ([`NO_VCORE`] before its first run): it goes back to
    /// that vcore's queue.
    pub(crate) last_vcore: AtomicUsize,
    /// Set when it blocked in a system call: its wake-up goes to the head of the queue.
    pub(crate) to_head: AtomicBool,
    /// The lifecycle word (module docs).
    pub(crate) life: AtomicUsize,
    /// The exit value, set before the thread exits.
    pub(crate) retval: AtomicPtr<c_void>,
    /// Whether this is `main`'s record (never freed, never exits through the scheduler).
    pub(crate) is_main: bool,
    /// Set once the thread has started exiting (cleanup handlers, key destructors).
    pub(crate) exiting: AtomicBool,
    /// What it runs; taken by the thread itself when it starts.
    pub(crate) start: UnsafeCell<Start>,
    pub(crate) cancel: CancelState,
    pub(crate) keys: UnsafeCell<KeyValues>,
    pub(crate) signals: SignalState,
    /// Its name (Rust `Builder::name`); read and written by the thread itself and its
    /// creator before it starts.
    pub(crate) name: UnsafeCell<Option<String>>,
}

/// A thread's whole record: the uthread layer's part and upthread's.
pub(crate) type Rec = Record<Thread>;

// SAFETY: the non-atomic fields are touched by the thread itself only (`start`, `keys`,
// `name` after start, the cancel cleanup chain), or by its creator before the thread is
// published.
unsafe impl Sync for Thread {}
// SAFETY: as above.
unsafe impl Send for Thread {}

impl Thread {
    pub(crate) fn new(start: Start, detached: bool, is_main: bool) -> Thread {
        Thread {
            last_vcore: AtomicUsize::new(NO_VCORE),
            to_head: AtomicBool::new(false),
            life: AtomicUsize::new(if detached { DETACHED } else { JOINABLE }),
            retval: AtomicPtr::new(core::ptr::null_mut()),
            is_main,
            exiting: AtomicBool::new(false),
            start: UnsafeCell::new(start),
            cancel: CancelState::new(),
            keys: UnsafeCell::new(KeyValues::new()),
            signals: SignalState::new(),
            name: UnsafeCell::new(None),
        }
    }

    /// The record of the calling thread, or `None` outside upthread threads (vcore
    /// context, plain Linux threads, before `init`).
    #[inline]
    pub(crate) fn current<'a>() -> Option<&'a Rec> {
        let me = parlib_uthread::current().filter(|_| crate::is_initialized())?;
        // SAFETY: every uthread of this process is an upthread thread once our scheduler
        // is installed, and the running one is alive.
        Some(unsafe { me.cast::<Rec>().as_ref() })
    }
}

/// What a whole record adds to [`Thread`]'s fields: its identities.
pub(crate) trait Identity {
    /// The handle (`upthread_t`) of this thread: the record's address.
    fn handle(&self) -> usize;
    /// This record as the uthread layer sees it.
    fn uth_ptr(&self) -> NonNull<Uthread>;
}

impl Identity for Rec {
    #[inline]
    fn handle(&self) -> usize {
        self as *const Rec as usize
    }

    #[inline]
    fn uth_ptr(&self) -> NonNull<Uthread> {
        NonNull::from(self.uthread())
    }
}

/// The live record at `handle`.
///
/// # Safety
/// `handle` is a registered handle (or one whose record the caller otherwise knows to be
/// alive).
pub(crate) unsafe fn at<'a>(handle: usize) -> &'a Rec {
    // SAFETY: the caller's contract.
    unsafe { &*(handle as *const Rec) }
}

// ---------------------------------------------------------------------------------------
// The registry of live handles.

/// Handles of threads whose records are allocated (created, not yet reaped), and main.
/// Lets join, detach, kill and cancel answer ESRCH for handles that are not threads,
/// instead of reading freed memory. PDR: used on uthreads and in vcore context.
static LIVE: PdrSpinLock<BTreeSet<usize>> = PdrSpinLock::new(BTreeSet::new());

/// Records a new handle.
pub(crate) fn register(handle: usize) {
    LIVE.lock().insert(handle);
}

/// Forgets a handle (the record is being freed).
pub(crate) fn unregister(handle: usize) {
    LIVE.lock().remove(&handle);
}

/// Runs `f` on the live thread behind `handle` while the registry lock is held, so the
/// record cannot be freed meanwhile. `f` must be short and must not block.
pub(crate) fn with_live<R>(handle: usize, f: impl FnOnce(&Rec) -> R) -> Option<R> {
    let live = LIVE.lock();
    // SAFETY: a registered handle is the address of an allocated record, and records are
    // unregistered (under this lock) before they are freed.
    live.contains(&handle).then(|| f(unsafe { at(handle) }))
}

/// Posts a request (a cancel, a signal) to the thread behind `handle`, the shape both
/// `upthread_cancel` and `upthread_kill` have:
/// 1. under the registry lock, `post` records the request on the target and says
///    whether it wants the target now; if so, and the target is another thread, its
///    interruptible wait (if any) ends, so that it acts on the request when it runs;
/// 2. a thread that posted to itself is not waiting: `act_on_self` acts at once.
///
/// Returns 0, or `ESRCH` for a handle that is not a live thread.
pub(crate) fn post(
    handle: usize,
    post: impl FnOnce(&Thread) -> bool,
    act_on_self: impl FnOnce(&Thread),
) -> c_int {
    let me = Thread::current();
    let to_self = |t: &Rec| me.is_some_and(|m| core::ptr::eq(m, t));
    let found = with_live(handle, |t| {
        if post(t) && !to_self(t) {
            // SAFETY: the registry lock keeps the record alive during the call.
            unsafe { parlib_uthread::interrupt_wait(t.uth_ptr()) };
        }
    });
    if found.is_none() {
        return libc::ESRCH;
    }
    if let Some(m) = me.filter(|m| m.handle() == handle) {
        act_on_self(m);
    }
    0
}
