//! The library calls that create, run, switch out and hand back uthreads.
//!
//! # A yield, step by step
//!
//! `yield_with(true, f)` on uthread U:
//! 1. U's state becomes `Yielding`; U disables notifications (a `%gs`-relative
//!    increment), which pins it to the vcore V it runs on, then looks V up and marks it
//!    as in vcore context; U's saved depth excludes the pin;
//! 2. the FS base becomes V's own TLS (skipped for TLS-less uthreads, which already run
//!    on it);
//! 3. `arch::save_and_call` pushes U's callee-saved registers on U's stack, stores the
//!    stack pointer in U's record and calls `yield_tail` at the top of V's stack;
//! 4. `yield_tail` clears V's current uthread, moves `f` onto V's stack and calls
//!    `f(U)`: typically "enqueue U" (then `runnable`) or "remember U" (then
//!    `has_blocked`). From the moment `f` publishes U, another vcore may resume it, so
//!    `f` must not touch U's stack afterwards: everything it owns was moved off it;
//! 5. `vcore_entry` runs: the scheduler picks the next uthread;
//! 6. `run_uthread(W)` records W as current, leaves vcore context, loads W's FS base and
//!    loads W's context: W returns from its own `yield_with`.

use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use parlib_vcore as vcore;
use parlib_vcore::arch;
use parlib_vcore::{Stack, Vcore};

use crate::error::Error;
use crate::runtime::{sched, vcore_entry};
use crate::sched::BlockReason;
use crate::tls;
use crate::uthread::{State, TlsMode, Uthread};

/// Ids for messages; 0 is `main`.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Prepares `uth` to run `entry(arg)` on `stack`, with its own TLS or none. The uthread
/// is `Created`; give it to the scheduler with [`runnable`].
///
/// `entry` never returns: it ends with [`exit_with`]. A panic that escapes it aborts the
/// process with a message naming the uthread.
///
/// # Errors
/// [`Error::Tls`] if no backing thread could be had for [`TlsMode::Backed`].
///
/// # Panics
/// If `uth` is not `Idle` (new, or cleaned up).
///
/// # Safety
/// `uth` must stay valid until [`cleanup`]; `arg` must be valid for whatever `entry`
/// does with it.
pub unsafe fn init(
    uth: NonNull<Uthread>,
    entry: fn(*mut ()) -> !,
    arg: *mut (),
    stack: Stack,
    tls: TlsMode,
) -> Result<(), Error> {
    // SAFETY: the caller keeps `uth` alive; an Idle uthread is touched by nobody else.
    let u = unsafe { uth.as_ref() };
    let s = u.state();
    if s != State::Idle {
        panic!(
            "uthread::init: uthread {} is {s}; only a new or cleaned-up uthread can be initialised",
            u.id()
        );
    }
    let backing = match tls {
        TlsMode::Backed => Some(tls::take()?),
        TlsMode::None => None,
    };
    // SAFETY: as above, the record is ours alone until `runnable` publishes it.
    unsafe {
        *u.ctx.get() = arch::init_context(stack.top(), uthread_start, uth.as_ptr() as usize);
        *u.tls.get() = backing.map_or(0, |b| b.as_ref().fs_base());
        *u.entry.get() = Some(entry);
        *u.arg.get() = arg;
        *u.stack.get() = Some(stack);
        *u.backing.get() = backing;
    }
    u.notif_depth.store(0, Ordering::Relaxed);
    u.wait_interrupt.store(0, Ordering::Relaxed); // no interrupt left over from a previous life
    u.id.store(NEXT_ID.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
    u.set_state(State::Created);
    Ok(())
}

/// First code of every uthread: runs `entry(arg)` and turns an escaping panic into a
/// clear abort instead of unwinding into the trampoline.
unsafe extern "C" fn uthread_start(uth: usize) -> ! {
    // SAFETY: `init` passes the uthread's own, live record.
    let u = unsafe { &*(uth as *const Uthread) };
    // SAFETY: set by init before the uthread could run.
    let (entry, arg) = unsafe { ((*u.entry.get()).expect("init sets the entry"), *u.arg.get()) };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> () { entry(arg) }));
    if r.is_err() {
        eprintln!("parlib: uthread {} panicked and nothing caught it; aborting", u.id());
    }
    std::process::abort()
}

/// Releases what `init` took: the backing thread exits (running the uthread's TLS
/// destructors on its TLS) and the stack goes back to the pool. The record is `Idle`
/// again and may be reused.
///
/// # Panics
/// If the uthread has not exited.
///
/// # Safety
/// `uth` must be valid; call from vcore context or another uthread, never from `uth`.
pub unsafe fn cleanup(uth: NonNull<Uthread>) {
    // SAFETY: the caller passes a valid record.
    let u = unsafe { uth.as_ref() };
    let s = u.state();
    if s != State::Done {
        panic!("uthread::cleanup: uthread {} is {s}; only an exited uthread can be cleaned up", u.id());
    }
    // SAFETY: a Done uthread never runs again, so nothing uses its TLS or stack.
    unsafe {
        if let Some(b) = (*u.backing.get()).take() {
            tls::release(b);
        }
        drop((*u.stack.get()).take());
        *u.tls.get() = 0;
        *u.ctx.get() = arch::Context::EMPTY;
    }
    u.set_state(State::Idle);
}

/// The uthread running this code, or `None` in vcore context and on plain threads.
#[inline]
pub fn current() -> Option<NonNull<Uthread>> {
    // Two %gs-relative loads: each reads the vcore the caller runs on at that instant,
    // and on whichever vcore a running uthread runs, it is that vcore's current one.
    NonNull::new(vcore::running_uthread_raw().cast())
}

/// In vcore context: the uthread this vcore was running when a notification interrupted
/// it, which `vcore_entry` resumes unless an event handler [`paused`] it. `None`
/// elsewhere, or if the vcore had no uthread running.
pub fn interrupted() -> Option<NonNull<Uthread>> {
    let vc = vcore::this()?;
    if !vc.in_vcore_context() {
        return None;
    }
    NonNull::new(vc.current().cast())
}

/// Pins the running uthread `u` to its vcore (notifications disabled, so no preemption
/// can move it) and returns that vcore. The caller must go on into vcore context, where
/// the pin ends.
#[inline]
fn pin(u: &Uthread) -> &'static Vcore {
    // SAFETY: `u` runs, so we are on a vcore; the increment is %gs-relative. From here no
    // notification can interrupt us, so the record below stays ours.
    unsafe { vcore::notif::disable_notifs() };
    // SAFETY: as above.
    let vc = unsafe { vcore::this_unchecked() };
    assert!(
        core::ptr::eq(vc.current() as *const Uthread, u),
        "uthread layer: a pinned uthread is its vcore's current"
    );
    vc
}

#[cold]
#[inline(never)]
fn not_on_uthread(what: &str) -> ! {
    panic!("{what} must be called from a uthread (it was called from vcore context or a plain thread)")
}

/// The vcore running this code in vcore context, or a panic naming `what`.
#[inline]
fn in_vcore_context(what: &str) -> &'static Vcore {
    match vcore::this() {
        Some(vc) if vc.in_vcore_context() => vc,
        _ => not_in_vcore_context(what),
    }
}

#[cold]
#[inline(never)]
fn not_in_vcore_context(what: &str) -> ! {
    panic!("{what} must be called in vcore context (from a Scheduler callback)")
}

/// Switches the running uthread out and runs `f(uth)` in vcore context, then the
/// scheduler (see the module docs). With `save_state`, the uthread resumes here when it
/// is next run; without, it can never resume (use [`exit_with`]).
///
/// `f` must hand the uthread to someone (`runnable`, `paused`, or a wait queue and
/// `has_blocked`) or it is lost. Once it has, it must not touch the uthread's stack.
///
/// # Panics
/// Outside a uthread.
#[inline]
pub fn yield_with<F: FnOnce(NonNull<Uthread>)>(save_state: bool, f: F) {
    let Some(uth) = current() else { not_on_uthread("uthread::yield_with") };
    // SAFETY: `current()` just returned it.
    unsafe { yield_current_with(uth, save_state, f) }
}

/// [`yield_with`] for a caller that already holds [`current()`]: a scheduler's yield
/// that looked itself up first saves the second lookup (about 5 ns of a yield).
///
/// # Safety
/// `uth` must be what [`current()`] returns in the calling uthread.
///
/// # Panics
/// If `uth` is not running.
#[inline]
pub unsafe fn yield_current_with<F: FnOnce(NonNull<Uthread>)>(uth: NonNull<Uthread>, save_state: bool, f: F) {
    // SAFETY: the running uthread's own record (the caller's contract).
    let u: &Uthread = unsafe { uth.as_ref() };
    // Check (a misuse panics with nothing pinned), pin, and only then change the state: a
    // notification must never find a Yielding uthread still running.
    u.expect_state("uthread::yield_with", &[State::Running]);
    let vc = pin(u);
    u.set_state(if save_state { State::Yielding } else { State::Done });
    u.notif_depth.store(vc.notif_depth() - 1, Ordering::Relaxed); // its own, without the pin
    let mut f = ManuallyDrop::new(f);
    let fp = &mut f as *mut ManuallyDrop<F> as usize;
    let up = u as *const Uthread as usize;
    // SAFETY: this vcore enters vcore context here (step 1) and nothing touches TLS
    // until the switch. The vcore stack is free (a uthread runs, so no vcore context is
    // live on it); `u.ctx` is ours: the uthread runs here and is not yet published.
    unsafe {
        vc.set_vcore_context(true);
        if has_own_tls(u) {
            arch::set_fs_base(vc.tls());
        }
        if save_state {
            arch::save_and_call(u.ctx.get(), vc.stack_top(), yield_tail::<F>, fp, up);
        } else {
            arch::call_on_stack(vc.stack_top(), yield_tail::<F>, fp, up);
        }
    }
}

#[inline(always)]
fn has_own_tls(u: &Uthread) -> bool {
    // SAFETY: `tls` only changes in init / cleanup, never while the uthread runs.
    unsafe { *u.tls.get() != 0 }
}

/// Step 4 of the module docs, in vcore context on the vcore stack.
unsafe extern "C" fn yield_tail<F: FnOnce(NonNull<Uthread>)>(fp: usize, up: usize) -> ! {
    // SAFETY: only vcore tasks reach vcore context.
    let vc = unsafe { vcore::this_unchecked() };
    // SAFETY: the uthread is switched out; the vcore has none until it runs the next.
    unsafe { vc.set_current(core::ptr::null_mut(), 0) };
    // SAFETY: `fp` points at the ManuallyDrop<F> on the suspended uthread's stack, which
    // nobody can resume before `f` publishes it; reading moves `f` onto this stack.
    let f: F = unsafe { ManuallyDrop::into_inner(core::ptr::read(fp as *const ManuallyDrop<F>)) };
    // SAFETY: `up` is the uthread that just yielded; its record is alive.
    f(unsafe { NonNull::new_unchecked(up as *mut Uthread) });
    vcore_entry()
}

/// Ends the running uthread: it becomes `Done` and `f(uth)` runs in vcore context
/// (typically: note the exit, wake a joiner, `cleanup`). Its stack is not saved.
///
/// # Panics
/// Outside a uthread.
pub fn exit_with<F: FnOnce(NonNull<Uthread>)>(f: F) -> ! {
    yield_with(false, f);
    unreachable!("an exited uthread was resumed")
}

/// Runs `uth` on this vcore, leaving vcore context. Never returns.
///
/// # Panics
/// Outside vcore context, or if `uth` is not `Runnable` (already running, blocked,
/// exited, never made runnable).
pub fn run_uthread(uth: NonNull<Uthread>) -> ! {
    in_vcore_context("uthread::run_uthread");
    // SAFETY: checked just now.
    unsafe { run_uthread_in_vcore_context(uth) }
}

/// [`run_uthread`] for a caller that knows it runs in vcore context, such as a
/// scheduler's `sched_entry`: it skips the check that it does (about 5 ns of a yield).
///
/// # Safety
/// The caller runs in vcore context.
///
/// # Panics
/// If `uth` is not `Runnable`.
pub unsafe fn run_uthread_in_vcore_context(uth: NonNull<Uthread>) -> ! {
    // SAFETY: vcore context runs on a vcore task (the caller's contract).
    let vc = unsafe { vcore::this_unchecked() };
    // SAFETY: the scheduler hands us a uthread it holds, so its record is alive.
    let u = unsafe { uth.as_ref() };
    u.transition("uthread::run_uthread", &[State::Runnable], State::Running);
    // SAFETY: we just took the uthread from Runnable to Running: it is ours to resume.
    unsafe { resume(vc, u) }
}

/// Resumes the vcore's current uthread (one that was interrupted, or `main` after it
/// moved). Never returns.
///
/// # Panics
/// Outside vcore context, or if the vcore has no current uthread.
pub fn run_current_uthread() -> ! {
    let vc = in_vcore_context("uthread::run_current_uthread");
    let cur = vc.current();
    assert!(!cur.is_null(), "uthread::run_current_uthread: vcore {} has no current uthread", vc.id());
    // SAFETY: `current` is the uthread this vcore was running.
    unsafe { resume(vc, &*(cur as *const Uthread)) }
}

/// Makes `u` the vcore's current uthread and loads its context (step 6). If a
/// notification is pending, vcore context does not leave: it runs `vcore_entry` again,
/// which handles the events and then resumes `u` (still current) or lets the scheduler
/// decide.
///
/// # Safety
/// In vcore context (so the FS base is the vcore's), with `u` running or just taken to
/// Running by this vcore, its context saved.
#[inline]
pub(crate) unsafe fn resume(vc: &Vcore, u: &Uthread) -> ! {
    // SAFETY: `u` is ours (caller's contract), so its fields are stable.
    let own = unsafe { *u.tls.get() };
    let tls = if own != 0 { own } else { vc.tls() };
    // In vcore context the FS base is the vcore's own; the uthread's TLS is used by nobody
    // else (its backing thread is parked). The context was saved by a yield, an
    // interruption, the move of `main`, or built by init. A signal between leaving vcore
    // context and the stack switch finds `rsp` on the vcore stack and is retried.
    // SAFETY: `u` is ours (the caller's contract), and the points above hold.
    unsafe {
        vc.set_current(u as *const Uthread as *mut (), tls);
        vc.set_notif_depth(u.notif_depth.load(Ordering::Relaxed));
        if !vc.leave_vcore_context() {
            vcore::reenter(vcore_entry);
        }
        if own != 0 {
            arch::set_fs_base(own);
        }
        arch::load(u.ctx.get())
    }
}

/// Makes `uth` call `f(arg)` first thing when it next runs, on its own stack and TLS,
/// then continue where it left off (`parlib_vcore::arch::push_call`). For schedulers
/// that must run code *as* a switched-out uthread: upthread runs a thread-directed
/// signal's handler this way on a preempted thread. `f` runs with the uthread's
/// notification depth, as ordinary uthread code.
///
/// # Safety
/// The caller holds `uth` and nothing resumes it meanwhile: a scheduler between taking
/// it from its queue and [`run_uthread`], or a waker before [`runnable`]. Its stack must
/// have room for `f`.
///
/// # Panics
/// If `uth` is running or done (it has no suspended context).
pub unsafe fn push_call(uth: NonNull<Uthread>, f: unsafe extern "C" fn(usize), arg: usize) {
    // SAFETY: the caller holds the uthread (contract), so its record is alive.
    let u = unsafe { uth.as_ref() };
    let s = u.state();
    assert!(
        matches!(s, State::Created | State::Runnable | State::Blocked),
        "uthread::push_call: uthread {} is {s}; only a suspended uthread can take a call",
        u.id()
    );
    // SAFETY: suspended and held by the caller, so its context is saved and stable.
    unsafe { arch::push_call(&mut *u.ctx.get(), f, arg) };
}

/// Records that `uth` blocked for `reason`, and tells the scheduler. Call it from a
/// yield callback *before* publishing the uthread to whoever will wake it.
///
/// # Panics
/// If `uth` is not `Yielding`.
pub fn has_blocked(uth: NonNull<Uthread>, reason: BlockReason) {
    // SAFETY: the caller holds the uthread it just switched out.
    unsafe { uth.as_ref() }.transition("uthread::has_blocked", &[State::Yielding], State::Blocked);
    sched().thread_has_blocked(uth, reason);
}

/// Records that `uth` blocked in the system call `sysc` and tells the scheduler
/// ([`Scheduler::thread_blockon_sysc`](crate::Scheduler::thread_blockon_sysc); parlib's
/// `uthread_blockon_sysc`). It replaces [`has_blocked`] for syscall blocks: call it from
/// a yield callback *before* publishing the uthread to whoever completes the call, which
/// then makes it [`runnable`]. `sysc` must stay valid until then.
///
/// # Panics
/// If `uth` is not `Yielding`.
pub fn blockon_sysc(uth: NonNull<Uthread>, sysc: NonNull<crate::Syscall>) {
    // SAFETY: the caller holds the uthread it just switched out.
    unsafe { uth.as_ref() }.transition("uthread::blockon_sysc", &[State::Yielding], State::Blocked);
    sched().thread_blockon_sysc(uth, sysc);
}

/// Hands a paused uthread back to the scheduler: one that just yielded, or the vcore's
/// current uthread after a notification interrupted it (preemption: called from an
/// event handler, in vcore context). It stays runnable.
///
/// # Panics
/// If `uth` is neither `Yielding` nor the interrupted current uthread of this vcore.
pub fn paused(uth: NonNull<Uthread>) {
    // SAFETY: the caller holds `uth` (a yielding uthread, or the interrupted current).
    let yielding = unsafe { uth.as_ref() }.state() == State::Yielding;
    // A yielding uthread (the common case: every yield) needs no vcore lookup.
    if let Some(vc) = if yielding { None } else { vcore::this() } {
        if vc.in_vcore_context() && vc.current() == uth.as_ptr().cast() {
            // The interrupted uthread: vcore_entry already stored its context.
            // SAFETY: it is this vcore's current uthread; detaching it hands it over.
            unsafe { vc.set_current(core::ptr::null_mut(), 0) };
            // SAFETY: as above, it is ours until thread_paused publishes it.
            unsafe { uth.as_ref() }.transition("uthread::paused", &[State::Running], State::Runnable);
            sched().thread_paused(uth);
            return;
        }
    }
    // SAFETY: the caller holds the uthread it just switched out.
    unsafe { uth.as_ref() }.transition("uthread::paused", &[State::Yielding], State::Runnable);
    sched().thread_paused(uth);
}

/// Makes `uth` runnable: a new uthread, one that just yielded, or one that was blocked.
///
/// # Panics
/// If `uth` is running, already runnable, exited or never initialised.
#[inline]
pub fn runnable(uth: NonNull<Uthread>) {
    // SAFETY: the caller holds the uthread (it created it, switched it out or woke it).
    unsafe { uth.as_ref() }.transition(
        "uthread::runnable",
        &[State::Created, State::Yielding, State::Blocked],
        State::Runnable,
    );
    // Callbacks run as if in vcore context: when a uthread makes another runnable, the
    // scheduler's locks must not be held across an interruption (see PdrSpinLock).
    let disabled = vcore::notif::disable_if_uthread();
    sched().thread_runnable(uth);
    if disabled {
        parlib_events::enable_notifs();
    }
}

/// `cleanup` refuses a uthread that is not `Done`; this tells a scheduler whether a
/// record can be cleaned (for example when reaping).
pub fn has_exited(uth: NonNull<Uthread>) -> bool {
    // SAFETY: the caller passes a valid record.
    unsafe { uth.as_ref() }.state() == State::Done
}
