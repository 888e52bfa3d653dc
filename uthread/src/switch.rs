//! The library calls that create, run, switch out and hand back uthreads.
//!
//! # A yield, step by step
//!
//! `yield_with(f)` on uthread U:
//! 1. U's state becomes `Yielding`; U disables notifications (a `%gs`-relative
//!    increment), which pins it to the vcore V it runs on, then looks V up and marks it
//!    as in vcore context; U's saved depth excludes the pin;
//! 2. the FS base becomes V's own TLS (skipped for TLS-less uthreads, which already run
//!    on it);
//! 3. `arch::save_and_call` pushes U's callee-saved registers on U's stack, stores the
//!    stack pointer in U's record and calls `yield_tail` at the top of V's stack;
//! 4. `yield_tail` clears V's current uthread, moves `f` onto V's stack and calls it
//!    with U's [`Yielded`] handle: typically "reschedule U" ([`paused`]) or "remember U"
//!    ([`has_blocked`], then keep the [`Blocked`] handle where a waker finds it). From
//!    the moment `f` hands U on, another vcore may resume it, so `f` must not touch U's
//!    stack afterwards: it is `'static` and `Send`, so it cannot borrow from it, and
//!    what it owns was moved off it;
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
use crate::handle::{Blocked, Created, IntoRunnable, Runnable, Yielded};
use crate::record::{self, Record};
use crate::runtime::{check_thread_type, sched, vcore_entry};
use crate::sched::{BlockReason, Syscall};
use crate::tls;
use crate::uthread::{State, TlsMode, Uthread};

/// Ids for messages; 0 is `main`.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Creates a uthread that will run `entry` on `stack`, with its own TLS or none, and
/// whose record holds `thread`, the scheduler's per-thread data. It is not yet runnable:
/// publish [`Created::as_ptr`] where needed, then hand it to the scheduler with
/// [`runnable`]. [`spawn`] does both at once.
///
/// When `entry` returns, the uthread exits and the scheduler gets its
/// [`Exited`](crate::Exited) handle (`thread_exited`). A panic that escapes `entry`
/// aborts the process with a message naming the uthread.
///
/// # Errors
/// [`Error::NotInitialized`] before [`lib_init`](crate::lib_init); [`Error::Tls`] if no
/// backing thread could be had for [`TlsMode::Backed`].
///
/// # Panics
/// If `T` is not the scheduler's [`Thread`](crate::Scheduler::Thread) type.
pub fn create<T: Send + Sync + 'static>(
    thread: T,
    stack: Stack,
    tls: TlsMode,
    entry: impl FnOnce() + Send + 'static,
) -> Result<Created<T>, Error> {
    check_thread_type::<T>("uthread::create")?;
    let backing = match tls {
        TlsMode::Backed => Some(tls::take()?),
        TlsMode::None => None,
    };
    Ok(create_on(thread, stack, backing, entry))
}

/// [`create`] with its own TLS ([`TlsMode::Backed`]) from a backing thread named `name`,
/// so that `std::thread::current().name()` and panic messages on the uthread show it
/// (std keeps the name in the TLS the uthread runs on). Such a backing thread is made
/// for the uthread, not taken from the pool: a creation costs a thread's start.
///
/// # Errors
/// As [`create`].
///
/// # Panics
/// As [`create`].
pub fn create_named<T: Send + Sync + 'static>(
    thread: T,
    stack: Stack,
    name: String,
    entry: impl FnOnce() + Send + 'static,
) -> Result<Created<T>, Error> {
    check_thread_type::<T>("uthread::create_named")?;
    Ok(create_on(thread, stack, Some(tls::create(Some(name))?), entry))
}

/// The body of [`create`] once the TLS is settled: `backing`'s, or none.
fn create_on<T>(
    thread: T,
    stack: Stack,
    backing: Option<NonNull<tls::Backing>>,
    entry: impl FnOnce() + Send + 'static,
) -> Created<T> {
    let rec = record::alloc(thread);
    // SAFETY: a fresh record, ours alone until the Created handle publishes it.
    let u = unsafe { rec.as_ref() }.uthread();
    let base = Record::base(rec);
    // SAFETY: as above; the context starts `uthread_start` with the record's base.
    unsafe {
        *u.ctx.get() = arch::init_context(stack.top(), uthread_start, base.as_ptr() as usize);
        *u.tls.get() = backing.map_or(0, |b| b.as_ref().fs_base());
        *u.entry.get() = Some(Box::new(entry));
        *u.stack.get() = Some(stack);
        *u.backing.get() = backing;
    }
    u.id.store(NEXT_ID.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
    u.set_state(State::Created);
    Created::new(rec)
}

/// [`create`] on a new stack of the default size, then [`runnable`]: starts `entry` as a
/// new uthread whose record holds `thread`.
///
/// # Errors
/// As [`create`], and the vcore layer's error if no stack can be mapped.
///
/// # Panics
/// As [`create`].
pub fn spawn<T: Send + Sync + 'static>(
    thread: T,
    tls: TlsMode,
    entry: impl FnOnce() + Send + 'static,
) -> Result<(), Error> {
    let stack = Stack::with_default_size()?;
    runnable(create(thread, stack, tls, entry)?);
    Ok(())
}

/// First code of every uthread: runs its entry, then exits. An escaping panic becomes a
/// clear abort instead of unwinding into the trampoline.
unsafe extern "C" fn uthread_start(uth: usize) -> ! {
    // SAFETY: `create` passes the uthread's own, live record.
    let u = unsafe { &*(uth as *const Uthread) };
    // SAFETY: set by create; only the uthread itself takes it, once.
    let entry = unsafe { (*u.entry.get()).take() }.expect("create sets the entry");
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(entry)).is_err() {
        eprintln!("parlib: uthread {} panicked and nothing caught it; aborting", u.id());
        std::process::abort()
    }
    // SAFETY: the entry has returned, so no frame of it is left to borrow from.
    unsafe { exit() }
}

/// The uthread running this code, or `None` in vcore context and on plain threads: an
/// identity (compare it, or pass it to the `unsafe` services that take one).
#[inline]
pub fn current() -> Option<NonNull<Uthread>> {
    // Two %gs-relative loads: each reads the vcore the caller runs on at that instant,
    // and on whichever vcore a running uthread runs, it is that vcore's current one.
    NonNull::new(vcore::running_uthread_raw().cast())
}

/// The number of the uthread running this code (`main` is 0), or `None` in vcore context
/// and on plain threads.
#[inline]
pub fn current_id() -> Option<u64> {
    // SAFETY: the running uthread's record lives at least until it exits, which it cannot
    // do while it runs this call.
    current().map(|u| unsafe { u.as_ref() }.id())
}

/// Runs `f` on the record of the uthread running this code: the scheduler's per-thread
/// data of the caller (`None` in vcore context and on plain threads).
///
/// # Panics
/// If `T` is not the scheduler's [`Thread`](crate::Scheduler::Thread) type.
pub fn with_current<T: 'static, R>(f: impl FnOnce(&Record<T>) -> R) -> Option<R> {
    let me = current()?;
    // Cannot fail after `current()` found a uthread: lib_init has run.
    let _ = check_thread_type::<T>("uthread::with_current");
    // SAFETY: every record is a `Record<T>` (create and the line above check the type);
    // the running uthread's record outlives `f` (`exit`, unsafe, may not run under it).
    let record = unsafe { Record::<T>::from_uthread(me).as_ref() };
    Some(f(record))
}

/// In vcore context: the uthread this vcore was running when a notification interrupted
/// it, which `vcore_entry` resumes unless an event handler takes it with
/// [`take_interrupted`]. An identity; `None` elsewhere, or if the vcore had no uthread
/// running.
pub fn interrupted() -> Option<NonNull<Uthread>> {
    let vc = vcore::this()?;
    if !vc.in_vcore_context() {
        return None;
    }
    NonNull::new(vc.current().cast())
}

/// In vcore context: takes the uthread a notification interrupted off this vcore, so
/// that `vcore_entry` does not resume it (preemption). Hand the [`Yielded`] handle on,
/// usually to [`paused`]. `None` elsewhere, or if the vcore had no uthread running.
pub fn take_interrupted() -> Option<Yielded> {
    let vc = vcore::this()?;
    if !vc.in_vcore_context() {
        return None;
    }
    let u = NonNull::new(vc.current().cast::<Uthread>())?;
    // SAFETY: in vcore context the current uthread is switched out (vcore_entry stored
    // its context) and owned by this vcore; detaching it hands that ownership over.
    unsafe {
        vc.set_current(core::ptr::null_mut(), 0);
        u.as_ref().transition("uthread::take_interrupted", &[State::Running], State::Yielding);
        Some(Yielded::from_base(u))
    }
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
pub(crate) fn in_vcore_context(what: &str) -> &'static Vcore {
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

/// Switches the running uthread out and runs `f` in vcore context with its [`Yielded`]
/// handle, then the scheduler (see the module docs). The uthread resumes here when it is
/// next run.
///
/// `f` must hand the uthread on: [`paused`] (a yield), or [`has_blocked`] and keep the
/// [`Blocked`] handle where its waker will find it. It is `'static` and `Send` because it
/// runs on the vcore's stack, possibly while the uthread already runs again elsewhere, so
/// it must not borrow from the uthread's stack. Services that keep state on that stack
/// (a wait-queue node) pass its address as a number and argue in their own `unsafe`
/// blocks why it is still there.
///
/// # Panics
/// Outside a uthread.
#[inline]
pub fn yield_with<F: FnOnce(Yielded) + Send + 'static>(f: F) {
    let Some(uth) = current() else { not_on_uthread("uthread::yield_with") };
    // SAFETY: `current()` just returned it.
    unsafe { yield_current_with(uth, f) }
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
pub unsafe fn yield_current_with<F: FnOnce(Yielded) + Send + 'static>(uth: NonNull<Uthread>, f: F) {
    // SAFETY: `switch_out` calls this in vcore context, with the uthread Yielding and
    // owned by this vcore: the Yielded handle is that ownership.
    let f = move |u| f(unsafe { Yielded::from_base(u) });
    // SAFETY: the running uthread's own record (the caller's contract).
    unsafe { switch_out(uth, "uthread::yield_with", true, f) }
}

/// Makes the running uthread run on the TLS block at `fs` from now on: loads it, and
/// every later switch to the uthread loads it too. Returns the block it ran on. For code
/// that switches stacks inside a uthread and must switch TLS with them (parlib-timed's
/// calls with TLS of their own); switch back before the block goes away.
///
/// # Safety
/// `fs` is a valid glibc TLS block that no other code runs on; the uthread has TLS of its
/// own ([`TlsMode::Backed`] or `main`).
///
/// # Panics
/// Outside a uthread, or on a uthread without TLS.
pub unsafe fn swap_running_tls(fs: usize) -> usize {
    let Some(uth) = current() else { not_on_uthread("uthread::swap_running_tls") };
    // SAFETY: the running uthread's own record.
    let u = unsafe { uth.as_ref() };
    assert!(u.has_tls(), "uthread::swap_running_tls: uthread {} has no TLS of its own", u.id());
    let vc = pin(u);
    // `vcore::this` (the notification handler's first call) believes GS only while the
    // FS base is the vcore's TLS or its current uthread's: a signal between the record's
    // store and the FS write would otherwise take the vcore task for a plain thread and
    // drop its notification (an alarm's expiry). So FS passes through the vcore's own.
    // SAFETY: pinned (notifications off), so nothing switches us out between the
    // stores; `tls` is ours (we run); the caller vouches for the block.
    let old = unsafe {
        let old = core::mem::replace(&mut *u.tls.get(), fs);
        arch::set_fs_base(vc.tls());
        vc.set_current(uth.as_ptr().cast(), fs);
        arch::set_fs_base(fs);
        old
    };
    // SAFETY: undoes `pin`'s disable.
    unsafe { vcore::notif::enable_notifs() };
    old
}

/// Ends the calling uthread: it becomes `Done`, and in vcore context the scheduler gets
/// its [`Exited`](crate::Exited) handle (`thread_exited`). Returning from the uthread's
/// entry does the same, and is the safe way.
///
/// # Safety
/// The uthread's frames are abandoned, not unwound (their destructors do not run, and
/// the stack and record are freed): nothing may borrow from them beyond this call (a
/// scoped thread, a wait-queue node, a pinned value, a reference from
/// [`with_current`]).
///
/// # Panics
/// Outside a uthread.
pub unsafe fn exit() -> ! {
    let Some(uth) = current() else { not_on_uthread("uthread::exit") };
    // Vcore context, off the exited stack: hand the exited uthread over whole.
    // SAFETY: the uthread is Done and owned by this vcore, which hands it on.
    let exited = |u: NonNull<Uthread>| unsafe { sched().exited(u) };
    // SAFETY: the running uthread's own record; the caller gives up its frames.
    unsafe { switch_out(uth, "uthread::exit", false, exited) };
    unreachable!("an exited uthread was resumed")
}

/// Steps 1 to 4 of the module docs: switch the running uthread `uth` out (saving its
/// context with `save_state`, then it is `Yielding`; else it is `Done`) and run `f` in
/// vcore context with it, which this vcore owns until `f` hands it on. `what` names the
/// caller in a misuse's panic.
///
/// # Safety
/// `uth` is the running uthread's own record (`current()`); without `save_state`, its
/// frames are abandoned.
#[inline]
unsafe fn switch_out<F: FnOnce(NonNull<Uthread>)>(uth: NonNull<Uthread>, what: &str, save_state: bool, f: F) {
    // SAFETY: the running uthread's own record (the caller's contract).
    let u: &Uthread = unsafe { uth.as_ref() };
    // Check (a misuse panics with nothing pinned), pin, and only then change the state: a
    // notification must never find a Yielding uthread still running.
    u.expect_state(what, &[State::Running]);
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
        if u.has_tls() {
            arch::set_fs_base(vc.tls());
        }
        if save_state {
            u.ctx_interrupted.store(false, Ordering::Relaxed);
            arch::save_and_call(u.ctx.get(), vc.stack_top(), yield_tail::<F>, fp, up);
        } else {
            arch::call_on_stack(vc.stack_top(), yield_tail::<F>, fp, up);
        }
    }
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
    // SAFETY: `up` is the uthread that just switched out, never null.
    f(unsafe { NonNull::new_unchecked(up as *mut Uthread) });
    vcore_entry()
}

/// Runs `thread` on this vcore, leaving vcore context. Never returns.
///
/// # Panics
/// Outside vcore context.
pub fn run_uthread<T>(thread: Runnable<T>) -> ! {
    if !vcore::in_vcore_context() {
        // The handle is leaked, not dropped: a dropped Runnable would panic again.
        core::mem::forget(thread);
        not_in_vcore_context("uthread::run_uthread");
    }
    // SAFETY: checked just now.
    unsafe { run_uthread_in_vcore_context(thread) }
}

/// [`run_uthread`] for a caller that knows it runs in vcore context, such as a
/// scheduler's `sched_entry`: it skips the check that it does (about 5 ns of a yield).
///
/// # Safety
/// The caller runs in vcore context.
#[inline]
pub unsafe fn run_uthread_in_vcore_context<T>(thread: Runnable<T>) -> ! {
    // SAFETY: vcore context runs on a vcore task (the caller's contract).
    let vc = unsafe { vcore::this_unchecked() };
    let uth = thread.into_raw().cast::<Uthread>();
    // SAFETY: the Runnable handle owned the record, which lives until its Exited handle
    // is dropped.
    let u = unsafe { uth.as_ref() };
    u.transition("uthread::run_uthread", &[State::Runnable], State::Running);
    // SAFETY: we took the uthread from Runnable to Running: it is ours to resume.
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
    // interruption, the move of `main`, or built by create. A signal between leaving
    // vcore context and the stack switch finds `rsp` on the vcore stack and is retried.
    // SAFETY: `u` is ours (the caller's contract), and the points above hold.
    unsafe {
        vc.set_current(u as *const Uthread as *mut (), tls);
        vc.set_notif_depth(u.notif_depth.load(Ordering::Relaxed));
        if !vc.leave_vcore_context() {
            vcore::reenter(vcore_entry);
        }
        crate::safe_call::on_resume(u);
        if own != 0 {
            arch::set_fs_base(own);
        }
        arch::load(u.ctx.get())
    }
}

/// Records that the uthread of `yielded` blocked for `reason`, tells the scheduler
/// (`thread_has_blocked`), and returns the handle its waker needs. Call it from a yield
/// callback *before* publishing the uthread to whoever will wake it.
#[must_use = "a blocked uthread runs again only when its Blocked handle is made runnable"]
pub fn has_blocked(yielded: Yielded, reason: BlockReason) -> Blocked {
    let uth = yielded.into_base();
    // SAFETY: the Yielded handle owned the record.
    unsafe { uth.as_ref() }.transition("uthread::has_blocked", &[State::Yielding], State::Blocked);
    // SAFETY: a Blocked uthread of the scheduler's type, owned by the handle returned.
    unsafe {
        sched().has_blocked(uth, reason);
        Blocked::from_raw(uth)
    }
}

/// Records that the uthread of `yielded` blocked in the system call `sysc` and tells the
/// scheduler ([`Scheduler::thread_blockon_sysc`](crate::Scheduler::thread_blockon_sysc);
/// parlib's `uthread_blockon_sysc`). It replaces [`has_blocked`] for syscall blocks:
/// call it from a yield callback *before* publishing the uthread to whoever completes
/// the call, which then makes it [`runnable`].
#[must_use = "a blocked uthread runs again only when its Blocked handle is made runnable"]
pub fn blockon_sysc(yielded: Yielded, sysc: &Syscall) -> Blocked {
    let uth = yielded.into_base();
    // SAFETY: the Yielded handle owned the record.
    unsafe { uth.as_ref() }.transition("uthread::blockon_sysc", &[State::Yielding], State::Blocked);
    // SAFETY: as in has_blocked.
    unsafe {
        sched().blockon_sysc(uth, sysc);
        Blocked::from_raw(uth)
    }
}

/// Hands a uthread that yielded (or was taken off its vcore by [`take_interrupted`]:
/// preemption) back to the scheduler, still runnable (`thread_paused`).
#[inline]
pub fn paused(yielded: Yielded) {
    let uth = yielded.into_base();
    // SAFETY: the Yielded handle owned the record.
    unsafe { uth.as_ref() }.transition("uthread::paused", &[State::Yielding], State::Runnable);
    // SAFETY: a Runnable uthread of the scheduler's type, handed over whole.
    unsafe { sched().paused(uth) }
}

/// Makes a uthread runnable (`thread_runnable`): a new one ([`Created`]), one that just
/// yielded ([`Yielded`]), or one that was blocked ([`Blocked`]). Callable from a uthread,
/// vcore context or a plain thread.
#[inline]
pub fn runnable(thread: impl IntoRunnable) {
    let (uth, expected) = thread.into_parts();
    // SAFETY: the handle owned the record.
    unsafe { uth.as_ref() }.transition("uthread::runnable", expected, State::Runnable);
    // Callbacks run as if in vcore context: when a uthread makes another runnable, the
    // scheduler's locks must not be held across an interruption (see PdrSpinLock).
    let disabled = vcore::notif::disable_if_uthread();
    // SAFETY: a Runnable uthread of the scheduler's type, handed over whole.
    unsafe { sched().runnable(uth) };
    if disabled {
        parlib_events::enable_notifs();
    }
}
