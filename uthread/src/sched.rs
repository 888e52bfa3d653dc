//! The `Scheduler` trait (parlib's `sched_ops`) and the records its callbacks receive.

use core::ptr::NonNull;
use core::sync::atomic::AtomicU32;

use crate::handle::{Exited, Runnable};
use crate::record::Record;
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
/// Uthreads reach the scheduler as owned handles ([`Runnable`]), typed by the scheduler's
/// own per-thread data [`Thread`](Scheduler::Thread), which every uthread's record holds
/// (given to [`create`](crate::create) / [`spawn`](crate::spawn)).
///
/// | callback | when | gets |
/// |---|---|---|
/// | [`sched_entry`](Scheduler::sched_entry) | a scheduling decision is needed | |
/// | [`thread_runnable`](Scheduler::thread_runnable) | a uthread may run again (new, or woken after it blocked) | the `Runnable` |
/// | [`thread_paused`](Scheduler::thread_paused) | it yielded or was preempted; still runnable | the `Runnable` |
/// | [`thread_has_blocked`](Scheduler::thread_has_blocked) | a sync primitive or service blocked it; it comes back only via `thread_runnable` | a look at its record |
/// | [`thread_blockon_sysc`](Scheduler::thread_blockon_sysc) | it blocked in a system call | a look at its record and the call |
/// | [`thread_exited`](Scheduler::thread_exited) | it exited | the `Exited` handle: dropping it frees the uthread |
/// | [`thread_refl_fault`](Scheduler::thread_refl_fault) | it raised SIGSEGV/SIGBUS/SIGFPE/SIGILL; it will not run again | the `Exited` handle and the fault |
///
/// Complete examples: `examples/round_robin.rs` (FIFO) and `examples/priority.rs`.
pub trait Scheduler: Sync + 'static {
    /// The scheduler's own per-thread data, kept in every uthread's [`Record`] and reached
    /// through the handles (`Deref`). `()` if it needs none.
    type Thread: Send + Sync + 'static;

    /// Picks what the vcore does next: [`run_uthread`](crate::run_uthread), or wait for
    /// work with [`idle::park`](crate::idle::park). Never returns.
    ///
    /// A vcore that spins here waiting for work must also poll for events
    /// (`parlib_events::events_pending()`, then `handle_events()`): it never leaves vcore
    /// context, so events sent to it (alarm expiries, I/O completions, wake-ups) would
    /// otherwise wait. A vcore parked with `idle::park` is woken by them instead.
    fn sched_entry(&self) -> !;

    /// `thread` may run: keep it until `sched_entry` runs it.
    fn thread_runnable(&self, thread: Runnable<Self::Thread>);

    /// `thread` yielded, or was paused from outside (preempted); it is still runnable.
    /// Normally called in the vcore context of the vcore that ran it, which schedules
    /// next: no other vcore need be woken for it. Defaults to
    /// [`thread_runnable`](Scheduler::thread_runnable).
    fn thread_paused(&self, thread: Runnable<Self::Thread>) {
        self.thread_runnable(thread);
    }

    /// `thread` blocked; whoever blocked it will make it runnable later. Default: nothing.
    fn thread_has_blocked(&self, thread: &Record<Self::Thread>, reason: BlockReason) {
        let _ = (thread, reason);
    }

    /// `thread` blocked in a system call. Default: nothing (the syscall service makes it
    /// runnable when the call completes).
    fn thread_blockon_sysc(&self, thread: &Record<Self::Thread>, sysc: &Syscall) {
        let _ = (thread, sysc);
    }

    /// `thread` exited (its entry returned, or it called [`exit`](crate::exit)), and no
    /// longer runs on its stack. Default: drop the handle, which frees the uthread.
    fn thread_exited(&self, thread: Exited<Self::Thread>) {
        drop(thread);
    }

    /// `thread` faulted; its context was abandoned, so it is exited. Default: print which
    /// uthread faulted, how and where, then abort.
    fn thread_refl_fault(&self, thread: Exited<Self::Thread>, fault: &Fault) {
        default_fault_policy(thread.uthread(), fault)
    }
}

/// The default fault policy: report and abort the process.
pub fn default_fault_policy(uth: &Uthread, fault: &Fault) -> ! {
    let id = uth.id();
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

/// The scheduler with its `Thread` type erased, as the uthread layer stores it: every
/// method takes the base record and rebuilds the typed handle.
pub(crate) trait Dispatch: Sync {
    fn sched_entry(&self) -> !;
    /// # Safety (all of the below)
    /// `uth` is the base of a `Record<Self::Thread>` (every record is: `create` checks the
    /// type) in the state the callback's handle stands for, and the caller gives up its
    /// ownership; but for `has_blocked` and `blockon_sysc`, whose caller only lends the
    /// record and keeps it (it makes the `Blocked` handle afterwards).
    unsafe fn runnable(&self, uth: NonNull<Uthread>);
    unsafe fn paused(&self, uth: NonNull<Uthread>);
    unsafe fn has_blocked(&self, uth: NonNull<Uthread>, reason: BlockReason);
    unsafe fn blockon_sysc(&self, uth: NonNull<Uthread>, sysc: &Syscall);
    unsafe fn exited(&self, uth: NonNull<Uthread>);
    unsafe fn refl_fault(&self, uth: NonNull<Uthread>, fault: &Fault);
}

impl<S: Scheduler> Dispatch for S {
    #[inline]
    fn sched_entry(&self) -> ! {
        Scheduler::sched_entry(self)
    }
    #[inline]
    unsafe fn runnable(&self, uth: NonNull<Uthread>) {
        // SAFETY: the caller's contract (trait docs).
        self.thread_runnable(unsafe { Runnable::from_uthread(uth) })
    }
    #[inline]
    unsafe fn paused(&self, uth: NonNull<Uthread>) {
        // SAFETY: the caller's contract.
        self.thread_paused(unsafe { Runnable::from_uthread(uth) })
    }
    #[inline]
    unsafe fn has_blocked(&self, uth: NonNull<Uthread>, reason: BlockReason) {
        // SAFETY: the caller's contract; the record stays alive while the caller's
        // Blocked handle does.
        self.thread_has_blocked(unsafe { Record::from_uthread(uth).as_ref() }, reason)
    }
    #[inline]
    unsafe fn blockon_sysc(&self, uth: NonNull<Uthread>, sysc: &Syscall) {
        // SAFETY: as for has_blocked.
        self.thread_blockon_sysc(unsafe { Record::from_uthread(uth).as_ref() }, sysc)
    }
    unsafe fn exited(&self, uth: NonNull<Uthread>) {
        // SAFETY: the caller's contract.
        self.thread_exited(unsafe { Exited::from_uthread(uth) })
    }
    unsafe fn refl_fault(&self, uth: NonNull<Uthread>, fault: &Fault) {
        // SAFETY: the caller's contract.
        self.thread_refl_fault(unsafe { Exited::from_uthread(uth) }, fault)
    }
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
