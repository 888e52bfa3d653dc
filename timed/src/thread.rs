//! Per-thread state: the chain of calls running on this thread, the preemption-off
//! depth, and the clock that preempts them (a POSIX timer on a plain thread, an alarm on
//! a uthread).
//!
//! # Which state a caller gets
//!
//! | caller | state | clock |
//! |---|---|---|
//! | plain thread | `PLAIN`, freed when the thread exits | a `CLOCK_MONOTONIC` timer signalling this task |
//! | uthread with its own TLS | `UTHREAD`, in that TLS, never freed | an [`AlarmWaiter`] on the vcore that armed it |
//!
//! A uthread's TLS comes from a backing thread and outlives the uthread (the next uthread
//! given that backing thread reuses it), and its alarm's callback may run on another vcore
//! at any time: so it is leaked, one per backing thread, and the uthread it serves is
//! looked up again at every launch. Uthreads without TLS share their vcore's, which cannot
//! hold per-call state: they get [`Error::NoTls`].
//!
//! # Arming lazily
//!
//! A timer costs a system call to arm (microseconds in a VM), more than a whole launch
//! should. So a clock is armed only when the chain's deadline is *earlier* than what it
//! is armed for, and never disarmed: a call that returns leaves it armed, and the next
//! launch, whose deadline is usually later, finds it armed early enough. An expiry that
//! finds nothing due re-arms for the real deadline. The price is at most one spurious
//! notification signal per thread after its last call returns (see the crate docs).
//!
//! A uthread's alarm is stopped when its chain empties, though: that takes it out of its
//! vcore's alarm set under a lock, with no system call, and the vcore's timer stays armed
//! as the alarms layer leaves it. Left started, the alarms of many uthreads that each
//! launch short calls (kweb's 100 workers) would each expire in turn: a timer interrupt
//! (tens of µs in a VM) per call instead of at most one per quantum of busy time.

use core::cell::Cell;
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use parlib_alarms::{AlarmWaiter, Deadline};
use parlib_uthread::Uthread;
use parlib_vcore::spin::PdrSpinLock;
use parlib_vcore::{self as vcore, Stack, VcoreTimer};

use crate::call::CallCore;
use crate::error::Error;

/// Depth while timed-call machinery itself runs on the thread: nothing preempts it.
pub(crate) const INTERNAL: u32 = 1 << 31;

/// No deadline.
pub(crate) const NEVER: u64 = u64::MAX;

/// `sigev_value` of a preemption timer: the thread hook ignores other signals.
pub(crate) const TIMER_TAG: usize = 0x74_696d_6564; // "timed"

/// What preempts the calls of one thread.
pub(crate) enum Clock {
    /// A plain thread's timer, and the deadline it is armed for (`NEVER`: not armed, or
    /// fired).
    Plain { timer: VcoreTimer, armed: Cell<u64>, altstack: (usize, usize) },
    /// A uthread's alarm, the deadline it was started for, and the uthread it serves
    /// (null while no call runs), which its callback reads under the lock.
    Uthread {
        alarm: Pin<Box<AlarmWaiter>>,
        started_for: Cell<u64>,
        owner: PdrSpinLock<()>,
        u: AtomicPtr<Uthread>,
    },
}

/// One thread's timed-call state. Only its own thread touches the `Cell`s (the signal
/// handler runs on that thread too); the atomics are read by an alarm callback elsewhere.
pub(crate) struct ThreadState {
    /// The innermost call running on this thread; null outside calls.
    pub(crate) innermost: Cell<*mut CallCore>,
    /// Preemption-off depth of the code running now: the innermost call's
    /// [`NoPreempt`](crate::NoPreempt) guards, plus [`INTERNAL`] inside the machinery.
    pub(crate) depth: Cell<u32>,
    /// A preemption was asked for while `depth` was above 0.
    pub(crate) deferred: Cell<bool>,
    /// The earliest deadline of the chain (`NEVER` outside calls).
    pub(crate) eff: AtomicU64,
    /// One stack kept back for the next launch: the pool behind `Stack::new` is global
    /// and locked.
    pub(crate) spare: Cell<Option<Stack>>,
    pub(crate) clock: Clock,
}

thread_local! {
    // Const-initialised and without a destructor, so the signal handler may read them.
    static PLAIN: Cell<*const ThreadState> = const { Cell::new(ptr::null()) };
    static UTHREAD: Cell<*const ThreadState> = const { Cell::new(ptr::null()) };
    // Frees a plain thread's state when the thread exits.
    static PLAIN_OWNER: PlainOwner = const { PlainOwner };
}

struct PlainOwner;

impl Drop for PlainOwner {
    fn drop(&mut self) {
        let p = PLAIN.with(|c| c.replace(ptr::null()));
        if !p.is_null() {
            // SAFETY: made by `Box::into_raw` in `create_plain`, and unpublished above; the
            // thread is exiting, so no call runs on it. Dropping it deletes the timer.
            drop(unsafe { Box::from_raw(p as *mut ThreadState) });
        }
    }
}

/// The calling thread's state, if it has one (no allocation: signal-handler safe).
#[inline]
pub(crate) fn existing() -> Option<&'static ThreadState> {
    let p = if vcore::on_uthread() { UTHREAD.with(Cell::get) } else { PLAIN.with(Cell::get) };
    // SAFETY: a published state lives until its thread exits (plain) or forever (uthread).
    unsafe { p.as_ref() }
}

/// Makes the state of the calling thread the one code running on the TLS block at `fs`
/// finds: writes it into that block's copy of this module's thread-local slot. The slot
/// lies in static TLS at the same offset from every block's thread pointer, which is what
/// lets us find it in another block; a slot outside the first MiB below the thread
/// pointer (a `dlopen`ed copy of this library, whose TLS is dynamic) is refused.
pub(crate) fn publish_into(fs: usize, st: &'static ThreadState) -> Result<(), Error> {
    let here = if vcore::on_uthread() {
        UTHREAD.with(|c| c as *const Cell<*const ThreadState> as usize)
    } else {
        PLAIN.with(|c| c as *const Cell<*const ThreadState> as usize)
    };
    let off = here.wrapping_sub(vcore::arch::fs_base()) as isize;
    if !(-(1 << 20)..0).contains(&off) {
        return Err(Error::BadContext(
            "with TLS of its own: this library's TLS is not static (was it dlopen()ed?)",
        ));
    }
    // SAFETY: `fs` is a live glibc TLS block (the call's), whose static TLS holds this
    // slot at the same offset (variant II: below the thread pointer); nothing runs on it.
    unsafe { (*(fs.wrapping_add_signed(off) as *const Cell<*const ThreadState>)).set(st) };
    Ok(())
}

/// Switches the running code to the TLS block at `fs`: through the uthread layer on a
/// uthread (so its later switches load it), directly on a plain thread.
pub(crate) fn set_tls(fs: usize) {
    if vcore::on_uthread() {
        // SAFETY: `fs` is the TLS of the code about to run here (a call's block, or its
        // launcher's), which nothing else runs on.
        unsafe { parlib_uthread::swap_running_tls(fs) };
    } else {
        // SAFETY: as above; a plain thread owns its FS base.
        unsafe { vcore::arch::set_fs_base(fs) };
    }
}

/// The plain thread's state, for its signal handler.
#[inline]
pub(crate) fn existing_plain() -> Option<&'static ThreadState> {
    // SAFETY: as for `existing`.
    unsafe { PLAIN.with(Cell::get).as_ref() }
}

/// The calling thread's state, made on first use.
pub(crate) fn get_or_create() -> Result<&'static ThreadState, Error> {
    if let Some(s) = existing() {
        return Ok(s);
    }
    if vcore::in_vcore_context() {
        return Err(Error::BadContext("in vcore context"));
    }
    if let Some(u) = parlib_uthread::current() {
        // SAFETY: the running uthread's own record.
        if !unsafe { u.as_ref() }.has_tls() {
            return Err(Error::NoTls);
        }
        return create_uthread();
    }
    create_plain()
}

fn create_plain() -> Result<&'static ThreadState, Error> {
    crate::preempt::install()?;
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    let timer = VcoreTimer::for_task(tid, TIMER_TAG).map_err(resource("timer_create"))?;
    let st =
        Box::new(ThreadState::new(Clock::Plain { timer, armed: Cell::new(NEVER), altstack: altstack() }));
    let p = Box::into_raw(st);
    PLAIN_OWNER.with(|_| ()); // registers the destructor
    PLAIN.with(|c| c.set(p));
    // SAFETY: just published; see `existing`.
    Ok(unsafe { &*p })
}

fn create_uthread() -> Result<&'static ThreadState, Error> {
    parlib_alarms::init()
        .map_err(|_| Error::Resource { what: "parlib_alarms::init", errno: libc::EAGAIN })?;
    let alarm = Box::pin(AlarmWaiter::new());
    alarm.init_waiter(crate::preempt::on_alarm);
    let st = Box::new(ThreadState::new(Clock::Uthread {
        alarm,
        started_for: Cell::new(NEVER),
        owner: PdrSpinLock::new(()),
        u: AtomicPtr::new(ptr::null_mut()),
    }));
    // Leaked on purpose: see the module docs.
    let st: &'static ThreadState = Box::leak(st);
    if let Clock::Uthread { alarm, .. } = &st.clock {
        alarm.set_data(st as *const ThreadState as usize);
    }
    UTHREAD.with(|c| c.set(st));
    Ok(st)
}

fn resource(what: &'static str) -> impl Fn(vcore::Error) -> Error {
    move |e| Error::Resource { what, errno: e.errno() }
}

/// The calling thread's alternate signal stack, `(0, 0)` if none: a launch from a
/// handler running there is refused.
fn altstack() -> (usize, usize) {
    // SAFETY: querying only; an all-zero stack_t is valid for the kernel to fill.
    unsafe {
        let mut ss: libc::stack_t = core::mem::zeroed();
        if libc::sigaltstack(ptr::null(), &mut ss) == 0 && ss.ss_flags & libc::SS_DISABLE == 0 {
            return (ss.ss_sp as usize, ss.ss_sp as usize + ss.ss_size);
        }
    }
    (0, 0)
}

impl ThreadState {
    fn new(clock: Clock) -> ThreadState {
        ThreadState {
            innermost: Cell::new(ptr::null_mut()),
            depth: Cell::new(0),
            deferred: Cell::new(false),
            eff: AtomicU64::new(NEVER),
            spare: Cell::new(None),
            clock,
        }
    }

    /// Whether the caller runs in a signal handler we can recognise (see [`Error::BadContext`]).
    pub(crate) fn in_signal_handler(&self) -> bool {
        let probe = 0u8;
        let sp = core::hint::black_box(&probe) as *const u8 as usize;
        match &self.clock {
            Clock::Plain { altstack: (lo, hi), .. } => (*lo..*hi).contains(&sp),
            Clock::Uthread { .. } => vcore::this().is_some_and(|vc| vc.on_signal_stack()),
        }
    }

    /// Recomputes the chain's earliest deadline after the chain changed.
    pub(crate) fn update_eff(&self) {
        let mut eff = NEVER;
        let mut c = self.innermost.get();
        while let Some(call) = NonNull::new(c) {
            // SAFETY: calls in the chain are alive (each is owned by a frame further out).
            let call = unsafe { call.as_ref() };
            eff = eff.min(call.deadline.get());
            c = call.parent.get();
        }
        self.eff.store(eff, Ordering::SeqCst);
    }

    /// Makes sure the clock fires no later than the chain's deadline (see "Arming
    /// lazily"). Runs with `depth` above 0.
    pub(crate) fn ensure_armed(&self) -> Result<(), Error> {
        let eff = self.eff.load(Ordering::Relaxed);
        if eff == NEVER {
            return Ok(());
        }
        match &self.clock {
            Clock::Plain { timer, armed, .. } => {
                if eff < armed.get() {
                    // Recorded first: an expiry while arming (a deadline already past)
                    // runs the handler, which records that it fired.
                    armed.set(eff);
                    if let Err(e) = timer.arm_at(eff) {
                        armed.set(NEVER);
                        return Err(Error::Resource { what: "timer_settime", errno: e as i32 });
                    }
                }
            }
            Clock::Uthread { alarm, started_for, .. } => {
                if started_for.get() <= eff && alarm.is_armed() {
                    return Ok(());
                }
                // Only this uthread starts the alarm, so after `stop` it is not armed;
                // `start` waits out a callback still running elsewhere. (An alarm that
                // already fired, the usual case after a timeout, needs no `stop`, which
                // takes its vcore's lock.)
                if alarm.is_armed() {
                    alarm.stop();
                }
                alarm.set_abs(Deadline::at_monotonic_ns(eff));
                alarm.as_ref().start();
                started_for.set(eff);
            }
        }
        Ok(())
    }

    /// The chain has emptied: a uthread's alarm is stopped ("Arming lazily"); a plain
    /// thread's timer stays as it is.
    pub(crate) fn quiesce_clock(&self) {
        if let Clock::Uthread { alarm, .. } = &self.clock {
            if alarm.is_armed() {
                alarm.stop();
            }
        }
    }

    /// Records which uthread the chain runs on (or none), for the alarm's callback.
    pub(crate) fn set_owner(&self, u: *mut Uthread) {
        if let Clock::Uthread { owner, u: slot, .. } = &self.clock {
            let _g = owner.lock();
            slot.store(u, Ordering::Relaxed);
        }
    }

    /// Sets the preemption-off depth; bringing it to 0 acts on a deferred preemption.
    #[inline]
    pub(crate) fn set_depth(&'static self, d: u32) {
        self.depth.set(d);
        if d == 0 && self.deferred.get() {
            self.deferred.set(false);
            crate::preempt::check_now(self);
        }
    }

    /// A stack for a new call: the spare one, or a fresh one.
    pub(crate) fn take_stack(&self, size: usize) -> Result<Stack, Error> {
        if let Some(s) = self.spare.take() {
            if s.size() >= size && s.size() < size.saturating_mul(2) {
                return Ok(s);
            }
        }
        Stack::new(size).map_err(resource("mmap (call stack)"))
    }

    /// Keeps `s` for the next launch (the previous spare goes back to the pool).
    pub(crate) fn give_stack(&self, s: Stack) {
        drop(self.spare.replace(Some(s)));
    }
}

/// The calling thread's state for an existing call, which every call has.
#[inline]
pub(crate) fn current() -> &'static ThreadState {
    existing().expect("parlib-timed: a call runs on a thread without timed-call state")
}
