//! Preemption: from a clock's expiry to a call switched out at a safe point.
//!
//! | thread | expiry | safe point found by | lands in |
//! |---|---|---|---|
//! | plain | the thread's timer sends the notification signal; the vcore layer's handler runs [`on_signal`] | `on_signal`: depth 0, PC outside libc and the loader ([`at_safe_code`]), else a retry 50 µs later | [`preempt_trampoline`] → [`on_preempt`], all registers saved on the call's stack |
//! | uthread | the alarm's callback [`on_alarm`] runs in vcore context | the uthread layer's interruption rules (the same ones) | [`call_at_safe_point`] → [`on_pushed`], on the uthread's (call's) stack |
//!
//! Both end in [`preempt_here`], which re-checks what is due (an expiry can be stale: a
//! lazily armed clock, a call that returned meanwhile) and suspends the outermost call
//! whose deadline has passed and which, with every call inside it, is at depth 0. A
//! preemption that meets depth above 0 is *deferred*: the depth's return to 0 acts on it
//! ([`check_now`]).
//!
//! [`at_safe_code`]: parlib_vcore::notif::at_safe_code
//! [`preempt_trampoline`]: parlib_vcore::arch::preempt_trampoline
//! [`call_at_safe_point`]: parlib_uthread::call_at_safe_point

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use parlib_alarms::AlarmWaiter;
use parlib_vcore::arch;
use parlib_vcore::futex::monotonic_ns;
use parlib_vcore::notif::{self, RETRY_NS};

use crate::call::{self, CallCore, Exit};
use crate::error::Error;
use crate::thread::{self, Clock, ThreadState, INTERNAL, NEVER, TIMER_TAG};

static PREEMPTIONS: AtomicU64 = AtomicU64::new(0);
static DEFERRED_UNSAFE: AtomicU64 = AtomicU64::new(0);
static DEFERRED_DEPTH: AtomicU64 = AtomicU64::new(0);

/// Process-wide counts of what preemption did, for diagnostics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Calls suspended because a deadline passed.
    pub preemptions: u64,
    /// Expiries that met a plain thread in unsafe code (libc, the loader, a
    /// `restart_syscall`) and were retried later. (On uthreads the vcore layer does the
    /// same, and counts nothing here.)
    pub deferred_unsafe: u64,
    /// Expiries that met a [`NoPreempt`](crate::NoPreempt) guard or the machinery itself
    /// and were acted on when the depth came back to 0.
    pub deferred_depth: u64,
}

/// The counts so far.
pub fn stats() -> Stats {
    Stats {
        preemptions: PREEMPTIONS.load(Ordering::Relaxed),
        deferred_unsafe: DEFERRED_UNSAFE.load(Ordering::Relaxed),
        deferred_depth: DEFERRED_DEPTH.load(Ordering::Relaxed),
    }
}

/// Installs the plain-thread hook and the trampoline's target, once.
pub(crate) fn install() -> Result<(), Error> {
    static DONE: OnceLock<Result<(), Error>> = OnceLock::new();
    DONE.get_or_init(|| {
        arch::set_preempt_target(on_preempt);
        notif::set_thread_hook(on_signal).map_err(|e| Error::Resource { what: "sigaction", errno: e.errno() })
    })
    .clone()
}

/// The notification signal on a plain thread. Async-signal-safe: it reads the clock
/// through the vDSO, touches only this thread's state and makes raw system calls.
fn on_signal(info: &libc::siginfo_t, uc: &mut libc::ucontext_t) {
    // SAFETY: for SI_TIMER the value is the timer's.
    if info.si_code != libc::SI_TIMER || unsafe { info.si_value().sival_ptr } as usize != TIMER_TAG {
        return;
    }
    let Some(st) = thread::existing_plain() else { return };
    let Clock::Plain { timer, armed, .. } = &st.clock else { return };
    armed.set(NEVER); // it fired
    if st.innermost.get().is_null() {
        return; // a lazily armed timer outliving the last call
    }
    let eff = st.eff.load(Ordering::Relaxed);
    let now = monotonic_ns();
    if eff > now {
        armed.set(eff);
        let _ = timer.arm_at(eff);
        return;
    }
    if st.depth.get() != 0 {
        st.deferred.set(true);
        DEFERRED_DEPTH.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let sp = uc.uc_mcontext.gregs[libc::REG_RSP as usize] as usize;
    // SAFETY: the innermost call is alive while linked.
    let on_call_stack = unsafe { &*st.innermost.get() }.stack_range.contains(&sp);
    if !notif::at_safe_code(uc) || !on_call_stack {
        DEFERRED_UNSAFE.fetch_add(1, Ordering::Relaxed);
        armed.set(now + RETRY_NS as u64);
        let _ = timer.arm_at(now + RETRY_NS as u64);
        return;
    }
    st.depth.set(INTERNAL);
    // SAFETY: the interrupted stack is the call's own, with room below (a call's stack
    // is far larger than an interruption frame; an overflow faults on its guard page).
    unsafe { arch::redirect_to(uc, arch::preempt_trampoline) };
}

/// Where the trampoline lands on a plain thread, every register saved below.
unsafe extern "C" fn on_preempt() {
    preempt_here(thread::existing_plain().expect("a redirected thread has timed-call state"));
}

/// The alarm of a uthread's chain expired (vcore context, any vcore).
pub(crate) fn on_alarm(w: &AlarmWaiter) {
    // SAFETY: `data` is the leaked state the alarm belongs to.
    let st = unsafe { &*(w.data() as *const ThreadState) };
    let Clock::Uthread { owner, u, .. } = &st.clock else { return };
    let _g = owner.lock();
    if let Some(u) = NonNull::new(u.load(Ordering::Relaxed)) {
        // SAFETY: the owner is set only while its chain runs, and cleared under this
        // lock before the uthread can exit; `on_pushed` re-checks everything.
        unsafe { parlib_uthread::call_at_safe_point(u, on_pushed) };
    }
}

/// Pushed onto a uthread at its next safe point by [`on_alarm`].
unsafe extern "C" fn on_pushed(_: usize) {
    let Some(st) = thread::existing() else { return };
    if st.innermost.get().is_null() {
        return;
    }
    if st.depth.get() != 0 {
        st.deferred.set(true);
        DEFERRED_DEPTH.fetch_add(1, Ordering::Relaxed);
        return;
    }
    st.depth.set(INTERNAL);
    preempt_here(st);
}

/// A deferred preemption, acted on where the depth returned to 0: a call site, where a
/// switch is as safe as a `pause`.
pub(crate) fn check_now(st: &'static ThreadState) {
    if st.innermost.get().is_null() {
        return;
    }
    st.depth.set(INTERNAL);
    preempt_here(st);
}

/// Suspends the outermost expired call that may be preempted (module docs), or re-arms
/// the clock if none is due. Entered at depth `INTERNAL`; leaves at 0, the depth of the
/// interrupted code.
fn preempt_here(st: &'static ThreadState) {
    let now = monotonic_ns();
    match victim(st, now) {
        Some(x) => {
            PREEMPTIONS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: `x` is in this thread's chain and the depth is INTERNAL.
            unsafe { call::suspend(st, x, Exit::TimedOut) };
            // Resumed, perhaps on another thread.
            thread::current().set_depth(0);
        }
        None => {
            if let Clock::Plain { armed, .. } = &st.clock {
                armed.set(NEVER); // re-arm even if it "is": the expiry was consumed
            }
            let _ = st.ensure_armed();
            st.set_depth(0);
        }
    }
}

/// The outermost call whose deadline has passed and which, with every call inside it,
/// has no preemption-off guard. The innermost call's depth is the caller's (0); each
/// further call's is what its inner call saved as its launcher's.
fn victim(st: &ThreadState, now: u64) -> Option<NonNull<CallCore>> {
    let mut found = None;
    let mut c = NonNull::new(st.innermost.get());
    while let Some(call) = c {
        // SAFETY: calls in the chain are alive.
        let core = unsafe { call.as_ref() };
        if core.deadline.get() <= now {
            found = Some(call);
        }
        if core.launcher_depth.get() != 0 {
            break; // its launcher holds a guard: nothing further out may stop
        }
        c = NonNull::new(core.parent.get());
    }
    found
}
