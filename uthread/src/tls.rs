//! Uthread TLS from backing threads.
//!
//! glibc alone knows how to build a valid TLS block (static TLS of every loaded object,
//! the DTV, the stack guard, `errno`, the malloc tcache pointer, ...), and it builds one
//! only for a thread it creates. So each uthread with TLS borrows it from a *backing*
//! Linux thread: the thread starts, records its FS base, and parks. The uthread then
//! runs on that TLS from any vcore; the backing thread never touches it while parked.
//!
//! Life of a backing thread:
//! 1. the refiller (or, if the pool is empty, `take` itself) creates it;
//! 2. it sheds what it inherited from a vcore and blocks every signal (a handler running
//!    here would share the TLS with the uthread): `parlib_vcore::detach_from_vcore`;
//!    then it publishes its FS base and parks;
//! 3. `take` hands it to one uthread;
//! 4. when that uthread is cleaned up, `release` tells it to exit; it returns from its
//!    start routine, so glibc runs the TLS destructors (Rust `thread_local!` drops,
//!    tcache teardown) on the very TLS the uthread used, then frees it.
//!
//! Creating a thread costs 20-40 µs here, so a background refiller keeps a pool of
//! fresh parked threads (`PARLIB_TLS_POOL`, default [`DEFAULT_POOL`]). When the pool is
//! empty, `take` creates one synchronously, which stalls its vcore for that long.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::OnceLock;

use parlib_vcore::spin::PdrSpinLock;
use parlib_vcore::{arch, futex};

use crate::error::Error;

/// Parked backing threads the refiller keeps ready. Uthread creation in bursts drains
/// the pool; 16 covers a burst per vcore on small machines while costing 16 idle threads.
pub const DEFAULT_POOL: usize = 16;
/// Environment variable that sets the pool size.
pub const POOL_ENV: &str = "PARLIB_TLS_POOL";
/// Each backing thread's own stack. It only parks for now; later layers run blocking
/// system calls on it (name resolution among them), so give it glibc-sized headroom.
const BACKING_STACK_SIZE: usize = 256 * 1024;

const CMD_IDLE: u32 = 0;
const CMD_EXIT: u32 = 1;
const CMD_RUN: u32 = 2;

/// A backing thread, as the uthread layer sees it.
pub(crate) struct Backing {
    fs_base: AtomicUsize,
    /// 0 until the thread has published `fs_base`; futex word for its creator.
    ready: AtomicU32,
    /// `CMD_*`; futex word the parked thread sleeps on.
    cmd: AtomicU32,
    /// The job to run when `cmd` is `CMD_RUN` (a `*const Job`).
    job: AtomicUsize,
}

/// A job for a backing thread (see [`run_on_backing`]). Lives on the blocked uthread's
/// stack.
struct Job<'a> {
    run: &'a mut dyn FnMut(),
    /// The blocked uthread, set by its yield callback before the job is posted.
    uth: Option<crate::Blocked>,
    /// The vcore the uthread blocked on.
    vcore: usize,
    complete: fn(crate::Blocked, usize),
}

impl Backing {
    pub(crate) fn fs_base(&self) -> usize {
        self.fs_base.load(Ordering::Acquire)
    }
}

struct Pool {
    ready: Vec<NonNull<Backing>>,
}
// SAFETY: the pool only stores pointers to parked backing threads' records, which are
// owned by nobody until `take` hands one out.
unsafe impl Send for Pool {}

/// PDR: uthreads take backing threads (spawning) while preemption may be on.
static POOL: PdrSpinLock<Pool> = PdrSpinLock::new(Pool { ready: Vec::new() });
static POOL_SIZE: OnceLock<usize> = OnceLock::new();
/// Bumped whenever the pool wants refilling; the refiller sleeps on it.
static REFILL: AtomicU32 = AtomicU32::new(0);

fn pool_size() -> usize {
    *POOL_SIZE.get_or_init(|| {
        std::env::var(POOL_ENV).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(DEFAULT_POOL)
    })
}

/// Starts the refiller thread. Called once by `lib_init`, from a plain thread, so the
/// refiller (and the threads it creates) carries no vcore pin or GS base.
pub(crate) fn start_refiller() -> Result<(), Error> {
    std::thread::Builder::new()
        .name("parlib-tls".into())
        .spawn(|| loop {
            let gen = REFILL.load(Ordering::Acquire);
            while POOL.lock().ready.len() < pool_size() {
                match create(None) {
                    Ok(b) => POOL.lock().ready.push(b),
                    Err(_) => break, // out of threads: `take` will report it
                }
            }
            futex::wait(&REFILL, gen);
        })
        .map(drop)
        .map_err(|e| Error::Tls { errno: e.raw_os_error().unwrap_or(libc::EAGAIN) })
}

/// A parked backing thread for a new uthread.
pub(crate) fn take() -> Result<NonNull<Backing>, Error> {
    let (b, left) = {
        let mut p = POOL.lock();
        let b = p.ready.pop();
        (b, p.ready.len())
    };
    if left < pool_size() / 2 {
        REFILL.fetch_add(1, Ordering::Release);
        futex::wake(&REFILL, 1);
    }
    match b {
        Some(b) => Ok(b),
        None => create(None),
    }
}

/// Tells a backing thread its uthread is gone: it exits, running TLS destructors.
///
/// # Safety
/// No context may run on the thread's TLS any more.
pub(crate) unsafe fn release(b: NonNull<Backing>) {
    // SAFETY: a backing record lives until its thread sees CMD_EXIT.
    let b = unsafe { b.as_ref() };
    b.cmd.store(CMD_EXIT, Ordering::Release);
    futex::wake(&b.cmd, 1);
}

/// Starts a backing thread (a std thread, so std's per-thread state, its `Thread` handle
/// among it, is set up on the TLS the uthread will use) and waits until it is parked.
/// A `name` makes it a named uthread's own, unpooled: std keeps a thread's name in its
/// TLS, so `std::thread::current().name()` and panic messages on the uthread show it,
/// and a name must be given when the thread starts.
pub(crate) fn create(name: Option<String>) -> Result<NonNull<Backing>, Error> {
    let b = Box::into_raw(Box::new(Backing {
        fs_base: AtomicUsize::new(0),
        ready: AtomicU32::new(0),
        cmd: AtomicU32::new(CMD_IDLE),
        job: AtomicUsize::new(0),
    }));
    let bp = b as usize;
    let mut builder = std::thread::Builder::new().stack_size(BACKING_STACK_SIZE);
    if let Some(n) = name {
        builder = builder.name(n);
    }
    if let Err(e) = builder.spawn(move || backing_main(bp as *mut Backing)) {
        // SAFETY: the thread was not created, so the record is still only ours.
        drop(unsafe { Box::from_raw(b) });
        return Err(Error::Tls { errno: e.raw_os_error().unwrap_or(libc::EAGAIN) });
    }
    // SAFETY: the record lives until the thread is told to exit, which only the owner
    // of the returned pointer can do.
    let rb = unsafe { &*b };
    while rb.ready.load(Ordering::Acquire) == 0 {
        futex::wait(&rb.ready, 0);
    }
    // SAFETY: Box::into_raw never returns null.
    Ok(unsafe { NonNull::new_unchecked(b) })
}

/// Steps 2 and 4 of the module docs, on the backing thread, which owns `bp` (made by
/// `create`) from its start and frees it when told to exit.
fn backing_main(bp: *mut Backing) {
    // SAFETY: `create` passes a live record that only this thread will free, below, after
    // the last use of this reference.
    let b = unsafe { &*bp };
    parlib_vcore::detach_from_vcore();
    b.fs_base.store(arch::fs_base(), Ordering::Relaxed);
    b.ready.store(1, Ordering::Release);
    futex::wake(&b.ready, 1);
    loop {
        match b.cmd.load(Ordering::Acquire) {
            CMD_EXIT => break,
            CMD_RUN => {
                // SAFETY: the uthread that posted the job is blocked until `complete`
                // runs, so the job (on its stack) and its TLS (ours) are ours meanwhile.
                let job = unsafe { &mut *(b.job.load(Ordering::Acquire) as *mut Job<'_>) };
                (job.run)();
                let uth = job.uth.take().expect("the yield callback stores the blocked uthread");
                let (vcore, complete) = (job.vcore, job.complete);
                b.cmd.store(CMD_IDLE, Ordering::Release); // before `complete`: the uthread may post again
                complete(uth, vcore);
            }
            _ => futex::wait(&b.cmd, CMD_IDLE),
        }
    }
    // SAFETY: CMD_EXIT means nobody else refers to the record any more, and `b` is not
    // used after this.
    drop(unsafe { Box::from_raw(bp) });
}

/// A complete glibc TLS block of its own (static TLS of every module, DTV, `errno`,
/// stack guard, std's per-thread state), borrowed from a parked backing thread, for code
/// that runs on a stack of its own and must not share its runner's TLS: parlib-timed's
/// calls whose continuations may move between threads. Works on plain threads too.
/// Dropping it lets the backing thread exit, running the TLS destructors on the block.
pub struct TlsBlock {
    backing: NonNull<Backing>,
}

// SAFETY: the block is a parked thread's TLS that only the holder runs code on.
unsafe impl Send for TlsBlock {}

impl TlsBlock {
    /// A block from the pool (or a new backing thread, 20-40 µs, if the pool is empty).
    ///
    /// # Errors
    /// [`Error::Tls`] if no thread could be created.
    pub fn new() -> Result<TlsBlock, Error> {
        take().map(|backing| TlsBlock { backing })
    }

    /// Its FS base (thread pointer), for [`arch::set_fs_base`] or
    /// [`swap_running_tls`](crate::swap_running_tls).
    pub fn fs_base(&self) -> usize {
        // SAFETY: a backing record lives until its thread is released, by our drop.
        unsafe { self.backing.as_ref() }.fs_base()
    }
}

impl Drop for TlsBlock {
    fn drop(&mut self) {
        // SAFETY: the holder no longer runs code on the block (the type's contract with
        // whoever switched to it: switch back before dropping).
        unsafe { release(self.backing) };
    }
}

impl core::fmt::Debug for TlsBlock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TlsBlock").field("fs_base", &format_args!("{:#x}", self.fs_base())).finish()
    }
}

/// Runs `job` on the calling uthread's backing thread, on the uthread's own TLS, while
/// only the uthread blocks: for system calls that cannot be made non-blocking (regular
/// files, `open`, `stat`, name resolution). When `job` has run, the backing thread calls
/// `complete(uthread, vcore)` with the blocked uthread and the vcore it blocked on; it
/// must make the uthread runnable again (the syscall layer sends an `EV_SYSCALL` event to
/// that vcore).
///
/// Returns false, without running `job`, if the caller is not a uthread with a backing
/// thread (TLS-less uthreads, `main`, plain threads): run the job inline instead.
#[must_use = "false means the job did not run"]
pub fn run_on_backing(
    job: &mut dyn FnMut(),
    reason: crate::BlockReason,
    complete: fn(crate::Blocked, usize),
) -> bool {
    backing_job(job, Why::Reason(reason), complete)
}

/// [`run_on_backing`] for a system call: the uthread blocks through
/// [`blockon_sysc`](crate::blockon_sysc) with `sysc` instead of `has_blocked`.
#[must_use = "false means the job did not run"]
pub fn run_sysc_on_backing(
    job: &mut dyn FnMut(),
    sysc: &crate::Syscall,
    complete: fn(crate::Blocked, usize),
) -> bool {
    backing_job(job, Why::Sysc(sysc as *const crate::Syscall as usize), complete)
}

/// How the uthread blocks for a backing job.
#[derive(Clone, Copy)]
enum Why {
    Reason(crate::BlockReason),
    /// The address of the `Syscall` record that `run_sysc_on_backing` borrows.
    Sysc(usize),
}

fn backing_job(job: &mut dyn FnMut(), why: Why, complete: fn(crate::Blocked, usize)) -> bool {
    let Some(uth) = crate::current() else { return false };
    // SAFETY: the running uthread's record; `backing` only changes in create and when the
    // record is freed.
    let Some(backing) = (unsafe { *uth.as_ref().backing.get() }) else { return false };
    let backing = backing.as_ptr() as usize;
    let mut j = Job { run: job, uth: None, vcore: 0, complete };
    let jp = &mut j as *mut Job<'_> as usize;
    let hand_over = move |me| {
        let blocked = match why {
            Why::Reason(r) => crate::has_blocked(me, r),
            // SAFETY: `run_sysc_on_backing` borrows the record for the whole call, which
            // cannot return before the uthread runs again (after `complete`).
            Why::Sysc(s) => crate::blockon_sysc(me, unsafe { &*(s as *const crate::Syscall) }),
        };
        // SAFETY: the job is on the blocked uthread's stack; the backing thread has not
        // seen it yet, so it is ours to fill in.
        unsafe {
            let j = &mut *(jp as *mut Job<'_>);
            j.vcore = parlib_vcore::id();
            j.uth = Some(blocked);
        }
        // SAFETY: the backing record lives while its uthread does; the job lives on the
        // uthread's stack, which stays put while it is blocked.
        let b = unsafe { &*(backing as *const Backing) };
        b.job.store(jp, Ordering::Release);
        b.cmd.store(CMD_RUN, Ordering::Release);
        futex::wake(&b.cmd, 1);
    };
    // SAFETY: `uth` is what `current()` just returned.
    unsafe { crate::yield_current_with(uth, hand_over) };
    true
}
