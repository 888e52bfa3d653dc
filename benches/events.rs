//! Comparison benchmark: events and notifications (`DESIGN.md` §5) against the Linux
//! mechanism each one stands in for, in the same process and the same run (§12).
//!
//! | case | parlib-rs side | baseline |
//! |---|---|---|
//! | `roundtrip` | vcore 0 sends an event to vcore 1, whose handler sends one back; both vcores sit in the scheduler's idle loop (`sched_entry` polls `events_pending()` and calls `handle_events()`) | two Linux threads pinned to the same two CPUs, handing a token back and forth through `futex` wait/wake; also, as the *floor*, two pinned threads bouncing a counter through two spun-on flags |
//! | `interrupt` | a uthread sends an event to its own vcore: `tgkill`, the notification handler, the interrupt trampoline, `vcore_entry` with the event handler, and the resume | a plain Linux thread, pinned to the same CPU, sending `tgkill` to itself with an empty `SA_SIGINFO` handler |
//! | `spinning` | latency from `send_event` (on a uthread of vcore 0) to the handler on vcore 1, which spins in `sched_entry` | latency from a store on CPU 0 to a Linux thread spinning on that flag on CPU 1 |
//!
//! Vcore 0 is `A`, vcore 1 is `B`. The scheduler is the one in `common/` (per-vcore FIFO
//! queues), whose idle loop polls events and, for these windows, is told not to park
//! ([`common::set_spin_when_idle`]). Baselines run while every vcore is parked, on the
//! CPUs the vcores are pinned to; they are started by a *driver*, a plain Linux thread
//! created before `lib_init` (so it carries no vcore pin), while `main` (a uthread on
//! vcore 0) blocks.
//!
//! * `roundtrip` and `interrupt` count operations during a window of fixed length
//!   ([`Settings::window`]): the driver raises a stop flag when it is over, the loop
//!   notices it at its next operation, and the figure is elapsed ns ÷ operations, each
//!   side timing itself with the same clock.
//! * `spinning` sends one stamped message at a time (`arg0` = `CLOCK_MONOTONIC` ns at the
//!   send), waits for the acknowledgement, then waits a random gap; the receiver stores
//!   now − stamp. A window's figures are the median and the 99th percentile of its
//!   samples.
//!
//! Each side of each case runs one untimed warm-up window, then R windows, alternating
//! which side goes first; every figure is the median over the R windows. `ratio` =
//! baseline ÷ parlib-rs: above 1, parlib-rs is faster.
//!
//! What the sides spend is not the same, and the table says so: in `roundtrip` the two
//! vcores spin in their idle loops while the futex threads sleep in the kernel between
//! messages (that is what each mechanism is for); `spinning` is the like-for-like
//! comparison of two spinning receivers, and the `roundtrip` floor (reported as
//! `spin_ns`, not in the ratio) is what the cache-line transfers of a round trip cost
//! with no event machinery at all. The futex baseline wakes a thread only when it
//! announced that it sleeps (glibc's semaphores and mutexes do the same). A version that
//! calls `FUTEX_WAKE` on every message was tried first: on this 2-core VM it flipped,
//! from window to window, between ~40 µs round trips and a mode where neither thread ever
//! slept (each was still inside its own wake call when the other's store landed, ~0.4 µs
//! per round trip): a spin through system calls, not a futex hand-off, and a median that
//! depended on which mode won.
//!
//! Checks, so that a figure means what it says: every round trip is counted by the
//! handler on vcore A; in `interrupt` every handler run must find an interrupted
//! uthread on its vcore (`uthread::interrupted()`), i.e. it ran in vcore context reached
//! through the signal, and the count must equal the number of sends; the baseline's
//! signal handler counts its deliveries too.
//!
//! Run: `cargo bench --bench events -- --quick` (a few seconds; prints only) or
//! `cargo bench --bench events` (about 25 s; also writes `results.md`, `results.csv` and
//! `events.svg` under `<target>/parlib-bench/events/`). Arguments that are not flags pick
//! cases by name (`-- --quick interrupt`). The output ends with one
//! `RESULT events case=...` line per case (see `BENCHMARKS.md`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use parlib::events::{self, EventMsg, EventType, EV_USER_BASE};
use parlib::uthread;
use parlib::vcore;

#[path = "common/mod.rs"]
mod common;
#[path = "common/harness.rs"]
mod harness;
#[path = "common/machine.rs"]
mod machine;
#[path = "common/report.rs"]
mod report;

use common::Completion;
use harness::{pin_to, Mode, STALL_WARNING};
use machine::Machine;
use report::{Report, Stat};

// ---------------------------------------------------------------------------------------
// Settings.

/// How long one run goes on, and how often.
struct Settings {
    /// Measured windows per case and side; odd, so the median is a sample.
    reps: usize,
    /// Length of one `roundtrip` or `interrupt` window (the warm-up window is half).
    window: Duration,
    /// Latency samples per `spinning` window (at most [`MAX_SAMPLES`]).
    spin_samples: usize,
}

/// `--quick`: 5 windows of 100 ms per side (2 cases x 2 sides x (5 x 100 + 50) ms, plus
/// 2 x 6 spinning windows of 5000 samples at ~2 µs: about 3 s of windows); 5 is the
/// smallest odd count whose median ignores two outliers.
const QUICK: Settings = Settings { reps: 5, window: Duration::from_millis(100), spin_samples: 5_000 };

/// Full run: 11 windows of 400 ms (2 cases x 2 sides x (11 x 400 + 200) ms, about 18 s,
/// plus about 1 s for `spinning`), a median robust to five outliers, well under the
/// 2-minute budget.
const FULL: Settings = Settings { reps: 11, window: Duration::from_millis(400), spin_samples: 20_000 };

/// Without `--bench` (`cargo test --benches`, or the binary run by hand): one short
/// window per side and case, to check that everything runs. No RESULT lines, no files.
const SMOKE: Settings = Settings { reps: 1, window: Duration::from_millis(2), spin_samples: 100 };

/// Vcore A: where `main` runs, the round trip starts and ends, and the stamped messages
/// of `spinning` are sent from.
const A: usize = 0;
/// Vcore B: the far end of the round trip, and the spinning receiver.
const B: usize = 1;

/// Fewest latency samples in a `spinning` warm-up window: enough to touch every line
/// the path uses and let the receiver's idle loop settle, a fraction of a millisecond.
const MIN_WARMUP_SAMPLES: usize = 100;

/// Room for latency samples. 20 000 x 8 bytes = 160 KiB, static so that the receiving
/// handler never allocates.
const MAX_SAMPLES: usize = 20_000;
/// Random gap between two stamped messages, in ns. Several times the expected latency
/// and poll-loop period, so the receiver is back in its idle loop when the next message
/// comes; random so that sends land uniformly over the phase of that loop; short, so
/// that 20 000 samples take well under a second.
const GAP_NS: core::ops::Range<u64> = 500..2_500;

/// The baseline's signal. `SIGUSR1` belongs to parlib (`vcore::notif::NOTIF_SIGNAL`).
const BASELINE_SIGNAL: i32 = libc::SIGUSR2;

// ---------------------------------------------------------------------------------------
// Shared state. One window runs at a time; `main` resets what a window uses before it
// starts, when nobody else touches it.

const EV_KICK: EventType = EventType(EV_USER_BASE.0);
const EV_PING: EventType = EventType(EV_USER_BASE.0 + 1);
const EV_PONG: EventType = EventType(EV_USER_BASE.0 + 2);
const EV_INTERRUPT: EventType = EventType(EV_USER_BASE.0 + 3);
const EV_STAMP: EventType = EventType(EV_USER_BASE.0 + 4);

/// Ends every window: the last event handler (parlib-rs side) or the driver (baselines)
/// arrives, and `main`, blocked in `wait`, runs again.
static DONE: Completion = Completion::new();

/// Raised by the driver when a timed window is over; every timed loop polls it once per
/// operation (a load of a line that stays shared until the one store).
static STOP: CachePadded<AtomicBool> = CachePadded::new(AtomicBool::new(false));

/// `roundtrip`, parlib-rs side. Written only by handlers on vcore A, read by `main` after
/// `DONE`.
struct RoundTrips {
    count: AtomicU64,
    start_ns: AtomicU64,
    end_ns: AtomicU64,
}
static RT: RoundTrips =
    RoundTrips { count: AtomicU64::new(0), start_ns: AtomicU64::new(0), end_ns: AtomicU64::new(0) };

/// `interrupt`: handler runs, and how many of them found an interrupted uthread.
static INT_HANDLED: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));
static INT_INTERRUPTED: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));
/// `interrupt`, baseline: deliveries of `BASELINE_SIGNAL`.
static SIG_DELIVERED: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));

/// `spinning`: one latency per sample, written by the receiver.
static LATENCY: [AtomicU64; MAX_SAMPLES] = [const { AtomicU64::new(0) }; MAX_SAMPLES];
/// `spinning`: the receiver's acknowledgement, the number of samples it has recorded.
static ACK: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));
/// `spinning`, baseline: the "message", stamp and sequence number on one line, like an
/// event in its ring slot.
struct FlagSlot {
    stamp: AtomicU64,
    seq: AtomicU64,
}
static FLAG: CachePadded<FlagSlot> =
    CachePadded::new(FlagSlot { stamp: AtomicU64::new(0), seq: AtomicU64::new(0) });

/// Operations and elapsed ns of the last timed baseline window, written before the
/// driver arrives at `DONE`.
static BASE_OPS: AtomicU64 = AtomicU64::new(0);
static BASE_ELAPSED: AtomicU64 = AtomicU64::new(0);

/// `roundtrip`, baseline: the futex word each thread sleeps on ([`post`], [`take`]).
static FUTEX_A: CachePadded<AtomicU32> = CachePadded::new(AtomicU32::new(0));
static FUTEX_B: CachePadded<AtomicU32> = CachePadded::new(AtomicU32::new(0));
/// `roundtrip` floor: the counter thread A stores and the echo thread B stores back.
static PING: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));
static PONG: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));
/// Set by thread A of a two-thread baseline once it has stopped: B exits instead of
/// answering.
static QUIT: AtomicBool = AtomicBool::new(false);
/// Threads of a baseline window that are pinned and ready.
static READY: AtomicUsize = AtomicUsize::new(0);

/// `CLOCK_MONOTONIC` in ns: the clock every side stamps and times with. Through the
/// vDSO, so no system call; safe in vcore context (no TLS but `errno`, set only on error).
#[inline]
fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer; CLOCK_MONOTONIC
    // always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn send(ty: EventType, to: usize, msg: &EventMsg) {
    if let Err(e) = events::send_event(msg, ty, to) {
        panic!("send_event({}, vcore {to}): {e}", ty.0);
    }
}

// ---------------------------------------------------------------------------------------
// Event handlers (vcore context).

/// On A, from the driver: the window starts.
fn on_kick(_: &EventMsg, _: EventType) {
    RT.count.store(0, Ordering::Relaxed);
    RT.start_ns.store(now_ns(), Ordering::Relaxed);
    send(EV_PING, B, &EventMsg::default());
}

/// On B: send it back.
fn on_ping(_: &EventMsg, _: EventType) {
    send(EV_PONG, A, &EventMsg::default());
}

/// On A: one round trip done; start the next, or end the window.
fn on_pong(_: &EventMsg, _: EventType) {
    RT.count.store(RT.count.load(Ordering::Relaxed) + 1, Ordering::Relaxed); // only A writes
    if !STOP.load(Ordering::Relaxed) {
        send(EV_PING, B, &EventMsg::default());
    } else {
        RT.end_ns.store(now_ns(), Ordering::Relaxed);
        DONE.arrive(); // makes `main` runnable on this vcore's queue
    }
}

/// On the sending uthread's own vcore, reached by interrupting it.
fn on_interrupt(_: &EventMsg, _: EventType) {
    // Only this vcore writes the counters, so a load and a store do (no locked add).
    INT_HANDLED.store(INT_HANDLED.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    if uthread::interrupted().is_some() {
        INT_INTERRUPTED.store(INT_INTERRUPTED.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// On B, spinning: how long since the sender stamped `arg0`; `arg1` is the sample index.
fn on_stamp(msg: &EventMsg, _: EventType) {
    let now = now_ns();
    LATENCY[msg.arg1 as usize].store(now.saturating_sub(msg.arg0), Ordering::Relaxed);
    ACK.store(msg.arg1 + 1, Ordering::Release);
}

/// The baseline's empty handler: it only counts, as `on_interrupt` does.
extern "C" fn on_baseline_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    SIG_DELIVERED.store(SIG_DELIVERED.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

fn install_baseline_handler() {
    // SAFETY: sigaction with a fully initialised struct; the handler only touches an
    // atomic, and BASELINE_SIGNAL is not used by anything else in this process.
    let r = unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_baseline_signal as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(BASELINE_SIGNAL, &sa, core::ptr::null_mut())
    };
    assert_eq!(r, 0, "sigaction(SIGUSR2): {}", std::io::Error::last_os_error());
}

// ---------------------------------------------------------------------------------------
// The driver: a plain Linux thread that kicks round trips and runs the baselines.

enum Job {
    /// Once A and B both sit in `sched_entry`, send `EV_KICK` to A; raise `STOP` after
    /// `window`.
    Roundtrip { window: Duration },
    /// Raise `STOP` after `window` (`main` runs the loop itself).
    Timer { window: Duration },
    /// Futex ping-pong for `window`, while every vcore is parked.
    Futex { window: Duration },
    /// Flag ping-pong of two spinning threads for `window`, every vcore parked.
    Spin { window: Duration },
    /// Signals to self for `window` on a thread pinned to A's CPU, every vcore parked.
    Signal { window: Duration },
    /// `samples` stamped flag stores from A's CPU to a spinner on B's CPU.
    Flag { samples: usize },
}

fn driver(jobs: mpsc::Receiver<Job>) {
    for job in jobs {
        match job {
            Job::Roundtrip { window } => {
                let (a, b) = (vcore::get(A).expect("vcore A"), vcore::get(B).expect("vcore B"));
                // In vcore context, not parked, with no uthread: in the idle loop.
                let idle = |v: &vcore::Vcore| !v.is_parked() && v.in_vcore_context() && v.current().is_null();
                wait_until("roundtrip: vcores A and B in their idle loops", || idle(a) && idle(b));
                send(EV_KICK, A, &EventMsg::default());
                stop_after(window);
            }
            Job::Timer { window } => stop_after(window),
            Job::Futex { window } => {
                wait_until("roundtrip baseline: every vcore parked", all_parked);
                futex_pingpong(window);
                DONE.arrive();
            }
            Job::Spin { window } => {
                wait_until("roundtrip floor: every vcore parked", all_parked);
                spin_pingpong(window);
                DONE.arrive();
            }
            Job::Signal { window } => {
                wait_until("interrupt baseline: every vcore parked", all_parked);
                signal_self(window);
                DONE.arrive();
            }
            Job::Flag { samples } => {
                wait_until("spinning baseline: every vcore parked", all_parked);
                flag_latencies(samples);
                DONE.arrive();
            }
        }
    }
}

/// Ends a timed window `window` from now.
fn stop_after(window: Duration) {
    std::thread::sleep(window);
    STOP.store(true, Ordering::Relaxed);
}

fn all_parked() -> bool {
    (0..vcore::max_vcores()).all(harness::is_parked)
}

/// Waits (sleeping: the driver is not a vcore) until `ready`; names `what` on stderr if
/// that takes long.
fn wait_until(what: &str, ready: impl Fn() -> bool) {
    harness::wait_until(ready, || eprintln!("events: still waiting after {STALL_WARNING:?}: {what}"));
}

/// Counts the caller as ready and waits until `n` parties are: the threads of a
/// baseline once pinned, and the driver, which then starts the window's timer. Waits by
/// yielding, so that no waiter keeps a pinned thread off its CPU.
fn arrive_and_wait_for(n: usize) {
    READY.fetch_add(1, Ordering::AcqRel);
    while READY.load(Ordering::Acquire) < n {
        std::thread::yield_now();
    }
}

fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a live, aligned 32-bit atomic; a null timeout waits forever.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            core::ptr::null::<libc::timespec>(),
        )
    };
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned 32-bit atomic.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1) };
}

/// `take`'s futex word states: nothing posted, posted, a taker sleeps (or is about to).
const EMPTY: u32 = 0;
const POSTED: u32 = 1;
const WAITING: u32 = 2;

/// Hands the token to whoever takes from `word`, waking it (`FUTEX_WAKE`) only if it
/// announced that it sleeps, as glibc's semaphores and mutexes do.
fn post(word: &AtomicU32) {
    if word.swap(POSTED, Ordering::AcqRel) == WAITING {
        futex_wake(word);
    }
}

/// Takes the token from `word`, sleeping in the kernel (`FUTEX_WAIT`) until it is posted.
fn take(word: &AtomicU32) {
    loop {
        if word.compare_exchange(POSTED, EMPTY, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            return;
        }
        // Announce the sleep; if the token came meanwhile, FUTEX_WAIT returns at once.
        let _ = word.compare_exchange(EMPTY, WAITING, Ordering::Relaxed, Ordering::Relaxed);
        futex_wait(word, WAITING);
    }
}

/// Futex round trips between a thread on A's CPU and one on B's until `STOP`, `window`
/// after both are ready; stores the count and the elapsed ns for `main`.
fn futex_pingpong(window: Duration) {
    let (cpu_a, cpu_b) = (vcore::cpu_of(A).expect("vcore A"), vcore::cpu_of(B).expect("vcore B"));
    FUTEX_A.store(EMPTY, Ordering::Relaxed);
    FUTEX_B.store(EMPTY, Ordering::Relaxed);
    QUIT.store(false, Ordering::Relaxed);
    READY.store(0, Ordering::Release);
    std::thread::scope(|s| {
        s.spawn(move || {
            pin_to(cpu_b);
            arrive_and_wait_for(3);
            loop {
                take(&FUTEX_B);
                if QUIT.load(Ordering::Relaxed) {
                    return; // A has stopped: its last round trip was answered
                }
                post(&FUTEX_A);
            }
        });
        s.spawn(move || {
            pin_to(cpu_a);
            arrive_and_wait_for(3);
            let mut n = 0u64;
            let t0 = now_ns();
            while !STOP.load(Ordering::Relaxed) {
                post(&FUTEX_B);
                take(&FUTEX_A);
                n += 1;
            }
            let elapsed = now_ns() - t0;
            QUIT.store(true, Ordering::Relaxed); // published by the post
            post(&FUTEX_B);
            BASE_OPS.store(n, Ordering::Relaxed); // published by the join
            BASE_ELAPSED.store(elapsed, Ordering::Relaxed);
        });
        arrive_and_wait_for(3);
        stop_after(window);
    });
}

/// The `roundtrip` floor: thread A (on A's CPU) stores a counter, thread B (on B's CPU)
/// spins on it and stores it back, A spins on the echo; until `STOP`, `window` after both
/// are ready. Stores the count and the elapsed ns for `main`.
fn spin_pingpong(window: Duration) {
    let (cpu_a, cpu_b) = (vcore::cpu_of(A).expect("vcore A"), vcore::cpu_of(B).expect("vcore B"));
    PING.store(0, Ordering::Relaxed);
    PONG.store(0, Ordering::Relaxed);
    QUIT.store(false, Ordering::Relaxed);
    READY.store(0, Ordering::Release);
    std::thread::scope(|s| {
        s.spawn(move || {
            pin_to(cpu_b);
            arrive_and_wait_for(3);
            let mut last = 0;
            loop {
                let v = PING.load(Ordering::Acquire);
                if v != last {
                    PONG.store(v, Ordering::Release);
                    last = v;
                } else if QUIT.load(Ordering::Relaxed) {
                    return;
                } else {
                    core::hint::spin_loop();
                }
            }
        });
        s.spawn(move || {
            pin_to(cpu_a);
            arrive_and_wait_for(3);
            let mut n = 0u64;
            let t0 = now_ns();
            while !STOP.load(Ordering::Relaxed) {
                n += 1;
                PING.store(n, Ordering::Release);
                while PONG.load(Ordering::Acquire) != n {
                    core::hint::spin_loop();
                }
            }
            let elapsed = now_ns() - t0;
            QUIT.store(true, Ordering::Relaxed);
            BASE_OPS.store(n, Ordering::Relaxed); // published by the join
            BASE_ELAPSED.store(elapsed, Ordering::Relaxed);
        });
        arrive_and_wait_for(3);
        stop_after(window);
    });
}

/// `tgkill`s to itself on a thread pinned to A's CPU until `STOP`, `window` after it is
/// ready; stores the count and the elapsed ns for `main`.
fn signal_self(window: Duration) {
    let cpu = vcore::cpu_of(A).expect("vcore A");
    READY.store(0, Ordering::Release);
    std::thread::scope(|s| {
        s.spawn(move || {
            pin_to(cpu);
            // SAFETY: getpid and gettid have no preconditions.
            let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
            SIG_DELIVERED.store(0, Ordering::Relaxed);
            arrive_and_wait_for(2);
            let mut n = 0u64;
            let t0 = now_ns();
            while !STOP.load(Ordering::Relaxed) {
                // SAFETY: tgkill to this very thread, with a signal whose handler only
                // counts; the signal is delivered before the call returns.
                unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, BASELINE_SIGNAL) };
                n += 1;
            }
            let elapsed = now_ns() - t0;
            let got = SIG_DELIVERED.load(Ordering::Relaxed);
            assert_eq!(got, n, "interrupt baseline: {got} of {n} signals were delivered");
            BASE_OPS.store(n, Ordering::Relaxed); // published by the join
            BASE_ELAPSED.store(elapsed, Ordering::Relaxed);
        });
        arrive_and_wait_for(2);
        stop_after(window);
    });
}

/// The spinning baseline: a sender on A's CPU stores stamp and sequence number, a thread
/// on B's CPU spins on the sequence number and records now − stamp.
fn flag_latencies(samples: usize) {
    let (cpu_a, cpu_b) = (vcore::cpu_of(A).expect("vcore A"), vcore::cpu_of(B).expect("vcore B"));
    FLAG.seq.store(0, Ordering::Relaxed);
    ACK.store(0, Ordering::Relaxed);
    READY.store(0, Ordering::Release);
    std::thread::scope(|s| {
        s.spawn(move || {
            pin_to(cpu_b);
            arrive_and_wait_for(2);
            let mut last = 0;
            while last < samples as u64 {
                let seq = FLAG.seq.load(Ordering::Acquire);
                if seq == last {
                    core::hint::spin_loop();
                    continue;
                }
                let now = now_ns();
                let stamp = FLAG.stamp.load(Ordering::Relaxed);
                LATENCY[seq as usize - 1].store(now.saturating_sub(stamp), Ordering::Relaxed);
                ACK.store(seq, Ordering::Release);
                last = seq;
            }
        });
        s.spawn(move || {
            pin_to(cpu_a);
            arrive_and_wait_for(2);
            send_stamped(samples, |i, stamp| {
                FLAG.stamp.store(stamp, Ordering::Relaxed);
                FLAG.seq.store(i + 1, Ordering::Release);
            });
        });
    });
}

/// The sender's loop of `spinning`, both sides: wait a random gap, stamp, `post`, wait
/// for the acknowledgement. The gaps come from a fixed seed, so both sides see the same.
fn send_stamped(samples: usize, post: impl Fn(u64, u64)) {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for i in 0..samples as u64 {
        let until = now_ns() + rng.in_range(GAP_NS);
        while now_ns() < until {
            core::hint::spin_loop();
        }
        post(i, now_ns());
        while ACK.load(Ordering::Acquire) != i + 1 {
            core::hint::spin_loop();
        }
    }
}

/// Marsaglia's xorshift64: plenty for picking gaps.
struct XorShift(u64);

impl XorShift {
    fn in_range(&mut self, r: core::ops::Range<u64>) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        r.start + self.0 % (r.end - r.start)
    }
}

// ---------------------------------------------------------------------------------------
// The parlib-rs sides, run by `main` (a uthread on vcore A).

/// One timed window.
#[derive(Clone, Copy)]
struct Timed {
    ops: u64,
    elapsed_ns: u64,
    /// `interrupt` only: sends whose handler had not run by the time `send_event`
    /// returned (the notification was deferred, for example to the retry timer).
    deferred: u64,
}

impl Timed {
    fn ns_per_op(&self) -> f64 {
        self.elapsed_ns as f64 / self.ops as f64
    }
    /// The window a baseline thread timed.
    fn baseline() -> Timed {
        let ops = BASE_OPS.load(Ordering::Relaxed);
        assert!(ops > 0, "a baseline window counted no operations");
        Timed { ops, elapsed_ns: BASE_ELAPSED.load(Ordering::Relaxed), deferred: 0 }
    }
}

/// Blocks `main` until the current window's `DONE`; vcore A goes to its idle loop.
fn run_window(jobs: &mpsc::Sender<Job>, job: Job) {
    STOP.store(false, Ordering::Relaxed);
    DONE.reset(1);
    jobs.send(job).expect("driver alive"); // publishes the resets
    DONE.wait();
}

/// Round trips A -> B -> A for `window`, all in vcore context.
fn parlib_roundtrip(jobs: &mpsc::Sender<Job>, window: Duration) -> Timed {
    common::set_spin_when_idle(A, true);
    common::set_spin_when_idle(B, true);
    run_window(jobs, Job::Roundtrip { window }); // main blocks; A's idle loop runs the handlers
    common::set_spin_when_idle(A, false);
    common::set_spin_when_idle(B, false);
    let ops = RT.count.load(Ordering::Relaxed);
    assert!(ops > 0, "roundtrip: no round trip was counted");
    let elapsed_ns = RT.end_ns.load(Ordering::Relaxed) - RT.start_ns.load(Ordering::Relaxed);
    Timed { ops, elapsed_ns, deferred: 0 }
}

fn futex_roundtrip(jobs: &mpsc::Sender<Job>, window: Duration) -> Timed {
    run_window(jobs, Job::Futex { window });
    Timed::baseline()
}

fn spin_roundtrip(jobs: &mpsc::Sender<Job>, window: Duration) -> Timed {
    run_window(jobs, Job::Spin { window });
    Timed::baseline()
}

/// Spins `main` (it is alone on vcore A) until `ready`, or panics naming `what`.
fn spin_until(what: &str, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() {
        core::hint::spin_loop();
        if start.elapsed() > STALL_WARNING * 2 {
            panic!("events: gave up waiting for {what}");
        }
    }
}

/// Events sent by `main` to its own vcore for `window`, each one interrupting it.
fn parlib_interrupt(jobs: &mpsc::Sender<Job>, window: Duration) -> Timed {
    // The other vcores are idle, as on the baseline side.
    spin_until("the other vcores to park", || {
        (0..vcore::max_vcores()).filter(|&v| v != A).all(harness::is_parked)
    });
    let me = vcore::id();
    assert_eq!(me, A, "main runs on vcore A");
    INT_HANDLED.store(0, Ordering::Relaxed);
    INT_INTERRUPTED.store(0, Ordering::Relaxed);
    STOP.store(false, Ordering::Relaxed);
    jobs.send(Job::Timer { window }).expect("driver alive");
    let msg = EventMsg::default();
    let (mut n, mut deferred) = (0u64, 0u64);
    let t0 = now_ns();
    while !STOP.load(Ordering::Relaxed) {
        send(EV_INTERRUPT, me, &msg);
        n += 1;
        // The handler runs on this task before tgkill returns: no ordering needed.
        if INT_HANDLED.load(Ordering::Relaxed) != n {
            deferred += 1;
        }
    }
    let elapsed_ns = now_ns() - t0;
    spin_until("deferred notifications to be delivered", || INT_HANDLED.load(Ordering::Relaxed) == n);
    let interrupted = INT_INTERRUPTED.load(Ordering::Relaxed);
    assert_eq!(
        interrupted, n,
        "interrupt: only {interrupted} of {n} handler runs interrupted the sending uthread"
    );
    Timed { ops: n, elapsed_ns, deferred }
}

fn signal_interrupt(jobs: &mpsc::Sender<Job>, window: Duration) -> Timed {
    run_window(jobs, Job::Signal { window });
    Timed::baseline()
}

/// `samples` stamped events from `main` on A to B spinning in `sched_entry`.
fn parlib_spinning(samples: usize) -> Vec<u64> {
    ACK.store(0, Ordering::Relaxed);
    common::set_spin_when_idle(B, true);
    let b = vcore::get(B).expect("vcore B");
    spin_until("vcore B to spin in its idle loop", || {
        !b.is_parked() && b.in_vcore_context() && b.current().is_null()
    });
    send_stamped(samples, |i, stamp| send(EV_STAMP, B, &EventMsg { arg0: stamp, arg1: i, arg2: 0 }));
    common::set_spin_when_idle(B, false);
    latencies(samples)
}

fn flag_spinning(jobs: &mpsc::Sender<Job>, samples: usize) -> Vec<u64> {
    run_window(jobs, Job::Flag { samples });
    latencies(samples)
}

fn latencies(samples: usize) -> Vec<u64> {
    LATENCY[..samples].iter().map(|l| l.load(Ordering::Relaxed)).collect()
}

// ---------------------------------------------------------------------------------------
// Results.

/// One measured window of one side.
#[derive(Clone, Copy)]
struct Window {
    rep: usize,
    /// Operations timed, or latency samples.
    ops: u64,
    /// Elapsed ns of a timed window; 0 for `spinning`.
    elapsed_ns: u64,
    /// ns per operation, or the window's median latency.
    value_ns: f64,
    /// `spinning` only: the window's 99th-percentile latency.
    p99_ns: Option<f64>,
    deferred: u64,
}

impl Window {
    fn timed(rep: usize, t: Timed) -> Window {
        Window {
            rep,
            ops: t.ops,
            elapsed_ns: t.elapsed_ns,
            value_ns: t.ns_per_op(),
            p99_ns: None,
            deferred: t.deferred,
        }
    }
    fn latencies(rep: usize, mut v: Vec<u64>) -> Window {
        v.sort_unstable();
        let n = v.len();
        // Nearest-rank percentiles.
        let median = v[(n - 1) / 2] as f64;
        let p99 = v[(n * 99).div_ceil(100) - 1] as f64;
        Window { rep, ops: n as u64, elapsed_ns: 0, value_ns: median, p99_ns: Some(p99), deferred: 0 }
    }
}

/// What one case compares, for the table, the plot and the RESULT line.
struct CaseResult {
    case: &'static str,
    /// What one figure is.
    measures: &'static str,
    baseline: &'static str,
    ours: Vec<Window>,
    theirs: Vec<Window>,
    /// `roundtrip` only: the same round trip between two spinning threads.
    floor: Vec<Window>,
}

impl CaseResult {
    fn ours(&self) -> Stat {
        Stat::of(self.ours.iter().map(|w| w.value_ns).collect())
    }
    fn theirs(&self) -> Stat {
        Stat::of(self.theirs.iter().map(|w| w.value_ns).collect())
    }
    fn floor(&self) -> Option<Stat> {
        (!self.floor.is_empty()).then(|| Stat::of(self.floor.iter().map(|w| w.value_ns).collect()))
    }
    fn ours_p99(&self) -> Option<Stat> {
        p99_stat(&self.ours)
    }
    fn theirs_p99(&self) -> Option<Stat> {
        p99_stat(&self.theirs)
    }
    /// Baseline ÷ parlib-rs: above 1, parlib-rs is faster.
    fn ratio(&self) -> f64 {
        self.theirs().median / self.ours().median
    }
    fn deferred(&self) -> u64 {
        self.ours.iter().map(|w| w.deferred).sum()
    }
    /// The goal for this case and whether this run meets it.
    fn goal(&self) -> Option<(String, bool)> {
        match self.case {
            "interrupt" => Some((
                "parlib ≤ 1.5 × signal (ratio ≥ 0.667)".into(),
                self.ours().median <= 1.5 * self.theirs().median,
            )),
            "spinning" => Some(("median ≤ 1 µs".into(), self.ours().median <= 1000.0)),
            _ => None,
        }
    }
}

fn p99_stat(w: &[Window]) -> Option<Stat> {
    let v: Vec<f64> = w.iter().filter_map(|w| w.p99_ns).collect();
    (!v.is_empty()).then(|| Stat::of(v))
}

fn run_roundtrip(jobs: &mpsc::Sender<Job>, s: &Settings) -> CaseResult {
    // Warm-up: first touches of the rings, the handlers, the threads' stacks.
    parlib_roundtrip(jobs, s.window / 2);
    futex_roundtrip(jobs, s.window / 2);
    spin_roundtrip(jobs, s.window / 2);
    let mut w = harness::alternate(
        s.reps,
        &mut [
            &mut |rep| Window::timed(rep, parlib_roundtrip(jobs, s.window)),
            &mut |rep| Window::timed(rep, futex_roundtrip(jobs, s.window)),
            &mut |rep| Window::timed(rep, spin_roundtrip(jobs, s.window)),
        ],
    );
    let (floor, theirs, ours) = (w.pop().unwrap(), w.pop().unwrap(), w.pop().unwrap());
    CaseResult {
        case: "roundtrip",
        measures: "ns per round trip A → B → A",
        baseline: "futex ping-pong, 2 pinned Linux threads",
        ours,
        theirs,
        floor,
    }
}

fn run_interrupt(jobs: &mpsc::Sender<Job>, s: &Settings) -> CaseResult {
    parlib_interrupt(jobs, s.window / 2);
    signal_interrupt(jobs, s.window / 2);
    let mut w = harness::alternate(
        s.reps,
        &mut [&mut |rep| Window::timed(rep, parlib_interrupt(jobs, s.window)), &mut |rep| {
            Window::timed(rep, signal_interrupt(jobs, s.window))
        }],
    );
    let (theirs, ours) = (w.pop().unwrap(), w.pop().unwrap());
    CaseResult {
        case: "interrupt",
        measures: "ns per interruption of a running uthread, back to it",
        baseline: "tgkill to self, empty SA_SIGINFO handler",
        ours,
        theirs,
        floor: Vec::new(),
    }
}

fn run_spinning(jobs: &mpsc::Sender<Job>, s: &Settings) -> CaseResult {
    let samples = s.spin_samples.min(MAX_SAMPLES);
    let warmup = (samples / 10).max(MIN_WARMUP_SAMPLES);
    parlib_spinning(warmup);
    flag_spinning(jobs, warmup);
    let mut w = harness::alternate(
        s.reps,
        &mut [&mut |rep| Window::latencies(rep, parlib_spinning(samples)), &mut |rep| {
            Window::latencies(rep, flag_spinning(jobs, samples))
        }],
    );
    let (theirs, ours) = (w.pop().unwrap(), w.pop().unwrap());
    CaseResult {
        case: "spinning",
        measures: "ns from send_event to the handler on a spinning vcore (median)",
        baseline: "store to a flag a pinned Linux thread spins on",
        ours,
        theirs,
        floor: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------
// Output.

fn header(m: &Machine, mode: Mode, s: &Settings) -> String {
    let how = format!(
        "{} reps; windows of ~{} ms or {} latency samples; medians",
        s.reps,
        s.window.as_millis(),
        s.spin_samples.min(MAX_SAMPLES)
    );
    m.header(mode.name(), &how)
}

fn fmt_stat(st: Stat, p99: Option<Stat>) -> String {
    match p99 {
        Some(p) => format!("{:.0} ({:.0}-{:.0}), p99 {:.0}", st.median, st.min, st.max, p.median),
        None => format!("{:.1} ({:.1}-{:.1})", st.median, st.min, st.max),
    }
}

fn table(results: &[CaseResult]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| case | measures | parlib-rs ns (min-max) | baseline | baseline ns (min-max) | ratio | floor: spinning threads ns (min-max) | goal |"
    );
    let _ = writeln!(t, "|---|---|---:|---|---:|---:|---:|---|");
    for r in results {
        let goal = match r.goal() {
            Some((g, met)) => format!("{g}: {}", if met { "met" } else { "NOT met" }),
            None => "-".into(),
        };
        let floor = r.floor().map_or_else(|| "-".to_string(), |f| fmt_stat(f, None));
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {:.3} | {} | {} |",
            r.case,
            r.measures,
            fmt_stat(r.ours(), r.ours_p99()),
            r.baseline,
            fmt_stat(r.theirs(), r.theirs_p99()),
            r.ratio(),
            floor,
            goal
        );
    }
    t
}

fn result_line(r: &CaseResult) -> String {
    let (o, t) = (r.ours().median, r.theirs().median);
    match r.case {
        "roundtrip" => format!(
            "RESULT events case=roundtrip parlib_ns={o:.1} futex_ns={t:.1} spin_ns={:.1} ratio={:.3}",
            r.floor().map_or(f64::NAN, |s| s.median),
            r.ratio()
        ),
        "interrupt" => format!(
            "RESULT events case=interrupt parlib_ns={o:.1} signal_ns={t:.1} deferred={} ratio={:.3}",
            r.deferred(),
            r.ratio()
        ),
        _ => format!(
            "RESULT events case=spinning median_ns={o:.0} p99_ns={:.0} baseline_ns={t:.0} baseline_p99_ns={:.0} ratio={:.3}",
            r.ours_p99().map_or(f64::NAN, |s| s.median),
            r.theirs_p99().map_or(f64::NAN, |s| s.median),
            r.ratio()
        ),
    }
}

/// Every window: one line per case, side and repetition.
fn csv(results: &[CaseResult]) -> String {
    let mut csv = String::from("case,side,rep,ops,elapsed_ns,value_ns,p99_ns,deferred\n");
    for r in results {
        for (side, windows) in [("parlib", &r.ours), ("baseline", &r.theirs), ("floor", &r.floor)] {
            for w in windows.iter() {
                let p99 = w.p99_ns.map_or(String::new(), |p| format!("{p:.0}"));
                let _ = writeln!(
                    csv,
                    "{},{side},{},{},{},{:.3},{p99},{}",
                    r.case, w.rep, w.ops, w.elapsed_ns, w.value_ns, w.deferred
                );
            }
        }
    }
    csv
}

/// Grouped bars, log scale: the median per case and side (parlib-rs, the baseline, and
/// for `roundtrip` the spinning-threads floor), with min-max whiskers, the median printed
/// above each bar, the p99 of `spinning` as a cross, and each goal as a green line over
/// the parlib-rs bar it bounds.
fn plot(
    path: &std::path::Path,
    head: &str,
    results: &[CaseResult],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    const LABELS: [&str; 3] = [
        "parlib-rs (events, notifications)",
        "baseline (futex / signal / spinning thread)",
        "floor: two threads spinning on flags",
    ];
    let colors = [RGBColor(0x1f, 0x77, 0xb4), RGBColor(0xd6, 0x27, 0x28), RGBColor(0x7f, 0x7f, 0x7f)];
    let goal_color = RGBColor(0x2c, 0xa0, 0x2c);
    // Per case: (side, statistics, p99), and where each bar goes.
    let bars: Vec<Vec<(usize, Stat, Option<Stat>)>> = results
        .iter()
        .map(|r| {
            let mut b = vec![(0, r.ours(), r.ours_p99()), (1, r.theirs(), r.theirs_p99())];
            b.extend(r.floor().map(|f| (2, f, None)));
            b
        })
        .collect();
    let place = |case: usize, k: usize| -> (f64, f64) {
        // (centre, half width): two bars at ±0.2, three at -0.27, 0, +0.27.
        if bars[case].len() == 3 {
            (case as f64 + 0.27 * (k as f64 - 1.0), 0.12)
        } else {
            (case as f64 + if k == 0 { -0.2 } else { 0.2 }, 0.17)
        }
    };
    // Goals as upper bounds on the parlib-rs figure, in ns.
    let goals: Vec<Option<f64>> = results
        .iter()
        .map(|r| match r.case {
            "interrupt" => Some(1.5 * r.theirs().median),
            "spinning" => Some(1000.0),
            _ => None,
        })
        .collect();
    let all = bars.iter().flatten();
    let lo = all.clone().map(|(_, s, _)| s.min).fold(f64::INFINITY, f64::min) / 2.0;
    let hi = all
        .map(|(_, s, p)| s.max.max(p.map_or(0.0, |p| p.median)))
        .chain(goals.iter().flatten().copied())
        .fold(0.0, f64::max)
        * 3.0;
    let names: Vec<String> = results.iter().map(|r| format!("{}: ratio {:.2}", r.case, r.ratio())).collect();
    let frame = report::Frame {
        title: "events: parlib-rs vs Linux baselines, median ns (min-max over repetitions), lower is better",
        title_size: 18,
        band: 82,
        head,
        names: &names,
        y_desc: "ns (log)",
        y: (lo, hi),
        legend: SeriesLabelPosition::UpperRight,
    };
    report::bar_chart(path, &frame, |chart| {
        for side in 0..LABELS.len() {
            // Every bar of this side: (centre, half width, statistics, p99).
            let of_side: Vec<(f64, f64, Stat, Option<Stat>)> = bars
                .iter()
                .enumerate()
                .flat_map(|(case, b)| {
                    b.iter().enumerate().filter(|(_, (s, _, _))| *s == side).map(move |(k, (_, st, p))| {
                        let (x, w) = place(case, k);
                        (x, w, *st, *p)
                    })
                })
                .collect();
            if of_side.is_empty() {
                continue;
            }
            let color = colors[side];
            chart
                .draw_series(
                    of_side
                        .iter()
                        .map(|(x, w, s, _)| Rectangle::new([(x - w, lo), (x + w, s.median)], color.filled())),
                )?
                .label(LABELS[side])
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
            chart.draw_series(of_side.iter().map(|(x, _, s, _)| {
                PathElement::new(vec![(*x, s.min), (*x, s.max)], BLACK.stroke_width(1))
            }))?;
            chart.draw_series(of_side.iter().map(|(x, w, s, _)| {
                Text::new(format!("{:.0}", s.median), (x - w * 0.7, s.max * 1.15), ("sans-serif", 12))
            }))?;
            let crosses =
                chart.draw_series(of_side.iter().filter_map(|(x, _, _, p)| {
                    Some(Cross::new((*x, (*p)?.median), 5, BLACK.stroke_width(2)))
                }))?;
            if side == 0 {
                crosses
                    .label("p99 (spinning)")
                    .legend(|(x, y)| Cross::new((x + 6, y), 5, BLACK.stroke_width(2)));
            }
        }
        chart
            .draw_series(goals.iter().enumerate().filter_map(|(case, g)| {
                let (x, w) = place(case, 0);
                Some(PathElement::new(
                    vec![(x - w - 0.05, (*g)?), (x + w + 0.05, (*g)?)],
                    goal_color.stroke_width(3),
                ))
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
    let filter = harness::CaseFilter::new(&args, &["roundtrip", "interrupt", "spinning"]);
    let wanted = |case: &str| filter.wants(case);
    let machine = Machine::probe();
    install_baseline_handler();
    for (ty, h) in [
        (EV_KICK, on_kick as events::Handler),
        (EV_PING, on_ping),
        (EV_PONG, on_pong),
        (EV_INTERRUPT, on_interrupt),
        (EV_STAMP, on_stamp),
    ] {
        events::register_handler(ty, h).expect("register an event handler");
    }

    let (jobs, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("events-driver".into())
        .spawn(move || driver(rx))
        .expect("start the driver");

    common::start(); // from here on, `main` is a uthread on vcore A
    let head = header(&machine, mode, settings);
    println!("events: event round trip, uthread interruption and spinning-vcore latency, parlib-rs vs Linux");
    print!("{head}");
    println!();

    let two = common::usable_vcores() >= 2;
    if !two {
        println!("  only one vcore: roundtrip and spinning need two, and are skipped");
    }
    let mut results = Vec::new();
    let started = Instant::now();
    if two && wanted("roundtrip") {
        results.push(run_roundtrip(&jobs, settings));
    }
    if wanted("interrupt") {
        results.push(run_interrupt(&jobs, settings));
    }
    if two && wanted("spinning") {
        results.push(run_spinning(&jobs, settings));
    }
    for r in &results {
        println!(
            "  {:<9} parlib-rs {:>9.1} ns   baseline {:>9.1} ns   ratio {:.3}",
            r.case,
            r.ours().median,
            r.theirs().median,
            r.ratio()
        );
    }
    println!("  ({:.1} s of measurements)", started.elapsed().as_secs_f64());

    let report = Report {
        bench: "events",
        title: "events and notifications vs Linux baselines",
        head: &head,
        note: "Medians of the repetitions (min-max over them); ratio = baseline ÷ parlib-rs.",
        table: table(&results),
        csv: csv(&results),
        result_lines: results.iter().map(result_line).collect(),
        result_lines_in_md: true,
    };
    report::finish(mode, &report, |path| plot(path, &head, &results));
}
