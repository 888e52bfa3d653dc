//! # parlib-timed: preemptible timed calls
//!
//! A *timed call* runs a function synchronously on the calling thread, on a stack of its
//! own, for at most a budget of time (`DESIGN.md` §10, after Boucher et al.,
//! "Lightweight Preemptible Functions", USENIX ATC 2020). If the budget runs out first,
//! the launcher gets a [`Continuation`] back and decides: [`resume`](Continuation::resume)
//! it later, or [`cancel`](Continuation::cancel) it.
//!
//! ```
//! # // As a user of the facade crate `parlib` writes it; here, its paths mapped.
//! # mod parlib { pub(crate) use parlib_timed as timed; }
//! use parlib::timed::{self, Outcome};
//! use std::time::Duration;
//!
//! let mut out = timed::launch(Duration::from_micros(200), || {
//!     (0..50_000_000u64).fold(0u64, |h, i| h.rotate_left(5) ^ i)
//! })
//! .unwrap();
//! let value = loop {
//!     match out {
//!         Outcome::Completed(v) => break v,
//!         Outcome::Timeout(c) | Outcome::Paused(c) => out = c.resume(Duration::from_micros(200)).unwrap(),
//!     }
//! };
//! assert_eq!(value, (0..50_000_000u64).fold(0u64, |h, i| h.rotate_left(5) ^ i));
//! ```
//!
//! ## Where it sits
//!
//! ```text
//!   applications, kweb        launch / resume / cancel handlers
//!   parlib-timed              this crate
//!   parlib-alarms             a uthread's deadline (EV_ALARM)
//!   parlib-uthread            call_at_safe_point: preempting a uthread where it stands
//!   parlib-vcore              the notification signal, safe points, the full-state trampoline, timers
//! ```
//!
//! ## Map
//!
//! | module | what |
//! |---|---|
//! | `api` | [`launch`], [`Launch`], [`Outcome`], [`Continuation`], [`pause`], [`checkpoint`], [`NoPreempt`] |
//! | `call` | a call's record and stack; the switches between launcher and call (the protocol) |
//! | `thread` | per-thread state: the chain of running calls, the depth, the clock |
//! | `preempt` | from a clock's expiry to a call switched out at a safe point; [`stats`] |
//! | `capi` | the C API (`parlib_timed_*`, `include/parlib_timed.h`) |
//!
//! ## Preemption lands only at safe points
//!
//! Preemption uses the same rule as every parlib interruption (DESIGN §5): never inside
//! libc, the dynamic loader, libm, libgcc_s or libstdc++ (their text ranges), never at a
//! `restart_syscall`, never inside this crate's own machinery and never inside a
//! [`NoPreempt`] guard. A preemption that arrives there is retried 50 µs later
//! (`RETRY_NS`), or acted on when the guard ends. That is what makes a call safe to
//! suspend without libinger's per-call copies of every library: no non-reentrant library
//! state is ever left half-updated by a suspended call.
//!
//! On a plain thread, the clock is a POSIX timer aimed at the thread that sends parlib's
//! notification signal (`SIGUSR1`, shared with the events layer: no signal of the
//! program's is taken); on a uthread it is an alarm (`parlib-alarms`), and the vcore goes
//! on running other uthreads while the call is suspended.
//!
//! ## What a cancel reclaims
//!
//! An interrupted instruction has no landing pad, so a call cannot be unwound from where
//! it was preempted. A cancel therefore resumes the call, for at most [`CANCEL_GRACE`],
//! until its next *cancellation point*: [`checkpoint`], [`pause`] or the end of the
//! outermost [`NoPreempt`] guard. There it unwinds: every destructor on its stack runs,
//! so its heap memory is freed and the locks it holds are released
//! ([`Cancelled::Unwound`]). A call that reaches no cancellation point in time is
//! abandoned ([`Cancelled::Abandoned`]): its stack (and those of calls it launched) is
//! reclaimed, and what its frames owned on the heap is leaked. A call is never abandoned
//! while it holds a `parlib-sync` mutex or rwlock (the layer counts each thread's holds,
//! [`parlib_sync::held_locks`]): the cancel grants it further grace periods until it
//! releases the lock, so no cancel leaves one held. Locks of other kinds (`std::sync`,
//! glibc's) are not tracked: a call abandoned while holding one leaves it held.
//!
//! ## Blocking inside a call
//!
//! A call on a uthread that blocks in a `parlib-syscalls` wrapper or a `parlib-sync` wait
//! blocks only its uthread. Its deadline does not interrupt the wait: the call times out
//! at the first safe point after the wait ends (interrupting a wait would turn every
//! blocking call in the call into a possible `EINTR`, which code written for threads
//! does not expect). On a plain thread, a blocking system call blocks the thread, and
//! the timer's signal restarts it (`SA_RESTART`) or, for calls Linux never restarts
//! (`poll`, `epoll_wait`, `select`, `nanosleep`, ...), makes it return `EINTR`.
//!
//! ## Caveats
//!
//! * A [`Continuation`] is `!Send` by default: the call runs on its launcher's TLS.
//!   [`Launch::own_tls`] gives a call a TLS block of its own ([`OwnTls`]), and its
//!   continuation is `Send`. Inside such a call, `parlib-syscalls` calls that a uthread
//!   offloads to its backing thread run on the uthread's TLS, not the call's.
//! * The preemption timer is armed lazily and never disarmed (a syscall would cost more
//!   than a launch), so a thread may receive one notification signal up to one budget
//!   after its last call returned; see "Blocking inside a call" for what that does to a
//!   system call in progress.
//! * Uthreads need TLS of their own ([`TlsMode::Backed`](parlib_uthread::TlsMode)).
//! * `launch` refuses to run in vcore context or in a signal handler on an alternate
//!   signal stack; a handler on the thread's own stack cannot be recognised.
//!
//! ## C API
//!
//! `include/parlib_timed.h` declares it; `libupthread` (`upthread/clib`) exports it. A
//! C function `void *fn(void *)` is launched with a budget in microseconds and gives a
//! handle that is resumed, read and finally freed by `parlib_timed_cancel`:
//!
//! ```c
//! parlib_timed_call_t *c;
//! int rc = parlib_timed_launch(&c, fn, arg, 200);
//! while (rc == 0 && !parlib_timed_is_complete(c))
//!     rc = parlib_timed_resume(c, 200);
//! void *value;
//! parlib_timed_result(c, &value);
//! parlib_timed_cancel(c, NULL);
//! ```
//!
//! Every function returns 0 or an error number (`EINVAL` for bad input, `EPERM` where no
//! call can run) and never unwinds into C. Cancellation cannot unwind C frames either:
//! `parlib_timed_pause` and `parlib_timed_no_preempt_end` return
//! `PARLIB_TIMED_CANCELLING` instead, `parlib_timed_cancelling` stands for
//! [`checkpoint`], and a call that returns when told is reported as
//! [`Cancelled::Returned`]. The `capi` module's docs have the handle's state table.

#![warn(missing_docs)]

mod api;
mod call;
mod capi;
mod error;
mod preempt;
mod thread;

pub use api::{
    checkpoint, in_call, launch, no_preempt, pause, Cancelled, Continuation, Launch, NoPreempt, Outcome,
    OwnTls, Paused, SharedTls, TlsKind, CANCEL_GRACE, DEFAULT_STACK_SIZE, MAX_BUDGET,
};
pub use error::Error;
pub use preempt::{stats, Stats};
