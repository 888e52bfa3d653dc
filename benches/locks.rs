//! Comparison benchmark: parlib-sync's mutex and condvar (`DESIGN.md` §8) against glibc's
//! `pthread_mutex_t` and `pthread_cond_t`, in the same process and the same run (§12).
//!
//! | case | parlib-rs side | Linux baseline |
//! |---|---|---|
//! | `uncontended` | lock + unlock of a [`RawMutex`] on the `main` uthread (`ns`); also a [`parlib::sync::Mutex`]`<u64>` lock, increment, unlock (`parlib_mutex_ns`), and the same with a `std::sync::Mutex<u64>` on the uthread, with std's futex calls interposed by `parlib-syscalls` (`std_uthread_ns`: its fast path makes no system call, so it must cost what `std_ns` does) | lock + unlock of a `pthread_mutex_t` on a Linux thread pinned to the same CPU (`pthread_ns`); also a `std::sync::Mutex<u64>` lock, increment, unlock (`std_ns`) |
//! | `handoff` | two uthreads on vcore 0 pass the ownership of mutexes back and forth, every acquisition blocking on a mutex the other holds (below) | the same code with `pthread_mutex_t`, on two Linux threads pinned to vcore 0's CPU |
//! | `condvar` | two uthreads on vcore 0 pass a turn back and forth with a mutex, a condvar and a turn flag | the same code with `pthread_mutex_t` and `pthread_cond_t`, on two Linux threads pinned to vcore 0's CPU |
//!
//! Only vcore 0 is ever requested: the other vcores stay parked throughout. The Linux
//! sides run while every vcore is parked (the `main` uthread blocks), on the CPU vcore 0
//! is pinned to. They are started by a *driver*, a plain Linux thread created before
//! `lib_init` (so it carries no vcore pin). The uthreads use the scheduler in `common/`
//! (per-vcore FIFO queues); `handoff` and `condvar` run on two TLS-backed uthreads, `A`
//! and `B`, that live for the whole run and wait on gates between windows, so no backing
//! thread is created or exits during a measurement.
//!
//! # `handoff`: every acquisition is a hand-over through the blocking path
//!
//! On one vcore, with Mesa semantics, the obvious ping-pong (lock; count; unlock; lock
//! again) never hands anything over: the unlocker wakes the waiter, but keeps running
//! and relocks the free mutex before the waiter gets to run. Making the unlocker yield
//! helps, but adds two yields (two more switches) to every hand-over. Instead A and B
//! rotate three mutexes, `m[0..3]`. A starts holding `m[0]` and `m[1]`, B holds `m[2]`.
//! At step k (k = 0, 1, ...):
//!
//! * A: unlock `m[k % 3]` (B is blocked on it: wake B), then lock `m[(k + 2) % 3]`, which
//!   B holds: A blocks, and the vcore switches to B;
//! * B (back from its lock of `m[k % 3]`, which it now owns): unlock `m[(k + 2) % 3]`
//!   (A is blocked on it: wake A), then lock `m[(k + 1) % 3]`, which A holds: B blocks.
//!
//! So each hand-over is one unlock that wakes a blocked waiter, one lock that blocks, and
//! one switch, with no yield. A model check of every interleaving of the two programs
//! (three mutexes, any scheduling, so also Linux's) finds no deadlock. On one vcore with
//! no preemption, every lock finds its mutex held: the holder is the other uthread, which
//! is not running. The bench counts that (`is_locked` just before `lock`) and checks it
//! is every acquisition. On Linux, a woken thread may preempt its waker, which then finds
//! the next mutex already free: the table reports which share of the Linux acquisitions
//! found the mutex held.
//!
//! A times the window: it reads the clock every [`CHECK_EVERY`] steps, and when the window
//! is over, at the top of step k, it sets `quit` (under the mutex it then unlocks), unlocks
//! `m[k % 3]` and its other mutex, and stops. B owns `m[k % 3]`, sees `quit`, unlocks both
//! its mutexes, and stops. Between A's two clock reads, A acquired k times and B k times
//! (B's k-th acquisition precedes its unlock that A's k-th acquisition waits for): 2k
//! hand-overs, and the figure is elapsed ÷ 2k. Checks: A acquired k times, B k + 1 (the
//! last one after the window), and a counter bumped by a plain load and store in every
//! critical section reads 2k + 1, so no two critical sections overlapped.
//!
//! # `condvar`: a turn passed with a signal
//!
//! One mutex, one condvar and a turn flag (A or B). Each side, holding the mutex, waits on
//! the condvar while the turn is not its own; when it is, it gives the turn to the other,
//! signals the condvar, and waits again. B starts waiting; A takes the mutex once B waits.
//! One figure is ns per *pass* of the turn: one signal that wakes the waiting side, its
//! wake-up, and its relock of the mutex (free by then: the signaller released it in its
//! own wait); a round trip A → B → A is two passes. A times it as in `handoff`: k round
//! trips are 2k passes. Checks: A and B each passed k times (B's last, after the window,
//! ended the run); each `wait` returned for exactly one pass (on Linux, the extra ones
//! would be spurious wake-ups, which the table reports), and the counter reads 2k.
//!
//! # Windows, repetitions, ratio
//!
//! `uncontended` times batches of [`BATCH`] operations until the window is over: the clock
//! is read once per batch. Every side of every case runs one untimed warm-up window (half
//! length), then R windows, alternating which side goes first; every figure is the median
//! over the R windows. `ratio` = baseline ÷ parlib-rs (`pthread_ns / ns`, `linux_ns /
//! uthread_ns`): above 1, parlib-rs is faster.
//!
//! Figures are wall-clock time, as in the other comparison benches. The measuring threads
//! also read their kernel task's CPU time (`CLOCK_THREAD_CPUTIME_ID`; a uthread reads its
//! vcore's task) at the edges of each window, and the table gives the *CPU share*, the
//! CPU time the measured threads used over the window's length. It is about 1 when
//! nothing else ran on that CPU; on a shared machine other processes may take turns on
//! it, and the wall-clock figures then count their time too. The table also gives the
//! CPU time per operation and its ratio, which such turns do not inflate (their cache
//! damage still shows).
//!
//! Run: `cargo bench --bench locks -- --quick` (about 10 s; prints only) or
//! `cargo bench --bench locks` (about 40 s; also writes `results.md`, `results.csv` and
//! `locks.svg` under `<target>/parlib-bench/locks/`). Arguments that are not flags pick
//! cases by name (`-- --quick handoff`). The output ends with one `RESULT locks case=...`
//! line per case (see `BENCHMARKS.md`).

use std::cell::UnsafeCell;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use parlib::sync::{RawCondvar, RawMutex};
use parlib::uthread::TlsMode;
use parlib::vcore;

#[path = "common/mod.rs"]
mod common;
#[path = "common/harness.rs"]
mod harness;
#[path = "common/machine.rs"]
mod machine;
#[path = "common/report.rs"]
mod report;

use common::{Completion, Gate};
use harness::{pin_to, Mode, STALL_WARNING};
use machine::Machine;
use report::{Report, Stat};

// ---------------------------------------------------------------------------------------
// Settings.

/// How long one run goes on, and how often.
struct Settings {
    /// Measured windows per case and side; odd, so the median is a sample.
    reps: usize,
    /// Length of one window (the warm-up window is half).
    window: Duration,
}

/// `--quick`: 5 windows of 100 ms per side. 8 sides in all (4 for `uncontended`, 2 each
/// for the others) x (5 x 100 + 50) ms is about 4.4 s of windows; 5 is the smallest odd
/// count whose median ignores two outliers.
const QUICK: Settings = Settings { reps: 5, window: Duration::from_millis(100) };

/// Full run: 11 windows of 400 ms per side (8 x (11 x 400 + 200) ms, about 37 s of
/// windows), a median robust to five outliers, as `ctxswitch` and `events` do.
const FULL: Settings = Settings { reps: 11, window: Duration::from_millis(400) };

/// Without `--bench` (`cargo test --benches`, or the binary run by hand): one short
/// window per side and case, to check that everything runs. No RESULT lines, no files.
const SMOKE: Settings = Settings { reps: 1, window: Duration::from_millis(5) };

/// Uncontended operations between two clock reads. A lock + unlock takes some ns, a
/// `clock_gettime` through the vDSO some tens of ns (`BENCHMARKS.md`, `events`), so one
/// read per 10 000 operations costs well under 0.1% of a batch, and a batch (tens of µs)
/// overshoots a 100 ms window by a negligible amount.
const BATCH: u64 = 10_000;

/// Steps (`handoff`) or round trips (`condvar`) between two clock reads of A. A step is
/// two hand-overs of some hundred ns (uthreads) to some µs (Linux), so a read per 64 steps
/// costs under 0.1% and ends a window within some tens of µs of its nominal length.
const CHECK_EVERY: u64 = 64;

/// The goal for `uncontended`: lock + unlock of a `RawMutex` in at most this
/// many ns.
const UNCONTENDED_GOAL_NS: f64 = 15.0;

/// The goal for `handoff`: uthread hand-overs on one vcore at least this many
/// times faster than Linux threads' on one core, in the same run.
const HANDOFF_GOAL_RATIO: f64 = 10.0;

// ---------------------------------------------------------------------------------------
// The locks, behind one interface, so that both sides of a case run the same code.

/// A mutex as the contended cases use it.
trait Lock: Sync {
    fn lock(&self);
    fn unlock(&self);
    /// Whether it is held right now (a snapshot, for the checks).
    fn is_locked(&self) -> bool;
}

/// A condvar paired with its mutex type.
trait Cond: Sync {
    type M: Lock;
    fn wait(&self, m: &Self::M);
    fn signal(&self);
}

#[cold]
#[inline(never)]
fn failed(what: &str, err: impl std::fmt::Debug) -> ! {
    panic!("locks: {what} failed: {err:?}")
}

impl Lock for RawMutex {
    #[inline(always)]
    fn lock(&self) {
        if let Err(e) = RawMutex::lock(self) {
            failed("RawMutex::lock", e);
        }
    }
    #[inline(always)]
    fn unlock(&self) {
        if let Err(e) = RawMutex::unlock(self) {
            failed("RawMutex::unlock", e);
        }
    }
    fn is_locked(&self) -> bool {
        RawMutex::is_locked(self)
    }
}

impl Cond for RawCondvar {
    type M = RawMutex;
    fn wait(&self, m: &RawMutex) {
        if let Err(e) = RawCondvar::wait(self, m) {
            failed("RawCondvar::wait", e);
        }
    }
    fn signal(&self) {
        RawCondvar::signal(self);
    }
}

/// A glibc `pthread_mutex_t` of the default (normal) kind, in place: it must not move once
/// used, so the bench keeps them in statics.
struct PthreadMutex(UnsafeCell<libc::pthread_mutex_t>);

// SAFETY: a pthread mutex is made to be shared between threads; every access goes through
// the pthread functions (or, in `is_locked`, an atomic load).
unsafe impl Sync for PthreadMutex {}

impl PthreadMutex {
    const fn new() -> PthreadMutex {
        PthreadMutex(UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER))
    }
}

impl Lock for PthreadMutex {
    #[inline(always)]
    fn lock(&self) {
        // SAFETY: an initialised mutex that never moves (it lives in a static).
        let r = unsafe { libc::pthread_mutex_lock(self.0.get()) };
        if r != 0 {
            failed("pthread_mutex_lock", r);
        }
    }
    #[inline(always)]
    fn unlock(&self) {
        // SAFETY: as above; the calling thread holds it.
        let r = unsafe { libc::pthread_mutex_unlock(self.0.get()) };
        if r != 0 {
            failed("pthread_mutex_unlock", r);
        }
    }
    fn is_locked(&self) -> bool {
        // glibc's `struct __pthread_mutex_s` begins with `int __lock`, the futex word: 0
        // when unlocked (sysdeps/nptl/bits/struct_mutex.h). Read atomically, as glibc's
        // own lock path does, and only for the checks.
        // SAFETY: the word is 4-aligned (the mutex is 8-aligned), lives as long as the
        // static, and is only ever accessed atomically by glibc.
        let word = unsafe { AtomicI32::from_ptr(self.0.get().cast::<i32>()) };
        word.load(Ordering::Relaxed) != 0
    }
}

/// A glibc `pthread_cond_t`, in place, like [`PthreadMutex`].
struct PthreadCond(UnsafeCell<libc::pthread_cond_t>);

// SAFETY: a pthread condvar is made to be shared between threads; every access goes
// through the pthread functions.
unsafe impl Sync for PthreadCond {}

impl PthreadCond {
    const fn new() -> PthreadCond {
        PthreadCond(UnsafeCell::new(libc::PTHREAD_COND_INITIALIZER))
    }
}

impl Cond for PthreadCond {
    type M = PthreadMutex;
    fn wait(&self, m: &PthreadMutex) {
        // SAFETY: both are initialised and never move; the caller holds `m`.
        let r = unsafe { libc::pthread_cond_wait(self.0.get(), m.0.get()) };
        if r != 0 {
            failed("pthread_cond_wait", r);
        }
    }
    fn signal(&self) {
        // SAFETY: initialised and never moves.
        let r = unsafe { libc::pthread_cond_signal(self.0.get()) };
        if r != 0 {
            failed("pthread_cond_signal", r);
        }
    }
}

/// What the contended cases of one side use.
struct Prims<M, C> {
    /// The three mutexes `handoff` rotates.
    rotation: [CachePadded<M>; 3],
    /// The mutex and the condvar of `condvar`.
    mutex: CachePadded<M>,
    cond: CachePadded<C>,
}

static PARLIB: Prims<RawMutex, RawCondvar> = Prims {
    rotation: [
        CachePadded::new(RawMutex::new()),
        CachePadded::new(RawMutex::new()),
        CachePadded::new(RawMutex::new()),
    ],
    mutex: CachePadded::new(RawMutex::new()),
    cond: CachePadded::new(RawCondvar::new()),
};

static PTHREAD: Prims<PthreadMutex, PthreadCond> = Prims {
    rotation: [
        CachePadded::new(PthreadMutex::new()),
        CachePadded::new(PthreadMutex::new()),
        CachePadded::new(PthreadMutex::new()),
    ],
    mutex: CachePadded::new(PthreadMutex::new()),
    cond: CachePadded::new(PthreadCond::new()),
};

/// The locks of `uncontended`, each alone on its line pair.
static UNC_RAW: CachePadded<RawMutex> = CachePadded::new(RawMutex::new());
static UNC_PTHREAD: CachePadded<PthreadMutex> = CachePadded::new(PthreadMutex::new());
static UNC_PARLIB_MUTEX: CachePadded<parlib::sync::Mutex<u64>> =
    CachePadded::new(parlib::sync::Mutex::new(0));
static UNC_STD_MUTEX: CachePadded<std::sync::Mutex<u64>> = CachePadded::new(std::sync::Mutex::new(0));
static UNC_STD_ON_UTHREAD: CachePadded<std::sync::Mutex<u64>> = CachePadded::new(std::sync::Mutex::new(0));

// ---------------------------------------------------------------------------------------
// The state of one contended window, shared by A and B of either side. One window runs
// at a time; `main` resets it before the window starts, when nobody else touches it.

const TURN_A: u32 = 0;
const TURN_B: u32 = 1;

struct Shared {
    /// A holds its starting locks (`handoff`).
    a_ready: AtomicBool,
    /// B holds its starting lock, or waits on the condvar.
    b_ready: AtomicBool,
    /// A has ended the window. Written and read under a mutex, which orders it.
    quit: AtomicBool,
    /// Whose turn it is (`condvar`); under the mutex.
    turn: AtomicU32,
    /// Bumped in every critical section with a plain load and store, not an atomic
    /// read-modify-write: only mutual exclusion keeps it exact.
    counter: CachePadded<AtomicU64>,
    /// A's and B's counts: acquisitions (`handoff`) or passes (`condvar`).
    a_ops: AtomicU64,
    b_ops: AtomicU64,
    /// Acquisitions that found the mutex held (`handoff`), or calls of `wait` (`condvar`).
    a_seen: AtomicU64,
    b_seen: AtomicU64,
    /// A's window, between its two clock reads.
    elapsed_ns: AtomicU64,
    /// CPU time A's kernel task used in that window ([`task_cpu_ns`]), and B's in its
    /// own loop (on the uthread side B runs on the same task as A: not counted again).
    a_cpu_ns: AtomicU64,
    b_cpu_ns: AtomicU64,
}

static S: Shared = Shared {
    a_ready: AtomicBool::new(false),
    b_ready: AtomicBool::new(false),
    quit: AtomicBool::new(false),
    turn: AtomicU32::new(TURN_A),
    counter: CachePadded::new(AtomicU64::new(0)),
    a_ops: AtomicU64::new(0),
    b_ops: AtomicU64::new(0),
    a_seen: AtomicU64::new(0),
    b_seen: AtomicU64::new(0),
    elapsed_ns: AtomicU64::new(0),
    a_cpu_ns: AtomicU64::new(0),
    b_cpu_ns: AtomicU64::new(0),
};

impl Shared {
    fn reset(&self) {
        for f in [&self.a_ready, &self.b_ready, &self.quit] {
            f.store(false, Ordering::Relaxed);
        }
        self.turn.store(TURN_A, Ordering::Relaxed);
        for c in [
            &self.counter,
            &self.a_ops,
            &self.b_ops,
            &self.a_seen,
            &self.b_seen,
            &self.elapsed_ns,
            &self.a_cpu_ns,
            &self.b_cpu_ns,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// The critical section's work: a non-atomic increment, exact only under mutual exclusion.
#[inline(always)]
fn bump() {
    let c = &S.counter;
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// The next of three rotating indices.
#[inline(always)]
fn next3(i: usize) -> usize {
    if i == 2 {
        0
    } else {
        i + 1
    }
}

/// CPU time the calling kernel task has used so far, in ns: on a uthread, its vcore's
/// task. Read at the edges of a window, so that the table can say which share of the
/// window the measured threads had the CPU: on this shared machine, other processes'
/// threads may take turns on the same CPU, and a wall-clock figure would count their time.
fn task_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the call to fill.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID): {}", std::io::Error::last_os_error());
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

// ---------------------------------------------------------------------------------------
// The contended cases' two sides, generic over the locks and over how a waiting side
// gives its CPU away: `common::yield_now` on a uthread, `sched_yield` on a Linux thread.

/// `handoff`, side A (see the module docs): until `window` is over, at step k unlock
/// `m[k % 3]` and lock `m[(k + 2) % 3]`.
fn handoff_a<L: Lock>(m: &[CachePadded<L>; 3], window: Duration, yield_now: fn()) {
    m[0].lock();
    m[1].lock();
    S.a_ready.store(true, Ordering::Release);
    while !S.b_ready.load(Ordering::Acquire) {
        yield_now();
    }
    let (mut k, mut held) = (0u64, 0u64);
    let (mut give, mut take) = (0usize, 2usize); // k % 3, (k + 2) % 3
    let cpu0 = task_cpu_ns();
    let t0 = Instant::now();
    let elapsed = loop {
        if k % CHECK_EVERY == 0 {
            let e = t0.elapsed();
            if e >= window {
                break e;
            }
        }
        m[give].unlock(); // B waits on it: wakes B
        held += u64::from(m[take].is_locked());
        m[take].lock(); // B holds it: blocks until B's unlock
        bump();
        k += 1;
        (give, take) = (next3(give), next3(take));
    };
    let cpu = task_cpu_ns() - cpu0;
    // Top of step k: A holds m[k % 3] and m[(k + 1) % 3]. `quit` is published to B by the
    // unlock of m[k % 3], which B waits for.
    S.quit.store(true, Ordering::Relaxed);
    m[give].unlock();
    m[next3(give)].unlock();
    S.elapsed_ns.store(elapsed.as_nanos() as u64, Ordering::Relaxed);
    S.a_cpu_ns.store(cpu, Ordering::Relaxed);
    S.a_ops.store(k, Ordering::Relaxed);
    S.a_seen.store(held, Ordering::Relaxed);
}

/// `handoff`, side B: at step k lock `m[k % 3]`, then unlock `m[(k + 2) % 3]`, until A
/// says `quit`.
fn handoff_b<L: Lock>(m: &[CachePadded<L>; 3], yield_now: fn()) {
    while !S.a_ready.load(Ordering::Acquire) {
        yield_now();
    }
    m[2].lock();
    let cpu0 = task_cpu_ns();
    S.b_ready.store(true, Ordering::Release);
    let (mut k, mut held) = (0u64, 0u64);
    let (mut take, mut give) = (0usize, 2usize); // k % 3, (k + 2) % 3
    loop {
        held += u64::from(m[take].is_locked());
        m[take].lock(); // A holds it: blocks until A's unlock
        bump();
        k += 1;
        if S.quit.load(Ordering::Relaxed) {
            m[take].unlock();
            m[give].unlock();
            break;
        }
        m[give].unlock(); // A waits on it: wakes A
        (take, give) = (next3(take), next3(give));
    }
    S.b_cpu_ns.store(task_cpu_ns() - cpu0, Ordering::Relaxed);
    S.b_ops.store(k, Ordering::Relaxed);
    S.b_seen.store(held, Ordering::Relaxed);
}

/// `condvar`, side A: pass the turn to B and wait for it back, until `window` is over.
fn condvar_a<C: Cond>(m: &C::M, cv: &C, window: Duration, yield_now: fn()) {
    while !S.b_ready.load(Ordering::Acquire) {
        yield_now();
    }
    // B set `b_ready` holding the mutex and releases it only by waiting: once we hold it,
    // B waits on the condvar.
    m.lock();
    let (mut k, mut waits) = (0u64, 0u64);
    let cpu0 = task_cpu_ns();
    let t0 = Instant::now();
    let elapsed = loop {
        if k % CHECK_EVERY == 0 {
            let e = t0.elapsed();
            if e >= window {
                break e;
            }
        }
        S.turn.store(TURN_B, Ordering::Relaxed);
        bump();
        cv.signal();
        while S.turn.load(Ordering::Relaxed) != TURN_A {
            waits += 1;
            cv.wait(m);
        }
        k += 1;
    };
    let cpu = task_cpu_ns() - cpu0;
    S.quit.store(true, Ordering::Relaxed);
    S.turn.store(TURN_B, Ordering::Relaxed);
    cv.signal();
    m.unlock();
    S.elapsed_ns.store(elapsed.as_nanos() as u64, Ordering::Relaxed);
    S.a_cpu_ns.store(cpu, Ordering::Relaxed);
    S.a_ops.store(k, Ordering::Relaxed);
    S.a_seen.store(waits, Ordering::Relaxed);
}

/// `condvar`, side B: wait for the turn, pass it back, until A says `quit`.
fn condvar_b<C: Cond>(m: &C::M, cv: &C) {
    m.lock();
    let cpu0 = task_cpu_ns();
    S.b_ready.store(true, Ordering::Release);
    let (mut k, mut waits) = (0u64, 0u64);
    loop {
        while S.turn.load(Ordering::Relaxed) != TURN_B {
            waits += 1;
            cv.wait(m);
        }
        if S.quit.load(Ordering::Relaxed) {
            break;
        }
        S.turn.store(TURN_A, Ordering::Relaxed);
        bump();
        cv.signal();
        k += 1;
    }
    m.unlock();
    S.b_cpu_ns.store(task_cpu_ns() - cpu0, Ordering::Relaxed);
    S.b_ops.store(k, Ordering::Relaxed);
    S.b_seen.store(waits, Ordering::Relaxed);
}

fn linux_yield() {
    // SAFETY: sched_yield has no preconditions.
    unsafe { libc::sched_yield() };
}

// ---------------------------------------------------------------------------------------
// The uthread team: A and B on vcore 0, alive for the whole run.

/// What the team does when its gates open.
const WORK_HANDOFF: u8 = 0;
const WORK_CONDVAR: u8 = 1;
const WORK_QUIT: u8 = 2;

static WORK: AtomicU8 = AtomicU8::new(WORK_QUIT);
static WORK_WINDOW_NS: AtomicU64 = AtomicU64::new(0);
static GATE_A: Gate = Gate::new();
static GATE_B: Gate = Gate::new();
/// `main` waits here for a window to end: for A and B (uthread side), or the driver.
static DONE: Completion = Completion::new();

fn spawn_team() {
    for (gate, is_a) in [(&GATE_A, true), (&GATE_B, false)] {
        common::spawn_on(0, TlsMode::Backed, move || loop {
            gate.pass(); // blocked here between windows
            let work = WORK.load(Ordering::Relaxed); // published by the gate
            let window = Duration::from_nanos(WORK_WINDOW_NS.load(Ordering::Relaxed));
            let p = &PARLIB;
            match (work, is_a) {
                (WORK_HANDOFF, true) => handoff_a(&p.rotation, window, common::yield_now),
                (WORK_HANDOFF, false) => handoff_b(&p.rotation, common::yield_now),
                (WORK_CONDVAR, true) => condvar_a(&*p.mutex, &*p.cond, window, common::yield_now),
                (WORK_CONDVAR, false) => condvar_b(&*p.mutex, &*p.cond),
                _ => {
                    DONE.arrive();
                    return;
                }
            }
            DONE.arrive();
        });
    }
}

/// One contended window on the uthread side: `main` opens B's gate, then A's, and blocks;
/// vcore 0 runs B, then A (FIFO).
fn uthread_window(work: u8, window: Duration) {
    S.reset();
    WORK.store(work, Ordering::Relaxed);
    WORK_WINDOW_NS.store(window.as_nanos() as u64, Ordering::Relaxed);
    DONE.reset(2);
    GATE_B.open();
    GATE_A.open();
    DONE.wait();
}

fn finish_team() {
    WORK.store(WORK_QUIT, Ordering::Relaxed);
    DONE.reset(2);
    GATE_B.open();
    GATE_A.open();
    DONE.wait();
}

// ---------------------------------------------------------------------------------------
// The driver: a plain Linux thread that runs the baselines on vcore 0's CPU.

enum Job {
    /// `pthread_mutex_t` lock + unlock, on a thread pinned to vcore 0's CPU.
    Pthread { window: Duration },
    /// `std::sync::Mutex<u64>` lock, increment, unlock, likewise.
    Std { window: Duration },
    /// `handoff` on two threads pinned to vcore 0's CPU.
    Handoff { window: Duration },
    /// `condvar` on two threads pinned to vcore 0's CPU.
    Condvar { window: Duration },
}

/// A baseline's uncontended window, for `main`.
static BASE_OPS: AtomicU64 = AtomicU64::new(0);
static BASE_ELAPSED: AtomicU64 = AtomicU64::new(0);
static BASE_CPU: AtomicU64 = AtomicU64::new(0);

fn driver(jobs: mpsc::Receiver<Job>) {
    for job in jobs {
        harness::wait_until(
            || (0..vcore::max_vcores()).all(harness::is_parked),
            || eprintln!("locks: still waiting after {STALL_WARNING:?} for every vcore to park"),
        );
        let cpu = vcore::cpu_of(0).expect("vcore 0");
        std::thread::scope(|s| match job {
            Job::Pthread { window } => {
                s.spawn(move || {
                    pin_to(cpu);
                    let m = &*UNC_PTHREAD;
                    store_base(time_ops(window, || {
                        let m = black_box(m);
                        m.lock();
                        m.unlock();
                    }));
                });
            }
            Job::Std { window } => {
                s.spawn(move || {
                    pin_to(cpu);
                    store_base(time_std_mutex(&UNC_STD_MUTEX, window, "std::sync::Mutex"));
                });
            }
            Job::Handoff { window } => {
                s.spawn(move || {
                    pin_to(cpu);
                    handoff_b(&PTHREAD.rotation, linux_yield);
                });
                s.spawn(move || {
                    pin_to(cpu);
                    handoff_a(&PTHREAD.rotation, window, linux_yield);
                });
            }
            Job::Condvar { window } => {
                s.spawn(move || {
                    pin_to(cpu);
                    condvar_b(&*PTHREAD.mutex, &*PTHREAD.cond);
                });
                s.spawn(move || {
                    pin_to(cpu);
                    condvar_a(&*PTHREAD.mutex, &*PTHREAD.cond, window, linux_yield);
                });
            }
        });
        DONE.arrive(); // after the joins, which publish what the threads stored
    }
}

fn store_base(t: Timed) {
    BASE_OPS.store(t.ops, Ordering::Relaxed);
    BASE_ELAPSED.store(t.elapsed_ns, Ordering::Relaxed);
    BASE_CPU.store(t.cpu_ns, Ordering::Relaxed);
}

/// An uncontended window.
#[derive(Clone, Copy)]
struct Timed {
    ops: u64,
    elapsed_ns: u64,
    cpu_ns: u64,
}

/// Runs `op` in batches of [`BATCH`] until `window` is over.
#[inline(always)]
fn time_ops(window: Duration, mut op: impl FnMut()) -> Timed {
    let mut n = 0u64;
    let cpu0 = task_cpu_ns();
    let t0 = Instant::now();
    loop {
        for _ in 0..BATCH {
            op();
        }
        n += BATCH;
        let e = t0.elapsed();
        if e >= window {
            return Timed { ops: n, elapsed_ns: e.as_nanos() as u64, cpu_ns: task_cpu_ns() - cpu0 };
        }
    }
}

/// Hands `job` to the driver and blocks `main` until it is done (vcore 0 parks meanwhile).
fn run_baseline(jobs: &mpsc::Sender<Job>, job: Job) {
    DONE.reset(1);
    jobs.send(job).expect("driver alive"); // publishes the resets
    DONE.wait();
}

// ---------------------------------------------------------------------------------------
// One window of each side, as a `Sample`.

/// One measured window of one side.
#[derive(Clone, Copy, Debug)]
struct Sample {
    rep: usize,
    /// Operations timed: lock + unlock pairs, hand-overs, or passes.
    ops: u64,
    elapsed_ns: u64,
    /// `handoff`: acquisitions in all (including B's last, after the window), and how
    /// many of them found the mutex held. `condvar`: passes in all, and calls of `wait`.
    acquisitions: u64,
    seen: u64,
    /// CPU time the measured threads used in the window ([`task_cpu_ns`]).
    cpu_ns: u64,
}

impl Sample {
    fn ns_per_op(&self) -> f64 {
        self.elapsed_ns as f64 / self.ops as f64
    }
    /// The share of the window the measured threads had the CPU (about 1 when nothing
    /// else ran on it).
    fn cpu_share(&self) -> f64 {
        self.cpu_ns as f64 / self.elapsed_ns as f64
    }
    /// CPU time per operation: what `ns_per_op` would be had nothing else run on the CPU.
    fn cpu_ns_per_op(&self) -> f64 {
        self.cpu_ns as f64 / self.ops as f64
    }
    fn uncontended(rep: usize, t: Timed) -> Sample {
        Sample { rep, ops: t.ops, elapsed_ns: t.elapsed_ns, acquisitions: 0, seen: 0, cpu_ns: t.cpu_ns }
    }
}

fn parlib_raw(rep: usize, window: Duration) -> Sample {
    let m = &*UNC_RAW;
    Sample::uncontended(
        rep,
        time_ops(window, || {
            let m = black_box(m);
            Lock::lock(m);
            Lock::unlock(m);
        }),
    )
}

/// `std::sync::Mutex<u64>` lock, increment, unlock, on whatever thread calls it; checks
/// that every increment was counted.
fn time_std_mutex(m: &std::sync::Mutex<u64>, window: Duration, what: &str) -> Timed {
    *m.lock().expect("std mutex") = 0;
    let t = time_ops(window, || *black_box(m).lock().expect("std mutex") += 1);
    assert_eq!(*m.lock().expect("std mutex"), t.ops, "{what}: lost increments");
    t
}

/// `std::sync::Mutex<u64>` lock, increment, unlock on the `main` uthread.
fn std_on_uthread(rep: usize, window: Duration) -> Sample {
    Sample::uncontended(rep, time_std_mutex(&UNC_STD_ON_UTHREAD, window, "std::sync::Mutex on a uthread"))
}

fn parlib_mutex(rep: usize, window: Duration) -> Sample {
    let m = &*UNC_PARLIB_MUTEX;
    *m.lock() = 0;
    let t = time_ops(window, || *black_box(m).lock() += 1);
    assert_eq!(*m.lock(), t.ops, "parlib Mutex<u64>: lost increments");
    Sample::uncontended(rep, t)
}

fn baseline_uncontended(jobs: &mpsc::Sender<Job>, rep: usize, job: Job) -> Sample {
    run_baseline(jobs, job);
    Sample::uncontended(
        rep,
        Timed {
            ops: BASE_OPS.load(Ordering::Relaxed),
            elapsed_ns: BASE_ELAPSED.load(Ordering::Relaxed),
            cpu_ns: BASE_CPU.load(Ordering::Relaxed),
        },
    )
}

/// Which side a contended window ran on, for the checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Uthreads,
    Linux,
}

/// CPU time A and B used in a contended window: on the uthread side they share vcore 0's
/// task, whose time A's count already holds.
fn contended_cpu_ns(side: Side) -> u64 {
    let a = S.a_cpu_ns.load(Ordering::Relaxed);
    match side {
        Side::Uthreads => a,
        Side::Linux => a + S.b_cpu_ns.load(Ordering::Relaxed),
    }
}

/// Checks a `handoff` window and returns it; every acquisition must have found the
/// mutex held on the uthread side.
fn handoff_sample(rep: usize, side: Side) -> Sample {
    let k = S.a_ops.load(Ordering::Relaxed);
    let b = S.b_ops.load(Ordering::Relaxed);
    let counter = S.counter.load(Ordering::Relaxed);
    let held = S.a_seen.load(Ordering::Relaxed) + S.b_seen.load(Ordering::Relaxed);
    assert!(k > 0, "handoff: no hand-over in the window");
    assert_eq!(b, k + 1, "handoff: A acquired {k} times, so B must have acquired k + 1 times");
    assert_eq!(counter, 2 * k + 1, "handoff: the counter lost increments: critical sections overlapped");
    for m in PARLIB.rotation.iter().map(|l| &**l) {
        assert!(!m.is_locked(), "handoff: a parlib mutex left locked");
    }
    for m in PTHREAD.rotation.iter().map(|l| &**l) {
        assert!(!m.is_locked(), "handoff: a pthread mutex left locked");
    }
    if side == Side::Uthreads {
        assert_eq!(held, 2 * k + 1, "handoff: some uthread acquisitions did not block");
    }
    Sample {
        rep,
        ops: 2 * k,
        elapsed_ns: S.elapsed_ns.load(Ordering::Relaxed),
        acquisitions: 2 * k + 1,
        seen: held,
        cpu_ns: contended_cpu_ns(side),
    }
}

/// Checks a `condvar` window and returns it; on the uthread side every `wait` returned
/// for exactly one pass.
fn condvar_sample(rep: usize, side: Side) -> Sample {
    let k = S.a_ops.load(Ordering::Relaxed);
    let b = S.b_ops.load(Ordering::Relaxed);
    let counter = S.counter.load(Ordering::Relaxed);
    let waits = S.a_seen.load(Ordering::Relaxed) + S.b_seen.load(Ordering::Relaxed);
    assert!(k > 0, "condvar: no round trip in the window");
    assert_eq!(b, k, "condvar: A passed the turn {k} times, B {b}");
    assert_eq!(counter, 2 * k, "condvar: the counter lost increments: critical sections overlapped");
    // A waited once per pass of B (k), B once per pass of A (k, and the last one).
    let passes = 2 * k + 1;
    assert!(waits >= passes, "condvar: {waits} waits for {passes} passes");
    if side == Side::Uthreads {
        assert_eq!(waits, passes, "condvar: a uthread's wait returned without a pass");
    }
    Sample {
        rep,
        ops: 2 * k,
        elapsed_ns: S.elapsed_ns.load(Ordering::Relaxed),
        acquisitions: passes,
        seen: waits,
        cpu_ns: contended_cpu_ns(side),
    }
}

fn uthread_handoff(rep: usize, window: Duration) -> Sample {
    uthread_window(WORK_HANDOFF, window);
    handoff_sample(rep, Side::Uthreads)
}

fn linux_handoff(jobs: &mpsc::Sender<Job>, rep: usize, window: Duration) -> Sample {
    S.reset();
    run_baseline(jobs, Job::Handoff { window });
    handoff_sample(rep, Side::Linux)
}

fn uthread_condvar(rep: usize, window: Duration) -> Sample {
    uthread_window(WORK_CONDVAR, window);
    condvar_sample(rep, Side::Uthreads)
}

fn linux_condvar(jobs: &mpsc::Sender<Job>, rep: usize, window: Duration) -> Sample {
    S.reset();
    run_baseline(jobs, Job::Condvar { window });
    condvar_sample(rep, Side::Linux)
}

// ---------------------------------------------------------------------------------------
// Cases.

/// What a series of windows measured, which decides its key, its label and its colour.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// parlib-rs: `RawMutex` (and `RawCondvar`) on uthreads.
    ParlibRaw,
    /// parlib-rs: `Mutex<u64>` on a uthread.
    ParlibMutex,
    /// glibc: `pthread_mutex_t` (and `pthread_cond_t`) on Linux threads.
    Pthread,
    /// `std::sync::Mutex<u64>` on a Linux thread.
    Std,
    /// `std::sync::Mutex<u64>` on a uthread, std's calls interposed.
    StdUthread,
}

struct Series {
    kind: Kind,
    /// Its key in the RESULT line.
    key: &'static str,
    /// What ran, for the table.
    what: &'static str,
    samples: Vec<Sample>,
}

impl Series {
    fn stat(&self) -> Stat {
        Stat::of(self.samples.iter().map(Sample::ns_per_op).collect())
    }
    /// The share of each window the measured threads had the CPU.
    fn cpu_share(&self) -> Stat {
        Stat::of(self.samples.iter().map(Sample::cpu_share).collect())
    }
    /// CPU time per operation, over the windows.
    fn cpu_ns(&self) -> Stat {
        Stat::of(self.samples.iter().map(Sample::cpu_ns_per_op).collect())
    }
    /// Share of acquisitions that found the mutex held (`handoff`).
    fn held_share(&self) -> f64 {
        let (seen, all) = self.samples.iter().fold((0, 0), |(s, a), w| (s + w.seen, a + w.acquisitions));
        seen as f64 / all as f64
    }
    /// `wait` calls that returned without a pass (`condvar`), over all windows.
    fn spurious(&self) -> u64 {
        self.samples.iter().map(|w| w.seen - w.acquisitions).sum()
    }
}

struct CaseResult {
    case: &'static str,
    /// What one figure is.
    measures: &'static str,
    /// `series[0]` is parlib-rs's headline figure; `series[baseline]` the Linux one.
    series: Vec<Series>,
    baseline: usize,
}

impl CaseResult {
    fn ours(&self) -> Stat {
        self.series[0].stat()
    }
    fn theirs(&self) -> Stat {
        self.series[self.baseline].stat()
    }
    /// Baseline ÷ parlib-rs: above 1, parlib-rs is faster.
    fn ratio(&self) -> f64 {
        self.theirs().median / self.ours().median
    }
    /// The same ratio in CPU time per operation, which other processes sharing the CPU
    /// do not inflate (see `task_cpu_ns`).
    fn cpu_ratio(&self) -> f64 {
        self.series[self.baseline].cpu_ns().median / self.series[0].cpu_ns().median
    }
    /// The goal for this case and whether this run meets it.
    fn goal(&self) -> Option<(String, bool)> {
        match self.case {
            "uncontended" => Some((
                format!("RawMutex lock + unlock ≤ {UNCONTENDED_GOAL_NS} ns"),
                self.ours().median <= UNCONTENDED_GOAL_NS,
            )),
            "handoff" => Some((format!("ratio ≥ {HANDOFF_GOAL_RATIO}"), self.ratio() >= HANDOFF_GOAL_RATIO)),
            _ => None,
        }
    }
    /// The goal as an upper bound on parlib-rs's figure, in ns, for the plot.
    fn goal_ns(&self) -> Option<f64> {
        match self.case {
            "uncontended" => Some(UNCONTENDED_GOAL_NS),
            "handoff" => Some(self.theirs().median / HANDOFF_GOAL_RATIO),
            _ => None,
        }
    }
    /// The checks' outcome, for the table.
    fn checks(&self) -> String {
        let (ours, theirs) = (&self.series[0], &self.series[self.baseline]);
        match self.case {
            "handoff" => format!(
                "acquisitions that found the mutex held: uthreads {:.1}%, Linux {:.1}%",
                100.0 * ours.held_share(),
                100.0 * theirs.held_share()
            ),
            "condvar" => {
                format!("spurious wake-ups: uthreads {}, Linux {}", ours.spurious(), theirs.spurious())
            }
            _ => "increments of the Mutex<u64>s all counted".into(),
        }
    }
}

fn run_uncontended(jobs: &mpsc::Sender<Job>, s: &Settings) -> CaseResult {
    // The other vcores never run in this bench; `main` measures alone on vcore 0.
    assert!((1..vcore::max_vcores()).all(harness::is_parked), "uncontended: a vcore other than 0 runs");
    let warm = s.window / 2;
    parlib_raw(0, warm);
    parlib_mutex(0, warm);
    std_on_uthread(0, warm);
    baseline_uncontended(jobs, 0, Job::Pthread { window: warm });
    baseline_uncontended(jobs, 0, Job::Std { window: warm });
    let w = s.window;
    let mut sides = harness::alternate(
        s.reps,
        &mut [
            &mut |rep| parlib_raw(rep, w),
            &mut |rep| parlib_mutex(rep, w),
            &mut |rep| baseline_uncontended(jobs, rep, Job::Pthread { window: w }),
            &mut |rep| baseline_uncontended(jobs, rep, Job::Std { window: w }),
            &mut |rep| std_on_uthread(rep, w),
        ],
    )
    .into_iter();
    let mut next = || sides.next().expect("five sides");
    CaseResult {
        case: "uncontended",
        measures: "ns per lock + unlock, one thread, nobody else touching the lock",
        series: vec![
            Series { kind: Kind::ParlibRaw, key: "ns", what: "RawMutex, on a uthread", samples: next() },
            Series {
                kind: Kind::ParlibMutex,
                key: "parlib_mutex_ns",
                what: "Mutex<u64> (+1 inside), on a uthread",
                samples: next(),
            },
            Series {
                kind: Kind::Pthread,
                key: "pthread_ns",
                what: "pthread_mutex_t, on a pinned Linux thread",
                samples: next(),
            },
            Series {
                kind: Kind::Std,
                key: "std_ns",
                what: "std::sync::Mutex<u64> (+1 inside), on a pinned Linux thread",
                samples: next(),
            },
            Series {
                kind: Kind::StdUthread,
                key: "std_uthread_ns",
                what: "std::sync::Mutex<u64> (+1 inside), on a uthread, std's calls interposed",
                samples: next(),
            },
        ],
        baseline: 2,
    }
}

fn run_handoff(jobs: &mpsc::Sender<Job>, s: &Settings) -> CaseResult {
    uthread_handoff(0, s.window / 2);
    linux_handoff(jobs, 0, s.window / 2);
    let w = s.window;
    let mut sides = harness::alternate(
        s.reps,
        &mut [&mut |rep| uthread_handoff(rep, w), &mut |rep| linux_handoff(jobs, rep, w)],
    );
    let (linux, uthreads) = (sides.pop().unwrap(), sides.pop().unwrap());
    CaseResult {
        case: "handoff",
        measures:
            "ns per hand-over of a contended mutex (unlock waking a blocked waiter, which then owns it)",
        series: vec![
            Series {
                kind: Kind::ParlibRaw,
                key: "uthread_ns",
                what: "RawMutex, 2 uthreads on vcore 0",
                samples: uthreads,
            },
            Series {
                kind: Kind::Pthread,
                key: "linux_ns",
                what: "pthread_mutex_t, 2 Linux threads on one CPU",
                samples: linux,
            },
        ],
        baseline: 1,
    }
}

fn run_condvar(jobs: &mpsc::Sender<Job>, s: &Settings) -> CaseResult {
    uthread_condvar(0, s.window / 2);
    linux_condvar(jobs, 0, s.window / 2);
    let w = s.window;
    let mut sides = harness::alternate(
        s.reps,
        &mut [&mut |rep| uthread_condvar(rep, w), &mut |rep| linux_condvar(jobs, rep, w)],
    );
    let (linux, uthreads) = (sides.pop().unwrap(), sides.pop().unwrap());
    CaseResult {
        case: "condvar",
        measures: "ns per pass of the turn (signal, wake-up, relock); a round trip is two",
        series: vec![
            Series {
                kind: Kind::ParlibRaw,
                key: "uthread_ns",
                what: "RawMutex + RawCondvar, 2 uthreads on vcore 0",
                samples: uthreads,
            },
            Series {
                kind: Kind::Pthread,
                key: "linux_ns",
                what: "pthread_mutex_t + pthread_cond_t, 2 Linux threads on one CPU",
                samples: linux,
            },
        ],
        baseline: 1,
    }
}

// ---------------------------------------------------------------------------------------
// Output.

fn header(m: &Machine, mode: Mode, s: &Settings) -> String {
    m.header(mode.name(), &format!("{} reps x {} ms windows, medians", s.reps, s.window.as_millis()))
}

fn fmt_stat(st: Stat) -> String {
    format!("{:.1} ({:.1}-{:.1})", st.median, st.min, st.max)
}

fn table(results: &[CaseResult]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| case | one figure is | side | ns (min-max) | CPU share (min) | CPU ns | ratio | CPU ns ratio | checks | goal |"
    );
    let _ = writeln!(t, "|---|---|---|---:|---:|---:|---:|---:|---|---|");
    for r in results {
        let goal = match r.goal() {
            Some((g, met)) => format!("{g}: {}", if met { "met" } else { "NOT met" }),
            None => "-".into(),
        };
        for (i, s) in r.series.iter().enumerate() {
            let (case, measures, ratio, cpu_ratio, checks, goal) = if i == 0 {
                (
                    r.case,
                    r.measures,
                    format!("**{:.2}**", r.ratio()),
                    format!("{:.2}", r.cpu_ratio()),
                    r.checks(),
                    goal.clone(),
                )
            } else {
                ("", "", String::new(), String::new(), String::new(), String::new())
            };
            let cpu = s.cpu_share();
            let _ = writeln!(
                t,
                "| {case} | {measures} | {} (`{}`) | {} | {:.2} ({:.2}) | {:.1} | {ratio} | {cpu_ratio} | {checks} | {goal} |",
                s.what,
                s.key,
                fmt_stat(s.stat()),
                cpu.median,
                cpu.min,
                s.cpu_ns().median
            );
        }
    }
    t
}

fn result_line(r: &CaseResult) -> String {
    let mut line = format!("RESULT locks case={}", r.case);
    for s in &r.series {
        let _ = write!(line, " {}={:.1}", s.key, s.stat().median);
    }
    match r.case {
        "handoff" => {
            let _ = write!(line, " linux_held={:.3}", r.series[r.baseline].held_share());
        }
        "condvar" => {
            let _ = write!(line, " linux_spurious={}", r.series[r.baseline].spurious());
        }
        _ => {}
    }
    let _ = write!(line, " ratio={:.2}", r.ratio());
    line
}

/// Every window: one line per case, side and repetition.
fn csv(results: &[CaseResult]) -> String {
    let mut csv = String::from("case,side,rep,ops,elapsed_ns,ns_per_op,acquisitions,seen,cpu_ns\n");
    for r in results {
        for s in &r.series {
            for w in &s.samples {
                let _ = writeln!(
                    csv,
                    "{},{},{},{},{},{:.3},{},{},{}",
                    r.case,
                    s.key,
                    w.rep,
                    w.ops,
                    w.elapsed_ns,
                    w.ns_per_op(),
                    w.acquisitions,
                    w.seen,
                    w.cpu_ns
                );
            }
        }
    }
    csv
}

/// Grouped bars, log scale: the median per case and side, with min-max whiskers, the
/// median printed above each bar, and each goal as a green line over the parlib-rs bar
/// it bounds.
fn plot(
    path: &std::path::Path,
    head: &str,
    results: &[CaseResult],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    const KINDS: [(Kind, &str); 5] = [
        (Kind::ParlibRaw, "parlib-rs RawMutex / RawCondvar, uthreads"),
        (Kind::ParlibMutex, "parlib-rs Mutex<u64>, uthread"),
        (Kind::Pthread, "glibc pthread_mutex_t / pthread_cond_t, Linux threads"),
        (Kind::Std, "std::sync::Mutex<u64>, Linux thread"),
        (Kind::StdUthread, "std::sync::Mutex<u64>, uthread (interposed)"),
    ];
    let color = |k: Kind| match k {
        Kind::ParlibRaw => RGBColor(0x1f, 0x77, 0xb4),
        Kind::ParlibMutex => RGBColor(0x9e, 0xc5, 0xe8),
        Kind::Pthread => RGBColor(0xd6, 0x27, 0x28),
        Kind::Std => RGBColor(0xff, 0x7f, 0x0e),
        Kind::StdUthread => RGBColor(0xff, 0xbb, 0x78),
    };
    let goal_color = RGBColor(0x2c, 0xa0, 0x2c);
    // Bar k of n in case i: centred at i + offset, spread over 0.8 of the slot.
    let place = |case: usize, k: usize, n: usize| -> (f64, f64) {
        let width = 0.8 / n as f64;
        (case as f64 - 0.4 + width * (k as f64 + 0.5), width * 0.42)
    };
    let stats: Vec<Vec<Stat>> = results.iter().map(|r| r.series.iter().map(Series::stat).collect()).collect();
    let all = stats.iter().flatten();
    let lo = all
        .clone()
        .map(|s| s.min)
        .chain(results.iter().filter_map(CaseResult::goal_ns))
        .fold(f64::INFINITY, f64::min)
        / 2.0;
    let hi = all.map(|s| s.max).fold(0.0, f64::max) * 3.0;
    let names: Vec<String> = results.iter().map(|r| format!("{}: ratio {:.2}", r.case, r.ratio())).collect();
    let frame = report::Frame {
        title: "locks: parlib-rs vs glibc pthread, median ns (min-max over repetitions), lower is better",
        title_size: 18,
        band: 82,
        head,
        names: &names,
        y_desc: "ns per operation (log)",
        y: (lo, hi),
        legend: SeriesLabelPosition::UpperLeft,
    };
    report::bar_chart(path, &frame, |chart| {
        for (kind, label) in KINDS {
            // Every bar of this kind: (centre, half width, statistics).
            let bars: Vec<(f64, f64, Stat)> = results
                .iter()
                .enumerate()
                .flat_map(|(case, r)| {
                    let n = r.series.len();
                    let st = &stats[case];
                    r.series.iter().enumerate().filter(move |(_, s)| s.kind == kind).map(move |(k, _)| {
                        let (x, w) = place(case, k, n);
                        (x, w, st[k])
                    })
                })
                .collect();
            if bars.is_empty() {
                continue;
            }
            let c = color(kind);
            report::stat_bars(chart, &bars, lo, c, label, 12)?;
        }
        chart
            .draw_series(results.iter().enumerate().filter_map(|(case, r)| {
                let g = r.goal_ns()?;
                let (x, w) = place(case, 0, r.series.len());
                Some(PathElement::new(vec![(x - w - 0.04, g), (x + w + 0.04, g)], goal_color.stroke_width(3)))
            }))?
            .label("goal: upper bound for parlib-rs")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], goal_color.stroke_width(3)));
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = Mode::from_args(&args);
    let settings = mode.pick(&SMOKE, &QUICK, &FULL);
    let filter = harness::CaseFilter::new(&args, &["uncontended", "handoff", "condvar"]);
    let wanted = |case: &str| filter.wants(case);
    let machine = Machine::probe();

    let (jobs, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("locks-driver".into())
        .spawn(move || driver(rx))
        .expect("start the driver");

    common::start(); // from here on, `main` is a uthread on vcore 0
                     // std's futex calls go through parlib-syscalls' wrappers from here on (`std_uthread_ns`).
    parlib::alarms::init().expect("alarms");
    parlib::syscalls::init().expect("syscalls");
    let head = header(&machine, mode, settings);
    println!("locks: parlib-sync mutex and condvar vs glibc pthread, uncontended and between two threads on one core");
    print!("{head}");
    println!();

    spawn_team();
    let mut results = Vec::new();
    let started = Instant::now();
    if wanted("uncontended") {
        results.push(run_uncontended(&jobs, settings));
    }
    if wanted("handoff") {
        results.push(run_handoff(&jobs, settings));
    }
    if wanted("condvar") {
        results.push(run_condvar(&jobs, settings));
    }
    finish_team();
    for r in &results {
        println!(
            "  {:<11} parlib-rs {:>9.1} ns   pthread {:>9.1} ns   ratio {:.2}",
            r.case,
            r.ours().median,
            r.theirs().median,
            r.ratio()
        );
    }
    println!("  ({:.1} s of measurements)", started.elapsed().as_secs_f64());

    let report = Report {
        bench: "locks",
        title: "parlib-sync mutex and condvar vs glibc pthread",
        head: &head,
        note: "Medians of the repetitions (min-max over them); ratio = pthread ÷ parlib-rs.",
        table: table(&results),
        csv: csv(&results),
        result_lines: results.iter().map(result_line).collect(),
        result_lines_in_md: true,
    };
    report::finish(mode, &report, |path| plot(path, &head, &results));
}
