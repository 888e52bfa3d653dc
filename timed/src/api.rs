//! The Rust face: [`launch`], [`Continuation`], [`pause`], [`checkpoint`], [`NoPreempt`].

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::time::Duration;

use parlib_vcore::futex::monotonic_ns;

use crate::call::{self, CallCore, CancelToken, Exit};
use crate::error::Error;
use crate::thread::{self, INTERNAL};

/// The longest budget a launch or resume accepts: a day. Anything longer is a unit
/// mistake (microseconds passed as seconds), not a budget.
pub const MAX_BUDGET: Duration = Duration::from_secs(24 * 3600);

/// Usable stack of a call unless [`Launch::stack_size`] says otherwise. Pages are
/// committed on first touch, so this costs address space, not memory; it leaves room
/// for std's panic and formatting machinery in debug builds, as uthread stacks do.
pub const DEFAULT_STACK_SIZE: usize = parlib_vcore::DEFAULT_STACK_SIZE;

/// How a launch or resume ended.
#[must_use = "a Timeout or Paused outcome holds the call; dropping it cancels the call"]
pub enum Outcome<T, K: TlsKind = SharedTls> {
    /// The call returned this value.
    Completed(T),
    /// The budget ran out first; resume the call, or drop (cancel) it.
    Timeout(Continuation<T, K>),
    /// The call gave up the rest of its budget with [`pause`].
    Paused(Continuation<T, K>),
}

mod sealed {
    pub trait Sealed {}
}

/// Which TLS a call runs on, in its type: [`SharedTls`] or [`OwnTls`].
pub trait TlsKind: sealed::Sealed + 'static {
    /// Whether calls of this kind get a TLS block of their own.
    const OWN: bool;
}

/// The call runs on its launcher's TLS: cheap, and its continuation is not `Send`.
#[derive(Debug)]
pub enum SharedTls {}

/// The call runs on a TLS block of its own ([`parlib_uthread::TlsBlock`], a parked
/// backing thread's): its `thread_local!` values, `errno` and std's thread identity are
/// its own wherever it runs, so its continuation is `Send` (if its result is) and may be
/// resumed on any thread or uthread. Launching one costs a TLS block (from a pool on
/// uthreads; a new thread, tens of µs, when the pool is empty or on plain threads).
#[derive(Debug)]
pub enum OwnTls {}

impl sealed::Sealed for SharedTls {}
impl sealed::Sealed for OwnTls {}
impl TlsKind for SharedTls {
    const OWN: bool = false;
}
impl TlsKind for OwnTls {
    const OWN: bool = true;
}

impl<T, K: TlsKind> Outcome<T, K> {
    /// Whether the call returned.
    pub fn is_complete(&self) -> bool {
        matches!(self, Outcome::Completed(_))
    }

    /// The value, if the call returned.
    pub fn completed(self) -> Option<T> {
        match self {
            Outcome::Completed(v) => Some(v),
            _ => None,
        }
    }

    /// The continuation, if the call stopped before returning.
    pub fn continuation(self) -> Option<Continuation<T, K>> {
        match self {
            Outcome::Timeout(c) | Outcome::Paused(c) => Some(c),
            Outcome::Completed(_) => None,
        }
    }
}

impl<T, K: TlsKind> core::fmt::Debug for Outcome<T, K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Outcome::Completed(_) => "Completed(..)",
            Outcome::Timeout(_) => "Timeout(..)",
            Outcome::Paused(_) => "Paused(..)",
        })
    }
}

/// A call that stopped before returning: its stack, registers and the calls it had
/// launched, suspended. [`resume`](Self::resume) continues it; [`cancel`](Self::cancel)
/// or dropping it reclaims it.
///
/// With [`SharedTls`] (the default) it is neither `Send` nor `Sync`: the call runs on its
/// launcher's TLS, so a `thread_local!` reference it holds across a preemption points
/// into the launcher's thread; resuming it anywhere else would be unsound. With
/// [`OwnTls`] the call carries its TLS along, and the continuation is `Send`.
pub struct Continuation<T, K: TlsKind = SharedTls> {
    call: NonNull<CallCore>,
    _t: PhantomData<(*mut T, K)>,
}

// SAFETY: an OwnTls call runs on its own stack and its own TLS block, both of which move
// with it; `T` (its result) and its closure are Send.
unsafe impl<T: Send> Send for Continuation<T, OwnTls> {}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// The call unwound from a cancellation point: everything it owned was dropped.
    Unwound,
    /// The call returned (its value was dropped) before reaching a cancellation point.
    Returned,
    /// The call panicked while being cancelled; the panic was dropped.
    Panicked,
    /// The call reached no cancellation point within the grace period and was
    /// abandoned: its stack is reclaimed, what it owned on the heap is leaked.
    Abandoned,
}

/// Options for a launch; [`launch`] uses the defaults.
#[derive(Debug, Clone, Copy)]
pub struct Launch<K: TlsKind = SharedTls> {
    stack_size: usize,
    _k: PhantomData<K>,
}

impl Default for Launch {
    fn default() -> Self {
        Launch { stack_size: DEFAULT_STACK_SIZE, _k: PhantomData }
    }
}

impl Launch {
    /// Default options.
    pub fn new() -> Launch {
        Launch::default()
    }

    /// Gives the call a TLS block of its own ([`OwnTls`]): its continuation is `Send`.
    pub fn own_tls(self) -> Launch<OwnTls> {
        Launch { stack_size: self.stack_size, _k: PhantomData }
    }
}

impl<K: TlsKind> Launch<K> {
    /// The call's usable stack size in bytes (rounded up to pages; at least one page).
    pub fn stack_size(mut self, bytes: usize) -> Launch<K> {
        self.stack_size = bytes;
        self
    }

    /// Runs `f` as a timed call with `budget`: see [`launch`].
    ///
    /// # Errors
    /// As for [`launch`].
    pub fn launch<F, T>(self, budget: Duration, f: F) -> Result<Outcome<T, K>, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let deadline = deadline_after(budget)?;
        let st = thread::get_or_create()?;
        if st.in_signal_handler() {
            return Err(Error::BadContext("from a signal handler"));
        }
        let c = call::new_call(st, f, self.stack_size, K::OWN)?;
        // SAFETY: a new call, owned here.
        unsafe { finish(c, call::run(st, c, deadline)) }
    }
}

/// Runs `f` synchronously on the calling thread, on a stack of its own, for at most
/// `budget`: returns [`Outcome::Completed`] with its value, or [`Outcome::Timeout`] with
/// a continuation if the budget runs out first (measured on `CLOCK_MONOTONIC` from this
/// call). A panic in `f` propagates out of `launch`, as if `f` had been called directly.
///
/// Calls nest: a call may launch calls, and a call stops when its own deadline or any
/// enclosing call's passes; a timed-out outer call keeps the inner calls running in it
/// inside its continuation.
///
/// # Errors
/// [`Error::InvalidBudget`] for a zero budget or one over [`MAX_BUDGET`];
/// [`Error::BadContext`] in vcore context or a recognisable signal handler;
/// [`Error::NoTls`] on a uthread without TLS; [`Error::Resource`] if a stack or the
/// preemption clock cannot be had.
pub fn launch<F, T>(budget: Duration, f: F) -> Result<Outcome<T>, Error>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Launch::default().launch(budget, f)
}

fn deadline_after(budget: Duration) -> Result<u64, Error> {
    Ok(monotonic_ns() + check_budget(budget)?.as_nanos() as u64)
}

/// `budget` if a launch or resume accepts it: more than zero, at most [`MAX_BUDGET`].
pub(crate) fn check_budget(budget: Duration) -> Result<Duration, Error> {
    if budget.is_zero() || budget > MAX_BUDGET {
        return Err(Error::InvalidBudget(budget));
    }
    Ok(budget)
}

/// Turns how `c` stopped into an outcome, freeing it if it is done.
///
/// # Safety
/// `c` is owned by the caller and has just stopped running (or failed to start).
unsafe fn finish<T, K: TlsKind>(
    c: NonNull<CallCore>,
    exit: Result<Exit, Error>,
) -> Result<Outcome<T, K>, Error> {
    let exit = match exit {
        Ok(e) => e,
        Err(e) => {
            // SAFETY: the call never ran, nobody else holds it.
            unsafe { call::free(c) };
            return Err(e);
        }
    };
    // SAFETY: the caller's contract.
    let core = unsafe { c.as_ref() };
    match exit {
        Exit::Returned => {
            // SAFETY: it returned, so its result is in the slot; then it is done.
            let v = unsafe { call::take_result::<T>(c) };
            // SAFETY: done, and owned here.
            unsafe { call::free(c) };
            Ok(Outcome::Completed(v))
        }
        Exit::Panicked => {
            let p = core.panic.take().expect("a panicked call has a payload");
            // SAFETY: done, and owned here.
            unsafe { call::free(c) };
            std::panic::resume_unwind(p)
        }
        Exit::Cancelled => {
            // An enclosing call is being cancelled and this one unwound with it: go on
            // unwinding the enclosing call.
            // SAFETY: done, and owned here.
            unsafe { call::free(c) };
            std::panic::resume_unwind(Box::new(CancelToken))
        }
        Exit::TimedOut => Ok(Outcome::Timeout(Continuation { call: c, _t: PhantomData })),
        Exit::Paused => Ok(Outcome::Paused(Continuation { call: c, _t: PhantomData })),
        Exit::None => unreachable!("a call switched back without saying why"),
    }
}

/// How long a cancel lets a call that was preempted mid-computation run to reach a
/// cancellation point before abandoning it. A call that checks [`checkpoint`] in its
/// loops unwinds within microseconds whatever this is. Its length is chosen to lie past
/// the next scheduler tick (4 ms at `HZ=250`, this kernel's): arming a timer *before*
/// the tick reprograms the CPU's timer hardware, which in a VM is a VM exit. Measured on
/// the Intel VM of BENCHMARKS.md, a cancel that armed 100 µs took 11.9 µs against 3.2 µs
/// with 5 ms, all of the difference in the arming.
pub const CANCEL_GRACE: Duration = Duration::from_millis(5);

impl<T, K: TlsKind> Continuation<T, K> {
    /// Continues the call for at most `budget` more.
    ///
    /// # Errors
    /// As for [`launch`].
    pub fn resume(self, budget: Duration) -> Result<Outcome<T, K>, Error> {
        let deadline = deadline_after(budget)?;
        let st = thread::get_or_create()?;
        if st.in_signal_handler() {
            return Err(Error::BadContext("from a signal handler"));
        }
        let c = self.into_raw();
        // SAFETY: a suspended call, owned here.
        let exit = unsafe { call::run(st, c, deadline) };
        match exit {
            // Not started: it stays suspended and ours.
            Err(e) => {
                drop(Continuation::<T, K> { call: c, _t: PhantomData });
                Err(e)
            }
            // SAFETY: it just stopped, and is owned here.
            ok => unsafe { finish(c, ok) },
        }
    }

    /// Cancels the call: resumes it until its next cancellation point ([`checkpoint`],
    /// [`pause`], the end of a [`NoPreempt`] guard), where it unwinds, dropping what it
    /// owns and releasing its locks; if it reaches none within [`CANCEL_GRACE`], it is
    /// abandoned (see [`Cancelled::Abandoned`]) unless it holds a `parlib-sync` lock
    /// (mutex or rwlock): then it gets further grace periods until it releases it, so a
    /// cancel never leaves such a lock held (and waits as long as the call holds one).
    pub fn cancel(self) -> Cancelled {
        self.cancel_within(CANCEL_GRACE)
    }

    /// [`cancel`](Self::cancel) with a grace period of `grace` (capped at
    /// [`MAX_BUDGET`]; zero abandons a call suspended by preemption at once).
    pub fn cancel_within(self, grace: Duration) -> Cancelled {
        let c = self.into_raw();
        // SAFETY: a suspended call, owned here.
        unsafe { cancel_raw(c, grace) }
    }

    fn into_raw(self) -> NonNull<CallCore> {
        let c = self.call;
        core::mem::forget(self);
        c
    }
}

impl<T, K: TlsKind> Drop for Continuation<T, K> {
    fn drop(&mut self) {
        // SAFETY: a suspended call, owned by this continuation.
        unsafe { cancel_raw(self.call, CANCEL_GRACE) };
    }
}

/// [`Continuation::cancel`] without the type.
///
/// # Safety
/// `c` is a suspended call owned by the caller; it is freed.
unsafe fn cancel_raw(c: NonNull<CallCore>, grace: Duration) -> Cancelled {
    // SAFETY: the caller's contract.
    let core = unsafe { c.as_ref() };
    core.cancelling.set(true);
    let mut grace = grace.min(MAX_BUDGET).as_nanos() as u64;
    let outcome = loop {
        let Ok(st) = thread::get_or_create() else { break Cancelled::Abandoned };
        // SAFETY: suspended and ours.
        match unsafe { call::run(st, c, monotonic_ns() + grace) } {
            Ok(Exit::Cancelled) => break Cancelled::Unwound,
            // Its result is dropped with the record below.
            Ok(Exit::Returned) => break Cancelled::Returned,
            Ok(Exit::Panicked) => {
                drop(core.panic.take());
                break Cancelled::Panicked;
            }
            // Holding a parlib-sync lock: abandoning it would leave the lock held for
            // good, so it gets another grace period, until it lets go.
            // Each further period is at least the default, so that it makes progress.
            Ok(Exit::TimedOut) if core.held.get() != 0 => grace = grace.max(CANCEL_GRACE.as_nanos() as u64),
            // Paused again: its `pause` unwinds when resumed.
            Ok(Exit::Paused) => {}
            _ => break Cancelled::Abandoned,
        }
    };
    if outcome == Cancelled::Abandoned {
        // SAFETY: the calls it had launched and kept running inside it are suspended
        // with it and owned by its frames, which will never run: free them too.
        unsafe { call::abandon_inner(c) };
    }
    // SAFETY: it will never run again.
    unsafe { call::free(c) };
    outcome
}

/// Gives up the rest of the current call's budget: its launcher gets
/// [`Outcome::Paused`], and this returns [`Paused::Resumed`] when the call is resumed.
/// Outside a call it does nothing and returns [`Paused::NotInCall`].
///
/// A cancellation point: if the call is cancelled while paused, this unwinds.
pub fn pause() -> Paused {
    let Some(st) = thread::existing() else { return Paused::NotInCall };
    let Some(c) = NonNull::new(st.innermost.get()) else { return Paused::NotInCall };
    let depth = st.depth.replace(INTERNAL);
    // SAFETY: `c` is this thread's innermost call and the depth is INTERNAL.
    unsafe { call::suspend(st, c, Exit::Paused) };
    thread::current().set_depth(depth);
    checkpoint();
    Paused::Resumed
}

/// What [`pause`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paused {
    /// The call was suspended, and has now been resumed.
    Resumed,
    /// The caller was not in a timed call: nothing happened.
    NotInCall,
}

/// A cancellation point: unwinds the current call if it (or an enclosing call) is being
/// cancelled; otherwise does nothing, in a few nanoseconds. Long computations in a call
/// should call it now and then, so that a cancel can reclaim what they own.
pub fn checkpoint() {
    if cancel_requested() {
        std::panic::resume_unwind(Box::new(CancelToken));
    }
}

/// Whether the caller runs inside a timed call.
pub fn in_call() -> bool {
    thread::existing().is_some_and(|st| !st.innermost.get().is_null())
}

/// Keeps the current call from being preempted while it lives (nesting: the outermost
/// guard's end counts). A preemption due meanwhile happens when the last guard ends, which
/// is also a cancellation point. Outside a call it does nothing.
pub struct NoPreempt {
    /// Whether it raised a depth (the thread had timed-call state).
    counted: bool,
    _not_send: PhantomData<*mut ()>,
}

impl NoPreempt {
    /// Starts a section the current call is not preempted in.
    pub fn new() -> NoPreempt {
        let st = thread::existing();
        if let Some(st) = st {
            st.depth.set(st.depth.get() + 1);
        }
        NoPreempt { counted: st.is_some(), _not_send: PhantomData }
    }
}

impl Default for NoPreempt {
    fn default() -> Self {
        NoPreempt::new()
    }
}

impl Drop for NoPreempt {
    fn drop(&mut self) {
        // The state of the thread running the call *now*: a call with its own TLS may have
        // paused inside the guard and been resumed on another thread, its depth with it.
        if let Some(st) = thread::existing().filter(|_| self.counted) {
            let d = st.depth.get();
            assert!(d > 0 && d < INTERNAL, "NoPreempt dropped on another thread or out of order (depth {d})");
            st.set_depth(d - 1);
            if d == 1 && !std::thread::panicking() {
                checkpoint();
            }
        }
    }
}

/// Runs `f` with preemption of the current call off (a [`NoPreempt`] around it).
pub fn no_preempt<R>(f: impl FnOnce() -> R) -> R {
    let _g = NoPreempt::new();
    f()
}

/// Whether the current call, or a call enclosing it, is being cancelled: what
/// [`checkpoint`] tests, without unwinding. For the C API, whose callers' frames cannot
/// be unwound: they are told to return instead.
pub(crate) fn cancel_requested() -> bool {
    let Some(st) = thread::existing() else { return false };
    let mut c = NonNull::new(st.innermost.get());
    while let Some(call) = c {
        // SAFETY: calls in the chain are alive.
        let core = unsafe { call.as_ref() };
        if core.cancelling.get() {
            return true;
        }
        c = NonNull::new(core.parent.get());
    }
    false
}

/// [`NoPreempt::new`] without a guard object, for the C API: raises the current call's
/// preemption-off depth. Outside a call it does nothing (a C caller could not pair a
/// depth raised there with anything). False if the depth would reach [`INTERNAL`].
pub(crate) fn no_preempt_raise() -> bool {
    let Some(st) = thread::existing().filter(|st| !st.innermost.get().is_null()) else { return true };
    let d = st.depth.get();
    if d + 1 >= INTERNAL {
        return false;
    }
    st.depth.set(d + 1);
    true
}

/// Undoes one [`no_preempt_raise`]: lowers the depth, and at 0 acts on a preemption
/// deferred meanwhile (the call may be suspended here, and returns when resumed). Unlike
/// dropping a [`NoPreempt`] it never unwinds: `Ok(true)` says the outermost section
/// ended, a cancellation point the caller checks with [`cancel_requested`]. Outside a
/// call it does nothing; `Err` if the current call has no section open.
pub(crate) fn no_preempt_lower() -> Result<bool, ()> {
    let Some(st) = thread::existing().filter(|st| !st.innermost.get().is_null()) else { return Ok(false) };
    let d = st.depth.get();
    if d == 0 || d >= INTERNAL {
        return Err(());
    }
    st.set_depth(d - 1);
    Ok(d == 1)
}
