//! `lib_init`, the scheduler registration and `vcore_entry`.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};
use std::sync::OnceLock;

use parlib_vcore as vcore;
use parlib_vcore::arch;

use crate::error::Error;
use crate::sched::{Fault, Scheduler};
use crate::switch::resume;
use crate::uthread::{State, Uthread};

static SCHED: OnceLock<&'static dyn Scheduler> = OnceLock::new();
static MAIN: AtomicPtr<Uthread> = AtomicPtr::new(core::ptr::null_mut());
static INIT: AtomicU8 = AtomicU8::new(0);

/// The registered scheduler.
#[inline]
pub(crate) fn sched() -> &'static dyn Scheduler {
    match SCHED.get() {
        Some(s) => *s,
        None => not_initialized(),
    }
}

#[cold]
fn not_initialized() -> ! {
    panic!("parlib-uthread used before uthread::lib_init")
}

/// Starts the uthread layer with `scheduler` and packages the caller as the uthread
/// `main`: initialises the vcore layer if needed, installs [`vcore_entry`], starts the
/// TLS pool, and moves the caller onto vcore 0. It returns there, as a uthread.
///
/// `main` is a record the scheduler allocated (`Idle`); it runs on the caller's own TLS.
///
/// # Errors
/// [`Error::AlreadyInitialized`] on a second call, [`Error::OnVcore`] if called on a
/// vcore, or the vcore layer's error.
///
/// # Safety
/// `main` must stay valid for the rest of the process.
pub unsafe fn lib_init(scheduler: &'static dyn Scheduler, main: NonNull<Uthread>) -> Result<(), Error> {
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
        crate::tls::start_refiller()
    })();
    if let Err(e) = started {
        INIT.store(0, Ordering::Release); // nothing moved yet: a retry may succeed
        return Err(e);
    }
    let _ = SCHED.set(scheduler);
    // SAFETY: the caller hands us `main` for the rest of the process.
    let m = unsafe { main.as_ref() };
    m.transition("uthread::lib_init (main)", &[State::Idle], State::Running);
    // SAFETY: nothing else knows `main` yet. It runs on this task's TLS.
    unsafe { *m.tls.get() = arch::fs_base() };
    MAIN.store(main.as_ptr(), Ordering::Release);
    vcore::set_entry(vcore_entry);
    // Moves this context onto vcore 0; vcore_entry there adopts it as `main`.
    vcore::request(1)?;
    Ok(())
}

/// The uthread `main` (the context that called `lib_init`), if it is initialised.
pub fn main_uthread() -> Option<NonNull<Uthread>> {
    NonNull::new(MAIN.load(Ordering::Acquire))
}

/// The single entry into vcore context (DESIGN §2), installed by `lib_init`:
///
/// 1. adopt `main` if the first request just moved it here;
/// 2. if a notification interrupted the current uthread, keep its saved context in it;
///    if it faulted, report the fault to the scheduler;
/// 3. handle events (handlers may pause the current uthread: preemption);
/// 4. resume the current uthread if there still is one;
/// 5. otherwise ask the scheduler: `sched_entry`.
pub fn vcore_entry() -> ! {
    // SAFETY: only vcore tasks run the entry.
    let vc = unsafe { vcore::this_unchecked() };
    if let Some(ctx) = vcore::take_main_context() {
        let m = MAIN.load(Ordering::Acquire);
        // SAFETY: `main` was registered by lib_init before the move and is running, so
        // only this vcore touches it now.
        // `main` is running (it was moved, not switched out), so this vcore now owns it.
        unsafe {
            *(*m).ctx.get() = ctx;
            vc.set_current(m.cast(), vcore::main_tls());
        }
    }
    let cur = vc.current() as *const Uthread;
    // With a uthread layer, only a running uthread (current, non-null) is interrupted or
    // faults; vcore context's own faults abort in the handler.
    // SAFETY: we are in vcore context on this vcore; `cur` is the uthread it was
    // running when the trampoline or the fault handler brought it here.
    if !cur.is_null() {
        unsafe {
            if let Some(ctx) = vc.take_interrupted() {
                *(*cur).ctx.get() = ctx;
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
        // SAFETY: `current` is a uthread this vcore was running when it was interrupted.
        unsafe { resume(vc, &*(cur as *const Uthread)) }
    }
    sched().sched_entry()
}

/// Step 2 for a fault: the faulting context was abandoned, so the uthread is `Done`
/// (the scheduler may `cleanup` it) and the scheduler decides what else happens.
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
    // SAFETY: `u` is a live uthread record (the scheduler's).
    let uth = unsafe { NonNull::new_unchecked(u as *const Uthread as *mut Uthread) };
    sched().thread_refl_fault(uth, &fault);
}
