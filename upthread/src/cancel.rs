//! Cancellation: `upthread_cancel`, cancel state and type, cleanup handlers, and the
//! cancellation points that act on a pending cancel.
//!
//! # Deferred cancellation
//!
//! `upthread_cancel(t)` marks `t` cancel-pending and returns. `t` acts on it at its next
//! *cancellation point* while its cancel state is `PTHREAD_CANCEL_ENABLE`: it runs its
//! cleanup handlers newest first, then its key destructors, and exits with
//! [`PTHREAD_CANCELED`]. With the state `PTHREAD_CANCEL_DISABLE` the request stays
//! pending until the state is enabled again and the thread reaches a cancellation point.
//!
//! Cancellation points: [`upthread_testcancel`], `upthread_join`, every blocking call of
//! the C API (condition waits, semaphore waits, ...: `capi` calls
//! `testcancel()` before blocking and after waking) and the system calls the C
//! library exports under libc's names (they call [`testcancel`]).
//!
//! # Cancelling a blocked thread
//!
//! A thread blocked in a cancellation point is woken by the cancel, as in glibc (which
//! interrupts the wait with a signal): `upthread_cancel` marks the request pending, then,
//! if the target has cancellation enabled, ends its wait with
//! `parlib_uthread::interrupt_wait` (the protocol is `parlib_uthread::interrupt`'s). If
//! the target is not blocked yet, the interrupt stays pending and ends its next
//! interruptible wait at once, so a cancel that lands between the entry check and the
//! block is not missed. The woken thread acts on the cancel where it stands:
//!
//! | blocked in | acts on the cancel |
//! |---|---|
//! | `pthread_cond_wait`, `pthread_cond_timedwait` | with the mutex re-acquired: its cleanup handlers run with it held |
//! | `sem_wait`, `sem_timedwait` | without taking a unit (a post racing the cancel stays for the next waiter, or in the count) |
//! | `pthread_join` | with the target still joinable (the claim on it is released first) |
//! | `nanosleep`, `usleep`, `sleep`; `read`, `write`, `accept`, `recv*`, `send*`, `connect` on pipes and sockets | when the interrupted call returns into the C library's cancellation point |
//!
//! ## Differences from glibc
//!
//! * Offloaded system calls (regular files, `open`, `poll` with a timeout: they run on a
//!   backing thread) are not interrupted: the thread acts on the cancel when the call
//!   returns.
//! * A mutex lock is not a cancellation point and is never interrupted (as in glibc).
//! * A wait whose normal wake-up races the cancel may end either way: woken normally
//!   (a semaphore wait keeps its unit and returns, the request waits for the next
//!   cancellation point, as glibc does when the wake-up wins) or by the cancel.
//! * An interrupt left pending by a cancel that was acted upon elsewhere (or by a
//!   signal) can end one later interruptible wait early; every such wait treats it as a
//!   spurious wake-up and waits again (condvar waits return 0, which POSIX allows).
//!
//! # Asynchronous cancellation
//!
//! `PTHREAD_CANCEL_ASYNCHRONOUS` is accepted and reported back. A uthread cannot be
//! stopped at an arbitrary instruction here (it may hold a vcore-context lock with
//! notifications off), so it acts on a cancel at the cancellation points above, and also
//! when it yields (`upthread_yield`), when it switches to the asynchronous type or
//! enables cancellation with a cancel pending, and when the cancel comes from itself.
//!
//! # Cleanup handlers
//!
//! `pthread_cleanup_push` / `pop` are macros around a block. The C header wraps
//! [`upthread_cleanup_push_impl`] / [`upthread_cleanup_pop_impl`] around a
//! [`CleanupBuffer`] declared in that block, on the thread's stack:
//!
//! ```c
//! #define pthread_cleanup_push(routine, arg) \
//!     do { struct upthread_cleanup_buffer __upthread_cb; \
//!          upthread_cleanup_push_impl(&__upthread_cb, (routine), (arg));
//! #define pthread_cleanup_pop(execute) \
//!          upthread_cleanup_pop_impl(&__upthread_cb, (execute)); } while (0)
//! ```
//!
//! The buffers form a list, newest first, through the thread's record. Exit and
//! cancellation run the handlers still pushed, newest first; upthread does not unwind
//! the stack, so the buffers (and everything else on it) are still in place while they
//! run.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use libc::{c_int, c_void};

use crate::record::{self, Thread};
use crate::signal::Delivery;

/// `PTHREAD_CANCELED`: the exit value of a cancelled thread, `(void *)-1`.
pub const PTHREAD_CANCELED: *mut c_void = usize::MAX as *mut c_void;
/// `PTHREAD_CANCEL_ENABLE`.
pub const PTHREAD_CANCEL_ENABLE: c_int = 0;
/// `PTHREAD_CANCEL_DISABLE`.
pub const PTHREAD_CANCEL_DISABLE: c_int = 1;
/// `PTHREAD_CANCEL_DEFERRED`.
pub const PTHREAD_CANCEL_DEFERRED: c_int = 0;
/// `PTHREAD_CANCEL_ASYNCHRONOUS`.
pub const PTHREAD_CANCEL_ASYNCHRONOUS: c_int = 1;

/// `struct upthread_cleanup_buffer`: storage for one pushed cleanup handler, owned by
/// the C macros (module docs). 32 bytes, 8-aligned; its fields are upthread's:
///
/// ```c
/// struct upthread_cleanup_buffer {
///     void (*routine)(void *);
///     void *arg;
///     struct upthread_cleanup_buffer *prev;
///     void *reserved;
/// };
/// ```
#[repr(C)]
pub struct CleanupBuffer {
    routine: Option<extern "C" fn(*mut c_void)>,
    arg: *mut c_void,
    prev: *mut CleanupBuffer,
    reserved: *mut c_void,
}

const _: () = assert!(core::mem::size_of::<CleanupBuffer>() == 32);

/// A thread's cancellation state.
pub(crate) struct CancelState {
    pending: AtomicBool,
    disabled: AtomicBool,
    asynchronous: AtomicBool,
    /// The newest pushed cleanup buffer; touched only by the thread itself.
    cleanup_top: UnsafeCell<*mut CleanupBuffer>,
}

impl CancelState {
    pub(crate) const fn new() -> CancelState {
        CancelState {
            pending: AtomicBool::new(false),
            disabled: AtomicBool::new(false),
            asynchronous: AtomicBool::new(false),
            cleanup_top: UnsafeCell::new(core::ptr::null_mut()),
        }
    }

    fn should_act(&self) -> bool {
        self.pending.load(Ordering::Acquire) && !self.disabled.load(Ordering::Relaxed)
    }
}

/// Acts on a pending cancel: exits with `PTHREAD_CANCELED`. The exit path runs the
/// cleanup handlers and key destructors once; cancellation points inside them do nothing.
fn act_if_pending(t: &Thread) {
    if t.cancel.should_act() && !t.exiting.load(Ordering::Acquire) {
        crate::thread::exit_current(t, PTHREAD_CANCELED);
    }
}

/// A cancellation point, for the C API's blocking calls and the system calls the C
/// library exports: call it before a call that may block and after it returns. Delivers pending
/// uthread-directed signals, then, if the calling thread has a pending cancel and
/// cancellation enabled, exits it with [`PTHREAD_CANCELED`] (never returning). Does
/// nothing outside upthread threads.
pub fn testcancel() {
    if let Some(t) = Thread::current() {
        crate::signal::deliver_and_take(t);
        act_if_pending(t);
    }
}

/// After an interrupted wait, on the interrupted thread: runs the handlers of pending
/// signals, then acts on a pending cancel (never returning then). Returns what signal
/// deliveries did since the cancellation point on entry to the wait (some may have run
/// inside it, when the woken thread was scheduled), for the wait to decide whether to go
/// on or fail with `EINTR`.
pub(crate) fn after_interrupt() -> Delivery {
    let Some(t) = Thread::current() else { return Delivery::default() };
    let d = crate::signal::deliver_and_take(t);
    act_if_pending(t);
    d
}

/// The interrupt policy upthread installs in `parlib_syscalls`: after an interrupted
/// readiness wait or sleep, run pending handlers and act on a cancel; then go on unless
/// a handler ran (and, for restartable calls, one was installed without `SA_RESTART`).
pub(crate) fn syscall_interrupt_policy(restartable: bool) -> bool {
    let d = after_interrupt();
    !d.handled || (restartable && !d.no_restart)
}

/// Where an asynchronous-type thread also acts (module docs): after a yield.
#[inline]
pub(crate) fn async_point(t: &Thread) {
    if t.cancel.asynchronous.load(Ordering::Relaxed) {
        act_if_pending(t);
    }
}

/// Step 1 of exit: runs the pushed cleanup handlers, newest first, on the exiting thread.
pub(crate) fn run_cleanup_handlers(t: &Thread) {
    loop {
        // SAFETY: the calling thread's own list; buffers live in its frames, which are
        // all still in place (nothing unwinds).
        let top = unsafe { *t.cancel.cleanup_top.get() };
        if top.is_null() {
            return;
        }
        // SAFETY: as above.
        let b = unsafe { &*top };
        // SAFETY: popped before the call, so a handler that exits again does not rerun it.
        unsafe { *t.cancel.cleanup_top.get() = b.prev };
        if let Some(f) = b.routine {
            f(b.arg);
        }
    }
}

/// `pthread_cancel`: asks `thread` to cancel (module docs). Returns 0 or `ESRCH` (not a
/// live thread). A thread cancelling itself with asynchronous type and cancellation
/// enabled exits at once.
#[no_mangle]
pub extern "C" fn upthread_cancel(thread: crate::upthread_t) -> c_int {
    let post = |t: &Thread| {
        t.cancel.pending.store(true, Ordering::SeqCst);
        !t.cancel.disabled.load(Ordering::SeqCst) // wake it from a cancellation point
    };
    record::post(thread as usize, post, async_point)
}

/// `pthread_testcancel`: a cancellation point.
#[no_mangle]
pub extern "C" fn upthread_testcancel() {
    testcancel();
}

/// `pthread_setcancelstate`: `PTHREAD_CANCEL_ENABLE` or `PTHREAD_CANCEL_DISABLE`; the
/// previous state goes to `*old` if not null. Returns 0, `EINVAL` (another value) or
/// `EPERM` (not called from an upthread thread).
///
/// # Safety
/// `old` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn upthread_setcancelstate(state: c_int, old: *mut c_int) -> c_int {
    if state != PTHREAD_CANCEL_ENABLE && state != PTHREAD_CANCEL_DISABLE {
        return libc::EINVAL;
    }
    let Some(t) = Thread::current() else { return libc::EPERM };
    let was = t.cancel.disabled.swap(state == PTHREAD_CANCEL_DISABLE, Ordering::AcqRel);
    if !old.is_null() {
        // SAFETY: non-null, and writable by the caller's contract.
        unsafe { *old = if was { PTHREAD_CANCEL_DISABLE } else { PTHREAD_CANCEL_ENABLE } };
    }
    async_point(t);
    0
}

/// `pthread_setcanceltype`: `PTHREAD_CANCEL_DEFERRED` or `PTHREAD_CANCEL_ASYNCHRONOUS`
/// (see the module docs for what asynchronous means here); the previous type goes to
/// `*old` if not null. Returns 0, `EINVAL` (another value) or `EPERM` (not called from
/// an upthread thread).
///
/// # Safety
/// `old` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn upthread_setcanceltype(kind: c_int, old: *mut c_int) -> c_int {
    if kind != PTHREAD_CANCEL_DEFERRED && kind != PTHREAD_CANCEL_ASYNCHRONOUS {
        return libc::EINVAL;
    }
    let Some(t) = Thread::current() else { return libc::EPERM };
    let was = t.cancel.asynchronous.swap(kind == PTHREAD_CANCEL_ASYNCHRONOUS, Ordering::AcqRel);
    if !old.is_null() {
        // SAFETY: non-null, and writable by the caller's contract.
        unsafe { *old = if was { PTHREAD_CANCEL_ASYNCHRONOUS } else { PTHREAD_CANCEL_DEFERRED } };
    }
    async_point(t);
    0
}

/// Pushes a cleanup handler (the body of the `pthread_cleanup_push` macro). Does nothing
/// for a null `buf` or outside upthread threads.
///
/// # Safety
/// `buf` must be null or a buffer that stays in place, untouched, until the matching
/// [`upthread_cleanup_pop_impl`].
#[no_mangle]
pub unsafe extern "C" fn upthread_cleanup_push_impl(
    buf: *mut CleanupBuffer,
    routine: Option<extern "C" fn(*mut c_void)>,
    arg: *mut c_void,
) {
    let Some(t) = Thread::current() else { return };
    if buf.is_null() {
        return;
    }
    // SAFETY: the calling thread's own list, and a buffer the caller gives us.
    unsafe {
        let top = t.cancel.cleanup_top.get();
        buf.write(CleanupBuffer { routine, arg, prev: *top, reserved: core::ptr::null_mut() });
        *top = buf;
    }
}

/// Pops the cleanup handler pushed with `buf` (the body of the `pthread_cleanup_pop`
/// macro) and runs it if `execute` is non-zero. If `buf` is not the newest, the newer
/// ones (left behind by a `return` or `goto` out of their block) are dropped unrun. Does
/// nothing if `buf` is not pushed.
///
/// # Safety
/// `buf` must be null or a buffer given to [`upthread_cleanup_push_impl`].
#[no_mangle]
pub unsafe extern "C" fn upthread_cleanup_pop_impl(buf: *mut CleanupBuffer, execute: c_int) {
    let Some(t) = Thread::current() else { return };
    // SAFETY: the calling thread's own list; pushed buffers are still in place.
    unsafe {
        let top = t.cancel.cleanup_top.get();
        let mut p = *top;
        while !p.is_null() && p != buf {
            p = (*p).prev;
        }
        if p.is_null() {
            return;
        }
        *top = (*buf).prev;
        if execute != 0 {
            if let Some(f) = (*buf).routine {
                f((*buf).arg);
            }
        }
    }
}
