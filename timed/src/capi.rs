//! The C API: `parlib_timed_*` functions over [`launch`](crate::launch),
//! [`Continuation`], [`pause`](crate::pause) and the preemption-off depth, declared in
//! `include/parlib_timed.h`. `libupthread` (`upthread/clib`) links this crate and
//! exports them.
//!
//! A C function `void *fn(void *)` runs as the call; a launch that does not complete
//! gives the caller a handle (`parlib_timed_call_t *`, a [`TimedCall`] on the heap) to
//! resume it, read its value, or cancel it. Every handle, complete or not, is freed by
//! `parlib_timed_cancel`.
//!
//! ## A handle's states
//!
//! | status | reached by | `resume` | `result` | `cancel` |
//! |---|---|---|---|---|
//! | `COMPLETED` | `fn` returned in a launch or resume | `EINVAL` | 0, the value | frees; `CANCEL_NONE` |
//! | `TIMED_OUT`, `PAUSED` | the budget ran out; `fn` called `parlib_timed_pause` | runs it | `EAGAIN` | cancels, frees |
//! | `RUNNING` | a resume or cancel of it is running it (seen only by code it runs) | `EBUSY` | `EAGAIN` | `EBUSY` |
//! | `FAILED` | a resume failed after taking the call (a timer could not be armed; a panic), which cancelled it | `EINVAL` | `EAGAIN` | frees; `CANCEL_NONE` |
//!
//! `RUNNING` exists because the handle may reach the call itself (through `arg`): the
//! handle must outlive the resume or cancel that runs the call, so a cancel from inside
//! is refused rather than freeing it underneath.
//!
//! ## Conventions
//!
//! * **Results** are 0 or an error number (returned, never `errno`), as upthread's C
//!   functions do; the exceptions return what they say (`in_call`, `cancelling`,
//!   `is_complete`, `status`, `pause`).
//! * **Bad input** is `EINVAL`: null pointers, a null `fn`, a budget of 0 or over
//!   `PARLIB_TIMED_MAX_BUDGET_US`. Launching where no call can run is the [`Error`]'s
//!   [`errno`](Error::errno) (`EPERM` in vcore context, in a signal handler, on a
//!   uthread without TLS). A resume refused before it runs the call leaves it suspended.
//! * **Threads.** A handle belongs to the thread (or uthread) that launched it, as a
//!   [`Continuation`] does: resuming or cancelling it elsewhere is `EPERM`. The check
//!   compares timed-call state, so it is best effort (a thread that exited and a new one
//!   given the same state's address would pass).
//! * **No unwinding into C.** A panic is caught at every boundary and returned as `EIO`
//!   (a bug in this crate: `fn` is C and cannot panic). A cancellation point that would
//!   unwind the call in Rust ([`pause`](crate::pause), the end of a preemption-off
//!   section) returns `PARLIB_TIMED_CANCELLING` (-1) instead: `fn` should return soon,
//!   and the cancel then reports `CANCEL_RETURNED`. `parlib_timed_cancelling` is the C
//!   form of [`checkpoint`](crate::checkpoint), which is not exported (it unwinds). `fn`
//!   itself must not unwind or `longjmp` out of the call.

use core::cell::Cell;
use core::ptr;
use core::time::Duration;
use std::panic::{catch_unwind, AssertUnwindSafe};

use libc::{c_int, c_void};

use crate::api::{self, Cancelled, Continuation, Outcome, Paused, CANCEL_GRACE};
use crate::call::CancelToken;
use crate::error::Error;
use crate::thread::{self, ThreadState};

// Handle statuses (`parlib_timed_status`); the header defines the same values.
const COMPLETED: c_int = 1;
const TIMED_OUT: c_int = 2;
const PAUSED: c_int = 3;
const RUNNING: c_int = 4;
const FAILED: c_int = 5;

// What a cancel did (`*how`).
const CANCEL_NONE: c_int = 0;
const CANCEL_UNWOUND: c_int = 1;
const CANCEL_RETURNED: c_int = 2;
const CANCEL_PANICKED: c_int = 3;
const CANCEL_ABANDONED: c_int = 4;

/// Returned by `pause` and `no_preempt_end` instead of unwinding a cancelled call.
const CANCELLING: c_int = -1;

/// The C function of a call.
type CallFn = unsafe extern "C" fn(*mut c_void) -> *mut c_void;

/// `fn`'s argument and result, which `launch` wants `Send` (a call on a uthread may go
/// on on another vcore's task). They are C pointers: C has no `Send`, and whether what
/// they point to may be used there is the C caller's to know, as for `pthread_create`.
#[derive(Clone, Copy)]
struct Value(*mut c_void);

// SAFETY: the pointer is only passed along, to `fn` and back to the caller, never
// dereferenced here; what it points to is the C caller's to share correctly.
unsafe impl Send for Value {}

/// Runs the C function: the whole body of a call.
///
/// # Safety
/// `f` must be safe to call with `arg`, and must not unwind.
unsafe fn call_c(f: CallFn, arg: Value) -> Value {
    // SAFETY: the caller's contract (`parlib_timed_launch`'s).
    Value(unsafe { f(arg.0) })
}

/// `parlib_timed_call_t`: one launched call, and what is known of it (module docs, "A
/// handle's states"). Only shared references are made to it: the call itself may read
/// it while a resume runs it.
pub struct TimedCall {
    /// The suspended call (`TIMED_OUT`, `PAUSED`); `None` otherwise.
    cont: Cell<Option<Continuation<Value>>>,
    status: Cell<c_int>,
    /// `fn`'s result once `COMPLETED`.
    value: Cell<*mut c_void>,
    /// The timed-call state of the thread that launched it.
    owner: *const ThreadState,
}

impl TimedCall {
    /// Records how a launch or resume ended.
    fn settle(&self, o: Outcome<Value>) {
        match o {
            Outcome::Completed(v) => {
                self.value.set(v.0);
                self.status.set(COMPLETED);
            }
            Outcome::Timeout(c) => {
                self.cont.set(Some(c));
                self.status.set(TIMED_OUT);
            }
            Outcome::Paused(c) => {
                self.cont.set(Some(c));
                self.status.set(PAUSED);
            }
        }
    }

    /// Whether the caller runs on the thread (or uthread) that launched the call.
    fn owned_here(&self) -> bool {
        thread::existing().is_some_and(|st| ptr::eq(st, self.owner))
    }
}

/// A budget in microseconds, or `EINVAL` as [`launch`](crate::launch) would refuse it.
fn budget(us: u64) -> Result<Duration, c_int> {
    api::check_budget(Duration::from_micros(us)).map_err(|e| e.errno())
}

/// The error number for a panic caught at the boundary (module docs).
const CAUGHT_PANIC: c_int = libc::EIO;

/// `parlib_timed_launch`: runs `f(arg)` as a timed call with a budget of `budget_us`
/// microseconds, and stores a handle to it in `*out` (whether it completed or not).
///
/// Returns 0; `EINVAL` for a null `out` or `f`, or a budget of 0 or over
/// [`MAX_BUDGET`](crate::MAX_BUDGET); the launch's [`Error::errno`] (`EPERM`, or a resource's errno); `EIO`
/// for a caught panic. On error `*out` is null (if `out` is not).
///
/// # Safety
/// `out` must be null or writable; `f` must be safe to call with `arg` on this thread
/// and return normally (no unwinding, no `longjmp` out of it).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn parlib_timed_launch(
    out: *mut *mut TimedCall,
    f: Option<CallFn>,
    arg: *mut c_void,
    budget_us: u64,
) -> c_int {
    if out.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: non-null, and writable by the caller's contract.
    unsafe { *out = ptr::null_mut() };
    let Some(f) = f else { return libc::EINVAL };
    let budget = match budget(budget_us) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let arg = Value(arg);
    let body = move || {
        // SAFETY: `f` is safe to call with `arg` here and returns normally, by the
        // caller's contract.
        unsafe { call_c(f, arg) }
    };
    match catch_unwind(AssertUnwindSafe(|| api::launch(budget, body))) {
        Ok(Ok(o)) => {
            let h = TimedCall {
                cont: Cell::new(None),
                status: Cell::new(RUNNING),
                value: Cell::new(ptr::null_mut()),
                owner: thread::existing().map_or(ptr::null(), |st| st as *const ThreadState),
            };
            h.settle(o);
            // SAFETY: checked non-null above.
            unsafe { *out = Box::into_raw(Box::new(h)) };
            0
        }
        Ok(Err(e)) => e.errno(),
        Err(_) => CAUGHT_PANIC,
    }
}

/// `parlib_timed_resume`: continues a timed-out or paused call for at most `budget_us`
/// more microseconds; its status says how it stopped.
///
/// Returns 0; `EINVAL` for a null `c`, a budget of 0 or over [`MAX_BUDGET`](crate::MAX_BUDGET), or a call
/// that is not suspended (`COMPLETED`, `FAILED`); `EBUSY` from inside the call itself
/// (`RUNNING`); `EPERM` on another thread than the launcher's, or where no call can run.
/// These leave the call as it was. After the call was taken: a resource's errno, or `EIO`
/// for a caught panic, and the call is cancelled (`FAILED`).
///
/// # Safety
/// `c` must be null or a handle from [`parlib_timed_launch`] not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn parlib_timed_resume(c: *mut TimedCall, budget_us: u64) -> c_int {
    // SAFETY: null or a live handle, by the caller's contract.
    let Some(h) = (unsafe { c.as_ref() }) else { return libc::EINVAL };
    match h.status.get() {
        TIMED_OUT | PAUSED => {}
        RUNNING => return libc::EBUSY,
        _ => return libc::EINVAL,
    }
    let budget = match budget(budget_us) {
        Ok(b) => b,
        Err(e) => return e,
    };
    // What `Continuation::resume` checks before it runs the call; it would cancel a
    // call it refuses, so these are asked first and leave the call suspended.
    if !h.owned_here() {
        return libc::EPERM;
    }
    match thread::get_or_create() {
        Ok(st) if st.in_signal_handler() => return Error::BadContext("from a signal handler").errno(),
        Ok(_) => {}
        Err(e) => return e.errno(),
    }
    let Some(cont) = h.cont.take() else { return libc::EINVAL };
    h.status.set(RUNNING);
    // `h` stays valid meanwhile: a cancel refuses a RUNNING handle.
    match catch_unwind(AssertUnwindSafe(|| cont.resume(budget))) {
        Ok(Ok(o)) => {
            h.settle(o);
            0
        }
        Ok(Err(e)) => {
            h.status.set(FAILED);
            e.errno()
        }
        Err(_) => {
            h.status.set(FAILED);
            CAUGHT_PANIC
        }
    }
}

/// `parlib_timed_status`: `PARLIB_TIMED_COMPLETED`, `_TIMED_OUT`, `_PAUSED`, `_RUNNING`
/// or `_FAILED` (module docs, "A handle's states"); 0 for a null `c`.
///
/// # Safety
/// `c` must be null or a handle from [`parlib_timed_launch`] not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn parlib_timed_status(c: *const TimedCall) -> c_int {
    // SAFETY: null or a live handle, by the caller's contract.
    unsafe { c.as_ref() }.map_or(0, |h| h.status.get())
}

/// `parlib_timed_is_complete`: 1 if the call returned, else 0 (also for a null `c`).
///
/// # Safety
/// As for [`parlib_timed_status`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn parlib_timed_is_complete(c: *const TimedCall) -> c_int {
    // SAFETY: forwarded contract.
    c_int::from(unsafe { parlib_timed_status(c) } == COMPLETED)
}

/// `parlib_timed_result`: stores the value `fn` returned in `*value`.
///
/// Returns 0; `EINVAL` for a null `c` or `value`; `EAGAIN` if the call has not
/// completed (`*value` untouched).
///
/// # Safety
/// `c` as for [`parlib_timed_status`]; `value` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn parlib_timed_result(c: *const TimedCall, value: *mut *mut c_void) -> c_int {
    // SAFETY: null or a live handle, and null or writable, by the caller's contract.
    let (Some(h), Some(value)) = (unsafe { c.as_ref() }, unsafe { value.as_mut() }) else {
        return libc::EINVAL;
    };
    if h.status.get() != COMPLETED {
        return libc::EAGAIN;
    }
    *value = h.value.get();
    0
}

/// `parlib_timed_cancel`: [`parlib_timed_cancel_within`] with [`CANCEL_GRACE`].
///
/// # Safety
/// As for [`parlib_timed_cancel_within`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn parlib_timed_cancel(c: *mut TimedCall, how: *mut c_int) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { parlib_timed_cancel_within(c, CANCEL_GRACE.as_micros() as u64, how) }
}

/// `parlib_timed_cancel_within`: cancels the call if it is suspended
/// ([`Continuation::cancel_within`] with `grace_us` microseconds, capped at
/// [`MAX_BUDGET`](crate::MAX_BUDGET)), then frees the handle. `*how` (if `how` is not null) says what
/// happened: `PARLIB_TIMED_CANCEL_NONE` (nothing to cancel: `COMPLETED` or `FAILED`),
/// `_UNWOUND`, `_RETURNED`, `_PANICKED` or `_ABANDONED` ([`Cancelled`]).
///
/// Returns 0 (the handle is freed); `EINVAL` for a null `c`; `EBUSY` from inside the
/// call itself; `EPERM` for a suspended call on another thread than the launcher's
/// (these free nothing); `EIO` for a caught panic (the handle is freed; `*how` says
/// `_ABANDONED`).
///
/// # Safety
/// `c` must be null or a handle from [`parlib_timed_launch`] not yet freed, and is not
/// used again if this returns 0 or `EIO`; `how` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn parlib_timed_cancel_within(
    c: *mut TimedCall,
    grace_us: u64,
    how: *mut c_int,
) -> c_int {
    // SAFETY: null or a live handle, by the caller's contract.
    let Some(h) = (unsafe { c.as_ref() }) else { return libc::EINVAL };
    let (rc, what) = match h.status.get() {
        RUNNING => return libc::EBUSY,
        TIMED_OUT | PAUSED => {
            if !h.owned_here() {
                return libc::EPERM;
            }
            let cont = h.cont.take();
            h.status.set(RUNNING);
            // The handle is freed only after the call has stopped for good.
            match catch_unwind(AssertUnwindSafe(|| {
                cont.map(|k| k.cancel_within(Duration::from_micros(grace_us)))
            })) {
                Ok(Some(Cancelled::Unwound)) => (0, CANCEL_UNWOUND),
                Ok(Some(Cancelled::Returned)) => (0, CANCEL_RETURNED),
                Ok(Some(Cancelled::Panicked)) => (0, CANCEL_PANICKED),
                Ok(Some(Cancelled::Abandoned)) => (0, CANCEL_ABANDONED),
                Ok(None) => (0, CANCEL_NONE),
                Err(_) => (CAUGHT_PANIC, CANCEL_ABANDONED),
            }
        }
        _ => (0, CANCEL_NONE),
    };
    // SAFETY: made by `Box::into_raw` in `parlib_timed_launch`; its call no longer runs
    // and the caller does not use it again.
    drop(unsafe { Box::from_raw(c) });
    // SAFETY: null or writable, by the caller's contract.
    if let Some(how) = unsafe { how.as_mut() } {
        *how = what;
    }
    rc
}

/// `parlib_timed_pause`: gives up the rest of the current call's budget (its launcher
/// sees `PAUSED`) and returns when it is resumed. [`pause`](crate::pause) for C.
///
/// Returns 1 once resumed; 0 outside a call (nothing happens); `PARLIB_TIMED_CANCELLING`
/// (-1) if the call is being cancelled (at once, without pausing, if it already was):
/// return from `fn` soon; `EIO` for a caught panic.
#[unsafe(no_mangle)]
pub extern "C" fn parlib_timed_pause() -> c_int {
    if api::cancel_requested() {
        return CANCELLING;
    }
    match catch_unwind(api::pause) {
        Ok(Paused::Resumed) => 1,
        Ok(Paused::NotInCall) => 0,
        // The unwind a Rust call would take from here stops before `fn`'s frames.
        Err(p) if p.is::<CancelToken>() => CANCELLING,
        Err(_) => CAUGHT_PANIC,
    }
}

/// `parlib_timed_cancelling`: 1 if the current call (or a call enclosing it) is being
/// cancelled, else 0. The C form of [`checkpoint`](crate::checkpoint): a long loop in
/// `fn` that tests it and returns lets a cancel end the call (`CANCEL_RETURNED`).
#[unsafe(no_mangle)]
pub extern "C" fn parlib_timed_cancelling() -> c_int {
    c_int::from(api::cancel_requested())
}

/// `parlib_timed_in_call`: 1 inside a timed call, else 0. [`in_call`](crate::in_call).
#[unsafe(no_mangle)]
pub extern "C" fn parlib_timed_in_call() -> c_int {
    c_int::from(api::in_call())
}

/// `parlib_timed_no_preempt_begin`: the current call is not preempted until the matching
/// [`parlib_timed_no_preempt_end`] (sections nest; a [`NoPreempt`](crate::NoPreempt)
/// without the guard). Outside a call it does nothing.
///
/// Returns 0, or `EOVERFLOW` if sections nest more than 2^31 - 1 deep.
#[unsafe(no_mangle)]
pub extern "C" fn parlib_timed_no_preempt_begin() -> c_int {
    if api::no_preempt_raise() {
        0
    } else {
        libc::EOVERFLOW
    }
}

/// `parlib_timed_no_preempt_end`: ends the innermost section. At the end of the
/// outermost one a preemption due meanwhile happens (the call is suspended here), and it
/// is a cancellation point. Outside a call it does nothing.
///
/// Returns 0; `PARLIB_TIMED_CANCELLING` (-1) if the outermost section ended and the call
/// is being cancelled (the section is ended; return from `fn` soon); `EPERM` in a call
/// with no section open; `EIO` for a caught panic.
#[unsafe(no_mangle)]
pub extern "C" fn parlib_timed_no_preempt_end() -> c_int {
    match catch_unwind(api::no_preempt_lower) {
        Ok(Ok(true)) if api::cancel_requested() => CANCELLING,
        Ok(Ok(_)) => 0,
        Ok(Err(())) => libc::EPERM,
        Err(_) => CAUGHT_PANIC,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of `#define <name> <value>` in the header, parentheses and `UINT64_C`
    /// taken off.
    fn defined(header: &str, name: &str) -> i128 {
        let line = header
            .lines()
            .find(|l| l.split_whitespace().take(2).eq(["#define", name]))
            .unwrap_or_else(|| panic!("parlib_timed.h does not define {name}"));
        let value = line.split_whitespace().nth(2).expect("a value");
        let digits = value.trim_start_matches("UINT64_C").trim_matches(|c| c == '(' || c == ')');
        digits.parse().unwrap_or_else(|e| panic!("{name}: {value:?}: {e}"))
    }

    #[test]
    fn header_constants_are_the_ones_the_functions_return() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/parlib_timed.h");
        let h = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        let expect: [(&str, i128); 13] = [
            ("PARLIB_TIMED_MAX_BUDGET_US", crate::MAX_BUDGET.as_micros() as i128),
            ("PARLIB_TIMED_COMPLETED", COMPLETED.into()),
            ("PARLIB_TIMED_TIMED_OUT", TIMED_OUT.into()),
            ("PARLIB_TIMED_PAUSED", PAUSED.into()),
            ("PARLIB_TIMED_RUNNING", RUNNING.into()),
            ("PARLIB_TIMED_FAILED", FAILED.into()),
            ("PARLIB_TIMED_CANCEL_NONE", CANCEL_NONE.into()),
            ("PARLIB_TIMED_CANCEL_UNWOUND", CANCEL_UNWOUND.into()),
            ("PARLIB_TIMED_CANCEL_RETURNED", CANCEL_RETURNED.into()),
            ("PARLIB_TIMED_CANCEL_PANICKED", CANCEL_PANICKED.into()),
            ("PARLIB_TIMED_CANCEL_ABANDONED", CANCEL_ABANDONED.into()),
            ("PARLIB_TIMED_CANCELLING", CANCELLING.into()),
            ("PARLIB_TIMED_CANCEL_GRACE_US", CANCEL_GRACE.as_micros() as i128),
        ];
        for (name, value) in expect {
            assert_eq!(defined(&h, name), value, "{name} in parlib_timed.h");
        }
    }
}
