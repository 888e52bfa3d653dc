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
//! 3. stores its exit value and leaves with `uthread::exit_with`. In vcore context the
//!    exit callback updates the lifecycle word (see `record`): a detached thread is freed
//!    at once; a joiner is woken; otherwise the record waits for a join or detach.
//!
//! `main` is different: after steps 1 and 2 it waits until every other thread has
//! exited, then ends the process with status 0 (as glibc's `pthread_exit` from `main`
//! does once the last thread is gone).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use libc::{c_int, c_ulong, c_void};
use parlib_uthread::{self as uthread, BlockReason, TlsMode, Uthread, WaitInterrupt};
use parlib_vcore::Stack;

use crate::attr::{self, UpthreadAttr};
use crate::record::{self, Start, Thread, CLAIMED, DETACHED, EXITED, JOINABLE, REAPED};

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
/// and then calls [`launch`]. Initialises upthread first if needed.
///
/// # Errors
/// `EAGAIN` if upthread cannot start, or no stack or backing thread can be had.
pub(crate) fn prepare(start: Start, opts: SpawnOpts) -> Result<NonNull<Thread>, i32> {
    crate::ensure_init().map_err(|_| libc::EAGAIN)?;
    let stack = match opts.stack {
        StackSpec::Size(n) => {
            let mut s = Stack::new(n).map_err(|_| libc::EAGAIN)?;
            // The stack's colour, for the reason records have one (`record::alloc`).
            s.set_start_offset(record::colour_offset().min(s.size() / 4));
            s
        }
        // SAFETY: upthread_attr_setstack's contract: the caller's memory is writable,
        // unused, and outlives the thread.
        StackSpec::User { lo, size } => unsafe { Stack::from_raw(lo as *mut u8, size) },
    };
    let tp = record::alloc(start, opts.detached);
    // SAFETY: a fresh record, ours alone until `launch`.
    let t = unsafe { tp.as_ref() };
    // SAFETY: as above: the thread has not started, so nobody else reads its name.
    unsafe { *t.name.get() = opts.name };
    if let Some(me) = Thread::current() {
        t.signals.inherit_mask(&me.signals); // POSIX: a new thread inherits the mask
    }
    // SAFETY: the record lives until it is reaped, which needs the thread to have run;
    // `thread_main` expects exactly this record as its argument.
    let r = unsafe { uthread::init(t.uth_ptr(), thread_main, tp.as_ptr().cast(), stack, TlsMode::Backed) };
    if r.is_err() {
        // SAFETY: the uthread was never initialised, and nobody else knows the record.
        unsafe { record::free(tp) };
        return Err(libc::EAGAIN);
    }
    record::register(t);
    Ok(tp)
}

/// Makes a prepared thread runnable.
pub(crate) fn launch(t: NonNull<Thread>) {
    RUNNING.fetch_add(1, Ordering::AcqRel);
    // SAFETY: `prepare` made it and only we hold it.
    uthread::runnable(unsafe { t.as_ref() }.uth_ptr());
}

/// First code of every thread.
fn thread_main(arg: *mut ()) -> ! {
    // SAFETY: `prepare` passes the thread's own record, alive until it is reaped.
    let t = unsafe { &*arg.cast::<Thread>() };
    // SAFETY: only this thread touches `start` once it runs.
    let start = core::mem::replace(unsafe { &mut *t.start.get() }, Start::None);
    crate::signal::deliver_pending(t);
    let ret = match start {
        Start::C(f, a) => f(a),
        Start::Rust(f) => f(),
        Start::None => core::ptr::null_mut(),
    };
    exit_current(t, ret)
}

/// Ends the calling thread `t` with `retval` (module docs). Never returns.
pub(crate) fn exit_current(t: &Thread, retval: *mut c_void) -> ! {
    if !t.exiting.swap(true, Ordering::AcqRel) {
        crate::cancel::run_cleanup_handlers(t);
        crate::keys::run_destructors(t);
    }
    t.retval.store(retval, Ordering::Release);
    if t.is_main {
        main_exit();
    }
    uthread::exit_with(|uth| {
        // Vcore context: the thread is Done and off its stack.
        // SAFETY: an upthread uthread, alive until reaped below or by its joiner.
        let t = unsafe { Thread::from_uth(uth) };
        let last = RUNNING.fetch_sub(1, Ordering::SeqCst) == 1;
        finish(t);
        if last {
            wake_main();
        }
    })
}

/// Step 3's callback: hand the exited thread to its joiner, or free it. After the
/// lifecycle word changes, the record may be freed by a joiner at any moment, so this
/// touches nothing of it afterwards.
fn finish(t: &Thread) {
    loop {
        let l = t.life.load(Ordering::Acquire);
        match l {
            DETACHED => {
                // SAFETY: detached and exited: nobody else can reach the record.
                unsafe { reap(NonNull::from(t)) };
                return;
            }
            JOINABLE | CLAIMED => {
                if t.life.compare_exchange(l, EXITED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    return; // a claimer finds EXITED in its own callback and wakes itself
                }
            }
            joiner => {
                if t.life.compare_exchange(l, EXITED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    // SAFETY: a blocked joiner stored its own, live uthread there.
                    uthread::runnable(unsafe { NonNull::new_unchecked(joiner as *mut Uthread) });
                    return;
                }
            }
        }
    }
}

/// Frees an exited thread's record and what its uthread holds.
///
/// # Safety
/// The thread must have exited, and the caller must be its one reaper (module docs of
/// `record`).
unsafe fn reap(t: NonNull<Thread>) {
    // SAFETY: the caller's contract.
    let r = unsafe { t.as_ref() };
    record::unregister(r);
    // SAFETY: the uthread is Done and nothing will run it again; then nobody refers to
    // the record.
    unsafe {
        uthread::cleanup(r.uth_ptr());
        record::free(t);
    }
}

/// Blocks `main` until every other thread has exited, then ends the process.
fn main_exit() -> ! {
    while RUNNING.load(Ordering::SeqCst) != 0 {
        uthread::yield_with(true, |uth| {
            uthread::has_blocked(uth, BlockReason::Join);
            MAIN_WAITER.store(uth.as_ptr() as usize, Ordering::SeqCst);
            // The last exit may have come before we published ourselves.
            if RUNNING.load(Ordering::SeqCst) == 0 && MAIN_WAITER.swap(0, Ordering::SeqCst) != 0 {
                uthread::runnable(uth);
            }
        });
    }
    // SAFETY: exit(3) runs atexit handlers and flushes stdio on main's own TLS.
    unsafe { libc::exit(0) }
}

fn wake_main() {
    let w = MAIN_WAITER.swap(0, Ordering::SeqCst);
    if w != 0 {
        // SAFETY: main stored its blocked uthread; it is woken exactly once (swap).
        uthread::runnable(unsafe { NonNull::new_unchecked(w as *mut Uthread) });
    }
}

/// What a join or detach found.
enum Claim {
    /// The thread still runs and we are its one joiner.
    Wait(NonNull<Thread>),
    /// It has exited and is ours to reap.
    Reap(NonNull<Thread>),
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
fn wait_for_exit(tp: NonNull<Thread>) -> bool {
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
    uthread::yield_with(true, move |uth| {
        uthread::has_blocked(uth, BlockReason::Join);
        // SAFETY: the join record, the registration and `armed` are on the blocked
        // uthread's stack until it runs again; the target is claimed by it, so alive.
        let (jw, t) = unsafe { (&*(jwp as *const JoinWait), (*(jwp as *const JoinWait)).target.as_ref()) };
        let me = uth.as_ptr() as usize;
        jw.joiner.store(me, Ordering::Relaxed);
        // SAFETY: the uthread that just yielded; `reg` stays in place until `disarm`.
        if !unsafe { uthread::interrupt::arm(uth, regp as *const WaitInterrupt) } {
            uthread::runnable(uth); // an interrupt is pending: do not wait
            return;
        }
        // SAFETY: as above.
        unsafe { &*(armedp as *const AtomicBool) }.store(true, Ordering::Relaxed);
        if t.life.compare_exchange(CLAIMED, me, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            uthread::runnable(uth); // it exited meanwhile
        } else if jw.interrupted.load(Ordering::SeqCst)
            && t.life.compare_exchange(me, CLAIMED, Ordering::SeqCst, Ordering::SeqCst).is_ok()
        {
            uthread::runnable(uth); // step 3
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
    target: NonNull<Thread>,
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
        // SAFETY: the joiner published itself and is blocked; we took it back.
        uthread::runnable(unsafe { NonNull::new_unchecked(me as *mut Uthread) });
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
    unsafe { uthread::yield_current_with(t.uth_ptr(), true, uthread::paused) };
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
            unsafe { *thread = t.as_ptr() as upthread_t };
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
