//! Threads: create, join, detach, exit, self, equal and yield, as glibc-shaped C
//! functions, over the internals the Rust API ([`spawn`](mod@crate::spawn)) shares.
//!
//! Every function returns its error code (it never sets `errno`), as glibc's do.
//!
//! # Exit, step by step
//!
//! A thread exits by returning from its start routine, calling [`upthread_exit`], or
//! acting on a cancellation. On its own stack and TLS it then:
//! 1. runs its cleanup handlers, newest first (`cancel`);
//! 2. runs its key destructors, up to [`PTHREAD_DESTRUCTOR_ITERATIONS`](crate::keys::PTHREAD_DESTRUCTOR_ITERATIONS) rounds (`keys`);
//! 3. stores its exit value and leaves with `uthread::exit`. In vcore context the
//!    scheduler's `thread_exited` (`finish`) updates the lifecycle word (see `record`):
//!    a detached thread is freed at once; a joiner is woken; otherwise the record (its
//!    `Exited` handle, given up) waits for a join or detach.
//!
//! `main` is different: after steps 1 and 2 it waits until every other thread has
//! exited, then ends the process with status 0 (as glibc's `pthread_exit` from `main`
//! does once the last thread is gone).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use libc::{c_int, c_ulong, c_void};
use parlib_uthread::{
    self as uthread, BlockReason, Blocked, Created, Exited, TlsMode, Uthread, WaitInterrupt,
};
use parlib_vcore::Stack;

use crate::attr::{self, UpthreadAttr};
use crate::record::{self, Identity, Rec, Start, Thread, CLAIMED, DETACHED, EXITED, JOINABLE, REAPED};

/// A thread handle, like glibc's `pthread_t` (an `unsigned long`): the address of the
/// thread's record. 0 is never a thread.
#[allow(non_camel_case_types)]
pub type upthread_t = c_ulong;

/// Threads created and not yet exited (main excluded): `main`'s exit waits for 0.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
/// `main`, blocked waiting for `RUNNING` to reach 0 (its uthread address), or 0.
static MAIN_WAITER: AtomicUsize = AtomicUsize::new(0);

/// Where a new thread's stack comes from.
pub(crate) enum StackSpec {
    /// A pooled, guarded stack with this many usable bytes.
    Size(usize),
    /// Memory the caller provides (`upthread_attr_setstack`): `[lo, lo + size)`.
    User { lo: usize, size: usize },
}

/// How to create a thread.
pub(crate) struct SpawnOpts {
    pub(crate) detached: bool,
    pub(crate) stack: StackSpec,
    pub(crate) name: Option<String>,
}

impl Default for SpawnOpts {
    fn default() -> Self {
        SpawnOpts { detached: false, stack: StackSpec::Size(attr::DEFAULT_STACK_SIZE), name: None }
    }
}

/// Creates a thread that is ready but not yet runnable: the caller publishes its handle
/// ([`Created::as_ptr`]) and then calls [`launch`]. Initialises upthread first if needed.
///
/// # Errors
/// `EINVAL` for a stack size that overflows when its guard page is added (as glibc 2.36's
/// `pthread_create`); `EAGAIN` if upthread cannot start, or no stack or backing thread
/// can be had.
pub(crate) fn prepare(start: Start, opts: SpawnOpts) -> Result<Created<Thread>, i32> {
    crate::ensure_init().map_err(|_| libc::EAGAIN)?;
    let stack = match opts.stack {
        StackSpec::Size(n) => {
            let mut s = Stack::new(n).map_err(|e| match e {
                parlib_vcore::Error::StackTooLarge { .. } => e.errno(),
                _ => libc::EAGAIN, // glibc's answer for any stack it cannot map
            })?;
            // The stack's colour, for the reason records have one (`uthread::Record`).
            s.set_start_offset(uthread::cache_colour().min(s.size() / 4));
            s
        }
        // SAFETY: upthread_attr_setstack's contract: the caller's memory is writable,
        // unused, and outlives the thread.
        StackSpec::User { lo, size } => unsafe { Stack::from_raw(lo as *mut u8, size) },
    };
    let data = Thread::new(start, opts.detached, false);
    // A named thread's backing thread carries the name, so std shows it too
    // (`std::thread::current().name()`, panic messages).
    let t = match &opts.name {
        Some(n) => uthread::create_named(data, stack, n.clone(), thread_main),
        None => uthread::create(data, stack, TlsMode::Backed, thread_main),
    }
    .map_err(|_| libc::EAGAIN)?;
    // SAFETY: the thread has not started, so nobody else reads its name.
    unsafe { *t.name.get() = opts.name };
    if let Some(me) = Thread::current() {
        t.signals.inherit_mask(&me.signals); // POSIX: a new thread inherits the mask
    }
    record::register(t.handle());
    Ok(t)
}

/// Makes a prepared thread runnable.
pub(crate) fn launch(t: Created<Thread>) {
    RUNNING.fetch_add(1, Ordering::AcqRel);
    uthread::runnable(t);
}

/// First code of every thread.
fn thread_main() {
    let t = Thread::current().expect("an upthread thread runs on its own record");
    // SAFETY: only this thread touches `start` once it runs.
    let start = core::mem::replace(unsafe { &mut *t.start.get() }, Start::None);
    crate::signal::deliver_pending(t);
    let ret = match start {
        Start::C(f, a) => f(a),
        Start::Rust(f) => f(),
        Start::None => core::ptr::null_mut(),
    };
    prepare_exit(t, ret);
    // Returning ends the uthread: the scheduler's `thread_exited` runs `finish`.
}

/// Steps 1-2 of ending the calling thread `t` with `retval` (module docs): cleanup
/// handlers and key destructors once, then the return value. `main` never returns from
/// here: it waits for the other threads and ends the process.
fn prepare_exit(t: &Thread, retval: *mut c_void) {
    if !t.exiting.swap(true, Ordering::AcqRel) {
        crate::cancel::run_cleanup_handlers(t);
        crate::keys::run_destructors(t);
    }
    t.retval.store(retval, Ordering::Release);
    if t.is_main {
        main_exit();
    }
}

/// Ends the calling thread `t` with `retval` from within its frames (`pthread_exit`, a
/// cancellation acted on). Never returns.
pub(crate) fn exit_current(t: &Thread, retval: *mut c_void) -> ! {
    prepare_exit(t, retval);
    // SAFETY: pthread_exit's semantics: the thread's frames, `t`'s borrow among them, are
    // abandoned, not unwound, and nothing of them is used again; a C program that calls
    // pthread_exit expects exactly that.
    unsafe { uthread::exit() }
}

/// Step 3, the scheduler's `thread_exited` in vcore context: hand the exited thread to
/// its joiner, or free it. After the lifecycle word changes, the record may be freed by a
/// joiner at any moment, so this touches nothing of it afterwards.
pub(crate) fn finish(exited: Exited<Thread>) {
    let last = RUNNING.fetch_sub(1, Ordering::SeqCst) == 1;
    // Given up now: from the lifecycle word's change on, the reaper owns the record.
    let tp = exited.into_raw();
    // SAFETY: alive until reaped, which needs the word to change below.
    let t = unsafe { tp.as_ref() };
    loop {
        let l = t.life.load(Ordering::Acquire);
        match l {
            DETACHED => {
                // SAFETY: detached and exited: nobody else can reach the record.
                unsafe { reap(tp) };
                break;
            }
            JOINABLE | CLAIMED => {
                if t.life.compare_exchange(l, EXITED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    break; // a claimer finds EXITED in its own callback and wakes itself
                }
            }
            joiner => {
                if t.life.compare_exchange(l, EXITED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    // SAFETY: a blocked joiner stored its Blocked handle's pointer there,
                    // and taking the word from it makes its wake-up ours.
                    uthread::runnable(unsafe {
                        Blocked::from_raw(NonNull::new_unchecked(joiner as *mut Uthread))
                    });
                    break;
                }
            }
        }
    }
    if last {
        wake_main();
    }
}

/// Frees an exited thread's record and what its uthread holds.
///
/// # Safety
/// `t` came from `Exited::into_raw` of an exited thread, and the caller is its one
/// reaper (module docs of `record`).
unsafe fn reap(t: NonNull<Rec>) {
    record::unregister(t.as_ptr() as usize);
    // SAFETY: the caller's contract: the handle given up at exit, taken back once.
    drop(unsafe { Exited::from_raw(t) });
}

/// Blocks `main` until every other thread has exited, then ends the process.
fn main_exit() -> ! {
    while RUNNING.load(Ordering::SeqCst) != 0 {
        uthread::yield_with(|me| {
            let me = uthread::has_blocked(me, BlockReason::Join).into_raw();
            MAIN_WAITER.store(me.as_ptr() as usize, Ordering::SeqCst);
            // The last exit may have come before we published ourselves.
            if RUNNING.load(Ordering::SeqCst) == 0 && MAIN_WAITER.swap(0, Ordering::SeqCst) != 0 {
                // SAFETY: the swap took our own pointer back before any waker did.
                uthread::runnable(unsafe { Blocked::from_raw(me) });
            }
        });
    }
    // SAFETY: exit(3) runs atexit handlers and flushes stdio on main's own TLS.
    unsafe { libc::exit(0) }
}

fn wake_main() {
    let w = MAIN_WAITER.swap(0, Ordering::SeqCst);
    if w != 0 {
        // SAFETY: main stored its Blocked handle's pointer; the swap makes us the one
        // party that takes it.
        uthread::runnable(unsafe { Blocked::from_raw(NonNull::new_unchecked(w as *mut Uthread)) });
    }
}

/// What a join or detach found.
enum Claim {
    /// The thread still runs and we are its one joiner.
    Wait(NonNull<Rec>),
    /// It has exited and is ours to reap.
    Reap(NonNull<Rec>),
}

/// Joins `handle`: waits for it to exit, frees it, returns its exit value.
///
/// # Errors
/// `EDEADLK` joining oneself (or a thread that is joining us), `ESRCH` for a handle that
/// is not a live thread (never was, or already joined), `EINVAL` for a detached thread,
/// one another thread is already joining, or `main`.
pub(crate) fn join(handle: usize) -> Result<*mut c_void, i32> {
    loop {
        if let Some(r) = try_join(handle) {
            return r;
        }
        // Interrupted, the claim released: run signal handlers, act on a cancel (the
        // target stays joinable), else join again.
        crate::cancel::after_interrupt();
    }
}

/// One attempt of [`join`]: `None` if an interrupt ended the wait (the claim on the
/// target was released).
fn try_join(handle: usize) -> Option<Result<*mut c_void, i32>> {
    crate::cancel::testcancel();
    let me = Thread::current();
    if me.is_some_and(|m| m.handle() == handle) {
        return Some(Err(libc::EDEADLK));
    }
    let claim = record::with_live(handle, |t| {
        if t.is_main {
            return Err(libc::EINVAL);
        }
        if me.is_some_and(|m| m.life.load(Ordering::Acquire) == t.handle()) {
            return Err(libc::EDEADLK); // it is blocked joining us
        }
        loop {
            let l = t.life.load(Ordering::Acquire);
            let (to, claim) = match l {
                JOINABLE => (CLAIMED, Claim::Wait(NonNull::from(t))),
                EXITED => (REAPED, Claim::Reap(NonNull::from(t))),
                _ => return Err(libc::EINVAL), // detached, or someone else joins it
            };
            if t.life.compare_exchange(l, to, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return Ok(claim);
            }
        }
    })
    .ok_or(libc::ESRCH);
    let claim = match claim {
        Ok(Ok(c)) => c,
        Ok(Err(e)) | Err(e) => return Some(Err(e)),
    };
    let tp = match claim {
        Claim::Reap(tp) => tp,
        Claim::Wait(tp) => {
            if !wait_for_exit(tp) {
                // SAFETY: still claimed by us, so alive.
                let t = unsafe { tp.as_ref() };
                if t.life.compare_exchange(CLAIMED, JOINABLE, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    return None;
                }
                // It exited meanwhile (`finish` took CLAIMED to EXITED): join it.
            }
            tp
        }
    };
    // SAFETY: we are its one reaper (we claimed it), so the record stays until `reap`.
    let t = unsafe { tp.as_ref() };
    let rv = t.retval.load(Ordering::Acquire);
    t.life.store(REAPED, Ordering::Release);
    // SAFETY: it exited (EXITED seen) and we are its one reaper.
    unsafe { reap(tp) };
    if let Some(m) = Thread::current() {
        crate::signal::deliver_pending(m);
    }
    Some(Ok(rv))
}

/// Blocks until the claimed thread `tp` has exited: true; or until an interrupt
/// (`parlib_uthread::interrupt_wait`) ends the wait: false, with `tp` still `CLAIMED`.
///
/// # The interruptible join, step by step
///
/// The joiner publishes itself in the target's lifecycle word (`CLAIMED` → its uthread)
/// from its yield callback, and `finish` takes it from there to `EXITED` and wakes it.
/// The interrupt must not be lost between the registration and that publication, nor
/// wake the joiner twice:
/// 1. the callback registers the interrupt (`arm`), then publishes (`CLAIMED` → me);
///    if the target exited before, the publication fails and the callback wakes the
///    joiner itself;
/// 2. the interrupt function raises `interrupted`, then tries `me` → `CLAIMED`;
/// 3. after publishing, the callback reads `interrupted`; if set, it tries `me` →
///    `CLAIMED` itself.
///
/// Both sides write first and read second (sequentially consistent), so either the
/// interrupt's compare-and-swap sees the publication or the callback sees the flag; the
/// word can leave `me` only once (to `EXITED` by `finish`, or back to `CLAIMED`), and
/// whoever moves it wakes the joiner.
fn wait_for_exit(tp: NonNull<Rec>) -> bool {
    // SAFETY: claimed by us, so it is not freed before we reap it.
    let t = unsafe { tp.as_ref() };
    if Thread::current().is_none() {
        // A plain Linux thread (no uthread to block): poll, letting the CPU go.
        while t.life.load(Ordering::Acquire) != EXITED {
            std::thread::yield_now();
        }
        return true;
    }
    let jw = JoinWait { target: tp, joiner: AtomicUsize::new(0), interrupted: AtomicBool::new(false) };
    let jwp = &jw as *const JoinWait as usize;
    let reg = WaitInterrupt::new(interrupt_join, jwp);
    let regp = &reg as *const WaitInterrupt as usize;
    let armed = AtomicBool::new(false);
    let armedp = &armed as *const AtomicBool as usize;
    uthread::yield_with(move |me| {
        let uth = uthread::has_blocked(me, BlockReason::Join).into_raw();
        // SAFETY: the join record, the registration and `armed` are on the blocked
        // uthread's stack until it runs again; the target is claimed by it, so alive.
        let (jw, t) = unsafe { (&*(jwp as *const JoinWait), (*(jwp as *const JoinWait)).target.as_ref()) };
        let me = uth.as_ptr() as usize;
        jw.joiner.store(me, Ordering::Relaxed);
        // SAFETY: each wake below is the one that takes the uthread back: before `arm`
        // and before the publication nobody else knows it, and afterwards the word's
        // compare-and-swap decides (the doc above).
        let wake = || uthread::runnable(unsafe { Blocked::from_raw(uth) });
        // SAFETY: the uthread that just yielded; `reg` stays in place until `disarm`.
        if !unsafe { uthread::interrupt::arm(uth, regp as *const WaitInterrupt) } {
            wake(); // an interrupt is pending: do not wait
            return;
        }
        // SAFETY: as above.
        unsafe { &*(armedp as *const AtomicBool) }.store(true, Ordering::Relaxed);
        if t.life.compare_exchange(CLAIMED, me, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            wake(); // it exited meanwhile
        } else if jw.interrupted.load(Ordering::SeqCst)
            && t.life.compare_exchange(me, CLAIMED, Ordering::SeqCst, Ordering::SeqCst).is_ok()
        {
            wake(); // step 3
        }
    });
    if armed.load(Ordering::Relaxed) {
        // SAFETY: the yield callback registered `reg` for this uthread.
        unsafe { uthread::interrupt::disarm(uthread::current().expect("a uthread"), &reg) };
    }
    t.life.load(Ordering::Acquire) == EXITED
}

/// What [`interrupt_join`] needs; on the joiner's stack.
struct JoinWait {
    target: NonNull<Rec>,
    /// The joiner's uthread, set in its yield callback before it registers.
    joiner: AtomicUsize,
    interrupted: AtomicBool,
}

/// The interrupt function of [`wait_for_exit`] (step 2).
fn interrupt_join(arg: usize) -> bool {
    // SAFETY: the registration's argument, alive until the joiner's `disarm`; the target
    // is claimed by the joiner, so alive too.
    let (jw, t) = unsafe { (&*(arg as *const JoinWait), (*(arg as *const JoinWait)).target.as_ref()) };
    jw.interrupted.store(true, Ordering::SeqCst);
    let me = jw.joiner.load(Ordering::Relaxed);
    if t.life.compare_exchange(me, CLAIMED, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
        // SAFETY: the joiner published its Blocked handle's pointer and we took it back
        // from the word: its wake-up is ours.
        uthread::runnable(unsafe { Blocked::from_raw(NonNull::new_unchecked(me as *mut Uthread)) });
        return true;
    }
    false
}

/// Detaches `handle`: its record is freed when it exits (or now, if it has).
///
/// # Errors
/// `ESRCH` for a handle that is not a live thread, `EINVAL` if it is already detached.
pub(crate) fn detach(handle: usize) -> Result<(), i32> {
    let reap_now = record::with_live(handle, |t| {
        if t.is_main {
            return Ok(None); // main never goes through the exit callback: nothing to free
        }
        loop {
            let l = t.life.load(Ordering::Acquire);
            let (to, reap) = match l {
                JOINABLE => (DETACHED, None),
                EXITED => (REAPED, Some(NonNull::from(t))),
                DETACHED => return Err(libc::EINVAL),
                _ => return Ok(None), // being joined: the joiner frees it
            };
            if t.life.compare_exchange(l, to, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return Ok(reap);
            }
        }
    })
    .ok_or(libc::ESRCH)??;
    if let Some(tp) = reap_now {
        // SAFETY: it exited and we took it to REAPED: we are its one reaper.
        unsafe { reap(tp) };
    }
    Ok(())
}

/// Yields the vcore to the next thread in line; on a plain thread, `sched_yield`.
/// Pending uthread-directed signals are delivered when the caller runs again.
pub(crate) fn yield_now() {
    let Some(t) = Thread::current() else {
        std::thread::yield_now();
        return;
    };
    // SAFETY: `t` is the calling thread, so its uthread is `current()`.
    unsafe { uthread::yield_current_with(t.uth_ptr(), uthread::paused) };
    // Still `t`: a thread's record follows it across vcores.
    crate::signal::deliver_pending(t);
    crate::cancel::async_point(t);
}

/// Whether `handle`'s thread has exited (false for handles that are not live threads).
pub(crate) fn has_exited(handle: usize) -> bool {
    record::with_live(handle, |t| t.life.load(Ordering::Acquire) == EXITED).unwrap_or(false)
}

// ---------------------------------------------------------------------------------------
// The C functions.

/// `pthread_create`: starts `start(arg)` on a new thread and stores its handle in
/// `*thread` before it can run. `attr` may be null (defaults: joinable, 2 MiB stack).
///
/// Returns 0, `EINVAL` (null `thread` or `start`, an uninitialised `attr`), or `EAGAIN`
/// (upthread could not start, or no stack or backing thread was available).
///
/// # Safety
/// `thread` must be writable; `attr` null or initialised by [`upthread_attr_init`](crate::attr::upthread_attr_init);
/// `start` must be safe to call with `arg` on the new thread.
#[no_mangle]
pub unsafe extern "C" fn upthread_create(
    thread: *mut upthread_t,
    attr: *const UpthreadAttr,
    start: Option<extern "C" fn(*mut c_void) -> *mut c_void>,
    arg: *mut c_void,
) -> c_int {
    let Some(start) = start else { return libc::EINVAL };
    if thread.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: the caller passes null or an attribute object.
    let opts = match unsafe { attr::spawn_opts(attr) } {
        Ok(o) => o,
        Err(e) => return e,
    };
    match prepare(Start::C(start, arg), opts) {
        Ok(t) => {
            // SAFETY: `thread` is writable (checked non-null; the caller's contract).
            unsafe { *thread = t.handle() as upthread_t };
            launch(t);
            0
        }
        Err(e) => e,
    }
}

/// `pthread_join`: waits for `thread` to exit, stores its exit value in `*retval` (if
/// not null; `PTHREAD_CANCELED` for a cancelled thread) and frees it. A cancellation
/// point.
///
/// Returns 0, `EDEADLK` (joining oneself, or a thread that is joining the caller),
/// `ESRCH` (not a live thread: never created, or already joined or detached-and-exited),
/// or `EINVAL` (detached, already being joined, or `main`).
///
/// # Safety
/// `retval` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn upthread_join(thread: upthread_t, retval: *mut *mut c_void) -> c_int {
    match join(thread as usize) {
        Ok(rv) => {
            if !retval.is_null() {
                // SAFETY: non-null, and writable by the caller's contract.
                unsafe { *retval = rv };
            }
            0
        }
        Err(e) => e,
    }
}

/// `pthread_detach`: `thread`'s resources are freed when it exits (at once if it has).
/// Returns 0, `ESRCH` (not a live thread) or `EINVAL` (already detached).
#[no_mangle]
pub extern "C" fn upthread_detach(thread: upthread_t) -> c_int {
    match detach(thread as usize) {
        Ok(()) => 0,
        Err(e) => e,
    }
}

/// `pthread_exit`: ends the calling thread with `retval` after running its cleanup
/// handlers and key destructors. From `main`: waits for every other thread to exit, then
/// exits the process with status 0. On a thread that is not an upthread thread, it is
/// libc's `pthread_exit`.
// `retval` is never dereferenced: it is an opaque exit value handed to the joiner.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
#[no_mangle]
pub extern "C" fn upthread_exit(retval: *mut c_void) -> ! {
    match Thread::current() {
        Some(t) => exit_current(t, retval),
        // SAFETY: a plain Linux thread ends the libc way.
        None => unsafe { libc::pthread_exit(retval) },
    }
}

/// `pthread_self`: the calling thread's handle (0 outside upthread threads).
#[no_mangle]
pub extern "C" fn upthread_self() -> upthread_t {
    Thread::current().map_or(0, |t| t.handle() as upthread_t)
}

/// `pthread_equal`: non-zero if `a` and `b` are the same thread.
#[no_mangle]
pub extern "C" fn upthread_equal(a: upthread_t, b: upthread_t) -> c_int {
    c_int::from(a == b)
}

/// `pthread_yield`: gives the vcore to the next thread in line. Always returns 0.
#[no_mangle]
pub extern "C" fn upthread_yield() -> c_int {
    yield_now();
    0
}

/// `sched_yield` for upthread programs: the same as [`upthread_yield`].
#[no_mangle]
pub extern "C" fn upthread_sched_yield() -> c_int {
    yield_now();
    0
}
