//! The `Scheduler` trait (parlib's `sched_ops`) and the records its callbacks receive.

use core::ptr::NonNull;
use core::sync::atomic::AtomicU32;

use crate::uthread::Uthread;

/// Why a uthread blocked: passed to [`Scheduler::thread_has_blocked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockReason {
    /// Waiting for a mutex.
    Mutex,
    /// Waiting on a condition variable.
    Condvar,
    /// Waiting for a reader-writer lock.
    RwLock,
    /// Waiting at a barrier.
    Barrier,
    /// Waiting on a semaphore.
    Semaphore,
    /// Waiting on a futex word.
    Futex,
    /// Waiting for another uthread to finish.
    Join,
    /// Sleeping until an alarm.
    Sleep,
    /// Waiting for a system call to complete.
    Syscall,
    /// Waiting for an event.
    Event,
    /// Scheduler- or application-defined.
    Other(u32),
}

/// A system call a uthread is blocked on: passed to [`Scheduler::thread_blockon_sysc`].
/// The syscall service fills it in; the scheduler may look but not change it.
#[repr(C)]
#[derive(Debug)]
pub struct Syscall {
    /// System call number.
    pub num: usize,
    /// Its arguments.
    pub args: [usize; 6],
    /// Its result, once done.
    pub retval: isize,
    /// Its errno, once done.
    pub err: i32,
    /// Completion flags, owned by the syscall service.
    pub flags: AtomicU32,
}

/// A synchronous fault raised by a uthread: passed to [`Scheduler::thread_refl_fault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// `SIGSEGV`, `SIGBUS`, `SIGFPE` or `SIGILL`.
    pub signal: i32,
    /// `si_code`.
    pub code: i32,
    /// The faulting address (`si_addr`).
    pub addr: usize,
    /// The instruction that faulted.
    pub pc: usize,
    /// Whether `addr` is in the uthread's stack guard: a stack overflow.
    pub stack_overflow: bool,
}

/// A two-level scheduler (parlib's `sched_ops`). Every callback runs with notifications
/// off, and all but one in vcore context, on the vcore's stack and TLS. The exception is
/// [`thread_runnable`](Scheduler::thread_runnable) when [`runnable`](crate::runnable) is
/// called outside vcore context: then it runs on the caller's stack and TLS (a uthread
/// waking another, with notifications disabled for the call, or a plain Linux thread).
/// Callbacks must not block or yield; protect shared state with spinlocks
/// (`parlib_vcore::spin`).
///
/// | callback | when |
/// |---|---|
/// | [`sched_entry`](Scheduler::sched_entry) | a scheduling decision is needed |
/// | [`thread_runnable`](Scheduler::thread_runnable) | a uthread may run again (after `init`, or after `has_blocked`) |
/// | [`thread_paused`](Scheduler::thread_paused) | something external paused it; still runnable |
/// | [`thread_has_blocked`](Scheduler::thread_has_blocked) | a sync primitive or service blocked it; it comes back only via `runnable` |
/// | [`thread_blockon_sysc`](Scheduler::thread_blockon_sysc) | it issued a syscall that would block |
/// | [`thread_refl_fault`](Scheduler::thread_refl_fault) | it raised SIGSEGV/SIGBUS/SIGFPE/SIGILL |
///
/// A complete example is `examples/round_robin.rs`.
pub trait Scheduler: Sync {
    /// Picks what the vcore does next: [`run_uthread`](crate::run_uthread), or
    /// [`yield_vcore`](parlib_vcore::yield_vcore), or spin and look again. Never returns.
    ///
    /// A vcore that spins here waiting for work must also poll for events
    /// (`parlib_events::events_pending()`, then `handle_events()`): it never leaves vcore
    /// context, so events sent to it (alarm expiries, I/O completions, wake-ups) would
    /// otherwise wait. A vcore parked with `yield_vcore` is woken by them instead.
    fn sched_entry(&self) -> !;

    /// `uth` may run: keep it until `sched_entry` runs it.
    fn thread_runnable(&self, uth: NonNull<Uthread>);

    /// `uth` was paused from outside (preempted, or a futex re-check); it is still
    /// runnable. Defaults to [`thread_runnable`](Scheduler::thread_runnable).
    fn thread_paused(&self, uth: NonNull<Uthread>) {
        self.thread_runnable(uth);
    }

    /// `uth` blocked; whoever blocked it will call `runnable` later. Default: nothing.
    fn thread_has_blocked(&self, uth: NonNull<Uthread>, reason: BlockReason) {
        let _ = (uth, reason);
    }

    /// `uth` blocked in a system call. Default: nothing (the syscall service makes it
    /// runnable when the call completes).
    fn thread_blockon_sysc(&self, uth: NonNull<Uthread>, sysc: NonNull<Syscall>) {
        let _ = (uth, sysc);
    }

    /// `uth` faulted. Default: print which uthread faulted, how and where, then abort.
    fn thread_refl_fault(&self, uth: NonNull<Uthread>, fault: &Fault) {
        default_fault_policy(uth, fault)
    }
}

/// The default fault policy: report and abort the process.
pub fn default_fault_policy(uth: NonNull<Uthread>, fault: &Fault) -> ! {
    // SAFETY: the uthread layer passes a live uthread.
    let id = unsafe { uth.as_ref() }.id();
    let what = if fault.stack_overflow {
        "stack overflow (hit its stack guard page)".to_string()
    } else {
        format!("{} ({})", signal_name(fault.signal), code_name(fault.signal, fault.code))
    };
    eprintln!(
        "parlib: uthread {id} faulted: {what} at address {:#x}, pc {:#x}; aborting",
        fault.addr, fault.pc
    );
    std::process::abort()
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGFPE => "SIGFPE".into(),
        libc::SIGILL => "SIGILL".into(),
        s => format!("signal {s}"),
    }
}

/// `si_code` names from `siginfo.h` for the codes a uthread is likely to raise.
fn code_name(sig: i32, code: i32) -> String {
    let name = match (sig, code) {
        (libc::SIGSEGV, 1) => "SEGV_MAPERR: address not mapped",
        (libc::SIGSEGV, 2) => "SEGV_ACCERR: no permission",
        (libc::SIGBUS, 1) => "BUS_ADRALN: misaligned address",
        (libc::SIGBUS, 2) => "BUS_ADRERR: no such physical address",
        (libc::SIGFPE, 1) => "FPE_INTDIV: integer divide by zero",
        (libc::SIGFPE, 2) => "FPE_INTOVF: integer overflow",
        (libc::SIGILL, 1) => "ILL_ILLOPC: illegal opcode",
        (_, 0x80) => "SI_KERNEL",
        _ => return format!("code {code}"),
    };
    name.into()
}
