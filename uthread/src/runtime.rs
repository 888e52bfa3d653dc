//! `lib_init`, the scheduler registration and `vcore_entry`.

use core::any::TypeId;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};
use std::sync::OnceLock;

use parlib_vcore as vcore;
use parlib_vcore::arch;

use crate::error::Error;
use crate::record;
use crate::sched::{Dispatch, Fault, Scheduler};
use crate::switch::resume;
use crate::uthread::{State, Uthread};

/// The registered scheduler, and the type (and its name, for messages) of the per-thread
/// data every record must hold.
struct Registered {
    sched: &'static dyn Dispatch,
    thread_type: TypeId,
    thread_type_name: &'static str,
}

static SCHED: OnceLock<Registered> = OnceLock::new();
static MAIN: AtomicPtr<Uthread> = AtomicPtr::new(core::ptr::null_mut());
static INIT: AtomicU8 = AtomicU8::new(0);

/// The registered scheduler.
#[inline]
pub(crate) fn sched() -> &'static dyn Dispatch {
    match SCHED.get() {
        Some(r) => r.sched,
        None => not_initialized(),
    }
}

#[cold]
fn not_initialized() -> ! {
    panic!("parlib-uthread used before uthread::lib_init")
}

/// Checks that records of `T` are what the registered scheduler expects: every record
/// must be a `Record<Scheduler::Thread>`, since the handles the scheduler receives are
/// typed by it. `Err(NotInitialized)` before `lib_init`.
///
/// # Panics
/// If `T` is not the scheduler's `Thread` type.
pub(crate) fn check_thread_type<T: 'static>(what: &str) -> Result<(), Error> {
    let Some(r) = SCHED.get() else { return Err(Error::NotInitialized) };
    if r.thread_type != TypeId::of::<T>() {
        panic!(
            "{what}: the scheduler's Thread type is {}, not {}; every uthread's record holds \
             the scheduler's own per-thread data",
            r.thread_type_name,
            core::any::type_name::<T>()
        );
    }
    Ok(())
}

/// Starts the uthread layer with `scheduler` and packages the caller as the uthread
/// `main`, whose record holds `main_thread`: initialises the vcore layer if needed,
/// installs [`vcore_entry`], starts the TLS pool, and moves the caller onto vcore 0. It
/// returns there, as a uthread. `main` runs on the caller's own TLS and never exits
/// through the scheduler (its record is never freed).
///
/// # Errors
/// [`Error::AlreadyInitialized`] on a second call, [`Error::OnVcore`] if called on a
/// vcore, or the vcore layer's error.
pub fn lib_init<S: Scheduler>(scheduler: &'static S, main_thread: S::Thread) -> Result<(), Error> {
    if vcore::this().is_some() {
        return Err(Error::OnVcore);
    }
    if INIT.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return Err(Error::AlreadyInitialized);
    }
    let started = (|| {
        if !vcore::is_initialized() {
            vcore::lib_init()?;
        }
        parlib_events::init().map_err(|_| Error::NotInitialized)?;
        crate::idle::init();
        crate::tls::start_refiller()
    })();
    if let Err(e) = started {
        INIT.store(0, Ordering::Release); // nothing moved yet: a retry may succeed
        return Err(e);
    }
    let _ = SCHED.set(Registered {
        sched: scheduler,
        thread_type: TypeId::of::<S::Thread>(),
        thread_type_name: core::any::type_name::<S::Thread>(),
    });
    // Never freed: `main` ends the process rather than exiting through the scheduler.
    let main = record::alloc(main_thread);
    // SAFETY: a fresh record, alive for the rest of the process.
    let m = unsafe { main.as_ref() }.uthread();
    m.transition("uthread::lib_init (main)", &[State::Idle], State::Running);
    // SAFETY: nothing else knows `main` yet. It runs on this task's TLS.
    unsafe { *m.tls.get() = arch::fs_base() };
    MAIN.store(main.as_ptr().cast(), Ordering::Release);
    vcore::set_entry(vcore_entry);
    // Moves this context onto vcore 0; vcore_entry there adopts it as `main`.
    vcore::request(1)?;
    Ok(())
}

/// The uthread `main` (the context that called `lib_init`), if it is initialised: an
/// identity, comparable with [`current`](crate::current).
pub fn main_uthread() -> Option<NonNull<Uthread>> {
    NonNull::new(MAIN.load(Ordering::Acquire))
}

/// The single entry into vcore context (DESIGN §2), installed by `lib_init`:
///
/// 0. the vcore runs, so it is no longer parking ([`idle`](crate::idle));
/// 1. adopt `main` if the first request just moved it here;
/// 2. if a notification interrupted the current uthread, keep its saved context in it;
///    if it faulted, report the fault to the scheduler;
/// 3. handle events (a handler may take the current uthread with `take_interrupted`,
///    then `paused`: preemption);
/// 4. resume the current uthread if there still is one (first pushing onto it the call
///    [`call_at_safe_point`](crate::call_at_safe_point) asked for, if any);
/// 5. otherwise ask the scheduler: `sched_entry`.
pub fn vcore_entry() -> ! {
    // SAFETY: only vcore tasks run the entry.
    let vc = unsafe { vcore::this_unchecked() };
    crate::idle::running(vc.id());
    if let Some(ctx) = vcore::take_main_context() {
        let m = MAIN.load(Ordering::Acquire);
        // SAFETY: `main` was registered by lib_init before the move, and is running (it
        // was moved, not switched out), so this vcore now owns it and only it touches it.
        unsafe {
            *(*m).ctx.get() = ctx;
            vc.set_current(m.cast(), vcore::main_tls());
        }
    }
    let cur = vc.current() as *const Uthread;
    // With a uthread layer, only a running uthread (current, non-null) is interrupted or
    // faults; vcore context's own faults abort in the handler.
    if !cur.is_null() {
        // SAFETY: we are in vcore context on this vcore; `cur` is the uthread it was
        // running when the trampoline or the fault handler brought it here.
        unsafe {
            if let Some(ctx) = vc.take_interrupted() {
                *(*cur).ctx.get() = ctx;
                (*cur).ctx_interrupted.store(true, Ordering::Relaxed);
                (*cur).notif_depth.store(vc.notif_depth(), Ordering::Relaxed);
            }
            if let Some(f) = vc.take_fault() {
                reflect_fault(vc, &*cur, &f);
            }
        }
    }
    // SAFETY: this is vcore context on `vc`.
    unsafe { parlib_events::handle_events_on(vc) };
    let cur = vc.current();
    if !cur.is_null() {
        // SAFETY: `current` is this vcore's uthread, switched out (interrupted, or its
        // resume met a pending notification); `push_pending` pushes only onto an
        // interrupted context.
        unsafe {
            crate::safe_call::push_pending(&*(cur as *const Uthread));
            resume(vc, &*(cur as *const Uthread))
        }
    }
    sched().sched_entry()
}

/// Step 2 for a fault: the faulting context was abandoned, so the uthread is `Done`
/// (the scheduler gets its `Exited` handle) and the scheduler decides what else happens.
///
/// # Safety
/// In vcore context, with `u` this vcore's current uthread.
unsafe fn reflect_fault(vc: &vcore::Vcore, u: &Uthread, f: &vcore::FaultInfo) {
    let guard = u.stack_guard();
    let fault = Fault {
        signal: f.signal,
        code: f.code,
        addr: f.addr,
        pc: f.pc,
        stack_overflow: guard.contains(&f.addr),
    };
    // SAFETY: the uthread can never resume; the vcore lets go of it.
    unsafe { vc.set_current(core::ptr::null_mut(), 0) };
    u.set_state(State::Done);
    // SAFETY: the vcore owned its running uthread, now Done, and hands it over whole.
    unsafe { sched().refl_fault(NonNull::from(u), &fault) };
}
