//! A cleanup handler around a piece of code: what the C API uses to undo its own state
//! when the calling thread exits in the middle (it is cancelled at a cancellation point,
//! or calls `upthread_exit` from a callback). upthread does not unwind a thread that
//! exits; it runs the thread's pushed cleanup handlers, newest first (`crate::cancel`),
//! so a handler is how code below a cancellation point gets to act.

use core::mem::MaybeUninit;

use libc::c_void;

use crate::cancel::{upthread_cleanup_pop_impl, upthread_cleanup_push_impl, CleanupBuffer};

/// Runs `f`; if the calling upthread thread exits inside it, `routine(arg)` runs first
/// among its cleanup handlers. Outside upthread threads it just runs `f` (nothing can
/// make a plain thread exit inside a C API call).
///
/// `arg` must stay valid for `routine` until `f` returns.
pub(super) fn on_exit_during<R>(
    routine: extern "C" fn(*mut c_void),
    arg: *mut c_void,
    f: impl FnOnce() -> R,
) -> R {
    let mut buf = MaybeUninit::<CleanupBuffer>::uninit();
    // SAFETY: `buf` stays in this frame until the matching pop below; if the thread
    // exits inside `f`, the frame is never unwound, so it is still in place when the
    // exit runs the handler.
    unsafe { upthread_cleanup_push_impl(buf.as_mut_ptr(), Some(routine), arg) };
    let r = f();
    // SAFETY: pushed above; popped without running the handler.
    unsafe { upthread_cleanup_pop_impl(buf.as_mut_ptr(), 0) };
    r
}
