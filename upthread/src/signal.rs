//! Uthread-directed signals: `upthread_kill` and a per-thread `upthread_sigmask`.
//!
//! Many uthreads share one vcore task, so the kernel cannot direct a signal at one of
//! them. upthread keeps, per thread, a set of pending signals and a signal mask (both
//! bit sets over signals 1..=64), and runs the *process's* `sigaction` disposition for a
//! signal on the target thread itself, on its stack and TLS (so `upthread_self()` in the
//! handler is the target).
//!
//! # When the handler runs
//!
//! `upthread_kill(t, sig)` marks `sig` pending on `t`. A pending, unmasked signal is
//! delivered when `t` next runs any of:
//!
//! * `upthread_kill` aimed at itself (before it returns, as the kernel does);
//! * `upthread_sigmask` (after the new mask is set, so unblocking delivers);
//! * `upthread_yield` / `upthread_sched_yield` (when it runs again);
//! * `upthread_join` (when the join completes);
//! * any cancellation point (`upthread_testcancel`, the C API's blocking calls before
//!   they block and after they wake, the system calls the C library exports);
//! * the start of a new thread, before its start routine;
//! * being scheduled: when a vcore is about to run a thread that has a deliverable
//!   signal, it pushes the delivery onto the thread's saved context
//!   (`uthread::push_call`), so the handler runs first thing when the thread resumes.
//!   A compute loop that never calls upthread sees its signal at its next preemption
//!   (with `set_sched_period`) or yield.
//!
//! # Signals and blocked threads
//!
//! A signal that is not masked interrupts the target's wait if it is blocked in a
//! cancellation point (`parlib_uthread::interrupt_wait`; a mutex lock is not one): the
//! handler runs at once, on the thread, and then, as with glibc:
//!
//! | wait | after the handler |
//! |---|---|
//! | `sem_wait`, `sem_timedwait` | fail with `EINTR` if the handler was installed without `SA_RESTART`, else wait on |
//! | `pthread_cond_wait`, `pthread_cond_timedwait` | return 0 (a spurious wake-up, which POSIX allows), with the mutex held |
//! | `pthread_join` | waits on |
//! | `nanosleep`, `usleep`, `sleep` | fail with `EINTR` (`sleep` returns the seconds left) |
//! | `read`, `write`, `accept`, ... on pipes and sockets | fail with `EINTR` without `SA_RESTART`, else wait on |
//!
//! A thread blocked in a mutex, or in an offloaded system call (regular files, `open`,
//! `poll` with a timeout), runs the handler once it is woken for its own reason.
//!
//! # Dispositions
//!
//! | disposition | effect |
//! |---|---|
//! | a handler | called as `handler(sig)`, or with `SA_SIGINFO` as `handler(sig, info, NULL)` with `si_code = SI_TKILL` and the sender's pid and uid; during the call `sa_mask` and (without `SA_NODEFER`) `sig` are added to the thread's mask; `SA_RESETHAND` resets the disposition first |
//! | `SIG_IGN` | discarded |
//! | `SIG_DFL`, default "ignore" (`SIGCHLD`, `SIGCONT`, `SIGURG`, `SIGWINCH`) | discarded |
//! | `SIG_DFL`, other | the signal is sent to the process (`kill(getpid(), sig)`), whose default action applies to the whole process, as it would with glibc |
//!
//! `SIGUSR1` carries parlib's notifications and `SIGSEGV`, `SIGBUS`, `SIGFPE` and
//! `SIGILL` its fault reflection; sending them with `upthread_kill` is refused with
//! `EINVAL`. `upthread_sigmask` never changes the kernel's mask of the vcore task (other
//! uthreads share it): it only filters uthread-directed signals.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use libc::{c_int, c_void, sigset_t};
use parlib_uthread::Runnable;

use crate::record::{self, Thread};

/// Signals a uthread-directed signal may carry: 1..=64 (glibc's `_NSIG` is 65).
const MAX_SIG: c_int = 64;

fn bit(sig: c_int) -> u64 {
    1u64 << (sig - 1)
}

/// The signals `upthread_kill` refuses: parlib's own (module docs).
fn reserved(sig: c_int) -> bool {
    matches!(sig, libc::SIGUSR1 | libc::SIGSEGV | libc::SIGBUS | libc::SIGFPE | libc::SIGILL)
}

/// Signals the mask can never hold (as in the kernel).
fn unmaskable() -> u64 {
    bit(libc::SIGKILL) | bit(libc::SIGSTOP)
}

/// A thread's pending signals and mask.
pub(crate) struct SignalState {
    pending: AtomicU64,
    mask: AtomicU64,
    /// Set while a handler runs, so delivery points inside it do not nest.
    delivering: AtomicBool,
    /// What deliveries did since the last cancellation point ([`Delivery`] as bits:
    /// `HANDLED`, `NO_RESTART`): a handler may run inside an interrupted wait, pushed
    /// onto the thread when it is scheduled again, before the wait sees it was
    /// interrupted.
    since_point: AtomicU8,
}

const HANDLED: u8 = 1;
const NO_RESTART: u8 = 2;

impl SignalState {
    pub(crate) const fn new() -> SignalState {
        SignalState {
            pending: AtomicU64::new(0),
            mask: AtomicU64::new(0),
            delivering: AtomicBool::new(false),
            since_point: AtomicU8::new(0),
        }
    }

    /// A new thread starts with its creator's mask.
    pub(crate) fn inherit_mask(&self, from: &SignalState) {
        self.mask.store(from.mask.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// What a [`deliver_pending`] did, for a wait it interrupted.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Delivery {
    /// A handler ran.
    pub(crate) handled: bool,
    /// A handler installed without `SA_RESTART` ran: an interrupted call fails with
    /// `EINTR` instead of going on.
    pub(crate) no_restart: bool,
}

/// Runs the handlers of `t`'s pending, unmasked signals, lowest number first. `t` must
/// be the calling thread.
#[inline]
pub(crate) fn deliver_pending(t: &Thread) {
    // Inlined: every yield asks, and almost never finds a signal.
    if t.signals.pending.load(Ordering::Acquire) != 0 {
        deliver_now(t);
    }
}

#[inline(never)]
fn deliver_now(t: &Thread) {
    let s = &t.signals;
    if s.delivering.swap(true, Ordering::Acquire) {
        return;
    }
    loop {
        let ready = s.pending.load(Ordering::Acquire) & !s.mask.load(Ordering::Relaxed);
        if ready == 0 {
            break;
        }
        let sig = ready.trailing_zeros() as c_int + 1;
        if s.pending.fetch_and(!bit(sig), Ordering::AcqRel) & bit(sig) != 0 {
            if let Some(flags) = run_disposition(s, sig) {
                let bits = if flags & libc::SA_RESTART == 0 { HANDLED | NO_RESTART } else { HANDLED };
                s.since_point.fetch_or(bits, Ordering::AcqRel);
            }
        }
    }
    s.delivering.store(false, Ordering::Release);
}

/// Delivers `t`'s pending signals, then returns and forgets what deliveries did since
/// the last call (`t` must be the calling thread): the delivery record of a cancellation
/// point. Called on entry to a wait it starts the record afresh; called after an
/// interrupted wait it tells whether a handler ran during the wait.
pub(crate) fn deliver_and_take(t: &Thread) -> Delivery {
    deliver_pending(t);
    let bits = t.signals.since_point.swap(0, Ordering::AcqRel);
    Delivery { handled: bits & HANDLED != 0, no_restart: bits & NO_RESTART != 0 }
}

/// In vcore context, before `t` runs: if it has a pending, unmasked signal and is not
/// inside a handler already, makes it deliver first thing when it resumes (module docs).
#[inline]
pub(crate) fn push_delivery(t: &mut Runnable<Thread>) {
    let s = &t.signals;
    let ready = s.pending.load(Ordering::Acquire) & !s.mask.load(Ordering::Relaxed);
    if ready == 0 || s.delivering.load(Ordering::Acquire) {
        return;
    }
    let th: &Thread = t;
    let arg = th as *const Thread as usize;
    // SAFETY: `deliver_on_resume` runs the thread's own handlers on its own stack and
    // TLS (as a delivery at any safe point would), and only needs the record, which
    // lives while the thread does.
    unsafe { t.push_call(deliver_on_resume, arg) };
}

/// Runs on the thread itself, pushed by [`push_delivery`].
extern "C" fn deliver_on_resume(t: usize) {
    // SAFETY: `push_delivery` passed this thread's own record.
    deliver_pending(unsafe { &*(t as *const Thread) });
}

/// Applies `sig`'s disposition; the handler's `sa_flags` if a handler ran.
fn run_disposition(s: &SignalState, sig: c_int) -> Option<c_int> {
    // SAFETY: an all-zero sigaction is valid; sigaction only writes it.
    let mut sa: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: querying the disposition of a valid signal number.
    if unsafe { libc::sigaction(sig, core::ptr::null(), &mut sa) } != 0 {
        return None;
    }
    match sa.sa_sigaction {
        libc::SIG_IGN => None,
        libc::SIG_DFL => {
            if !matches!(sig, libc::SIGCHLD | libc::SIGCONT | libc::SIGURG | libc::SIGWINCH) {
                // SAFETY: kill to our own process with a valid signal number.
                unsafe { libc::kill(libc::getpid(), sig) };
            }
            None
        }
        h => {
            call_handler(s, sig, h, &sa);
            Some(sa.sa_flags)
        }
    }
}

fn call_handler(s: &SignalState, sig: c_int, h: libc::sighandler_t, sa: &libc::sigaction) {
    if sa.sa_flags & libc::SA_RESETHAND != 0 {
        // SAFETY: an all-zero sigaction is SIG_DFL with an empty mask.
        let dfl: libc::sigaction = unsafe { core::mem::zeroed() };
        // SAFETY: setting a valid signal's disposition.
        unsafe { libc::sigaction(sig, &dfl, core::ptr::null_mut()) };
    }
    let mut extra = from_sigset(&sa.sa_mask);
    if sa.sa_flags & libc::SA_NODEFER == 0 {
        extra |= bit(sig);
    }
    let old = s.mask.fetch_or(extra & !unmaskable(), Ordering::AcqRel);
    if sa.sa_flags & libc::SA_SIGINFO != 0 {
        let mut info = siginfo(sig);
        // SAFETY: with SA_SIGINFO the process installed a three-argument handler.
        let f = unsafe {
            core::mem::transmute::<libc::sighandler_t, extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void)>(
                h,
            )
        };
        f(sig, &mut info, core::ptr::null_mut());
    } else {
        // SAFETY: without SA_SIGINFO the process installed a one-argument handler.
        let f = unsafe { core::mem::transmute::<libc::sighandler_t, extern "C" fn(c_int)>(h) };
        f(sig);
    }
    s.mask.store(old, Ordering::Release);
}

/// A `siginfo_t` as `tgkill` would produce it: `si_signo`, `si_code = SI_TKILL`, and the
/// sender's pid and uid.
fn siginfo(sig: c_int) -> libc::siginfo_t {
    /// The head of the kernel's `siginfo_t` for the kill family (x86-64 layout).
    #[repr(C)]
    struct KillInfo {
        signo: c_int,
        errno: c_int,
        code: c_int,
        _pad: c_int,
        pid: libc::pid_t,
        uid: libc::uid_t,
    }
    const SI_TKILL: c_int = -6;
    // SAFETY: an all-zero siginfo_t is valid.
    let mut info: libc::siginfo_t = unsafe { core::mem::zeroed() };
    // SAFETY: KillInfo is the prefix of siginfo_t's layout and much smaller than it; the
    // getters have no preconditions.
    unsafe {
        (&mut info as *mut libc::siginfo_t).cast::<KillInfo>().write(KillInfo {
            signo: sig,
            errno: 0,
            code: SI_TKILL,
            _pad: 0,
            pid: libc::getpid(),
            uid: libc::getuid(),
        })
    };
    info
}

fn from_sigset(set: &sigset_t) -> u64 {
    // SAFETY: sigismember only reads the set, for valid signal numbers.
    (1..=MAX_SIG).filter(|&s| unsafe { libc::sigismember(set, s) } == 1).fold(0, |m, s| m | bit(s))
}

fn to_sigset(mask: u64, set: &mut sigset_t) {
    // SAFETY: sigemptyset / sigaddset write the caller's set, for valid signal numbers.
    unsafe {
        libc::sigemptyset(set);
        for s in (1..=MAX_SIG).filter(|&s| mask & bit(s) != 0) {
            libc::sigaddset(set, s);
        }
    }
}

/// `pthread_kill`: directs `sig` at `thread` (module docs for when its handler runs).
/// `sig` 0 only checks that the thread exists. Returns 0, `ESRCH` (not a live thread) or
/// `EINVAL` (not a signal number, or one of parlib's reserved signals).
#[no_mangle]
pub extern "C" fn upthread_kill(thread: crate::upthread_t, sig: c_int) -> c_int {
    if !(0..=MAX_SIG).contains(&sig) || (sig != 0 && reserved(sig)) {
        return libc::EINVAL;
    }
    let post = |t: &Thread| {
        if sig == 0 {
            return false; // only the existence check
        }
        t.signals.pending.fetch_or(bit(sig), Ordering::AcqRel);
        // Unmasked: end an interruptible wait so that the handler runs now (module docs).
        t.signals.mask.load(Ordering::Acquire) & bit(sig) == 0
    };
    record::post(thread as usize, post, deliver_pending)
}

/// `pthread_sigmask`: the calling thread's mask for uthread-directed signals. `how` is
/// `SIG_BLOCK`, `SIG_UNBLOCK` or `SIG_SETMASK` (ignored when `set` is null); the old mask
/// goes to `*old` if not null. `SIGKILL` and `SIGSTOP` are never masked. Pending signals
/// the new mask lets through are delivered before it returns. Returns 0 or `EINVAL`
/// (a bad `how`). Outside upthread threads it is libc's `pthread_sigmask`.
///
/// # Safety
/// `set` must be null or a valid signal set; `old` null or writable.
#[no_mangle]
pub unsafe extern "C" fn upthread_sigmask(how: c_int, set: *const sigset_t, old: *mut sigset_t) -> c_int {
    let Some(t) = Thread::current() else {
        // SAFETY: the caller's contract, passed through.
        return unsafe { libc::pthread_sigmask(how, set, old) };
    };
    let s = &t.signals;
    let cur = s.mask.load(Ordering::Acquire);
    let new = if set.is_null() {
        cur
    } else {
        // SAFETY: non-null, and a valid set by the caller's contract.
        let given = from_sigset(unsafe { &*set });
        match how {
            libc::SIG_BLOCK => cur | given,
            libc::SIG_UNBLOCK => cur & !given,
            libc::SIG_SETMASK => given,
            _ => return libc::EINVAL,
        }
    };
    if !old.is_null() {
        // SAFETY: non-null, and writable by the caller's contract.
        to_sigset(cur, unsafe { &mut *old });
    }
    s.mask.store(new & !unmaskable(), Ordering::Release);
    deliver_pending(t);
    0
}
