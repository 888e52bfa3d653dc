//! Notifications, the user-space IPI, and fault delivery (DESIGN §5).
//!
//! A *notification* forces a vcore into its entry function so it looks at its events.
//! [`notify`] uses the cheapest means the target's state allows:
//!
//! | target vcore | delivery | why it is not lost |
//! |---|---|---|
//! | parked | CAS to `RUNNING`, futex wake | it starts afresh in the entry |
//! | in vcore context | nothing | its way out ([`Vcore::leave_vcore_context`]) re-checks `notif_pending` |
//! | running a uthread, depth > 0 | nothing | bringing the depth to 0 ([`enable_notifs`]) re-notifies |
//! | running a uthread, depth 0 | `SIGUSR1` by `tgkill` | the handler interrupts it (below) |
//!
//! Every case first sets `notif_pending` (SeqCst); the target reads its own state flags
//! after writing them (SeqCst), so in each race at least one side sees the other.
//!
//! # The notification flags
//!
//! | flag | written by | meaning |
//! |---|---|---|
//! | `notif_pending` | senders set it, the entry clears it | a notification has not been acted on |
//! | `notif_depth` | the running uthread (`%gs`-relative inc/dec) | > 0: do not interrupt |
//! | `vcore_ctx` | the vcore itself | in vcore context: never interrupted |
//!
//! # Interrupting a running uthread
//!
//! The `SIGUSR1` handler runs on the vcore's alternate stack. It does nothing unless a
//! notification is pending. It interrupts only at a *safe point*:
//! 1. not in vcore context (that re-checks by itself);
//! 2. not on the way out of vcore context (`rsp` still on the vcore stack): retry;
//! 3. not with the disable depth above 0 (re-enabling re-notifies);
//! 4. not while the PC lies in libc, the dynamic loader, libm, libgcc_s or libstdc++
//!    (text ranges found once with `dl_iterate_phdr`), which are not reentrant: retry;
//! 5. not at a `restart_syscall`, whose state lives in the task and would not follow
//!    a uthread that migrates: retry.
//!
//! DESIGN §5 also names "this library" as unsafe text. parlib-rs is linked into the
//! application's own binary, so its text cannot be told apart from the application's;
//! instead, every parlib critical section that vcore context also enters runs with
//! notifications disabled (`spin::PdrSpinLock`, and the uthread layer's callbacks).
//!
//! "Retry" arms the vcore's one-shot retry timer, which sends `SIGUSR1` again after
//! [`RETRY_NS`]. At a safe point the handler rewrites the `ucontext` so that after
//! `sigreturn` the uthread calls [`arch::interrupt_trampoline`], marks the vcore as in
//! vcore context and returns. The trampoline saves the full state on the uthread's
//! stack and calls `enter_from_interrupt`, which saves a resumable [`Context`] in the
//! vcore's record ([`Vcore::take_interrupted`]) and runs the entry function on the
//! vcore stack and TLS. A syscall interrupted with `SA_RESTART` semantics has its
//! registers rewound by the kernel before the handler runs, so it re-issues on resume.
//!
//! # Faults
//!
//! `SIGSEGV`, `SIGBUS`, `SIGFPE` and `SIGILL` raised by a uthread are recorded in the
//! vcore's record ([`Vcore::take_fault`]) and the vcore enters vcore context straight from
//! the handler (on the alternate stack, so a stack overflow can be reported). The
//! faulting context is abandoned. A fault on the vcore stack (in vcore context) is
//! reported and aborts the process. A fault on a task that is not a vcore goes to the handler that was installed
//! before ours (Rust's own stack-overflow handler, or the default action).

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

use crossbeam_utils::atomic::AtomicCell;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::arch::{self, Context};
use crate::error::Error;
use crate::timer::{VcoreTimer, TIMER_HOOK_TAG};
use crate::vcore::{enter, get, this, this_unchecked, Vcore};

/// The signal parlib uses for notifications. Applications must leave it alone.
pub const NOTIF_SIGNAL: i32 = libc::SIGUSR1;

/// Delay before a notification that met an unsafe point is tried again. Long enough that
/// a libc call in progress has usually finished (they are sub-microsecond to a few µs
/// when they do not block); short next to the ~100 µs periods preemption uses here,
/// where one signal steals 9-19 µs.
pub const RETRY_NS: i64 = 50_000;

const FAULT_SIGNALS: [Signal; 4] = [Signal::SIGSEGV, Signal::SIGBUS, Signal::SIGFPE, Signal::SIGILL];
const _: () = assert!(Signal::SIGUSR1 as i32 == NOTIF_SIGNAL);

/// A synchronous fault raised while a uthread ran, as the handler saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultInfo {
    /// The signal.
    pub signal: i32,
    /// `si_code`.
    pub code: i32,
    /// `si_addr`: the faulting data address (or instruction, for SIGILL/SIGFPE).
    pub addr: usize,
    /// The faulting instruction.
    pub pc: usize,
    /// The stack pointer at the fault.
    pub sp: usize,
}

// ---------------------------------------------------------------------------------------
// Sending.

/// Notifies vcore `id`: makes it run its entry function soon (see the module docs).
///
/// Callable from any thread, vcore or not, and from a signal handler: it only touches
/// atomics and makes raw system calls.
pub fn notify(id: usize) -> Result<(), Error> {
    let vc = get(id)?;
    vc.notif_pending.store(true, Ordering::SeqCst);
    // From the vcore's own notification handler (its timer hook), the handler itself
    // delivers the notification once the hook returns: no signal, no futex wake.
    let own_handler =
        vc.in_timer_hook.load(Ordering::Relaxed) && this().is_some_and(|v| core::ptr::eq(v, vc));
    if vc.is_parked() && vc.wake_inner(!own_handler) {
        return Ok(());
    }
    if own_handler || vc.vcore_ctx.load(Ordering::SeqCst) || vc.notif_depth.load(Ordering::SeqCst) > 0 {
        return Ok(());
    }
    // SAFETY: tgkill to a vcore task of this process.
    unsafe { send_signal(vc) };
    Ok(())
}

/// Notifies the calling vcore: delivered at once if it runs a uthread that may be
/// interrupted, else when that becomes possible.
pub fn notify_self() {
    if let Some(vc) = this() {
        vc.notif_pending.store(true, Ordering::SeqCst);
        if !vc.in_vcore_context() && vc.notif_depth.load(Ordering::Relaxed) == 0 {
            // SAFETY: tgkill to our own task.
            unsafe { send_signal(vc) };
        }
    }
}

/// # Safety
/// `vc` must be a started vcore of this process.
unsafe fn send_signal(vc: &Vcore) {
    // SAFETY: raw tgkill (no errno) to a live task of this process.
    unsafe {
        arch::syscall6(libc::SYS_tgkill as usize, getpid(), vc.tid() as usize, NOTIF_SIGNAL as usize, 0, 0, 0)
    };
}

fn getpid() -> usize {
    static PID: AtomicUsize = AtomicUsize::new(0);
    match PID.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: getpid has no preconditions.
            let p = unsafe { libc::getpid() } as usize;
            PID.store(p, Ordering::Relaxed);
            p
        }
        p => p,
    }
}

// ---------------------------------------------------------------------------------------
// The disable depth of the running uthread.

const DEPTH_OFF: usize = core::mem::offset_of!(Vcore, notif_depth);

/// Disables notifications on the calling vcore (depth + 1). For the uthread layer, which
/// calls it only on a uthread; the depth travels with the uthread across switches.
///
/// # Safety
/// The caller must be a uthread running on a vcore.
#[inline]
pub unsafe fn disable_notifs() {
    // SAFETY: on a vcore, %gs:DEPTH_OFF is this vcore's depth word.
    unsafe { arch::gs_inc_u32::<DEPTH_OFF>() };
}

/// Disables notifications if the caller is a uthread (not vcore context, not a plain
/// thread); returns whether it did, so the caller knows to re-enable them.
#[inline]
pub fn disable_if_uthread() -> bool {
    if !crate::vcore::on_uthread() {
        return false;
    }
    // SAFETY: we run on a vcore, outside vcore context: a uthread. The increment is
    // %gs-relative, so it lands on whichever vcore we run on by then.
    unsafe { disable_notifs() };
    true
}

/// The disable depth of the running uthread (a `%gs`-relative load; 0 outside vcores).
#[inline]
pub fn running_depth() -> u32 {
    if this().is_none() {
        return 0;
    }
    // SAFETY: on a vcore, %gs:DEPTH_OFF is the depth word.
    unsafe { crate::arch::gs_load_u32::<DEPTH_OFF>() }
}

/// Re-enables notifications on the calling vcore (depth - 1); at 0, delivers a pending
/// notification at once.
///
/// # Panics
/// If the depth was already 0.
///
/// # Safety
/// As for [`disable_notifs`].
#[inline]
pub unsafe fn enable_notifs() {
    // SAFETY: as for disable_notifs.
    let depth = unsafe { arch::gs_dec_u32::<DEPTH_OFF>() };
    if depth == u32::MAX {
        // SAFETY: undo the decrement before reporting the misuse.
        unsafe { arch::gs_inc_u32::<DEPTH_OFF>() };
        panic!("enable_notifs without a matching disable_notifs");
    }
    if depth == 0 {
        // SAFETY: the caller runs on a vcore.
        let vc = unsafe { this_unchecked() };
        // Inside the timer hook, the notification handler delivers it next.
        if vc.notif_pending.load(Ordering::SeqCst) && !vc.in_timer_hook.load(Ordering::Relaxed) {
            // SAFETY: tgkill to our own task.
            unsafe { send_signal(vc) };
        }
    }
}

impl Vcore {
    /// The disable depth of the uthread running on this vcore.
    #[inline]
    pub fn notif_depth(&self) -> u32 {
        self.notif_depth.load(Ordering::Relaxed)
    }

    /// Sets the disable depth for the uthread about to run (the uthread layer saves and
    /// restores it on every switch).
    ///
    /// # Safety
    /// In vcore context, about to run the uthread whose depth this is.
    #[inline]
    pub unsafe fn set_notif_depth(&self, depth: u32) {
        self.notif_depth.store(depth, Ordering::Relaxed);
    }

    /// Whether a notification is waiting to be acted on.
    #[inline]
    pub fn notif_pending(&self) -> bool {
        self.notif_pending.load(Ordering::SeqCst)
    }

    /// Clears `notif_pending`; the entry calls it before handling events, so a
    /// notification that arrives during handling is seen afterwards.
    #[inline]
    pub fn clear_notif_pending(&self) {
        // Only notifiers set the flag, so a flag read as clear can be left alone: the
        // locked store would cost a full barrier on every pass through `vcore_entry`.
        // A notification that lands after the read keeps the flag set, and
        // `leave_vcore_context` sees it.
        if self.notif_pending.load(Ordering::Relaxed) {
            self.notif_pending.store(false, Ordering::SeqCst);
        }
    }

    /// Leaves vcore context unless a notification is pending; returns whether it left.
    /// The store and the check are both SeqCst, pairing with [`notify`]'s.
    ///
    /// # Safety
    /// In vcore context, about to switch to a uthread that is already `current`.
    #[inline]
    pub unsafe fn leave_vcore_context(&self) -> bool {
        self.vcore_ctx.store(false, Ordering::SeqCst);
        if self.notif_pending.load(Ordering::SeqCst) {
            self.vcore_ctx.store(true, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// The context saved by the interrupt trampoline when a notification interrupted the
    /// current uthread; taking it leaves the slot empty. Loading it resumes the uthread
    /// exactly where it was interrupted.
    ///
    /// # Safety
    /// In vcore context on this vcore.
    #[inline]
    pub unsafe fn take_interrupted(&self) -> Option<Context> {
        // SAFETY: only this vcore, in vcore context, touches the slot.
        let slot = unsafe { &mut *self.interrupted.get() };
        (!slot.is_empty()).then(|| core::mem::replace(slot, Context::EMPTY))
    }

    /// The fault that sent this vcore into vcore context, if any; taking it clears it.
    ///
    /// # Safety
    /// In vcore context on this vcore.
    #[inline]
    pub unsafe fn take_fault(&self) -> Option<FaultInfo> {
        // SAFETY: only this vcore touches the slot: its fault handler writes it before
        // entering vcore context.
        unsafe { (*self.fault.get()).take() }
    }
}

// ---------------------------------------------------------------------------------------
// Handlers.

/// The fault signals' handlers from before ours, in `FAULT_SIGNALS` order.
static PREVIOUS: OnceLock<[SigAction; 4]> = OnceLock::new();

/// Installs the notification and fault handlers and finds the unsafe text ranges.
/// Called once by `lib_init`.
pub(crate) fn install() -> Result<(), Error> {
    static DONE: OnceLock<Result<(), Error>> = OnceLock::new();
    DONE.get_or_init(install_once).clone()
}

fn install_once() -> Result<(), Error> {
    find_unsafe_ranges();
    let notif = SigAction::new(
        SigHandler::SigAction(on_notify),
        SaFlags::SA_SIGINFO | SaFlags::SA_ONSTACK | SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: on_notify is async-signal-safe: it touches only atomics, the vcore record
    // and the interrupted context, and makes raw system calls.
    unsafe { sigaction(Signal::SIGUSR1, &notif) }.map_err(|e| Error::os("sigaction (SIGUSR1)", e))?;
    // SA_NODEFER with an empty mask: the handler may leave by jumping into vcore context,
    // and then no signal must stay blocked.
    let fault = SigAction::new(
        SigHandler::SigAction(on_fault),
        SaFlags::SA_SIGINFO | SaFlags::SA_ONSTACK | SaFlags::SA_NODEFER,
        SigSet::empty(),
    );
    let mut prev = [SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty()); 4];
    for (p, &sig) in prev.iter_mut().zip(&FAULT_SIGNALS) {
        // SAFETY: on_fault is async-signal-safe on vcores (it records the fault and
        // jumps into vcore context) and chains to the previous handler elsewhere.
        *p = unsafe { sigaction(sig, &fault) }.map_err(|e| Error::os("sigaction (fault signals)", e))?;
    }
    let _ = PREVIOUS.set(prev);
    Ok(())
}

/// Per-task set-up, on the vcore task: its alternate signal stack and its retry timer.
pub(crate) fn init_task(vc: &Vcore) {
    let ss = libc::stack_t {
        ss_sp: vc.altstack.bottom() as *mut libc::c_void,
        ss_flags: 0,
        ss_size: vc.altstack.size(),
    };
    // libc: nix (0.30) has no sigaltstack.
    // SAFETY: the alternate stack is this vcore's own mapping, used by nobody else.
    unsafe { libc::sigaltstack(&ss, core::ptr::null_mut()) };
    // Without it a deferred notification waits for the next one.
    if let Ok(t) = VcoreTimer::for_retry(vc) {
        let _ = vc.retry_timer.set(t);
    }
}

fn arm_retry(vc: &Vcore) {
    let Some(timer) = vc.retry_timer.get() else { return };
    if !vc.retry_armed.swap(true, Ordering::Relaxed) {
        let _ = timer.arm_after(RETRY_NS as u64);
    }
}

// ---------------------------------------------------------------------------------------
// The timer hook: what the expiry of a layer's `VcoreTimer` runs.

static TIMER_HOOK: AtomicCell<Option<fn(usize)>> = AtomicCell::new(None);
// Loaded in the notification handler: a locked AtomicCell could deadlock against the
// store it interrupted.
const _: () = assert!(AtomicCell::<Option<fn(usize)>>::is_lock_free());

/// Sets the function the expiry of a [`VcoreTimer::new`] timer calls, in the notification
/// handler of the vcore it expired on, with that vcore's id. It runs in a signal handler:
/// it may only do what is async-signal-safe (`parlib_events::send_event` is). The alarms
/// layer uses it to turn timer expiry into an `EV_ALARM` event.
pub fn set_timer_hook(hook: fn(usize)) {
    TIMER_HOOK.store(Some(hook));
}

fn run_timer_hook(vc: &Vcore, info: *const libc::siginfo_t) {
    // SAFETY: the kernel passes a valid siginfo; for SI_TIMER the value is the timer's.
    let tagged = unsafe {
        (*info).si_code == libc::SI_TIMER && (*info).si_value().sival_ptr as usize == TIMER_HOOK_TAG
    };
    if let Some(f) = TIMER_HOOK.load().filter(|_| tagged) {
        vc.in_timer_hook.store(true, Ordering::Relaxed);
        f(vc.id());
        vc.in_timer_hook.store(false, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------
// The notification signal on plain threads.

/// What the notification signal runs on a task that is not a vcore.
pub type ThreadHook = fn(&libc::siginfo_t, &mut libc::ucontext_t);

static THREAD_HOOK: AtomicCell<Option<ThreadHook>> = AtomicCell::new(None);
const _: () = assert!(AtomicCell::<Option<ThreadHook>>::is_lock_free());

/// Sets what the notification signal runs when it arrives on a plain thread (a task that
/// is not a vcore): parlib-timed preempts its calls there. It runs in the signal handler,
/// on the thread's own stack and TLS, and may only do what is async-signal-safe. Installs
/// the handlers if [`lib_init`](crate::lib_init) has not, so plain threads need no vcores.
///
/// # Errors
/// If `sigaction` fails.
pub fn set_thread_hook(hook: ThreadHook) -> Result<(), Error> {
    THREAD_HOOK.store(Some(hook));
    install()
}

/// Whether an interrupted context may be preempted where it stands, as far as its code
/// is concerned (steps 4 and 5 of "Interrupting a running uthread"): its PC lies outside
/// libc, the loader and the other non-reentrant objects, and it is not at a
/// `restart_syscall`. Async-signal-safe.
pub fn at_safe_code(uc: &libc::ucontext_t) -> bool {
    let g = &uc.uc_mcontext.gregs;
    !in_unsafe_text(g[libc::REG_RIP as usize] as usize) && !at_restart_syscall(g)
}

/// The `SIGUSR1` handler (module docs, "Interrupting a running uthread"). Runs on the
/// vcore's alternate stack and on whatever TLS was running: it touches no TLS.
extern "C" fn on_notify(_sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    let Some(vc) = this() else {
        if let Some(hook) = THREAD_HOOK.load() {
            // SAFETY: the kernel passes a valid siginfo and ucontext of this task.
            unsafe { hook(&*info, &mut *(uctx as *mut libc::ucontext_t)) };
        }
        return;
    };
    run_timer_hook(vc, info);
    vc.retry_armed.store(false, Ordering::Relaxed);
    if !vc.notif_pending.load(Ordering::SeqCst) || vc.in_vcore_context() {
        return;
    }
    // SAFETY: the kernel passes the interrupted context of this task.
    let uc = unsafe { &mut *(uctx as *mut libc::ucontext_t) };
    let sp = uc.uc_mcontext.gregs[libc::REG_RSP as usize] as usize;
    if vc.stack.contains(sp) || vc.stack.guard_range().contains(&sp) {
        arm_retry(vc); // on the way out of vcore context
        return;
    }
    if vc.notif_depth.load(Ordering::Relaxed) > 0 {
        return; // enable_notifs delivers it
    }
    if !at_safe_code(uc) {
        arm_retry(vc);
        return;
    }
    // SAFETY: the interrupted stack is the running uthread's; below its red zone lies
    // free stack (a fault there is reported as that uthread's stack overflow).
    unsafe { arch::redirect_to(uc, arch::interrupt_trampoline) };
    // SAFETY: from sigreturn on, this vcore runs the trampoline into vcore context.
    unsafe { vc.set_vcore_context(true) };
}

fn at_restart_syscall(g: &[libc::greg_t; 23]) -> bool {
    let pc = g[libc::REG_RIP as usize] as usize;
    // SAFETY: the interrupted PC points at mapped, readable code; we read two bytes.
    g[libc::REG_RAX as usize] as usize == libc::SYS_restart_syscall as usize
        && unsafe { (pc as *const [u8; 2]).read_unaligned() } == [0x0f, 0x05]
}

/// Called by the interrupt trampoline on the interrupted stack, 64-aligned, with every
/// register saved: saves a resumable context into the vcore's record and enters vcore
/// context. Returns into the trampoline when that context is loaded.
///
/// # Safety
/// Only the trampoline calls it, on a vcore, with `vcore_ctx` already set.
pub(crate) unsafe extern "C" fn enter_from_interrupt() {
    // SAFETY: only vcore tasks are ever redirected into the trampoline.
    let vc = unsafe { this_unchecked() };
    // SAFETY: the vcore stack is free (a uthread was running); the slot is ours.
    unsafe { arch::save_and_call(vc.interrupted.get(), vc.stack_top(), interrupt_entry, 0, 0) };
}

unsafe extern "C" fn interrupt_entry(_: usize, _: usize) -> ! {
    // SAFETY: we run on a vcore task, now on its vcore stack.
    let vc = unsafe { this_unchecked() };
    // SAFETY: vcore context runs on the vcore task's own TLS; nothing before this line
    // touched TLS.
    unsafe { arch::set_fs_base(vc.tls()) };
    enter(vc)
}

/// Handler of SIGSEGV, SIGBUS, SIGFPE and SIGILL (module docs, "Faults").
extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: the kernel passes valid siginfo and ucontext for this signal.
    let (info_ref, uc) = unsafe { (&*info, &*(uctx as *const libc::ucontext_t)) };
    let g = &uc.uc_mcontext.gregs;
    let fault = FaultInfo {
        signal: sig,
        code: info_ref.si_code,
        // SAFETY: si_addr is valid for the four fault signals.
        addr: unsafe { info_ref.si_addr() } as usize,
        pc: g[libc::REG_RIP as usize] as usize,
        sp: g[libc::REG_RSP as usize] as usize,
    };
    let Some(vc) = this() else {
        // SAFETY: forwarding the same arguments to the handler that was there before.
        unsafe { chain(sig, info, uctx) };
        return;
    };
    // Vcore context runs on the vcore stack. A fault elsewhere with the vcore-context flag
    // set is the interrupt trampoline saving state on a full uthread stack, or this
    // vcore's notification handler writing to one: the uthread's fault.
    if vc.stack.contains(fault.sp) || vc.stack.guard_range().contains(&fault.sp) {
        report_and_abort(vc, &fault);
    }
    // Vcore context starts afresh on the vcore's stack and TLS; the faulting context and
    // this handler's frame on the alternate stack are abandoned (SA_NODEFER and an empty
    // mask mean no signal stays blocked).
    // SAFETY: only this task writes its fault slot, and the vcore context it enters reads it.
    unsafe {
        *vc.fault.get() = Some(fault);
        vc.set_vcore_context(true);
        arch::set_fs_base(vc.tls());
        arch::call_on_stack(vc.stack_top(), fault_entry, 0, 0)
    }
}

unsafe extern "C" fn fault_entry(_: usize, _: usize) -> ! {
    // SAFETY: we run on a vcore task, on its vcore stack.
    enter(unsafe { this_unchecked() })
}

/// A fault in vcore context is a scheduler bug: say where, then abort. Formats into a
/// stack buffer and writes with a raw system call: nothing here allocates or locks.
fn report_and_abort(vc: &Vcore, f: &FaultInfo) -> ! {
    use core::fmt::Write;
    let mut buf = FixedBuf { b: [0; 256], n: 0 };
    let _ = writeln!(
        buf,
        "parlib: fault in vcore context on vcore {}: signal {} (code {}) at address {:#x}, pc {:#x}",
        vc.id(),
        f.signal,
        f.code,
        f.addr,
        f.pc
    );
    // SAFETY: write(2) of an initialised buffer to stderr, then abort.
    unsafe {
        arch::syscall6(libc::SYS_write as usize, 2, buf.b.as_ptr() as usize, buf.n, 0, 0, 0);
        libc::abort()
    }
}

struct FixedBuf {
    b: [u8; 256],
    n: usize,
}

impl core::fmt::Write for FixedBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let k = s.len().min(self.b.len() - self.n);
        self.b[self.n..self.n + k].copy_from_slice(&s.as_bytes()[..k]);
        self.n += k;
        Ok(())
    }
}

/// Passes a fault on a task that is not a vcore to the handler installed before ours.
///
/// # Safety
/// The arguments must be those the kernel passed to our handler.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    let i = FAULT_SIGNALS.iter().position(|&s| s as i32 == sig).unwrap_or(0);
    // `handler()` only reads the saved action: no call, no errno.
    match PREVIOUS.get().map(|p| p[i].handler()) {
        Some(SigHandler::SigAction(f)) => f(sig, info, uctx),
        Some(SigHandler::Handler(f)) => f(sig),
        _ => {
            // Restore the default action; returning re-executes the faulting instruction.
            // Raw libc, not nix: this runs in a signal handler.
            // SAFETY: sigaction with a zeroed (SIG_DFL) action.
            unsafe {
                let mut dfl: libc::sigaction = core::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, core::ptr::null_mut());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Unsafe text: code that must never be interrupted.

const MAX_RANGES: usize = 64;
static RANGES: [(AtomicUsize, AtomicUsize); MAX_RANGES] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; MAX_RANGES];
static NR_RANGES: AtomicUsize = AtomicUsize::new(0);
static RANGES_FOUND: AtomicBool = AtomicBool::new(false);

/// Names of the objects whose code is not reentrant. Matched against the file name.
const UNSAFE_OBJECTS: [&str; 6] =
    ["libc.so", "ld-linux", "libm.so", "libgcc_s.so", "libstdc++.so", "libpthread.so"];

fn in_unsafe_text(pc: usize) -> bool {
    let n = NR_RANGES.load(Ordering::Acquire);
    RANGES[..n].iter().any(|(lo, hi)| (lo.load(Ordering::Relaxed)..hi.load(Ordering::Relaxed)).contains(&pc))
}

fn find_unsafe_ranges() {
    if RANGES_FOUND.swap(true, Ordering::AcqRel) {
        return;
    }
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        _data: *mut libc::c_void,
    ) -> i32 {
        // SAFETY: the loader passes a valid dl_phdr_info for each loaded object.
        let info = unsafe { &*info };
        if info.dlpi_name.is_null() {
            return 0;
        }
        // SAFETY: dlpi_name is a NUL-terminated string owned by the loader.
        let name = unsafe { core::ffi::CStr::from_ptr(info.dlpi_name) }.to_bytes();
        let base = name.rsplit(|&c| c == b'/').next().unwrap_or(name);
        if !UNSAFE_OBJECTS.iter().any(|o| base.starts_with(o.as_bytes())) {
            return 0;
        }
        for i in 0..info.dlpi_phnum as usize {
            // SAFETY: dlpi_phdr has dlpi_phnum entries.
            let ph = unsafe { &*info.dlpi_phdr.add(i) };
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                let lo = info.dlpi_addr as usize + ph.p_vaddr as usize;
                let n = NR_RANGES.load(Ordering::Relaxed);
                if n < MAX_RANGES {
                    RANGES[n].0.store(lo, Ordering::Relaxed);
                    RANGES[n].1.store(lo + ph.p_memsz as usize, Ordering::Relaxed);
                    NR_RANGES.store(n + 1, Ordering::Release);
                }
            }
        }
        0
    }
    // SAFETY: dl_iterate_phdr with a callback that only reads what it is given.
    unsafe { libc::dl_iterate_phdr(Some(each), core::ptr::null_mut()) };
}

/// The text ranges interruption avoids (for diagnostics and tests).
pub fn unsafe_text_ranges() -> Vec<(usize, usize)> {
    let n = NR_RANGES.load(Ordering::Acquire);
    RANGES[..n].iter().map(|(a, b)| (a.load(Ordering::Relaxed), b.load(Ordering::Relaxed))).collect()
}
