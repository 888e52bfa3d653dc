//! A call's record, its stack, and the switches between launcher and call.
//!
//! # The chain
//!
//! Calls running on a thread form a chain from the innermost (running code) out through
//! `parent` links to the outermost, whose launcher is the thread's own code. A launch or
//! resume links a call in ([`run`]); its return or suspension unlinks it. A call that is
//! suspended takes the calls inside it along: `sub_innermost` remembers the innermost
//! one, and a resume links the whole sub-chain back in, on whichever thread resumes it.
//!
//! # A launch, step by step
//!
//! Launcher L, call C (the resume of a suspended C is the same from step 2):
//! 1. L builds C's record and stack; the record holds `f` and a slot for its result.
//! 2. [`run`]: L raises the thread's depth to `INTERNAL` (nothing preempts the
//!    machinery), saves its own depth in C, links C (or C's sub-chain) in, recomputes the
//!    chain's deadline, arms the clock if it is now too late, and switches to C.
//! 3. C's code runs with the depth it had (0 at its start); a preemption, a `pause` or
//!    its return raise the depth to `INTERNAL`, record why C stopped (`exit`) and switch
//!    back to L, which C saved in step 2.
//! 4. L, back on its own stack (perhaps on another thread, if L is itself a call that
//!    was suspended and resumed meanwhile), unlinks C, restores its own depth (acting on
//!    a preemption deferred meanwhile) and reads `exit`.
//!
//! Step 2 and step 4 are the only places the chain changes, and both run at depth
//! `INTERNAL`: a preemption never sees it half-linked.

use core::any::Any;
use core::cell::{Cell, UnsafeCell};
use core::ptr::{self, NonNull};

use parlib_uthread::TlsBlock;
use parlib_vcore::arch::{self, Context};
use parlib_vcore::Stack;

use crate::error::Error;
use crate::thread::{self, ThreadState, INTERNAL};

/// Why a call stopped running, as it tells its launcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Running (or not yet started).
    None,
    /// `f` returned; the result is in the slot.
    Returned,
    /// `f` panicked; the payload is in `panic`.
    Panicked,
    /// `f` unwound for a cancel (its own or an enclosing call's).
    Cancelled,
    /// Its budget (or an enclosing call's) ran out.
    TimedOut,
    /// It called `pause`.
    Paused,
}

/// The part of a call's record the machinery needs, whatever `f` and its result are.
pub(crate) struct CallCore {
    /// The call's context while it is suspended.
    pub(crate) call_ctx: UnsafeCell<Context>,
    /// The launcher's context while the call runs.
    pub(crate) launcher_ctx: UnsafeCell<Context>,
    pub(crate) stack: Cell<Option<Stack>>,
    /// Where that stack lies, for the signal handler (which must not touch `stack`).
    pub(crate) stack_range: core::ops::Range<usize>,
    /// Its absolute deadline (`CLOCK_MONOTONIC` ns).
    pub(crate) deadline: Cell<u64>,
    /// The call its launcher runs in; null if the launcher is the thread's own code.
    pub(crate) parent: Cell<*mut CallCore>,
    /// While suspended: the innermost call inside it (itself, unless it launched calls
    /// that were running when it was suspended).
    pub(crate) sub_innermost: Cell<*mut CallCore>,
    /// The launcher's depth, restored when the call stops.
    pub(crate) launcher_depth: Cell<u32>,
    pub(crate) exit: Cell<Exit>,
    pub(crate) panic: Cell<Option<Box<dyn Any + Send>>>,
    /// Being cancelled: its next cancellation point unwinds it.
    pub(crate) cancelling: Cell<bool>,
    /// `parlib-sync` locks taken and not released while it ran (calls inside it
    /// included): a call holding one is never abandoned. Counted per stretch of running,
    /// on the TLS it runs on ([`begin_stretch`], [`end_stretch`]): a call with its own
    /// TLS counts its locks there, not on its launcher's. (A stretch that starts and ends
    /// in different nested calls with TLS blocks of their own is miscounted.)
    pub(crate) held: Cell<u32>,
    /// The TLS's lock count when the current stretch began.
    held_base: Cell<u32>,
    /// The TLS block its code runs on: its own, or its launcher's at launch.
    pub(crate) fs: usize,
    /// Its own TLS block, if it has one; released with the record.
    _tls: Cell<Option<TlsBlock>>,
    /// The launcher's TLS block while the call runs.
    pub(crate) launcher_fs: Cell<usize>,
    /// Drops the whole record (`Call<F, T>`).
    free: unsafe fn(*mut CallCore),
}

/// A call's record: the core, the result slot, then `f`. `repr(C)` so that the prefix
/// up to the result is [`CallHead<T>`] whatever `F` is.
#[repr(C)]
struct Call<F, T> {
    core: CallCore,
    result: UnsafeCell<Option<T>>,
    f: UnsafeCell<Option<F>>,
}

/// The prefix of every `Call<F, T>` with this `T`.
#[repr(C)]
pub(crate) struct CallHead<T> {
    core: CallCore,
    result: UnsafeCell<Option<T>>,
}

/// The payload a cancellation unwinds with.
pub(crate) struct CancelToken;

/// Builds a call of `f` on a stack of `stack_size` bytes, ready for [`run`].
pub(crate) fn new_call<F, T>(
    st: &ThreadState,
    f: F,
    stack_size: usize,
    own_tls: bool,
) -> Result<NonNull<CallCore>, Error>
where
    F: FnOnce() -> T,
{
    let stack = st.take_stack(stack_size)?;
    let tls = match own_tls {
        true => {
            Some(TlsBlock::new().map_err(|_| Error::Resource { what: "a TLS block", errno: libc::EAGAIN })?)
        }
        false => None,
    };
    let fs = tls.as_ref().map_or_else(arch::fs_base, TlsBlock::fs_base);
    let call: Box<Call<F, T>> = Box::new(Call {
        core: CallCore {
            call_ctx: UnsafeCell::new(Context::EMPTY),
            launcher_ctx: UnsafeCell::new(Context::EMPTY),
            stack: Cell::new(None),
            stack_range: stack.bottom()..stack.top(),
            deadline: Cell::new(0),
            parent: Cell::new(ptr::null_mut()),
            sub_innermost: Cell::new(ptr::null_mut()),
            launcher_depth: Cell::new(0),
            exit: Cell::new(Exit::None),
            panic: Cell::new(None),
            cancelling: Cell::new(false),
            held: Cell::new(0),
            held_base: Cell::new(0),
            fs,
            _tls: Cell::new(tls),
            launcher_fs: Cell::new(0),
            free: free_call::<F, T>,
        },
        result: UnsafeCell::new(None),
        f: UnsafeCell::new(Some(f)),
    });
    let p = Box::into_raw(call);
    // SAFETY: `p` is a fresh record; the stack is ours and unused, its top 16-aligned.
    unsafe {
        *(*p).core.call_ctx.get() = arch::init_context(stack.top(), entry::<F, T>, p as usize);
        (*p).core.stack.set(Some(stack));
        Ok(NonNull::new_unchecked(p.cast::<CallCore>()))
    }
}

unsafe fn free_call<F, T>(p: *mut CallCore) {
    // SAFETY: `p` came from `Box::into_raw` of a `Call<F, T>` (its first field is the core).
    drop(unsafe { Box::from_raw(p.cast::<Call<F, T>>()) });
}

/// Frees a call that will never run again: its record, and its stack (kept as the
/// thread's spare).
///
/// # Safety
/// `c` is a call record nobody runs or will resume, owned by the caller.
pub(crate) unsafe fn free(c: NonNull<CallCore>) {
    // SAFETY: the caller's contract.
    let core = unsafe { c.as_ref() };
    if let (Some(s), Some(st)) = (core.stack.take(), thread::existing()) {
        st.give_stack(s);
    }
    // SAFETY: as above; `free` was set for this record's type.
    unsafe { (core.free)(c.as_ptr()) }
}

/// Takes the result of a call that returned.
///
/// # Safety
/// `c` is a `Call<_, T>` whose exit is `Returned`.
pub(crate) unsafe fn take_result<T>(c: NonNull<CallCore>) -> T {
    // SAFETY: the caller's contract; the head is a prefix of the record.
    unsafe { (*c.cast::<CallHead<T>>().as_ref().result.get()).take() }.expect("a returned call has a result")
}

/// Where a call starts, on its own stack (step 3).
unsafe extern "C" fn entry<F: FnOnce() -> T, T>(p: usize) -> ! {
    let call = p as *const Call<F, T>;
    // SAFETY: the launcher's `run` switched here with `p` alive and linked in.
    let f = unsafe { (*(*call).f.get()).take() }.expect("a call starts once");
    // SAFETY: as above.
    begin_stretch(unsafe { &(*call).core });
    thread::current().set_depth(0);
    let r = std::panic::catch_unwind(core::panic::AssertUnwindSafe(f));
    // Before `exit` is written: a preemption up to here suspends the call as TimedOut,
    // and its resume comes back here; one after it would overwrite `exit`.
    thread::current().depth.set(INTERNAL);
    // SAFETY: as above; the launcher reads these after the switch below.
    let core = unsafe { &(*call).core };
    match r {
        // SAFETY: as above.
        Ok(v) => unsafe {
            *(*call).result.get() = Some(v);
            core.exit.set(Exit::Returned);
        },
        Err(p) if p.is::<CancelToken>() => core.exit.set(Exit::Cancelled),
        Err(p) => {
            core.panic.set(Some(p));
            core.exit.set(Exit::Panicked);
        }
    }
    end_stretch(core);
    // SAFETY: the launcher saved its context in step 2 and waits in `run`; this stack is
    // abandoned (everything on it was dropped by the return or the unwind).
    unsafe { arch::load(core.launcher_ctx.get()) }
}

/// Steps 2 to 4: runs (or resumes) `c` until it stops, with `deadline` as its own
/// deadline; returns why it stopped.
///
/// # Safety
/// `c` is a started-or-new call owned by the caller, not running anywhere.
pub(crate) unsafe fn run(
    st: &'static ThreadState,
    c: NonNull<CallCore>,
    deadline: u64,
) -> Result<Exit, Error> {
    // SAFETY: the caller's contract.
    let core = unsafe { c.as_ref() };
    let depth = st.depth.replace(INTERNAL);
    core.launcher_depth.set(depth);
    core.deadline.set(deadline);
    core.exit.set(Exit::None);
    let outer = st.innermost.get();
    core.parent.set(outer);
    let inner = core.sub_innermost.replace(ptr::null_mut());
    st.innermost.set(if inner.is_null() { c.as_ptr() } else { inner });
    st.update_eff();
    if outer.is_null() {
        st.set_owner(parlib_uthread::current().map_or(ptr::null_mut(), NonNull::as_ptr));
    }
    // The TLS the innermost call runs on, made to find this thread's state.
    // SAFETY: linked calls are alive.
    let target = unsafe { &*st.innermost.get() }.fs;
    let here = arch::fs_base();
    core.launcher_fs.set(here);
    let armed = st.ensure_armed().and_then(|()| match target != here {
        true => thread::publish_into(target, st),
        false => Ok(()),
    });
    if let Err(e) = armed {
        unlink(core);
        core.sub_innermost.set(inner);
        return Err(e);
    }
    if target != here {
        thread::set_tls(target);
    }
    // SAFETY: the call's context is suspended (or fresh) and nobody else runs it; ours is
    // saved for the call to come back to.
    unsafe { arch::switch(core.launcher_ctx.get(), core.call_ctx.get()) };
    unlink(core);
    Ok(core.exit.get())
}

/// Step 4's unlink, and the depth restored.
fn unlink(core: &CallCore) {
    let st = thread::current();
    st.innermost.set(core.parent.get());
    st.update_eff();
    if core.parent.get().is_null() {
        st.set_owner(ptr::null_mut());
        st.quiesce_clock();
    }
    st.set_depth(core.launcher_depth.get());
}

/// The call side of a suspension (step 3): records why `x` stops, remembers the calls
/// inside it, switches to its launcher, and returns when something resumes `x`.
///
/// # Safety
/// `x` is in the calling thread's chain (the innermost or further out), and the depth
/// is `INTERNAL`.
pub(crate) unsafe fn suspend(st: &ThreadState, x: NonNull<CallCore>, why: Exit) {
    // SAFETY: the caller's contract.
    let core = unsafe { x.as_ref() };
    core.sub_innermost.set(st.innermost.get());
    core.exit.set(why);
    end_stretch(core);
    // SAFETY: the launcher waits in `run`; our context is saved for a resume.
    unsafe { arch::switch(core.call_ctx.get(), core.launcher_ctx.get()) };
    begin_stretch(core);
}

/// Frees the calls suspended inside `c` (launched by it and running when it stopped),
/// innermost first.
///
/// # Safety
/// `c` is a suspended call that will never run again, owned by the caller; the calls
/// inside it are owned by frames on its (abandoned) stacks.
pub(crate) unsafe fn abandon_inner(c: NonNull<CallCore>) {
    // SAFETY: the caller's contract.
    let mut p = unsafe { c.as_ref() }.sub_innermost.replace(ptr::null_mut());
    while !p.is_null() && p != c.as_ptr() {
        // SAFETY: each is a live inner call, suspended for good.
        let parent = unsafe { (*p).parent.get() };
        // SAFETY: as above; nothing will resume or free it otherwise.
        unsafe { free(NonNull::new_unchecked(p)) };
        p = parent;
    }
}

/// The call side of a (re)start: notes the lock count of the TLS it runs on.
fn begin_stretch(core: &CallCore) {
    core.held_base.set(parlib_sync::held_locks());
}

/// The call side of a stop (step 3): adds the locks taken meanwhile to the call's count,
/// then goes back to the launcher's TLS block if the call ran on another one (the
/// launcher's `run` moved to the call's).
fn end_stretch(core: &CallCore) {
    let taken = parlib_sync::held_locks().wrapping_sub(core.held_base.get());
    core.held.set(core.held.get().wrapping_add(taken));
    let l = core.launcher_fs.get();
    if l != arch::fs_base() {
        thread::set_tls(l);
    }
}
