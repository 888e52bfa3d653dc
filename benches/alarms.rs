//! Comparison benchmark: the lateness of parlib-rs alarms (`DESIGN.md` §6) against a
//! Linux thread sleeping in `clock_nanosleep`, in the same process and the same run (§12).
//!
//! *Lateness* is the time from an alarm's deadline to the moment its callback runs: the
//! callback (vcore context) reads `CLOCK_MONOTONIC` and stores now − deadline into a
//! static array. Each alarm is relative: its deadline is now + the period when it is set.
//!
//! | case | parlib-rs side | Linux baseline |
//! |---|---|---|
//! | `idle100us`, `idle1ms` | alarms of 100 µs / 1 ms on vcore 0, one after the other: each callback sets and starts the next one ([`AlarmWaiter::set_rel`], `start`). Between expiries vcore 0 has nothing to run (`main` blocks): the scheduler of `common/` polls its queue and its events for [`common::IDLE_POLLS`] rounds, then parks the vcore (the default), so an expiry usually finds it parked and must wake it through its futex | a Linux thread pinned to vcore 0's CPU computes deadline = now + period and sleeps in `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, deadline)`, over and over; lateness = wake − deadline. Nothing else of this process runs on that CPU |
//! | `busy100us`, `busy1ms` | the same, while a compute-bound uthread on vcore 0 spins and never yields. Every expiry interrupts it: the notification signal, the interrupt trampoline, `vcore_entry`, `EV_ALARM`, the callback, then the spinner is resumed | the same sleeping thread, while a second Linux thread pinned to the same CPU spins at the same priority (`SCHED_OTHER`, nice 0) |
//!
//! Two more sides explain the figures but are not in the ratio:
//!
//! * `parlib_spin` (idle cases): the parlib-rs side with [`common::set_spin_when_idle`] on,
//!   so vcore 0 never parks. The expiry's signal finds it in its idle loop, which
//!   handles the event: no futex wake-up, and a CPU that never halts;
//! * `default_slack`: the baseline with the thread's default timer slack. Linux lets a
//!   `SCHED_OTHER` thread's `clock_nanosleep` expire up to its timer slack late (50 µs by
//!   default; `prctl(PR_SET_TIMERSLACK)`, `/proc/self/timerslack_ns`), so that nearby
//!   timers coalesce. POSIX timers, which parlib-rs arms, have no slack (the kernel's
//!   `common_hrtimer_arm` starts them with none). So the `baseline` side sets its slack
//!   to 1 ns, the least there is (0 means "back to the default"), which makes it like for
//!   like; `default_slack` shows what a plain thread gets.
//!
//! # Why the callback starts the next alarm
//!
//! Each callback starts the next alarm itself, rather than a uthread that starts an
//! alarm and blocks until the callback wakes it: so a window measures the expiry path
//! alone (expiry, signal, event, callback), with the vcore at each expiry in exactly the
//! state the case sets (parked, idle-polling, or running the spinner), and no uthread
//! switch added per expiry. Only the end of a window wakes `main`: the last callback wakes the driver (futex),
//! which waits until vcore 0 has parked and then makes `main` runnable from outside.
//!
//! # Windows, repetitions, figures
//!
//! Every side of every case runs one untimed warm-up window, then R windows, alternating
//! which side goes first; a window is a fixed number of alarms. Each window gives its
//! p50, p99 and max lateness (nearest rank); every figure is the median of these over the
//! R windows. `ratio` = baseline p99 ÷ parlib-rs p99: above 1, parlib-rs alarms are more
//! punctual. Also per window, per 1000 alarms:
//!
//! * `arms_per_1000`: calls to `timer_settime` by the alarms layer
//!   (`parlib_alarms::arm_count()`). Each alarm here becomes the earliest when it starts
//!   (it is the only one), so the goal "at most one arm per alarm that becomes the
//!   earliest" means at most 1000;
//! * `parked_per_1000`: voluntary context switches of vcore 0's task. Each park is one,
//!   so this is how often an expiry found the vcore parked (idle cases);
//! * `run_delay_us`: mean µs per alarm that the task that waits (vcore 0's, or the
//!   sleeping thread's) spent runnable but off its CPU (`schedstat`): woken, but
//!   waiting for another task to give the CPU up. A few µs on a quiet machine, except
//!   for the sleeper of a busy baseline, which shares its CPU with the spinner. The table
//!   and the CSV also give the involuntary context switches (preemptions) of that task;
//! * `interrupted_per_1000`: callbacks that found an interrupted uthread on the vcore
//!   (busy cases: 1000 means every expiry came through the interrupt path).
//!
//! Only vcore 0 is ever requested; the other vcores stay parked. The baselines run on
//! vcore 0's CPU while every vcore is parked (`main` blocks), started by a *driver*, a
//! plain Linux thread created before `lib_init` (so it carries no vcore pin).
//!
//! Run: `cargo bench --bench alarms -- --quick` (about 20 s; prints only) or
//! `cargo bench --bench alarms` (75 s of windows on a quiet machine, 2 to 2.5 min on a
//! loaded one; also writes `results.md`, `results.csv` and `alarms.svg` under
//! `<target>/parlib-bench/alarms/`). Arguments that are not flags pick cases by name
//! (`-- --quick idle1ms`). The output ends with one `RESULT alarms case=...` line per
//! case (see `BENCHMARKS.md`). Other work on the machine shows up as lateness of several
//! ms (the scheduler tick is 4 ms at HZ=250) and in `run_delay_us`: measure on a quiet
//! machine.

use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use parlib::alarms::{self, AlarmWaiter};
use parlib::uthread::{self, TlsMode};
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
    /// Alarms per window of a 100 µs case (at most [`MAX_SAMPLES`]).
    samples_100us: usize,
    /// Alarms per window of a 1 ms case (at most [`MAX_SAMPLES`]).
    samples_1ms: usize,
}

/// `--quick`: 5 windows per side, the smallest odd count whose median ignores two
/// outliers. 500 alarms of ~0.12 ms and 200 of ~1.02 ms: (7 sides x 6 windows) x
/// (0.06 + 0.2) s, about 11 s of windows. p99 is then the 5th and the 2nd largest sample.
const QUICK: Settings = Settings { reps: 5, samples_100us: 500, samples_1ms: 200 };

/// Full run: 11 windows, a median robust to five outliers; 2000 and 600 alarms per
/// window, so p99 is the 20th and the 6th largest. (7 x 12) x (0.24 + 0.61) s: about 70 s.
const FULL: Settings = Settings { reps: 11, samples_100us: 2000, samples_1ms: 600 };

/// Without `--bench` (`cargo test --benches`, or the binary run by hand): one short
/// window per side and case, to check that everything runs. No RESULT lines, no files.
const SMOKE: Settings = Settings { reps: 1, samples_100us: 50, samples_1ms: 10 };

/// The vcore everything runs on: `main`'s, vcore 0.
const A: usize = 0;

/// Room for lateness samples: 2000 x 8 bytes, static so that the callback never allocates.
const MAX_SAMPLES: usize = 2_000;

/// Fewest alarms in a warm-up window: enough to fault in the waiter, the timer, the event
/// ring and the callback's lines, and for the kernel to have placed the threads.
const MIN_WARMUP_SAMPLES: usize = 20;

/// The goal: p99 lateness of 1 ms alarms on an idle vcore at most this many
/// times the `clock_nanosleep` p99 of the same run.
const GOAL_P99_FACTOR: f64 = 2.0;

/// The timer slack the like-for-like baseline sets: 1 ns, the least `PR_SET_TIMERSLACK`
/// accepts (0 restores the thread's default, prctl(2)).
const MIN_SLACK_NS: libc::c_ulong = 1;

/// One case: how long each alarm is, and whether a compute-bound uthread (or thread)
/// shares the CPU.
#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    period: Duration,
    busy: bool,
}

const CASES: [Case; 4] = [
    Case { name: "idle100us", period: Duration::from_micros(100), busy: false },
    Case { name: "idle1ms", period: Duration::from_millis(1), busy: false },
    Case { name: "busy100us", period: Duration::from_micros(100), busy: true },
    Case { name: "busy1ms", period: Duration::from_millis(1), busy: true },
];

impl Case {
    fn samples(&self, s: &Settings) -> usize {
        let n = if self.period < Duration::from_millis(1) { s.samples_100us } else { s.samples_1ms };
        n.min(MAX_SAMPLES)
    }
}

/// The sides of a case, in the order of [`CaseResult::sides`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    /// parlib-rs, the scheduler's default: an idle vcore parks.
    Parlib,
    /// parlib-rs, the vcore kept spinning in its idle loop (idle cases only).
    ParlibSpin,
    /// `clock_nanosleep` with a timer slack of 1 ns: the ratio's baseline.
    Baseline,
    /// `clock_nanosleep` with the thread's default timer slack.
    DefaultSlack,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Parlib => "parlib",
            Side::ParlibSpin => "parlib_spin",
            Side::Baseline => "baseline",
            Side::DefaultSlack => "default_slack",
        }
    }
    fn describe(self, busy: bool) -> &'static str {
        match self {
            Side::Parlib if busy => "parlib-rs alarm, interrupting the spinning uthread",
            Side::Parlib => "parlib-rs alarm (an idle vcore parks)",
            Side::ParlibSpin => "parlib-rs alarm, vcore spinning when idle",
            Side::Baseline => "clock_nanosleep, timer slack 1 ns",
            Side::DefaultSlack => "clock_nanosleep, default timer slack",
        }
    }
    fn sides(busy: bool) -> &'static [Side] {
        if busy {
            &[Side::Parlib, Side::Baseline, Side::DefaultSlack]
        } else {
            &[Side::Parlib, Side::ParlibSpin, Side::Baseline, Side::DefaultSlack]
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shared state. One window runs at a time; whoever starts a window resets what it uses
// before starting it, when nobody else touches it.

/// Lateness of each alarm of the current window, ns.
static LATENESS: [AtomicU64; MAX_SAMPLES] = [const { AtomicU64::new(0) }; MAX_SAMPLES];
/// Alarms of the current window that have fired: the callback's index into
/// [`LATENESS`], which it advances. `main` resets it before a window.
static INDEX: CachePadded<AtomicUsize> = CachePadded::new(AtomicUsize::new(0));
/// Callbacks that found an interrupted uthread on the vcore.
static INTERRUPTED: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));

/// The parlib-rs side's two alarms. Each callback starts the other one (a waiter cannot
/// be started again while its own callback runs). Statics never move, so they are pinned
/// for good.
static WAITERS: [AlarmWaiter; 2] = [AlarmWaiter::new(), AlarmWaiter::new()];
/// Alarms in the current window, and the period of each, ns: set by `main` before it
/// starts the first one.
static TARGET: AtomicUsize = AtomicUsize::new(0);
static PERIOD_NS: AtomicU64 = AtomicU64::new(0);
/// Set to 1 by the last callback of a window, which then wakes the driver (futex).
static CHAIN_DONE: CachePadded<AtomicU32> = CachePadded::new(AtomicU32::new(0));

/// Raised when a busy window is over; the spinner (uthread or Linux thread) polls it.
static SPIN_STOP: CachePadded<AtomicBool> = CachePadded::new(AtomicBool::new(false));

/// Ends every window: the driver arrives (and, in a busy parlib-rs window, the spinner),
/// and `main`, blocked in `wait`, runs again.
static DONE: Completion = Completion::new();
/// [`TaskStats`] of the baseline's sleeping thread over its last window (voluntary,
/// involuntary, run delay).
static BASE_TASK: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
/// Threads of a busy baseline window that are pinned and running.
static READY: AtomicUsize = AtomicUsize::new(0);

/// `CLOCK_MONOTONIC` in ns, the clock alarm deadlines are on. Through the vDSO, so no
/// system call; safe in vcore context (no TLS but `errno`, set only on error).
#[inline]
fn now_ns() -> u64 {
    parlib::sync::now_ns()
}

/// The alarms' callback, in vcore context on vcore A: records the lateness, then starts
/// the other alarm for the next period, or, after the last one, ends the window (stops
/// the busy spinner and wakes the driver, which wakes `main`).
fn on_alarm(w: &AlarmWaiter) {
    let late = now_ns().saturating_sub(w.deadline().ns());
    // Only this vcore runs the callbacks, one at a time: loads and stores do.
    let i = INDEX.load(Ordering::Relaxed);
    LATENESS[i].store(late, Ordering::Relaxed);
    INDEX.store(i + 1, Ordering::Relaxed);
    if uthread::interrupted().is_some() {
        INTERRUPTED.store(INTERRUPTED.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
    if i + 1 < TARGET.load(Ordering::Relaxed) {
        // The other waiter's callback has returned (callbacks run one after the other
        // here), so it may be set and started again.
        let next = if core::ptr::eq(w, &WAITERS[0]) { &WAITERS[1] } else { &WAITERS[0] };
        next.set_rel(Duration::from_nanos(PERIOD_NS.load(Ordering::Relaxed)));
        Pin::static_ref(next).start();
    } else {
        SPIN_STOP.store(true, Ordering::Relaxed);
        CHAIN_DONE.store(1, Ordering::Release);
        vcore::futex::wake(&CHAIN_DONE, 1);
    }
}

/// What the kernel counted for one Linux task so far: its context switches
/// (`/proc/self/task/<tid>/status`) and its wait for a CPU (`.../schedstat`).
#[derive(Clone, Copy, Default)]
struct TaskStats {
    /// The task gave up its CPU: every futex wait that sleeps (so every park of a vcore),
    /// every `clock_nanosleep` that sleeps.
    voluntary: u64,
    /// Another task took its CPU: preemption by the competing thread of a busy baseline,
    /// or by whatever else runs on the machine.
    involuntary: u64,
    /// ns the task was runnable but not running (`schedstat`'s second field): woken but
    /// waiting for its CPU, or preempted.
    run_delay_ns: u64,
}

impl TaskStats {
    fn of(tid: i32) -> TaskStats {
        let path = format!("/proc/self/task/{tid}/status");
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("{path}: no {name} line"))
        };
        let sched = format!("/proc/self/task/{tid}/schedstat");
        let run_delay_ns = std::fs::read_to_string(&sched)
            .ok()
            .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            .unwrap_or_else(|| panic!("{sched}: no run delay"));
        TaskStats {
            voluntary: field("voluntary_ctxt_switches:"),
            involuntary: field("nonvoluntary_ctxt_switches:"),
            run_delay_ns,
        }
    }
    fn since(self, before: TaskStats) -> TaskStats {
        TaskStats {
            voluntary: self.voluntary - before.voluntary,
            involuntary: self.involuntary - before.involuntary,
            run_delay_ns: self.run_delay_ns - before.run_delay_ns,
        }
    }
}

/// The calling thread's timer slack, ns (`prctl(PR_GET_TIMERSLACK)`).
fn timer_slack_ns() -> u64 {
    // SAFETY: PR_GET_TIMERSLACK takes no pointer and returns the slack as the result.
    let r = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
    r.max(0) as u64
}

// ---------------------------------------------------------------------------------------
// The driver: a plain Linux thread that runs the baselines.

enum Job {
    /// Sleep until the last alarm of a parlib-rs window has fired ([`CHAIN_DONE`]), then,
    /// if `then_parked`, until vcore A has parked; then wake `main`.
    AwaitChain { then_parked: bool },
    /// `samples` sleeps of `period` in `clock_nanosleep` on a thread pinned to A's CPU,
    /// with a spinning thread on the same CPU if `busy`, and the thread's timer slack set
    /// to `slack` ns (`None`: left at its default).
    Nanosleep { period: Duration, samples: usize, busy: bool, slack: Option<libc::c_ulong> },
}

fn driver(jobs: mpsc::Receiver<Job>) {
    for job in jobs {
        match job {
            Job::AwaitChain { then_parked } => {
                while CHAIN_DONE.load(Ordering::Acquire) == 0 {
                    vcore::futex::wait(&CHAIN_DONE, 0);
                }
                if then_parked {
                    // See "Why the callback starts the next alarm" in the module docs.
                    harness::wait_until(
                        || harness::is_parked(A),
                        || eprintln!("alarms: still waiting after {STALL_WARNING:?} for vcore A to park"),
                    );
                }
                DONE.arrive();
            }
            Job::Nanosleep { period, samples, busy, slack } => {
                harness::wait_until(
                    || (0..vcore::max_vcores()).all(harness::is_parked),
                    || eprintln!("alarms: still waiting after {STALL_WARNING:?} for every vcore to park"),
                );
                nanosleep_window(period, samples, busy, slack);
                DONE.arrive();
            }
        }
    }
}

/// One baseline window (see [`Job::Nanosleep`]): fills [`LATENESS`] and
/// [`BASE_TASK`].
fn nanosleep_window(period: Duration, samples: usize, busy: bool, slack: Option<libc::c_ulong>) {
    let cpu = vcore::cpu_of(A).expect("vcore A");
    let period_ns = period.as_nanos() as u64;
    SPIN_STOP.store(false, Ordering::Relaxed);
    READY.store(0, Ordering::Release);
    std::thread::scope(|s| {
        if busy {
            s.spawn(move || {
                pin_to(cpu);
                READY.fetch_add(1, Ordering::Release);
                spin_until_stopped();
            });
        }
        s.spawn(move || {
            pin_to(cpu);
            if let Some(ns) = slack {
                // SAFETY: PR_SET_TIMERSLACK takes the slack by value; it only affects
                // this thread.
                let r = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns, 0, 0, 0) };
                assert_eq!(r, 0, "prctl(PR_SET_TIMERSLACK): {}", std::io::Error::last_os_error());
            }
            while READY.load(Ordering::Acquire) < usize::from(busy) {
                // The spinner shares our CPU: let it start.
                std::thread::yield_now();
            }
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            let before = TaskStats::of(tid);
            for late in LATENESS[..samples].iter() {
                let deadline = now_ns() + period_ns;
                let ts = libc::timespec {
                    tv_sec: (deadline / 1_000_000_000) as i64,
                    tv_nsec: (deadline % 1_000_000_000) as i64,
                };
                // SAFETY: an absolute CLOCK_MONOTONIC sleep with a valid timespec and no
                // remainder pointer (absolute sleeps have none); EINTR sleeps again.
                while unsafe {
                    libc::clock_nanosleep(
                        libc::CLOCK_MONOTONIC,
                        libc::TIMER_ABSTIME,
                        &ts,
                        core::ptr::null_mut(),
                    )
                } == libc::EINTR
                {}
                late.store(now_ns().saturating_sub(deadline), Ordering::Relaxed);
            }
            let d = TaskStats::of(tid).since(before);
            BASE_TASK[0].store(d.voluntary, Ordering::Relaxed);
            BASE_TASK[1].store(d.involuntary, Ordering::Relaxed);
            BASE_TASK[2].store(d.run_delay_ns, Ordering::Relaxed);
            SPIN_STOP.store(true, Ordering::Relaxed); // the join publishes the rest
        });
    });
}

/// The compute-bound work of a busy case, on either side: spins, never yielding and
/// never calling into libc, until [`SPIN_STOP`]. Returns how many rounds it made.
fn spin_until_stopped() -> u64 {
    let mut rounds = 0u64;
    while !SPIN_STOP.load(Ordering::Relaxed) {
        rounds = std::hint::black_box(rounds + 1);
        core::hint::spin_loop();
    }
    rounds
}

// ---------------------------------------------------------------------------------------
// The parlib-rs side, run by `main` (a uthread on vcore A).

/// What a window measured, besides the lateness samples in [`LATENESS`].
#[derive(Clone, Copy, Default)]
struct Counts {
    /// `timer_settime` calls by the alarms layer (`arm_count()` delta).
    arms: u64,
    /// What the kernel counted for the task that waited (vcore A's, or the sleeper's).
    task: TaskStats,
    /// Callbacks that found an interrupted uthread.
    interrupted: u64,
}

/// `samples` alarms of `period`, one after the other, on vcore A, each started by the
/// previous one's callback; with a spinning uthread on A if `busy`, and A kept out of its
/// park if `spin_idle`. `main` starts the first alarm, then blocks until the driver sees
/// the last one fire.
fn parlib_window(
    jobs: &mpsc::Sender<Job>,
    period: Duration,
    samples: usize,
    busy: bool,
    spin_idle: bool,
) -> Counts {
    // The other vcores are parked, as on the baseline side (only A is ever requested).
    let others_parked = || (0..vcore::max_vcores()).filter(|&v| v != A).all(harness::is_parked);
    assert!(others_parked(), "alarms: a vcore other than A is running");
    assert_eq!(vcore::id(), A, "main runs on vcore A");
    let tid = vcore::get(A).expect("vcore A").tid();
    INDEX.store(0, Ordering::Relaxed);
    INTERRUPTED.store(0, Ordering::Relaxed);
    TARGET.store(samples, Ordering::Relaxed);
    PERIOD_NS.store(period.as_nanos() as u64, Ordering::Relaxed);
    CHAIN_DONE.store(0, Ordering::Relaxed);
    SPIN_STOP.store(false, Ordering::Relaxed);
    // The driver arrives when the last alarm has fired; a busy window's spinner when it
    // has stopped.
    DONE.reset(1 + usize::from(busy));
    if spin_idle {
        common::set_spin_when_idle(A, true);
    }
    // Before the spinner exists: reading /proc blocks `main` (std's file calls block only
    // the calling uthread), and the spinner, once it runs, keeps A until the chain ends.
    let before = TaskStats::of(tid);
    let arms = alarms::arm_count();
    if busy {
        // TLS-less: it touches no thread-local, so no backing thread is needed.
        common::spawn_on(A, TlsMode::None, || {
            spin_until_stopped();
            DONE.arrive();
        });
        // It first runs when `main` blocks in `DONE.wait`, below: nothing before that
        // may block `main`, or the chain would never start.
    }
    // Sending publishes the stores above to the driver.
    jobs.send(Job::AwaitChain { then_parked: !spin_idle }).expect("driver alive");
    WAITERS[0].set_rel(period);
    Pin::static_ref(&WAITERS[0]).start();
    DONE.wait();
    let counts = Counts {
        arms: alarms::arm_count() - arms,
        task: TaskStats::of(tid).since(before),
        interrupted: INTERRUPTED.load(Ordering::Relaxed),
    };
    assert_eq!(INDEX.load(Ordering::Relaxed), samples, "alarms: a callback is missing");
    if spin_idle {
        common::set_spin_when_idle(A, false);
    }
    counts
}

/// One baseline window; `main` blocks meanwhile, so vcore A parks like the rest.
fn baseline_window(
    jobs: &mpsc::Sender<Job>,
    period: Duration,
    samples: usize,
    busy: bool,
    side: Side,
) -> Counts {
    let slack = (side == Side::Baseline).then_some(MIN_SLACK_NS);
    DONE.reset(1);
    jobs.send(Job::Nanosleep { period, samples, busy, slack }).expect("driver alive");
    DONE.wait();
    let task = TaskStats {
        voluntary: BASE_TASK[0].load(Ordering::Relaxed),
        involuntary: BASE_TASK[1].load(Ordering::Relaxed),
        run_delay_ns: BASE_TASK[2].load(Ordering::Relaxed),
    };
    Counts { arms: 0, task, interrupted: 0 }
}

/// Measures one window of `side` with `samples` alarms.
fn measure(jobs: &mpsc::Sender<Job>, case: Case, side: Side, rep: usize, samples: usize) -> Window {
    let counts = match side {
        Side::Parlib => parlib_window(jobs, case.period, samples, case.busy, false),
        Side::ParlibSpin => parlib_window(jobs, case.period, samples, case.busy, true),
        Side::Baseline | Side::DefaultSlack => baseline_window(jobs, case.period, samples, case.busy, side),
    };
    Window::of(rep, LATENESS[..samples].iter().map(|l| l.load(Ordering::Relaxed)).collect(), counts)
}

// ---------------------------------------------------------------------------------------
// Results.

/// One measured window of one side.
#[derive(Clone, Copy)]
struct Window {
    rep: usize,
    samples: usize,
    /// Nearest-rank percentiles and the maximum of the window's lateness, ns.
    p50_ns: u64,
    p99_ns: u64,
    max_ns: u64,
    counts: Counts,
}

impl Window {
    fn of(rep: usize, mut v: Vec<u64>, counts: Counts) -> Window {
        v.sort_unstable();
        let n = v.len();
        let rank = |p: usize| v[(n * p).div_ceil(100).max(1) - 1];
        Window { rep, samples: n, p50_ns: rank(50), p99_ns: rank(99), max_ns: v[n - 1], counts }
    }
    fn per_1000(&self, x: u64) -> f64 {
        x as f64 * 1000.0 / self.samples as f64
    }
}

/// Every window of every side of one case.
struct CaseResult {
    case: Case,
    /// One entry per side of [`Side::sides`], in that order.
    sides: Vec<(Side, Vec<Window>)>,
}

/// Medians over the windows of one side, in µs (and per 1000 alarms for the counts).
struct Summary {
    p50: Stat,
    p99: Stat,
    max: Stat,
    /// The largest lateness of any window.
    worst_us: f64,
    arms_per_1000: f64,
    voluntary_per_1000: f64,
    involuntary_per_1000: f64,
    /// Mean µs per alarm the waiting task spent runnable but off its CPU.
    run_delay_us: f64,
    interrupted_per_1000: f64,
}

impl CaseResult {
    fn windows(&self, side: Side) -> Option<&[Window]> {
        self.sides.iter().find(|(s, _)| *s == side).map(|(_, w)| &w[..])
    }
    fn summary(&self, side: Side) -> Option<Summary> {
        let w = self.windows(side)?;
        let us = |f: fn(&Window) -> u64| Stat::of(w.iter().map(|w| f(w) as f64 / 1000.0).collect());
        let per =
            |f: fn(&Counts) -> u64| Stat::of(w.iter().map(|w| w.per_1000(f(&w.counts))).collect()).median;
        Some(Summary {
            p50: us(|w| w.p50_ns),
            p99: us(|w| w.p99_ns),
            max: us(|w| w.max_ns),
            worst_us: w.iter().map(|w| w.max_ns).max().unwrap_or(0) as f64 / 1000.0,
            arms_per_1000: per(|c| c.arms),
            voluntary_per_1000: per(|c| c.task.voluntary),
            involuntary_per_1000: per(|c| c.task.involuntary),
            run_delay_us: Stat::of(
                w.iter().map(|w| w.counts.task.run_delay_ns as f64 / 1000.0 / w.samples as f64).collect(),
            )
            .median,
            interrupted_per_1000: per(|c| c.interrupted),
        })
    }
    fn p99(&self, side: Side) -> f64 {
        self.summary(side).map_or(f64::NAN, |s| s.p99.median)
    }
    /// Baseline p99 ÷ parlib-rs p99: above 1, parlib-rs is more punctual.
    fn ratio(&self) -> f64 {
        self.p99(Side::Baseline) / self.p99(Side::Parlib)
    }
    /// The goal, where it applies: the p99 bound and whether this run meets it.
    fn goal(&self) -> Option<(f64, bool)> {
        (self.case.name == "idle1ms").then(|| {
            let bound = GOAL_P99_FACTOR * self.p99(Side::Baseline);
            (bound, self.p99(Side::Parlib) <= bound)
        })
    }
}

fn run_case(jobs: &mpsc::Sender<Job>, s: &Settings, case: Case) -> CaseResult {
    let samples = case.samples(s);
    let sides = Side::sides(case.busy);
    // Warm-up, untimed.
    let warmup = (samples / 10).max(MIN_WARMUP_SAMPLES).min(samples);
    for &side in sides {
        measure(jobs, case, side, 0, warmup);
    }
    let mut fns: Vec<Box<dyn FnMut(usize) -> Window + '_>> = sides
        .iter()
        .map(|&side| {
            Box::new(move |rep| measure(jobs, case, side, rep, samples)) as Box<dyn FnMut(usize) -> Window>
        })
        .collect();
    let mut refs: Vec<&mut dyn FnMut(usize) -> Window> = fns.iter_mut().map(|f| &mut **f as _).collect();
    let windows = harness::alternate(s.reps, &mut refs);
    CaseResult { case, sides: sides.iter().copied().zip(windows).collect() }
}

// ---------------------------------------------------------------------------------------
// Output.

fn header(m: &Machine, mode: Mode, s: &Settings) -> String {
    let how = format!(
        "{} reps; {} alarms per 100 µs window, {} per 1 ms window; medians",
        s.reps,
        s.samples_100us.min(MAX_SAMPLES),
        s.samples_1ms.min(MAX_SAMPLES)
    );
    m.header(mode.name(), &how)
}

fn table(results: &[CaseResult]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| case | side | p50 µs | p99 µs (min-max) | max µs (worst) | arms/1000 | voluntary / involuntary switches per 1000 | run delay µs/alarm | interrupted/1000 |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        for (side, _) in &r.sides {
            let s = r.summary(*side).expect("a measured side");
            let _ = writeln!(
                t,
                "| {} | {} | {:.1} | {:.1} ({:.1}-{:.1}) | {:.1} ({:.1}) | {:.0} | {:.0} / {:.0} | {:.1} | {:.0} |",
                r.case.name,
                side.describe(r.case.busy),
                s.p50.median,
                s.p99.median,
                s.p99.min,
                s.p99.max,
                s.max.median,
                s.worst_us,
                s.arms_per_1000,
                s.voluntary_per_1000,
                s.involuntary_per_1000,
                s.run_delay_us,
                s.interrupted_per_1000
            );
        }
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "| case | parlib-rs p99 µs | baseline p99 µs | ratio | arms/1000 | goal |");
    let _ = writeln!(t, "|---|---:|---:|---:|---:|---|");
    for r in results {
        let goal = match r.goal() {
            Some((bound, met)) => {
                format!(
                    "p99 ≤ {GOAL_P99_FACTOR} × baseline = {bound:.1} µs: {}",
                    if met { "met" } else { "NOT met" }
                )
            }
            None => "-".into(),
        };
        let _ = writeln!(
            t,
            "| {} | {:.1} | {:.1} | {:.3} | {:.0} | {goal} |",
            r.case.name,
            r.p99(Side::Parlib),
            r.p99(Side::Baseline),
            r.ratio(),
            r.summary(Side::Parlib).map_or(f64::NAN, |s| s.arms_per_1000)
        );
    }
    t
}

fn result_line(r: &CaseResult) -> String {
    let ours = r.summary(Side::Parlib).expect("parlib side");
    let base = r.summary(Side::Baseline).expect("baseline side");
    let mut line = format!(
        "RESULT alarms case={} period_us={} p50_us={:.1} p99_us={:.1} max_us={:.1} baseline_p50_us={:.1} baseline_p99_us={:.1} baseline_max_us={:.1}",
        r.case.name,
        r.case.period.as_micros(),
        ours.p50.median,
        ours.p99.median,
        ours.max.median,
        base.p50.median,
        base.p99.median,
        base.max.median
    );
    if let Some(s) = r.summary(Side::DefaultSlack) {
        let _ = write!(line, " default_slack_p99_us={:.1}", s.p99.median);
    }
    if let Some(s) = r.summary(Side::ParlibSpin) {
        let _ = write!(line, " spin_p99_us={:.1}", s.p99.median);
    }
    let _ = write!(
        line,
        " parked_per_1000={:.0} run_delay_us={:.1} baseline_run_delay_us={:.1} interrupted_per_1000={:.0} arms_per_1000={:.0} ratio={:.3}",
        if r.case.busy { 0.0 } else { ours.voluntary_per_1000 },
        ours.run_delay_us,
        base.run_delay_us,
        ours.interrupted_per_1000,
        ours.arms_per_1000,
        r.ratio()
    );
    line
}

/// Every window: one line per case, side and repetition.
fn csv(results: &[CaseResult]) -> String {
    let mut csv = String::from(
        "case,period_us,side,rep,samples,p50_ns,p99_ns,max_ns,arms,voluntary_switches,involuntary_switches,run_delay_ns,interrupted\n",
    );
    for r in results {
        for (side, windows) in &r.sides {
            for w in windows {
                let _ = writeln!(
                    csv,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    r.case.name,
                    r.case.period.as_micros(),
                    side.name(),
                    w.rep,
                    w.samples,
                    w.p50_ns,
                    w.p99_ns,
                    w.max_ns,
                    w.counts.arms,
                    w.counts.task.voluntary,
                    w.counts.task.involuntary,
                    w.counts.task.run_delay_ns,
                    w.counts.interrupted
                );
            }
        }
    }
    csv
}

/// Grouped bars, log scale: per case and side, the median p99 lateness with min-max
/// whiskers over the windows, the median p50 as a cross, the median max as a dash, and
/// the goal as a green line over the parlib-rs bar it bounds.
fn plot(
    path: &std::path::Path,
    head: &str,
    results: &[CaseResult],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    const ORDER: [Side; 4] = [Side::Parlib, Side::ParlibSpin, Side::Baseline, Side::DefaultSlack];
    let colors = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0x9e, 0xc7, 0xe8),
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0xf2, 0xa0, 0xa0),
    ];
    let goal_color = RGBColor(0x2c, 0xa0, 0x2c);
    // Four slots per case, 0.2 apart; a side a case lacks leaves its slot empty.
    let place = |case: usize, k: usize| case as f64 + 0.2 * (k as f64 - 1.5);
    const HALF: f64 = 0.085;
    let sums: Vec<Vec<Option<Summary>>> =
        results.iter().map(|r| ORDER.iter().map(|&s| r.summary(s)).collect()).collect();
    let all = sums.iter().flatten().flatten();
    let lo = all.clone().map(|s| s.p50.median.min(s.p99.min)).fold(f64::INFINITY, f64::min) / 2.0;
    let goals: Vec<Option<f64>> = results.iter().map(|r| r.goal().map(|(b, _)| b)).collect();
    let hi =
        all.map(|s| s.max.median.max(s.p99.max)).chain(goals.iter().flatten().copied()).fold(0.0, f64::max)
            * 100.0; // room above the bars for the legend: seven lines, upper left
    let names: Vec<String> =
        results.iter().map(|r| format!("{}: ratio {:.2}", r.case.name, r.ratio())).collect();
    let frame = report::Frame {
        title: "alarms: lateness, p99 µs (median, min-max over windows), lower is better",
        title_size: 18,
        band: 82,
        head,
        names: &names,
        y_desc: "lateness, µs (log)",
        y: (lo.max(0.01), hi),
        legend: SeriesLabelPosition::UpperLeft,
    };
    let lo = frame.y.0;
    report::bar_chart(path, &frame, |chart| {
        for (k, &side) in ORDER.iter().enumerate() {
            let bars: Vec<(f64, &Summary)> = sums
                .iter()
                .enumerate()
                .filter_map(|(case, s)| Some((place(case, k), s[k].as_ref()?)))
                .collect();
            if bars.is_empty() {
                continue;
            }
            let color = colors[k];
            chart
                .draw_series(bars.iter().map(|(x, s)| {
                    Rectangle::new([(x - HALF, lo), (x + HALF, s.p99.median)], color.filled())
                }))?
                .label(match side {
                    Side::Parlib => "parlib-rs alarm (idle: the vcore parks; busy: interrupts the spinner)",
                    _ => side.describe(false),
                })
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
            chart.draw_series(bars.iter().map(|(x, s)| {
                PathElement::new(vec![(*x, s.p99.min), (*x, s.p99.max)], BLACK.stroke_width(1))
            }))?;
            chart.draw_series(bars.iter().map(|(x, s)| {
                Text::new(format!("{:.0}", s.p99.median), (x - HALF, s.p99.max * 1.12), ("sans-serif", 11))
            }))?;
            let crosses = chart.draw_series(
                bars.iter().map(|(x, s)| Cross::new((*x, s.p50.median), 4, BLACK.stroke_width(2))),
            )?;
            if k == 0 {
                crosses
                    .label("p50 (median)")
                    .legend(|(x, y)| Cross::new((x + 6, y), 4, BLACK.stroke_width(2)));
            }
            let dashes = chart.draw_series(bars.iter().map(|(x, s)| {
                PathElement::new(
                    vec![(x - HALF, s.max.median), (x + HALF, s.max.median)],
                    BLACK.stroke_width(2),
                )
            }))?;
            if k == 0 {
                dashes
                    .label("max (median)")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], BLACK.stroke_width(2)));
            }
        }
        chart
            .draw_series(goals.iter().enumerate().filter_map(|(case, g)| {
                let x = place(case, 0);
                Some(PathElement::new(
                    vec![(x - HALF - 0.04, (*g)?), (x + HALF + 0.04, (*g)?)],
                    goal_color.stroke_width(3),
                ))
            }))?
            .label("goal: p99 bound for parlib-rs (idle1ms)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], goal_color.stroke_width(3)));
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = Mode::from_args(&args);
    let settings = mode.pick(&SMOKE, &QUICK, &FULL);
    let names: Vec<&'static str> = CASES.iter().map(|c| c.name).collect();
    let filter = harness::CaseFilter::new(&args, &names);
    let wanted = |case: &str| filter.wants(case);
    let machine = Machine::probe();
    // Before lib_init, so the driver and its threads inherit no vcore pin and the
    // default slack.
    let default_slack = timer_slack_ns();
    let busy_before = machine::busy_percent(Duration::from_millis(500));

    let (jobs, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("alarms-driver".into())
        .spawn(move || driver(rx))
        .expect("start the driver");

    common::start(); // from here on, `main` is a uthread on vcore A
    alarms::init().expect("parlib_alarms::init");
    for w in &WAITERS {
        w.init_waiter(on_alarm);
    }
    let head = header(&machine, mode, settings);
    println!("alarms: lateness of relative alarms, parlib-rs vs clock_nanosleep on a pinned Linux thread");
    print!("{head}");
    println!(
        "  default timer slack of a thread here: {default_slack} ns (the baseline sets {MIN_SLACK_NS} ns)"
    );
    println!("  other load: the CPUs were {busy_before:.0}% busy in the 0.5 s before the run");
    println!();

    let mut results = Vec::new();
    let started = Instant::now();
    for case in CASES.iter().filter(|c| wanted(c.name)) {
        let r = run_case(&jobs, settings, *case);
        println!(
            "  {:<9} p99: parlib-rs {:>8.1} µs   clock_nanosleep {:>8.1} µs   ratio {:.3}",
            r.case.name,
            r.p99(Side::Parlib),
            r.p99(Side::Baseline),
            r.ratio()
        );
        results.push(r);
    }
    println!("  ({:.1} s of measurements)", started.elapsed().as_secs_f64());

    let note = format!(
        "Lateness = time the callback (or the sleeping thread) runs − deadline. Medians of the \
         repetitions' p50, p99 and max (min-max over them); ratio = baseline p99 ÷ parlib-rs p99. \
         The baseline sets its timer slack to {MIN_SLACK_NS} ns; `default_slack` keeps this \
         machine's default of {default_slack} ns. Other load: the CPUs were {busy_before:.0}% busy \
         in the 0.5 s before the run; `run delay` is the mean time per alarm the waiting task \
         was runnable but off its CPU (schedstat)."
    );
    let report = Report {
        bench: "alarms",
        title: "alarm lateness vs clock_nanosleep",
        head: &head,
        note: &note,
        table: table(&results),
        csv: csv(&results),
        result_lines: results.iter().map(result_line).collect(),
        result_lines_in_md: true,
    };
    report::finish(mode, &report, |path| plot(path, &head, &results));
}
