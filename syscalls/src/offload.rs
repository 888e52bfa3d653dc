//! How a uthread blocks in a system call and comes back: the [`Syscall`] record its
//! scheduler is shown, and the offload of calls that cannot be made non-blocking.
//!
//! # Blocking in a system call
//!
//! Every wait of this crate (readiness in `poll::wait_io`, an offloaded call here) fills
//! a [`Syscall`] record on the blocked uthread's stack (the call the *user* made:
//! `SYS_read` and its arguments, even when the layer issues `recvfrom` underneath) and,
//! in the yield callback, hands the uthread over with [`block_on_sysc`]. A scheduler can
//! then tell a returning syscall from other wake-ups (upthread puts them at the head of
//! its queue). The record lives until the uthread runs again:
//!
//! | field | readiness wait | offloaded call |
//! |---|---|---|
//! | `num`, `args` | the user's call | the call run off the vcore |
//! | `retval`, `err` | `-1`, `EAGAIN` (why it waits) | `-1`, `0` until done; then the result |
//! | `flags` | 0 | [`SYSC_DONE`] once the result is in |
//!
//! # Offloading
//!
//! A call that may block (regular files, `open`, `poll` with a timeout, a Unix `connect`
//! on a full backlog) runs off the vcore:
//!
//! 1. on the uthread's *backing thread*, on the uthread's own TLS, through
//!    `uthread::run_on_backing` (DESIGN §4, §7), when the uthread has one;
//! 2. otherwise (the uthread `main`, which runs on the TLS of the thread that started the
//!    runtime, and `TlsMode::None` uthreads, which run on the vcore's) on one of this
//!    crate's *offload workers*: plain Linux threads that run queued calls. The calls
//!    offloaded are raw system calls, which touch no TLS (not even `errno`: results come
//!    back as values), so which thread runs them does not matter;
//! 3. outside a uthread (plain threads, vcore context) the call is made right there.
//!
//! Either way the finished call sends `EV_SYSCALL` to the vcore the uthread blocked on,
//! whose handler makes it runnable there.
//!
//! Workers are created on demand, from the uthread about to block (never from vcore
//! context): one is started when the queued calls outnumber the idle workers, up to
//! [`MAX_WORKERS`]; beyond that, calls wait in the queue for a worker to finish. Workers
//! never exit: the pool is as large as the most calls ever offloaded at once.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

use parlib_events::{EventMsg, EventType, EV_SYSCALL};
use parlib_sync::PdrSpinLock;
use parlib_uthread::{self as uthread, Blocked, Syscall, Uthread, Yielded};
use parlib_vcore::futex;

use crate::raw::sys;

/// [`Syscall::flags`] bit: the call has completed; `retval` and `err` hold its result.
pub const SYSC_DONE: u32 = 1;

/// Offload workers at most. Each is a parked Linux thread with a 64 KiB stack; 64 bounds
/// what a burst of offloads from TLS-less uthreads can cost, while letting that many
/// blocking calls (an unbounded `poll`, a `connect` waiting for an accept) wait at once.
pub const MAX_WORKERS: usize = 64;

/// A worker only runs raw system calls and their bookkeeping: 64 KiB is ample (glibc's
/// minimum is 16 KiB).
const WORKER_STACK: usize = 64 * 1024;

/// A `Syscall` record for `nr(args)`, not yet done.
pub(crate) fn record(nr: libc::c_long, args: [usize; 6]) -> Syscall {
    Syscall { num: nr as usize, args, retval: -1, err: 0, flags: AtomicU32::new(0) }
}

/// Fills in the result of the call `rec` describes and marks it done.
fn finish(rec: &mut Syscall, r: Result<usize, i32>) {
    match r {
        Ok(v) => (rec.retval, rec.err) = (v as isize, 0),
        Err(e) => (rec.retval, rec.err) = (-1, e),
    }
    rec.flags.fetch_or(SYSC_DONE, Ordering::Release);
}

/// In a yield callback (vcore context): the uthread blocks in the system call at `sysc`
/// (the address of its `Syscall` record, on its own stack) and its scheduler is told
/// (`Scheduler::thread_blockon_sysc`). It comes back through `uthread::runnable` with
/// the handle returned.
///
/// # Safety
/// `sysc` is the address of the blocked uthread's live `Syscall` record.
pub(crate) unsafe fn block_on_sysc(me: Yielded, sysc: usize) -> Blocked {
    // SAFETY: the caller's contract; the record stays on the uthread's stack while it
    // is blocked.
    uthread::blockon_sysc(me, unsafe { &*(sysc as *const Syscall) })
}

/// Runs the raw system call `nr(args)` where it may block (see the module docs), the
/// calling uthread blocking meanwhile.
pub(crate) fn offload_sys(nr: libc::c_long, args: [usize; 6]) -> Result<usize, i32> {
    if uthread::current().is_none() {
        return sys(nr, args);
    }
    let mut rec = record(nr, args);
    let recu = &mut rec as *mut Syscall as usize;
    let mut job = move || {
        // SAFETY: `rec` is a local of `offload_sys`, which does not touch it again until
        // the job has run (on a backing thread or a worker while this uthread is blocked,
        // or inline below), and nothing else writes it meanwhile.
        let rec = unsafe { &mut *(recu as *mut Syscall) };
        finish(rec, sys(nr, args));
    };
    // SAFETY: the record is read (by the scheduler) only while the uthread blocks,
    // before the job that writes it runs.
    if !uthread::run_sysc_on_backing(&mut job, unsafe { &*(recu as *const Syscall) }, complete) {
        on_worker(&mut job, recu);
    }
    match rec.err {
        0 if rec.flags.load(Ordering::Acquire) & SYSC_DONE != 0 => Ok(rec.retval as usize),
        0 => unreachable!("an offloaded call came back without a result"),
        e => Err(e),
    }
}

/// On the thread that ran the call: the uthread is done waiting; the vcore it blocked on
/// makes it runnable.
fn complete(uth: Blocked, vcore: usize) {
    let uth = uth.into_raw();
    let msg = EventMsg { arg0: uth.as_ptr() as u64, ..Default::default() };
    if parlib_events::send_event(&msg, EV_SYSCALL, vcore).is_err() {
        // No events layer: wake it from here.
        // SAFETY: the handle given up just above, whose event was not sent.
        uthread::runnable(unsafe { Blocked::from_raw(uth) });
    }
}

/// The `EV_SYSCALL` handler, in the issuing vcore's vcore context.
pub(crate) fn on_syscall_event(msg: &EventMsg, _: EventType) {
    // SAFETY: `complete` sends the pointer of the blocked uthread's handle, once.
    uthread::runnable(unsafe { Blocked::from_raw(NonNull::new_unchecked(msg.arg0 as *mut Uthread)) });
}

// ---------------------------------------------------------------------------------------
// Offload workers.

/// A call queued for a worker; on the blocked uthread's stack.
struct Job {
    run: *mut (dyn FnMut() + 'static),
    /// The blocked uthread, set by its yield callback before the job is queued.
    uth: Option<Blocked>,
    vcore: usize,
    next: *mut Job,
}

struct Queue {
    /// Intrusive FIFO of queued jobs (pushing never allocates: it happens in vcore
    /// context).
    head: *mut Job,
    tail: *mut Job,
    /// Calls announced by uthreads about to block (not yet taken by a worker).
    announced: usize,
    /// Workers waiting for a job.
    idle: usize,
    /// Workers started.
    workers: usize,
}

// SAFETY: the queue only holds pointers to jobs on blocked uthreads' stacks, handed from
// the uthread's vcore to one worker under the lock.
unsafe impl Send for Queue {}

/// PDR: uthreads announce their calls while notifications may be on.
static QUEUE: PdrSpinLock<Queue> = PdrSpinLock::new(Queue {
    head: core::ptr::null_mut(),
    tail: core::ptr::null_mut(),
    announced: 0,
    idle: 0,
    workers: 0,
});
/// Bumped for every queued job; idle workers sleep on it.
static KICK: AtomicU32 = AtomicU32::new(0);

/// Runs `job` on an offload worker while the calling uthread blocks on the `Syscall`
/// record at `rec` (on its stack).
fn on_worker(job: &mut dyn FnMut(), rec: usize) {
    let start = {
        let mut q = QUEUE.lock();
        q.announced += 1;
        let start = q.announced > q.idle && q.workers < MAX_WORKERS;
        if start {
            q.workers += 1;
        }
        start
    };
    if start && spawn_worker().is_err() {
        let mut q = QUEUE.lock();
        q.workers -= 1;
        if q.workers == 0 {
            // No worker at all, and none can be made: block the vcore rather than hang.
            q.announced -= 1;
            drop(q);
            job();
            return;
        }
    }
    // SAFETY: only the lifetime is erased: the job lives on this stack, which stays put
    // until the worker has run it and `complete` has woken us.
    let run: *mut (dyn FnMut() + 'static) = unsafe { core::mem::transmute(job as *mut dyn FnMut()) };
    let mut j = Job { run, uth: None, vcore: 0, next: core::ptr::null_mut() };
    let jp = &mut j as *mut Job as usize;
    uthread::yield_with(move |me| {
        // SAFETY: `rec` is the caller's record, on this uthread's stack.
        let me = unsafe { block_on_sysc(me, rec) };
        // SAFETY: the job is on the blocked uthread's stack; no worker has seen it yet.
        let j = unsafe { &mut *(jp as *mut Job) };
        j.uth = Some(me);
        j.vcore = parlib_vcore::id();
        let mut q = QUEUE.lock();
        if q.tail.is_null() {
            q.head = j;
        } else {
            // SAFETY: queued jobs stay alive until a worker takes them.
            unsafe { (*q.tail).next = j };
        }
        q.tail = j;
        drop(q);
        KICK.fetch_add(1, Ordering::Release);
        futex::wake(&KICK, 1);
    });
}

fn spawn_worker() -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("parlib-offload".into())
        .stack_size(WORKER_STACK)
        .spawn(worker_main)
        .map(drop)
}

fn worker_main() {
    // Started from a uthread, so cloned from a vcore task.
    parlib_vcore::detach_from_vcore();
    loop {
        let kick = KICK.load(Ordering::Acquire);
        let job = {
            let mut q = QUEUE.lock();
            let j = q.head;
            if !j.is_null() {
                // SAFETY: a queued job is alive until its worker completes it.
                q.head = unsafe { (*j).next };
                if q.head.is_null() {
                    q.tail = core::ptr::null_mut();
                }
                q.announced -= 1;
            } else {
                q.idle += 1;
            }
            j
        };
        if job.is_null() {
            futex::wait(&KICK, kick);
            QUEUE.lock().idle -= 1;
            continue;
        }
        // SAFETY: the job's uthread is blocked until `complete`, so the job and the
        // closure it points at (both on its stack) are ours until then.
        let (uth, vcore) = unsafe {
            (*(*job).run)();
            ((*job).uth.take().expect("the yield callback stores the blocked uthread"), (*job).vcore)
        };
        complete(uth, vcore);
    }
}
