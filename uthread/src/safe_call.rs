//! Running a function *on* a uthread at its next safe point: the user-level analogue of a
//! thread-directed signal. Services above this layer use it to act inside a uthread that
//! may be running elsewhere, blocked or queued; parlib-timed preempts its timed calls
//! with it.
//!
//! A safe point is where an interruption may land (DESIGN §5): notifications enabled,
//! the PC outside libc and the loader. An *interrupted* uthread stands at one, so its
//! saved context can take the call at once ([`arch::push_call`]); a uthread switched out
//! by a yield or a block stands inside this library and cannot.
//!
//! # The protocol, step by step
//!
//! Requester R asks for `f` on uthread U:
//! 1. R stores `f` in U's `safe_call` word (SeqCst). A second request before the first is
//!    acted on replaces it: callers make `f` check what is due, so one call serves both.
//! 2. If R runs in vcore context on the vcore whose interrupted current uthread is U, it
//!    pushes the call onto U's saved context itself and is done. (In vcore context the
//!    current uthread was interrupted, unless its resume met a pending notification and
//!    re-entered `vcore_entry`: then its context is a yield's, and step 4 serves it.)
//! 3. Else R looks for a vcore whose current uthread is U and notifies it. That vcore
//!    enters `vcore_entry`, and step 4 of the entry ([`push_pending`]) pushes the call
//!    onto U's interrupted context before resuming it.
//! 4. A vcore that resumes U ([`on_resume`], after leaving vcore context) and finds the
//!    word set notifies itself: the notification interrupts U at its next safe point,
//!    and step 3's entry pushes the call.
//!
//! Why no request is lost: R stores the word and then reads each vcore's current uthread
//! (with a full fence between); a resuming vcore stores its current uthread, makes the
//! locked store that leaves vcore context (a full barrier on x86-64), then reads the
//! word. One of the two sees the other. A U that is neither current anywhere nor being
//! resumed is found by step 4 when it next runs.
//!
//! The call runs on U's stack, with U's TLS and disable depth (0: it was interrupted at a
//! safe point), before U continues where it was interrupted; it may switch U's stack
//! (that is how a timed call is preempted) and must leave the disable depth as it found it.

use core::ptr::NonNull;
use core::sync::atomic::{fence, Ordering};

use parlib_vcore as vcore;
use parlib_vcore::arch;

use crate::uthread::Uthread;

/// Asks uthread `u` to call `f(0)` on its own stack at its next safe point, before it
/// goes on (see the module docs). Callable from a uthread, from vcore context (an event
/// or alarm handler) or from a plain thread; it never blocks.
///
/// # Safety
/// `u` must stay a live uthread until it has run `f` or exited. `f` must tolerate being
/// called when what prompted it is gone (a replaced or stale request).
pub unsafe fn call_at_safe_point(u: NonNull<Uthread>, f: unsafe extern "C" fn(usize)) {
    // SAFETY: the caller's contract: the record is alive.
    let uth = unsafe { u.as_ref() };
    uth.safe_call.store(f as usize, Ordering::SeqCst); // step 1
    if let Some(vc) = vcore::this() {
        if vc.in_vcore_context() && vc.current() == u.as_ptr().cast() {
            // Step 2. SAFETY: in vcore context this vcore owns its current uthread's saved
            // context; `push_pending` pushes only onto an interrupted one.
            unsafe { push_pending(uth) };
            return;
        }
    }
    fence(Ordering::SeqCst);
    for id in 0..vcore::max_vcores() {
        // Step 3.
        if vcore::get(id).is_ok_and(|vc| vc.current() == u.as_ptr().cast()) {
            let _ = vcore::notify(id);
        }
    }
}

/// Step 3's entry: pushes the requested call, if any, onto `u`'s saved context if that
/// is an interrupted one. (A current uthread in vcore context may also hold a context
/// saved by a yield: one whose resume found a notification pending and re-entered
/// `vcore_entry`. Step 4 serves it.)
///
/// # Safety
/// In vcore context, with `u` this vcore's current uthread.
pub(crate) unsafe fn push_pending(u: &Uthread) {
    if !u.ctx_interrupted.load(Ordering::Relaxed) || u.safe_call.load(Ordering::Relaxed) == 0 {
        return;
    }
    let f = u.safe_call.swap(0, Ordering::SeqCst);
    if f != 0 {
        // SAFETY: a non-zero word is a function stored by `call_at_safe_point`; the
        // context is interrupted (a safe point), owned by this vcore, and its stack has
        // room below (an interruption needs far more than the 80 bytes pushed).
        unsafe {
            let f: unsafe extern "C" fn(usize) = core::mem::transmute(f);
            arch::push_call(&mut *u.ctx.get(), f, 0);
        }
    }
}

/// Step 4: `u` was just resumed by this vcore, outside vcore context.
#[inline]
pub(crate) fn on_resume(u: &Uthread) {
    if u.safe_call.load(Ordering::SeqCst) != 0 {
        vcore::notify_self();
    }
}
