//! Comparison benchmark: preemptible timed calls (`parlib::timed`, `DESIGN.md` §10)
//! against the Linux mechanisms a program would otherwise use to bound a computation: a
//! thread, a process, a signal, a POSIX timer, all measured in the same process and the
//! same run (§12).
//!
//! | case | parlib-rs side | baseline | ratio |
//! |---|---|---|---|
//! | `launch_return` | `timed::launch(1 ms, \|\| 1)`, a call that returns at once: ns per launch, over [`Settings::launches`] launches | `pthread_create` + `pthread_join` of a thread that returns at once (`pthread_ns`), and `fork` + `waitpid` of a child that `_exit`s at once (`fork_ns`) | `pthread_ns ÷ ns` |
//! | `timeout_resume` | an exact hash chain of about P × 50 µs ([`Settings::preemptions`]), launched with a 50 µs budget and resumed with 50 µs until it completes: (its wall time − the same chain's unpreempted wall time) ÷ the number of timeouts. The unpreempted time is the mean of one run just before and one just after, on the same thread; the value must equal the unpreempted one | `tgkill` to the same thread with an empty `SA_SIGINFO` handler on `SIGRTMIN+2` ([`ping_signal`]), ns per round trip (`signal_ns`): the least any signal-based preemption costs. Also `timer_ns`: what a one-shot POSIX timer, re-armed for 50 µs after each expiry, costs the same chain per interruption, handler doing nothing: the kernel's (and, in a VM, the hypervisor's) share of any timer-driven preemption ([`timer_interrupt_round`]) | `signal_ns ÷ ns_per_preemption`; `timer_ratio` = `timer_ns ÷ ns_per_preemption` |
//! | `cancel` | `cont.cancel()` alone, of a call that holds a 1 MiB `Vec` it has touched (every page) and was preempted in a loop that calls `timed::checkpoint()`; it must return `Cancelled::Unwound` (the `Vec` is dropped by the unwind). Per round, p50 and p99 over [`Settings::cancels`] cancels | **not measured here**: libinger's cancel, 4.8 ms ([`LIBINGER_CANCEL_NS`], a published figure) | `libinger_ns ÷ ns` |
//! | `overshoot_20us`, `overshoot_100us`, `overshoot_1ms` | a call that spins (a hash chain, recording nothing) launched with that budget on an idle core: overshoot = (time `launch` returned `Timeout`) − (time just before `launch` + budget); p50 and p99 over [`Settings::overshoot_trials`] trials | a POSIX timer (`timer_create`, `CLOCK_MONOTONIC`, `SIGEV_THREAD_ID` to the same thread, `SIGRTMIN+3` whose handler sets a flag), armed at `TIMER_ABSTIME` (time just before arming + budget) while the thread spins on the flag: overshoot = time the spinning loop sees the flag − deadline | `baseline_p99_us ÷ p99_us` |
//! | `nested` | three nested calls that return at once, `launch(1 ms, \|\| launch(1 ms, \|\| launch(1 ms, \|\| 1)))`: ns per outermost launch (`ns`); and the overshoot of an outer deadline (100 µs) that expires while the innermost of three calls spins, the two inner ones having 1 s budgets (`overshoot_*`) | a chain of three threads, each `pthread_create`-ing and joining the next (`pthread_ns`); the POSIX timer above for 100 µs (`baseline_*`) | `pthread_ns ÷ ns`; `overshoot_ratio` = `baseline_p99_us ÷ overshoot_p99_us` |
//!
//! `launch_return`, `timeout_resume`, `cancel` and the `overshoot_*` cases run twice: on
//! a plain Linux thread, and on a uthread (cases suffixed `_uthread`), where the clock is
//! an alarm and a preemption comes through the vcore's notification (`DESIGN.md` §5, §6).
//! The baselines only exist on plain threads: a `_uthread` case is compared with the
//! plain-thread baseline measured in the same rounds of the same run.
//!
//! Every ratio reads **above 1: parlib-rs is cheaper / more punctual**. `cancel` is the
//! one case whose baseline is not measured in the run (libinger is not built here), so
//! its ratio is against a constant and says so (`libinger_ns=` in its RESULT line).
//!
//! # Where things run
//!
//! `main` starts the uthread layer with the scheduler of `common/` and `parlib_alarms`,
//! and becomes the uthread `main` on vcore 0 (it runs on the process's first TLS, so
//! timed calls work there). The uthread sides run on `main`, with every other vcore
//! parked. The plain-thread sides, timed calls and baselines alike, run on a *driver*, a
//! plain Linux thread created before `lib_init` and pinned to vcore 0's CPU, while `main`
//! blocks and every vcore is parked: both kinds of side use the same CPU, alone.
//!
//! # Rounds and figures
//!
//! Each case runs one untimed warm-up round per side, then R rounds, the sides taking
//! turns and their order reversed every other round (`harness::alternate`). A round's
//! figure is ns per operation over many operations (launches, thread or process
//! creations, preemptions, signals) or, for `cancel` and `overshoot`, percentiles of many
//! trials (nearest rank). Every reported figure is the **median over the R rounds**
//! (min-max in the table); ratios are ratios of those medians.
//!
//! RESULT lines, one per case (`RESULT timed case=<case> ...`):
//!
//! ```text
//! RESULT timed case=launch_return[_uthread] ns=<ns per launch> pthread_ns=<ns> fork_ns=<ns> timeouts=<launches> fork_ratio=<fork_ns ÷ ns> ratio=<pthread_ns ÷ ns>
//! RESULT timed case=timeout_resume[_uthread] ns_per_preemption=<ns> cpu_ns_per_preemption=<the same in thread CPU time> preemptions=<per round> signal_ns=<ns> timer_ns=<ns> timer_ratio=<timer_ns ÷ ns_per_preemption> ratio=<signal_ns ÷ ns_per_preemption>
//! RESULT timed case=cancel[_uthread] ns=<p50 ns> p99_ns=<ns> abandoned=<cancels> libinger_ns=4800000 ratio=<libinger_ns ÷ ns>
//! RESULT timed case=overshoot_<20us|100us|1ms>[_uthread] p50_us=<µs> p99_us=<µs> max_us=<µs> missed=<trials> baseline_p50_us=<µs> baseline_p99_us=<µs> ratio=<baseline_p99_us ÷ p99_us>
//! RESULT timed case=nested depth=3 ns=<ns per outer launch> pthread_ns=<ns per 3-thread chain> timeouts=<launches> overshoot_p50_us=<µs> overshoot_p99_us=<µs> overshoot_max_us=<µs> missed=<trials> baseline_p50_us=<µs> baseline_p99_us=<µs> overshoot_ratio=<baseline_p99_us ÷ overshoot_p99_us> ratio=<pthread_ns ÷ ns>
//! ```
//!
//! Three keys count events over all the rounds (totals, not medians), each a sign of a
//! loaded machine or of a bug; on a quiet machine all are 0:
//!
//! * `missed`: overshoot trials whose call was never preempted (it gave up [`SPIN_LIMIT`]
//!   after its deadline and returned), or whose timer signal never came;
//! * `timeouts`: launches of a call that returns at once that timed out anyway, because
//!   the thread lost its CPU for more than the 1 ms budget inside the call; each is
//!   resumed to completion, and its time stays in the figure (the median over rounds
//!   keeps one such round out of it);
//! * `abandoned`: cancels that found the thread off its CPU for longer than the 5 ms
//!   grace (`timed::CANCEL_GRACE`) and so abandoned the call instead of unwinding it.
//!   Any other abandon (one that took less than the grace) fails the run, as does any
//!   other outcome than `Cancelled::Unwound`.
//!
//! `cpu_ns_per_preemption` uses `CLOCK_THREAD_CPUTIME_ID` of the task that runs the call
//! (the driver, or vcore 0's task): time the machine's other work takes from that CPU
//! does not count there, so on a loaded machine it is the steadier of the two.
//!
//! Run: `cargo bench --bench timed -- --quick` (5 rounds, fewer trials, a few seconds on
//! an idle 2-CPU machine; prints only) or `cargo bench --bench timed` (11 rounds, about
//! 40 s; also writes `results.md`, `results.csv`, `timed.svg` (ns per operation, ours
//! against the baselines) and `timed_overshoot.svg` (overshoot p99 and p50 per budget)
//! under `<target>/parlib-bench/timed/`). Arguments that are not flags pick cases by name
//! (`-- --quick overshoot`, `-- --quick cancel_uthread`); a uthread case's baselines run
//! with it. Without `--bench` (`cargo test --benches`) every case runs one small round,
//! printing no RESULT lines. A watchdog ends the process with an error if a run takes
//! far longer than it should ([`Settings::limit`]), so a broken preemption can never
//! hang it.

use std::fmt::Write as _;
use std::hint::black_box;
use std::panic::AssertUnwindSafe;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use parlib::timed::{self, Cancelled, Outcome};
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
use harness::{Mode, STALL_WARNING};
use machine::Machine;
use report::{Report, Stat};

// ---------------------------------------------------------------------------------------
// Settings.

/// How long one run goes on, and how often.
struct Settings {
    /// Measured rounds per side; odd, so the median is a sample.
    reps: usize,
    /// Timed launches per `launch_return` round.
    launches: usize,
    /// `pthread_create` + `pthread_join` per round (`launch_return`), and 3-thread chains
    /// per round (`nested`).
    pthreads: usize,
    /// `fork` + `waitpid` per round.
    forks: usize,
    /// Least preemptions of a `timeout_resume` round: its chain lasts this many slices
    /// (there are more, since a slice is longer than its share of the chain).
    preemptions: usize,
    /// `tgkill` round trips per round.
    signals: usize,
    /// Cancels per `cancel` round.
    cancels: usize,
    /// Overshoot trials per round for the budgets of [`OVERSHOOT`] (and, the second, for
    /// the nested overshoot).
    overshoot_trials: [usize; 3],
    /// Nested launches per `nested` round.
    nested_launches: usize,
    /// The watchdog's limit for the whole run.
    limit: Duration,
}

/// `--quick`: 5 rounds, the smallest odd count whose median ignores two outliers; 300
/// overshoot trials, so p99 is the 3rd largest; 250 preemptions per chain (12.5 ms).
/// About 5 s of measurement on an idle 2-CPU machine.
const QUICK: Settings = Settings {
    reps: 5,
    launches: 5_000,
    pthreads: 300,
    forks: 20,
    preemptions: 250,
    signals: 5_000,
    cancels: 50,
    overshoot_trials: [300, 300, 100],
    nested_launches: 3_000,
    limit: Duration::from_secs(300),
};

/// Full run: 11 rounds, a median robust to five outliers; 1000 overshoot trials for the
/// short budgets (p99 is the 10th largest) and 300 for 1 ms. About 40 s of measurement.
const FULL: Settings = Settings {
    reps: 11,
    launches: 20_000,
    pthreads: 1_000,
    forks: 100,
    preemptions: 400,
    signals: 20_000,
    cancels: 200,
    overshoot_trials: [1_000, 1_000, 300],
    nested_launches: 10_000,
    limit: Duration::from_secs(900),
};

/// Without `--bench` (`cargo test --benches`, or the binary run by hand): one small round
/// per side, to check that everything runs. No RESULT lines, no files.
const SMOKE: Settings = Settings {
    reps: 1,
    launches: 200,
    pthreads: 20,
    forks: 3,
    preemptions: 20,
    signals: 200,
    cancels: 5,
    overshoot_trials: [20, 20, 5],
    nested_launches: 100,
    limit: Duration::from_secs(120),
};

/// The budget of a call that returns at once (`launch_return`, `nested`): the issue's
/// 1 ms, which such a call never comes near.
const LAUNCH_BUDGET: Duration = Duration::from_millis(1);

/// The budget of each slice of `timeout_resume`: short enough that a chain of 12-20 ms
/// is preempted hundreds of times, as long as parlib-timed's retry interval (`RETRY_NS`,
/// 50 µs) so that a rare retry does not double the slice.
const SLICE: Duration = Duration::from_micros(50);

/// The budget of a `cancel` call's launch and resumes: it times out in its loop soon.
const CANCEL_BUDGET: Duration = Duration::from_micros(50);

/// The overshoot cases: name and budget.
const OVERSHOOT: [(&str, Duration); 3] = [
    ("overshoot_20us", Duration::from_micros(20)),
    ("overshoot_100us", Duration::from_micros(100)),
    ("overshoot_1ms", Duration::from_millis(1)),
];

/// How deep `nested` nests: the issue's three.
const DEPTH: usize = 3;
/// The outermost budget of the nested overshoot: one of the [`OVERSHOOT`] budgets, so
/// that the single-call case is its reference.
const NESTED_OUTER: Duration = Duration::from_micros(100);
/// The inner calls' budgets in the nested overshoot: far beyond the outer one (and the
/// spin's [`SPIN_LIMIT`]), so only the outer deadline can stop them.
const NESTED_INNER: Duration = Duration::from_secs(1);

/// How long past its deadline a spinning call (or the baseline's spinning loop) goes on
/// before giving up and counting the trial as missed. 50 ms is 12 scheduler ticks at
/// HZ=250: a preemption that late is broken, not slow, and a run that meets one costs
/// 50 ms instead of hanging.
const SPIN_LIMIT: Duration = Duration::from_millis(50);

/// libinger's cancel, ns: 4.8 ms, as measured by Boucher et al., "Lightweight Preemptible
/// Functions", USENIX ATC 2020, and quoted in the issue that asked for this bench
/// (libinger must tear down a preempted function's whole library namespace; DESIGN §10,
/// "libinger needs milliseconds"). A published figure from another machine, not a
/// same-run baseline: the `cancel` ratio is only an order of magnitude.
const LIBINGER_CANCEL_NS: f64 = 4_800_000.0;

/// The `cancel` call's buffer: 1 MiB, the issue's size; and the page size it touches it by.
const MIB: usize = 1 << 20;
const PAGE: usize = 4096;
/// How long a `cancel` call loops before it gives up and returns: far beyond any budget.
const CALL_LIMIT: Duration = Duration::from_secs(1);
/// Resumes of a `cancel` call allowed before it reaches its loop: 1000 x 50 µs = 50 ms.
/// It needs one or two (allocating and touching 1 MiB takes some 100 µs).
const MAX_RESUMES: usize = 1_000;

/// Loop iterations between two clock reads in a spinning loop that must stop by itself
/// (the `cancel` call's loop, the baseline's spin on its flag). A clock read is a call
/// into libc (`clock_gettime`), where parlib-timed does not preempt (it retries 50 µs
/// later): reading it rarely keeps that from showing up in the figures.
const CLOCK_EVERY: u64 = 1 << 16;

/// Steps of the hash chain timed to calibrate it: about 1 ms at ~1 ns per step.
const CALIBRATION_STEPS: u64 = 1 << 20;

/// The value the trivial work returns (thread, process exit status, call).
const TRIVIAL: i32 = 1;

/// Every case name, for the filter.
const CASES: [&str; 13] = [
    "launch_return",
    "launch_return_uthread",
    "timeout_resume",
    "timeout_resume_uthread",
    "cancel",
    "cancel_uthread",
    "overshoot_20us",
    "overshoot_20us_uthread",
    "overshoot_100us",
    "overshoot_100us_uthread",
    "overshoot_1ms",
    "overshoot_1ms_uthread",
    "nested",
];

// ---------------------------------------------------------------------------------------
// Clocks, the spinning computation, signals.

/// `CLOCK_MONOTONIC` in ns through the vDSO: the clock timed-call deadlines are on.
#[inline]
fn now_ns() -> u64 {
    parlib::sync::now_ns()
}

/// CPU time of the calling task (kernel and user), ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and timespec.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// An exact computation that takes about 1 ns per step and never enters libc, so that a
/// preemption can land anywhere in it (the one `parlib-timed`'s tests use).
#[inline(never)]
fn hash_chain(steps: u64) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..steps {
        h = (h ^ i).wrapping_mul(0x100_0000_01b3).rotate_left(7);
        black_box(&h);
    }
    h
}

/// ns per step of [`hash_chain`] on the calling thread's CPU: the least of five timings
/// (other work only ever adds time).
fn calibrate() -> f64 {
    black_box(hash_chain(CALIBRATION_STEPS));
    let best = (0..5)
        .map(|_| {
            let t = now_ns();
            black_box(hash_chain(CALIBRATION_STEPS));
            now_ns() - t
        })
        .min()
        .expect("five timings");
    best as f64 / CALIBRATION_STEPS as f64
}

/// Steps of [`hash_chain`] that take about `d`.
fn steps_for(d: Duration, ns_per_step: f64) -> u64 {
    (d.as_nanos() as f64 / ns_per_step).ceil() as u64
}

/// The `timeout_resume` baseline's signal. Real-time signals are free in this process:
/// parlib's notification signal is `SIGUSR1`, and the real-time signals glibc keeps for
/// itself lie below the `SIGRTMIN()` it reports.
fn ping_signal() -> libc::c_int {
    libc::SIGRTMIN() + 2
}

/// The signal of the POSIX timers of the baselines ([`RtTimer`]).
fn timer_signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

/// Deliveries of [`ping_signal`].
static PINGS: AtomicU64 = AtomicU64::new(0);
/// Set by the handler of [`timer_signal`].
static TIMER_FIRED: AtomicBool = AtomicBool::new(false);

/// The ping's empty handler: it only counts (a load and a store: only the thread that
/// sends the signal to itself runs it).
extern "C" fn on_ping(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    PINGS.store(PINGS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// The baseline timer's handler: raises the flag the spinning loop watches.
extern "C" fn on_timer(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    TIMER_FIRED.store(true, Ordering::Relaxed);
}

/// Installs the two baselines' handlers (process-wide; before any thread uses them).
fn install_handlers() {
    for (sig, handler) in [
        (ping_signal(), on_ping as extern "C" fn(_, _, _)),
        (timer_signal(), on_timer as extern "C" fn(_, _, _)),
    ] {
        // SAFETY: sigaction with a fully initialised struct; each handler only touches an
        // atomic, and nothing else in this process uses these signals.
        let r = unsafe {
            let mut sa: libc::sigaction = core::mem::zeroed();
            sa.sa_sigaction = handler as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, ptr::null_mut())
        };
        assert_eq!(r, 0, "sigaction({sig}): {}", std::io::Error::last_os_error());
    }
}

/// A POSIX timer that sends [`timer_signal`] to the thread that made it; deleted when
/// dropped.
struct RtTimer(libc::timer_t);

impl RtTimer {
    fn for_this_thread() -> RtTimer {
        // SAFETY: an all-zero sigevent is valid; we fill the fields the kernel reads.
        let mut sev: libc::sigevent = unsafe { core::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = timer_signal();
        // SAFETY: gettid has no preconditions.
        sev.sigev_notify_thread_id = unsafe { libc::gettid() };
        let mut id: libc::timer_t = ptr::null_mut();
        // SAFETY: a valid clock, sigevent and out-pointer.
        let r = unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut id) };
        assert_eq!(r, 0, "timer_create: {}", std::io::Error::last_os_error());
        RtTimer(id)
    }

    /// Arms it to fire once at `deadline_ns` on `CLOCK_MONOTONIC`.
    fn arm_at(&self, deadline_ns: u64) {
        let its = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: our timer, a valid itimerspec, no old value wanted.
        let r = unsafe { libc::timer_settime(self.0, libc::TIMER_ABSTIME, &its, ptr::null_mut()) };
        assert_eq!(r, 0, "timer_settime: {}", std::io::Error::last_os_error());
    }
}

impl Drop for RtTimer {
    fn drop(&mut self) {
        // SAFETY: our timer, deleted once.
        unsafe { libc::timer_delete(self.0) };
    }
}

// ---------------------------------------------------------------------------------------
// What one round of each side measures. Each runs on whichever thread calls it: the
// driver (plain) or `main` (uthread).

/// The value of a call that returns at once, and how many times it timed out first.
///
/// Such a call times out only if its thread loses its CPU for longer than the budget
/// inside it (on a loaded machine it does, now and then: a CFS time slice is several
/// ms): then it is resumed until it returns, and the timeout is counted. Works inside a
/// call too, where an inner launch may come back with its deadline passed.
fn run_out<T>(r: Result<Outcome<T>, timed::Error>) -> (T, u64) {
    let mut out = r.unwrap_or_else(|e| panic!("a launch failed: {e}"));
    let mut timeouts = 0;
    loop {
        out = match out {
            Outcome::Completed(v) => return (v, timeouts),
            Outcome::Timeout(c) | Outcome::Paused(c) => {
                timeouts += 1;
                c.resume(LAUNCH_BUDGET).unwrap_or_else(|e| panic!("a resume failed: {e}"))
            }
        };
    }
}

/// `launch_return`: ns per `timed::launch(1 ms, || 1)`, and the launches that timed out
/// ([`run_out`]).
fn launch_return_round(n: usize) -> (f64, u64) {
    let mut timeouts = 0;
    let t0 = now_ns();
    for _ in 0..n {
        let (v, t) = run_out(timed::launch(LAUNCH_BUDGET, || TRIVIAL));
        assert_eq!(v, TRIVIAL);
        timeouts += t;
    }
    ((now_ns() - t0) as f64 / n as f64, timeouts)
}

/// A thread of a chain: starts and joins the next one if `arg` (the links left,
/// counting itself) is above 1; returns `arg`.
extern "C" fn chain_link(arg: *mut libc::c_void) -> *mut libc::c_void {
    let links = arg as usize;
    if links > 1 {
        let r = pthread_chain(links - 1);
        assert_eq!(r, links - 1, "a thread of the chain returned {r}");
    }
    arg
}

/// Creates and joins a chain of `links` threads (each creating and joining the next);
/// returns what the first returned (`links`).
fn pthread_chain(links: usize) -> usize {
    let mut t: libc::pthread_t = 0;
    // SAFETY: default attributes; `chain_link` only reads its argument as an integer.
    let r = unsafe { libc::pthread_create(&mut t, ptr::null(), chain_link, links as *mut libc::c_void) };
    assert_eq!(r, 0, "pthread_create: {}", std::io::Error::from_raw_os_error(r));
    let mut ret = ptr::null_mut();
    // SAFETY: a joinable thread of ours, joined once.
    let r = unsafe { libc::pthread_join(t, &mut ret) };
    assert_eq!(r, 0, "pthread_join: {}", std::io::Error::from_raw_os_error(r));
    ret as usize
}

/// ns per chain of `links` threads created and joined (1: a plain create + join). The
/// threads inherit the caller's CPU affinity: on the driver, they run on its one CPU, as
/// timed calls do.
fn pthread_round(n: usize, links: usize) -> f64 {
    let t0 = now_ns();
    for _ in 0..n {
        assert_eq!(pthread_chain(links), links);
    }
    (now_ns() - t0) as f64 / n as f64
}

/// ns per `fork` + `waitpid` of a child that exits at once with [`TRIVIAL`].
fn fork_round(n: usize) -> f64 {
    let t0 = now_ns();
    for _ in 0..n {
        // SAFETY: the child calls only `_exit`, async-signal-safe, as the child of a
        // multithreaded process must.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: see above.
            unsafe { libc::_exit(black_box(TRIVIAL)) };
        }
        assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
        let mut status = 0;
        loop {
            // SAFETY: our child, a valid status pointer.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                break;
            }
            let e = std::io::Error::last_os_error();
            // A timed-call timer's signal outliving the last call may interrupt it.
            assert_eq!(e.raw_os_error(), Some(libc::EINTR), "waitpid: {e}");
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == TRIVIAL,
            "fork: the child ended with status {status:#x}"
        );
    }
    (now_ns() - t0) as f64 / n as f64
}

/// One `timeout_resume` round: the chain unpreempted, preempted every [`SLICE`], and
/// unpreempted again.
#[derive(Clone, Copy)]
struct Preempt {
    wall_ns: u64,
    cpu_ns: u64,
    /// Mean of the two unpreempted runs.
    bare_wall_ns: u64,
    bare_cpu_ns: u64,
    preemptions: u64,
}

impl Preempt {
    fn ns_per_preemption(&self) -> f64 {
        (self.wall_ns as f64 - self.bare_wall_ns as f64) / self.preemptions as f64
    }
    fn cpu_ns_per_preemption(&self) -> f64 {
        (self.cpu_ns as f64 - self.bare_cpu_ns as f64) / self.preemptions as f64
    }
}

/// The chain called directly: (wall ns, CPU ns, value).
fn bare_chain(steps: u64) -> (u64, u64, u64) {
    let (t0, c0) = (now_ns(), thread_cpu_ns());
    let v = black_box(hash_chain(black_box(steps)));
    (now_ns() - t0, thread_cpu_ns() - c0, v)
}

fn timeout_resume_round(steps: u64) -> Preempt {
    let (wall1, cpu1, expect) = bare_chain(steps);
    let (t0, c0) = (now_ns(), thread_cpu_ns());
    let mut out = timed::launch(SLICE, move || hash_chain(steps)).expect("timeout_resume: launch");
    let mut preemptions = 0u64;
    let value = loop {
        out = match out {
            Outcome::Completed(v) => break v,
            Outcome::Timeout(c) => {
                preemptions += 1;
                c.resume(SLICE).expect("timeout_resume: resume")
            }
            Outcome::Paused(_) => unreachable!("the chain never pauses"),
        };
    };
    let (wall, cpu) = (now_ns() - t0, thread_cpu_ns() - c0);
    let (wall2, cpu2, _) = bare_chain(steps);
    assert_eq!(value, expect, "timeout_resume: the preempted chain's value differs from the unpreempted one");
    Preempt {
        wall_ns: wall,
        cpu_ns: cpu,
        bare_wall_ns: (wall1 + wall2) / 2,
        bare_cpu_ns: (cpu1 + cpu2) / 2,
        preemptions,
    }
}

/// ns per `tgkill` of [`ping_signal`] to the calling thread, handler included (the kernel
/// delivers a signal a thread sends itself before `tgkill` returns).
fn signal_round(n: usize) -> f64 {
    // SAFETY: getpid and gettid have no preconditions.
    let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
    let sig = ping_signal();
    let before = PINGS.load(Ordering::Relaxed);
    let t0 = now_ns();
    for _ in 0..n {
        // SAFETY: to this very thread, a signal whose handler only counts.
        unsafe { libc::tgkill(pid, tid, sig) };
    }
    let elapsed = now_ns() - t0;
    let got = PINGS.load(Ordering::Relaxed) - before;
    assert_eq!(got, n as u64, "signal: {got} of {n} signals were handled");
    elapsed as f64 / n as f64
}

/// Steps of [`hash_chain`] per piece of [`timer_interrupt_round`]'s chain: about 1.5 µs,
/// so the loop notices an expiry and re-arms the timer at most that late (well inside
/// the ~50 µs slice), and pays one call per piece, a few ns in 1.5 µs.
const PIECE_STEPS: u64 = 1024;

/// The chain of `steps` in pieces of [`PIECE_STEPS`], calling `between` after each piece.
fn chain_in_pieces(steps: u64, mut between: impl FnMut()) -> u64 {
    let mut h = 0;
    for _ in 0..steps.div_ceil(PIECE_STEPS) {
        h ^= hash_chain(black_box(PIECE_STEPS));
        between();
    }
    h
}

/// `timeout_resume`'s second baseline: what the kernel's part of a timer-driven
/// preemption costs a spinning thread. The same chain, in pieces; a one-shot POSIX timer
/// ([`RtTimer`], an empty-but-for-a-flag handler) is armed for now + [`SLICE`], and every
/// time it has fired the loop re-arms it, as a timed call's resume re-arms parlib's
/// (ns per interruption = (wall time − the same pieces' time with no timer) ÷
/// interruptions). What a preemption costs on top of this is parlib's own work: the
/// safe-point checks, the full-state trampoline, the switches to the launcher and back.
fn timer_interrupt_round(steps: u64) -> f64 {
    let timer = RtTimer::for_this_thread();
    let bare = || {
        let t0 = now_ns();
        black_box(chain_in_pieces(steps, || {}));
        now_ns() - t0
    };
    let bare1 = bare();
    let mut interruptions = 0u64;
    TIMER_FIRED.store(false, Ordering::Relaxed);
    let t0 = now_ns();
    timer.arm_at(now_ns() + SLICE.as_nanos() as u64);
    black_box(chain_in_pieces(steps, || {
        // Set by a handler on this thread: a relaxed load sees it.
        if TIMER_FIRED.load(Ordering::Relaxed) {
            TIMER_FIRED.store(false, Ordering::Relaxed);
            interruptions += 1;
            timer.arm_at(now_ns() + SLICE.as_nanos() as u64);
        }
    }));
    let wall = now_ns() - t0;
    drop(timer); // deleted, so it can fire no more
    let bare2 = bare();
    (wall as f64 - (bare1 + bare2) as f64 / 2.0) / interruptions as f64
}

/// The call `cancel` cancels: owns a 1 MiB `Vec` and has touched each of its pages, says
/// it is in its loop, then loops over the buffer calling `timed::checkpoint()` each time
/// (the cancellation point where the cancel unwinds it). Gives up after [`CALL_LIMIT`].
fn own_a_mebibyte_and_loop(in_loop: &AtomicBool) -> u64 {
    let mut v = vec![0u8; MIB];
    for i in (0..MIB).step_by(PAGE) {
        v[i] = 1;
    }
    // The call runs on its launcher's thread: no ordering needed.
    in_loop.store(true, Ordering::Relaxed);
    let give_up = now_ns() + CALL_LIMIT.as_nanos() as u64;
    let (mut i, mut n) = (0usize, 0u64);
    loop {
        let k = i & (MIB - 1);
        v[k] = v[k].wrapping_add(1);
        i = i.wrapping_add(PAGE + 1);
        timed::checkpoint();
        n += 1;
        if n.is_multiple_of(CLOCK_EVERY) && now_ns() > give_up {
            return v.iter().map(|&b| u64::from(b)).sum();
        }
    }
}

/// One cancel: launches the call, resumes it until it has timed out inside its loop, then
/// times `cancel()` alone: ns, and whether the call was abandoned.
///
/// The call reaches its next checkpoint within nanoseconds of being resumed, so the
/// cancel must unwind it. The one exception is a thread that loses its CPU for longer
/// than [`timed::CANCEL_GRACE`] (5 ms) just then, which a loaded machine makes possible:
/// the call is abandoned (its `Vec` leaks), and the cancel took at least the grace. That
/// is counted (`abandoned`) and kept in the figures; an abandon in less time fails the run.
fn cancel_trial() -> (u64, bool) {
    let in_loop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&in_loop);
    let mut out =
        timed::launch(CANCEL_BUDGET, move || own_a_mebibyte_and_loop(&flag)).expect("cancel: launch");
    let mut resumes = 0;
    let cont = loop {
        out = match out {
            Outcome::Timeout(c) | Outcome::Paused(c) if in_loop.load(Ordering::Relaxed) => break c,
            Outcome::Timeout(c) | Outcome::Paused(c) => {
                resumes += 1;
                assert!(
                    resumes <= MAX_RESUMES,
                    "cancel: the call did not reach its loop in {MAX_RESUMES} resumes"
                );
                c.resume(CANCEL_BUDGET).expect("cancel: resume")
            }
            Outcome::Completed(_) => {
                panic!("cancel: the call looped for {CALL_LIMIT:?} without timing out")
            }
        };
    };
    let t0 = now_ns();
    let how = cont.cancel();
    let elapsed = now_ns() - t0;
    let lost_cpu = elapsed >= timed::CANCEL_GRACE.as_nanos() as u64;
    assert!(
        how == Cancelled::Unwound || how == Cancelled::Abandoned && lost_cpu,
        "cancel: a call looping over timed::checkpoint() was not unwound but {how:?}, in {elapsed} ns"
    );
    (elapsed, how == Cancelled::Abandoned)
}

/// `cancel`: p50 and p99 ns of `n` cancels, and how many were abandoned.
fn cancel_round(n: usize) -> (f64, f64, u64) {
    let trials: Vec<(u64, bool)> = (0..n).map(|_| cancel_trial()).collect();
    let abandoned = trials.iter().filter(|t| t.1).count() as u64;
    let mut ns: Vec<u64> = trials.into_iter().map(|t| t.0).collect();
    ns.sort_unstable();
    (rank(&ns, 50), rank(&ns, 99), abandoned)
}

/// Nearest-rank percentile `p` of sorted `v` (NaN if empty).
fn rank(v: &[u64], p: usize) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[(v.len() * p).div_ceil(100).max(1) - 1] as f64
}

/// One round of overshoots: percentiles in µs, and the trials that never stopped.
#[derive(Clone, Copy)]
struct Lateness {
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    missed: f64,
}

impl Lateness {
    fn of(mut ns: Vec<u64>, missed: usize) -> Lateness {
        ns.sort_unstable();
        Lateness {
            p50_us: rank(&ns, 50) / 1000.0,
            p99_us: rank(&ns, 99) / 1000.0,
            max_us: rank(&ns, 100) / 1000.0,
            missed: missed as f64,
        }
    }
}

/// Times one launch of `f` that must time out: the overshoot past (time before the
/// launch + `budget`), in ns, or `None` if the call returned instead. The continuation is
/// abandoned at once (`cancel_within(0)`): the spinning call owns nothing.
fn time_overshoot<T: Send + 'static>(
    budget: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<u64> {
    let t0 = now_ns();
    let out = timed::launch(budget, f).expect("overshoot: launch");
    let back = now_ns();
    match out {
        Outcome::Timeout(c) => {
            let _ = c.cancel_within(Duration::ZERO);
            Some(back.saturating_sub(t0 + budget.as_nanos() as u64))
        }
        Outcome::Completed(_) => None,
        Outcome::Paused(_) => unreachable!("a spinning call never pauses"),
    }
}

/// `overshoot_*`: `trials` launches of a call that spins for `budget` + [`SPIN_LIMIT`].
fn overshoot_round(budget: Duration, trials: usize, ns_per_step: f64) -> Lateness {
    let steps = steps_for(budget + SPIN_LIMIT, ns_per_step);
    let mut late = Vec::with_capacity(trials);
    for _ in 0..trials {
        if let Some(ns) = time_overshoot(budget, move || hash_chain(steps)) {
            late.push(ns);
        }
    }
    let missed = trials - late.len();
    Lateness::of(late, missed)
}

/// The innermost value of a nested call, or 0 if it stopped (it never does: the inner
/// budgets outlast the spin).
fn value_of(r: Result<Outcome<u64>, timed::Error>) -> u64 {
    match r {
        Ok(Outcome::Completed(v)) => v,
        Ok(_) => 0,
        Err(e) => panic!("nested: an inner launch failed: {e}"),
    }
}

/// `nested`: the overshoot of a 100 µs outer deadline that expires while the innermost of
/// three calls spins.
fn nested_overshoot_round(trials: usize, ns_per_step: f64) -> Lateness {
    let steps = steps_for(NESTED_OUTER + SPIN_LIMIT, ns_per_step);
    let mut late = Vec::with_capacity(trials);
    for _ in 0..trials {
        let nested = move || {
            value_of(timed::launch(NESTED_INNER, move || {
                value_of(timed::launch(NESTED_INNER, move || hash_chain(steps)))
            }))
        };
        if let Some(ns) = time_overshoot(NESTED_OUTER, nested) {
            late.push(ns);
        }
    }
    let missed = trials - late.len();
    Lateness::of(late, missed)
}

/// `nested`: ns per launch of three nested calls that return at once, and the outermost
/// launches that timed out ([`run_out`]).
fn nested_launch_round(n: usize) -> (f64, u64) {
    let inner =
        || run_out(timed::launch(LAUNCH_BUDGET, || run_out(timed::launch(LAUNCH_BUDGET, || TRIVIAL)).0)).0;
    let mut timeouts = 0;
    let t0 = now_ns();
    for _ in 0..n {
        let (v, t) = run_out(timed::launch(LAUNCH_BUDGET, inner));
        assert_eq!(v, TRIVIAL);
        timeouts += t;
    }
    ((now_ns() - t0) as f64 / n as f64, timeouts)
}

/// The overshoot baseline: `trials` times, arm the POSIX timer at (now + `budget`) and
/// spin until its handler has raised the flag; overshoot = when the loop sees it −
/// deadline. That is "control is back in the spinning code", the counterpart of "control
/// is back in the launcher" on our side (the handler's own clock reading would leave out
/// the return from the handler, which our side pays).
fn timer_round(budget: Duration, trials: usize) -> Lateness {
    let timer = RtTimer::for_this_thread();
    let (b, limit) = (budget.as_nanos() as u64, SPIN_LIMIT.as_nanos() as u64);
    let mut late = Vec::with_capacity(trials);
    let mut missed = 0;
    for _ in 0..trials {
        TIMER_FIRED.store(false, Ordering::Relaxed);
        let deadline = now_ns() + b;
        timer.arm_at(deadline);
        let mut polls = 0u64;
        loop {
            // Set by a handler on this thread: a relaxed load sees it.
            if TIMER_FIRED.load(Ordering::Relaxed) {
                late.push(now_ns().saturating_sub(deadline));
                break;
            }
            polls += 1;
            if polls.is_multiple_of(CLOCK_EVERY) && now_ns() > deadline + limit {
                missed += 1;
                break;
            }
        }
    }
    Lateness::of(late, missed)
}

// ---------------------------------------------------------------------------------------
// The driver: the plain Linux thread the plain-thread sides run on.

type Job = Box<dyn FnOnce() + Send>;

/// Ends every job: `main` blocks on it while the driver runs the job.
static JOB_DONE: Completion = Completion::new();

struct Driver {
    jobs: mpsc::Sender<Job>,
}

impl Driver {
    /// Starts the driver thread. Call before `lib_init`, so that it carries no vcore pin.
    fn start() -> Driver {
        let (jobs, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("timed-driver".into())
            .spawn(move || drive(rx))
            .expect("start the driver");
        Driver { jobs }
    }

    /// Runs `f` on the driver once every vcore is parked, while `main` (the calling
    /// uthread) blocks; returns its result, or goes on with its panic.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let slot: Arc<Mutex<Option<std::thread::Result<T>>>> = Arc::new(Mutex::new(None));
        let out = Arc::clone(&slot);
        JOB_DONE.reset(1);
        self.jobs
            .send(Box::new(move || {
                let r = std::panic::catch_unwind(AssertUnwindSafe(f));
                *out.lock().expect("the result slot") = Some(r);
                JOB_DONE.arrive();
            }))
            .expect("the driver thread is alive");
        JOB_DONE.wait();
        // Uncontended: the driver let go of it before it arrived.
        let r = slot.lock().expect("the result slot").take().expect("the driver ran the job");
        r.unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

/// The driver's loop: pinned to vcore 0's CPU, it waits for every vcore to park, then
/// runs the job.
fn drive(jobs: mpsc::Receiver<Job>) {
    let mut pinned = false;
    for job in jobs {
        if !pinned {
            harness::pin_to(vcore::cpu_of(0).expect("vcore 0 exists"));
            pinned = true;
        }
        harness::wait_until(
            || (0..vcore::max_vcores()).all(harness::is_parked),
            || {
                eprintln!(
                    "timed: vcores still not all parked after {STALL_WARNING:?}: {:?}",
                    (0..vcore::max_vcores()).map(harness::is_parked).collect::<Vec<_>>()
                )
            },
        );
        job();
    }
}

/// Ends the process with an error if the run is still going after `limit`: a preemption
/// that never comes must fail the run, not hang it.
fn start_watchdog(limit: Duration) {
    std::thread::Builder::new()
        .name("timed-watchdog".into())
        .spawn(move || {
            std::thread::sleep(limit);
            eprintln!("timed: the run is still going after {limit:?}; something hangs. Exiting.");
            // SAFETY: ends the process at once; nothing needs to run on the way out.
            unsafe { libc::_exit(2) };
        })
        .expect("start the watchdog");
}

// ---------------------------------------------------------------------------------------
// Running the cases.

/// Where a side's timed calls run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum On {
    Plain,
    Uthread,
}

impl On {
    fn suffix(self) -> &'static str {
        match self {
            On::Plain => "",
            On::Uthread => "_uthread",
        }
    }
    fn name(self) -> &'static str {
        match self {
            On::Plain => "plain thread",
            On::Uthread => "uthread",
        }
    }
}

/// The `rep` a side is called with for its untimed warm-up round.
const WARMUP: usize = usize::MAX;

/// Runs every side once untimed, then `reps` rounds of them all, alternating their order.
/// A side is called with its round's number, or [`WARMUP`]; it keeps what it measured
/// only in a numbered round ([`keep`]).
fn run_rounds(reps: usize, mut sides: Vec<Box<dyn FnMut(usize) + '_>>) {
    for side in &mut sides {
        side(WARMUP);
    }
    let mut refs: Vec<&mut dyn FnMut(usize)> = sides.iter_mut().map(|f| &mut **f as _).collect();
    harness::alternate(reps, &mut refs);
}

/// Keeps `v` in `into` unless `rep` is the warm-up.
fn keep<T>(rep: usize, into: &mut Vec<T>, v: T) {
    if rep != WARMUP {
        into.push(v);
    }
}

/// What every case runner needs.
struct Ctx<'a> {
    driver: &'a Driver,
    s: &'a Settings,
    filter: &'a harness::CaseFilter,
    /// [`calibrate`]'s figure, measured on the driver.
    ns_per_step: f64,
}

impl Ctx<'_> {
    /// Which of a case's two sides (plain thread, uthread) the filter wants.
    fn wanted(&self, case: &str) -> (bool, bool) {
        (self.filter.wants(case), self.filter.wants(&format!("{case}_uthread")))
    }
}

/// What a figure is, for the table and the plot.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Measured on our side.
    Ours,
    /// Measured on a baseline, in the same rounds.
    Baseline,
    /// A published figure, not measured (`libinger_ns`).
    Reference,
    /// Measured, but neither side of the ratio.
    Other,
}

/// One figure of a case: its value in every round.
#[derive(Clone)]
struct Figure {
    key: &'static str,
    rounds: Vec<f64>,
    role: Role,
    /// Decimals in the RESULT line and the table.
    decimals: usize,
    /// A count of events (`missed`, `timeouts`, `abandoned`): reported as the total over
    /// the rounds, not a median.
    total: bool,
}

impl Figure {
    fn new(key: &'static str, rounds: Vec<f64>, role: Role, decimals: usize) -> Figure {
        Figure { key, rounds, role, decimals, total: false }
    }
    /// A count of events, summed over the rounds.
    fn count(key: &'static str, rounds: Vec<f64>) -> Figure {
        Figure { key, rounds, role: Role::Other, decimals: 0, total: true }
    }
    /// The median and range over the rounds; for a count, its total (min = max = total).
    fn stat(&self) -> Stat {
        if self.total {
            let sum = self.rounds.iter().sum();
            return Stat { median: sum, min: sum, max: sum };
        }
        Stat::of(self.rounds.clone())
    }
    fn show(&self, v: f64) -> String {
        format!("{v:.*}", self.decimals)
    }
}

/// One RESULT line: a case, where ours ran, its figures, and its ratios
/// (`(key, numerator key, denominator key)` over medians; the last is `ratio`).
struct Row {
    case: String,
    on: On,
    figures: Vec<Figure>,
    ratios: Vec<(&'static str, &'static str, &'static str)>,
    /// In the cost plot: ours, then the baselines, by key.
    cost_bars: Option<(&'static str, Vec<&'static str>)>,
    /// In the overshoot plot: the group (budget) it belongs to, and its (p50, p99) keys.
    overshoot: Option<(&'static str, (&'static str, &'static str))>,
}

impl Row {
    fn figure(&self, key: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.key == key)
    }
    fn median(&self, key: &str) -> f64 {
        self.figure(key).map_or(f64::NAN, |f| f.stat().median)
    }
    fn ratio_value(&self, num: &str, den: &str) -> f64 {
        self.median(num) / self.median(den)
    }
    /// The main ratio (the last one).
    fn ratio(&self) -> f64 {
        let (_, n, d) = *self.ratios.last().expect("every row has a ratio");
        self.ratio_value(n, d)
    }
    fn say(&self) {
        let show = |role: Role| {
            self.figures
                .iter()
                .filter(|f| f.role == role)
                .map(|f| format!("{} {}", f.key, f.show(f.stat().median)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let base = [show(Role::Baseline), show(Role::Reference)]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "  {:<24} ours: {:<40} baseline: {:<44} ratio {:.3}",
            self.case,
            show(Role::Ours),
            base,
            self.ratio()
        );
    }
}

fn launch_return(ctx: &Ctx) -> Vec<Row> {
    let (plain, uthread) = ctx.wanted("launch_return");
    if !plain && !uthread {
        return Vec::new();
    }
    let (d, s) = (ctx.driver, ctx.s);
    let (mut ours_p, mut ours_u, mut pthread, mut fork) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    {
        let mut sides: Vec<Box<dyn FnMut(usize) + '_>> = Vec::new();
        let n = s.launches;
        if plain {
            sides.push(Box::new(|rep| keep(rep, &mut ours_p, d.run(move || launch_return_round(n)))));
        }
        if uthread {
            sides.push(Box::new(|rep| keep(rep, &mut ours_u, launch_return_round(n))));
        }
        let (np, nf) = (s.pthreads, s.forks);
        sides.push(Box::new(|rep| keep(rep, &mut pthread, d.run(move || pthread_round(np, 1)))));
        sides.push(Box::new(|rep| keep(rep, &mut fork, d.run(move || fork_round(nf)))));
        run_rounds(s.reps, sides);
    }
    [(On::Plain, ours_p), (On::Uthread, ours_u)]
        .into_iter()
        .filter(|(_, ours)| !ours.is_empty())
        .map(|(on, ours)| Row {
            case: format!("launch_return{}", on.suffix()),
            on,
            figures: vec![
                Figure::new("ns", ours.iter().map(|r| r.0).collect(), Role::Ours, 1),
                Figure::new("pthread_ns", pthread.clone(), Role::Baseline, 1),
                Figure::new("fork_ns", fork.clone(), Role::Baseline, 1),
                Figure::count("timeouts", ours.iter().map(|r| r.1 as f64).collect()),
            ],
            ratios: vec![("fork_ratio", "fork_ns", "ns"), ("ratio", "pthread_ns", "ns")],
            cost_bars: Some(("ns", vec!["pthread_ns", "fork_ns"])),
            overshoot: None,
        })
        .collect()
}

fn timeout_resume(ctx: &Ctx) -> Vec<Row> {
    let (plain, uthread) = ctx.wanted("timeout_resume");
    if !plain && !uthread {
        return Vec::new();
    }
    let (d, s) = (ctx.driver, ctx.s);
    let steps = steps_for(SLICE * s.preemptions as u32, ctx.ns_per_step);
    let (mut ours_p, mut ours_u, mut signal, mut timer) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    {
        let mut sides: Vec<Box<dyn FnMut(usize) + '_>> = Vec::new();
        if plain {
            sides.push(Box::new(|rep| keep(rep, &mut ours_p, d.run(move || timeout_resume_round(steps)))));
        }
        if uthread {
            sides.push(Box::new(|rep| keep(rep, &mut ours_u, timeout_resume_round(steps))));
        }
        let n = s.signals;
        sides.push(Box::new(|rep| keep(rep, &mut signal, d.run(move || signal_round(n)))));
        sides.push(Box::new(|rep| keep(rep, &mut timer, d.run(move || timer_interrupt_round(steps)))));
        run_rounds(s.reps, sides);
    }
    [(On::Plain, ours_p), (On::Uthread, ours_u)]
        .into_iter()
        .filter(|(_, ours)| !ours.is_empty())
        .map(|(on, ours)| {
            let per = |f: fn(&Preempt) -> f64| ours.iter().map(f).collect::<Vec<f64>>();
            Row {
                case: format!("timeout_resume{}", on.suffix()),
                on,
                figures: vec![
                    Figure::new("ns_per_preemption", per(Preempt::ns_per_preemption), Role::Ours, 1),
                    Figure::new("cpu_ns_per_preemption", per(Preempt::cpu_ns_per_preemption), Role::Other, 1),
                    Figure::new("preemptions", per(|p| p.preemptions as f64), Role::Other, 0),
                    Figure::new("signal_ns", signal.clone(), Role::Baseline, 1),
                    Figure::new("timer_ns", timer.clone(), Role::Baseline, 1),
                ],
                ratios: vec![
                    ("timer_ratio", "timer_ns", "ns_per_preemption"),
                    ("ratio", "signal_ns", "ns_per_preemption"),
                ],
                cost_bars: Some(("ns_per_preemption", vec!["signal_ns", "timer_ns"])),
                overshoot: None,
            }
        })
        .collect()
}

fn cancel(ctx: &Ctx) -> Vec<Row> {
    let (plain, uthread) = ctx.wanted("cancel");
    if !plain && !uthread {
        return Vec::new();
    }
    let (d, s) = (ctx.driver, ctx.s);
    let (mut ours_p, mut ours_u) = (Vec::new(), Vec::new());
    {
        let mut sides: Vec<Box<dyn FnMut(usize) + '_>> = Vec::new();
        let n = s.cancels;
        if plain {
            sides.push(Box::new(|rep| keep(rep, &mut ours_p, d.run(move || cancel_round(n)))));
        }
        if uthread {
            sides.push(Box::new(|rep| keep(rep, &mut ours_u, cancel_round(n))));
        }
        run_rounds(s.reps, sides);
    }
    [(On::Plain, ours_p), (On::Uthread, ours_u)]
        .into_iter()
        .filter(|(_, ours)| !ours.is_empty())
        .map(|(on, ours)| Row {
            case: format!("cancel{}", on.suffix()),
            on,
            figures: vec![
                Figure::new("ns", ours.iter().map(|r| r.0).collect(), Role::Ours, 1),
                Figure::new("p99_ns", ours.iter().map(|r| r.1).collect(), Role::Other, 1),
                Figure::count("abandoned", ours.iter().map(|r| r.2 as f64).collect()),
                Figure::new("libinger_ns", vec![LIBINGER_CANCEL_NS], Role::Reference, 0),
            ],
            ratios: vec![("ratio", "libinger_ns", "ns")],
            cost_bars: Some(("ns", vec!["libinger_ns"])),
            overshoot: None,
        })
        .collect()
}

/// Figures of a set of overshoot rounds, under `prefix` (`""`, `"baseline_"`,
/// `"overshoot_"`); the keys are static strings, hence the table.
fn lateness_figures(rounds: &[Lateness], prefix: &str, role: Role, with_max: bool) -> Vec<Figure> {
    let keys: [&'static str; 3] = match prefix {
        "" => ["p50_us", "p99_us", "max_us"],
        "baseline_" => ["baseline_p50_us", "baseline_p99_us", "baseline_max_us"],
        "overshoot_" => ["overshoot_p50_us", "overshoot_p99_us", "overshoot_max_us"],
        _ => unreachable!("a known prefix"),
    };
    let mut f = vec![
        Figure::new(keys[0], rounds.iter().map(|l| l.p50_us).collect(), role, 1),
        Figure::new(keys[1], rounds.iter().map(|l| l.p99_us).collect(), role, 1),
    ];
    if with_max {
        f.push(Figure::new(keys[2], rounds.iter().map(|l| l.max_us).collect(), Role::Other, 1));
        f.push(Figure::count("missed", rounds.iter().map(|l| l.missed).collect()));
    }
    f
}

fn overshoot(ctx: &Ctx) -> Vec<Row> {
    let mut rows = Vec::new();
    for (k, &(case, budget)) in OVERSHOOT.iter().enumerate() {
        let (plain, uthread) = ctx.wanted(case);
        if !plain && !uthread {
            continue;
        }
        let (d, s, nps) = (ctx.driver, ctx.s, ctx.ns_per_step);
        let trials = s.overshoot_trials[k];
        let (mut ours_p, mut ours_u, mut timer) = (Vec::new(), Vec::new(), Vec::new());
        {
            let mut sides: Vec<Box<dyn FnMut(usize) + '_>> = Vec::new();
            if plain {
                sides.push(Box::new(|rep| {
                    keep(rep, &mut ours_p, d.run(move || overshoot_round(budget, trials, nps)))
                }));
            }
            if uthread {
                sides.push(Box::new(|rep| keep(rep, &mut ours_u, overshoot_round(budget, trials, nps))));
            }
            sides.push(Box::new(|rep| keep(rep, &mut timer, d.run(move || timer_round(budget, trials)))));
            run_rounds(s.reps, sides);
        }
        let group = &case["overshoot_".len()..];
        for (on, ours) in [(On::Plain, ours_p), (On::Uthread, ours_u)] {
            if ours.is_empty() {
                continue;
            }
            let mut figures = lateness_figures(&ours, "", Role::Ours, true);
            figures.extend(lateness_figures(&timer, "baseline_", Role::Baseline, false));
            rows.push(Row {
                case: format!("{case}{}", on.suffix()),
                on,
                figures,
                ratios: vec![("ratio", "baseline_p99_us", "p99_us")],
                cost_bars: None,
                overshoot: Some((group, ("p50_us", "p99_us"))),
            });
        }
    }
    rows
}

fn nested(ctx: &Ctx) -> Vec<Row> {
    if !ctx.filter.wants("nested") {
        return Vec::new();
    }
    let (d, s, nps) = (ctx.driver, ctx.s, ctx.ns_per_step);
    let trials = s.overshoot_trials[1];
    let (mut launch, mut pthread, mut late, mut timer) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    {
        let (n, np) = (s.nested_launches, s.pthreads);
        let sides: Vec<Box<dyn FnMut(usize) + '_>> = vec![
            Box::new(|rep| keep(rep, &mut launch, d.run(move || nested_launch_round(n)))),
            Box::new(|rep| keep(rep, &mut pthread, d.run(move || pthread_round(np, DEPTH)))),
            Box::new(|rep| keep(rep, &mut late, d.run(move || nested_overshoot_round(trials, nps)))),
            Box::new(|rep| keep(rep, &mut timer, d.run(move || timer_round(NESTED_OUTER, trials)))),
        ];
        run_rounds(s.reps, sides);
    }
    let mut figures = vec![
        Figure::new("depth", vec![DEPTH as f64], Role::Other, 0),
        Figure::new("ns", launch.iter().map(|r| r.0).collect(), Role::Ours, 1),
        Figure::new("pthread_ns", pthread, Role::Baseline, 1),
        Figure::count("timeouts", launch.iter().map(|r| r.1 as f64).collect()),
    ];
    figures.extend(lateness_figures(&late, "overshoot_", Role::Other, true));
    figures.extend(lateness_figures(&timer, "baseline_", Role::Other, false));
    vec![Row {
        case: "nested".into(),
        on: On::Plain,
        figures,
        ratios: vec![
            ("overshoot_ratio", "baseline_p99_us", "overshoot_p99_us"),
            ("ratio", "pthread_ns", "ns"),
        ],
        cost_bars: Some(("ns", vec!["pthread_ns"])),
        overshoot: Some(("nested, outer 100us", ("overshoot_p50_us", "overshoot_p99_us"))),
    }]
}

// ---------------------------------------------------------------------------------------
// Output.

fn header(m: &Machine, mode: Mode, s: &Settings) -> String {
    m.header(mode.name(), &format!("{} rounds per side, medians over rounds", s.reps))
}

fn result_line(r: &Row) -> String {
    let mut line = format!("RESULT timed case={}", r.case);
    for f in &r.figures {
        let _ = write!(line, " {}={}", f.key, f.show(f.stat().median));
    }
    for &(key, n, d) in &r.ratios {
        let _ = write!(line, " {key}={:.3}", r.ratio_value(n, d));
    }
    line
}

fn table(rows: &[Row]) -> String {
    let cell = |r: &Row, roles: &[Role]| {
        r.figures
            .iter()
            .filter(|f| roles.contains(&f.role))
            .map(|f| {
                let st = f.stat();
                if f.rounds.len() > 1 && f.role != Role::Reference && !f.total {
                    format!("{} {} ({}-{})", f.key, f.show(st.median), f.show(st.min), f.show(st.max))
                } else {
                    format!("{} {}", f.key, f.show(st.median))
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut t = String::new();
    let _ = writeln!(t, "| case | runs on | parlib-rs (min-max) | baseline (min-max) | ratio | also |");
    let _ = writeln!(t, "|---|---|---|---|---:|---|");
    for r in rows {
        let mut also = vec![cell(r, &[Role::Other])];
        for &(key, n, d) in &r.ratios[..r.ratios.len() - 1] {
            also.push(format!("{key} {:.3}", r.ratio_value(n, d)));
        }
        let also = also.into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join("; ");
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {:.3} | {} |",
            r.case,
            r.on.name(),
            cell(r, &[Role::Ours]),
            cell(r, &[Role::Baseline, Role::Reference]),
            r.ratio(),
            also
        );
    }
    t
}

/// Every round of every measured figure: `case,key,round,value`.
fn csv(rows: &[Row]) -> String {
    let mut csv = String::from("case,key,round,value\n");
    for r in rows {
        for f in r.figures.iter().filter(|f| f.role != Role::Reference && f.key != "depth") {
            for (i, v) in f.rounds.iter().enumerate() {
                let _ = writeln!(csv, "{},{},{i},{v}", r.case, f.key);
            }
        }
    }
    csv
}

/// The short name of a case in the plots: `launch`, `preempt`, `cancel`, `nested`, with
/// `/u` for a uthread.
fn short(r: &Row) -> String {
    let base = match r.case.trim_end_matches("_uthread") {
        "launch_return" => "launch",
        "timeout_resume" => "preempt",
        other => other,
    };
    format!("{base}{}", if r.on == On::Uthread { "/u" } else { "" })
}

const OURS_COLOR: plotters::style::RGBColor = plotters::style::RGBColor(0x1f, 0x77, 0xb4);
const UTHREAD_COLOR: plotters::style::RGBColor = plotters::style::RGBColor(0x9e, 0xc7, 0xe8);
const BASELINE_COLOR: plotters::style::RGBColor = plotters::style::RGBColor(0xd6, 0x27, 0x28);
const FORK_COLOR: plotters::style::RGBColor = plotters::style::RGBColor(0xff, 0x7f, 0x0e);
const PUBLISHED_COLOR: plotters::style::RGBColor = plotters::style::RGBColor(0x99, 0x99, 0x99);

/// `timed.svg`: per case, ns per operation of ours (blue) and its baselines (red, orange;
/// grey for the published libinger figure), median with min-max whiskers, log scale.
fn plot_costs(path: &std::path::Path, head: &str, rows: &[Row]) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    // Per row: bars of (slot, color, stat), slot 0 ours, 1 and 2 baselines.
    struct Bar {
        slot: usize,
        series: usize,
        stat: Stat,
    }
    let rows: Vec<&Row> = rows.iter().filter(|r| r.cost_bars.is_some()).collect();
    if rows.is_empty() {
        return Ok(());
    }
    let bars: Vec<Vec<Bar>> = rows
        .iter()
        .map(|r| {
            let (ours, bases) = r.cost_bars.as_ref().expect("filtered");
            let mut v = vec![Bar { slot: 0, series: 0, stat: r.figure(ours).expect("ours").stat() }];
            for (i, key) in bases.iter().enumerate() {
                let f = r.figure(key).expect("a baseline");
                let series = if f.role == Role::Reference { 3 } else { 1 + i };
                v.push(Bar { slot: 1 + i, series, stat: f.stat() });
            }
            v
        })
        .collect();
    let all = bars.iter().flatten();
    let lo = all.clone().map(|b| b.stat.min).fold(f64::INFINITY, f64::min).max(1.0) / 2.0;
    let hi = all.map(|b| b.stat.max).fold(0.0, f64::max) * 300.0; // room for the legend
    let names: Vec<String> = rows.iter().map(|r| format!("{} ×{:.3}", short(r), r.ratio())).collect();
    let frame = report::Frame {
        title: "timed: ns per operation, parlib-rs vs baselines (median, min-max); ×: ratio, above 1 wins",
        title_size: 16,
        band: 70,
        head,
        names: &names,
        y_desc: "ns per operation (log)",
        y: (lo, hi),
        legend: SeriesLabelPosition::UpperLeft,
    };
    let series: [(&str, RGBColor); 4] = [
        ("parlib-rs: launch / preemption / cancel / 3 nested launches (/u: on a uthread)", OURS_COLOR),
        ("baseline: pthread create+join / tgkill round trip / 3-thread chain", BASELINE_COLOR),
        ("baseline: fork+waitpid / POSIX timer interruption of a spinning chain", FORK_COLOR),
        ("libinger cancel, published (Boucher et al. 2020), not measured", PUBLISHED_COLOR),
    ];
    const HALF: f64 = 0.12;
    let place = |case: usize, slot: usize| case as f64 + 0.27 * (slot as f64 - 1.0);
    report::bar_chart(path, &frame, |chart| {
        for (k, &(label, color)) in series.iter().enumerate() {
            let mine: Vec<(f64, Stat)> = bars
                .iter()
                .enumerate()
                .flat_map(|(i, v)| {
                    v.iter().filter(|b| b.series == k).map(move |b| (place(i, b.slot), b.stat))
                })
                .collect();
            if mine.is_empty() {
                continue;
            }
            chart
                .draw_series(
                    mine.iter()
                        .map(|(x, s)| Rectangle::new([(x - HALF, lo), (x + HALF, s.median)], color.filled())),
                )?
                .label(label)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
            chart.draw_series(
                mine.iter()
                    .map(|(x, s)| PathElement::new(vec![(*x, s.min), (*x, s.max)], BLACK.stroke_width(1))),
            )?;
            chart.draw_series(mine.iter().map(|(x, s)| {
                Text::new(format!("{:.0}", s.median), (x - HALF, s.max * 1.15), ("sans-serif", 10))
            }))?;
        }
        Ok(())
    })
}

/// `timed_overshoot.svg`: per budget, the p99 overshoot of ours on a plain thread and on a
/// uthread and of the POSIX timer (bars: median, min-max whiskers), p50 as crosses; ns,
/// log scale.
fn plot_overshoot(
    path: &std::path::Path,
    head: &str,
    rows: &[Row],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    /// One budget: (p50, p99) in ns of ours on a plain thread, ours on a uthread, and
    /// the baseline; and the plain thread's ratio.
    struct Group {
        name: &'static str,
        bars: [Option<(Stat, Stat)>; 3],
        ratio: f64,
    }
    // In the order the rows came.
    let mut groups: Vec<Group> = Vec::new();
    for r in rows {
        let Some((group, (p50, p99))) = r.overshoot else { continue };
        let ns = |key: &str| {
            r.figure(key).map(|f| {
                let s = f.stat();
                let floor = |v: f64| (v * 1000.0).max(1.0);
                Stat { median: floor(s.median), min: floor(s.min), max: floor(s.max) }
            })
        };
        let at = match groups.iter().position(|g| g.name == group) {
            Some(i) => i,
            None => {
                groups.push(Group { name: group, bars: [None, None, None], ratio: f64::NAN });
                groups.len() - 1
            }
        };
        let g = &mut groups[at];
        let slot = if r.on == On::Plain { 0 } else { 1 };
        g.bars[slot] = ns(p50).zip(ns(p99));
        g.bars[2] = ns("baseline_p50_us").zip(ns("baseline_p99_us"));
        if r.on == On::Plain {
            g.ratio = r.ratio_value("baseline_p99_us", p99);
        }
    }
    if groups.is_empty() {
        return Ok(());
    }
    let stats = groups.iter().flat_map(|g| g.bars.iter().flatten());
    let lo = stats.clone().map(|(p50, p99)| p50.min.min(p99.min)).fold(f64::INFINITY, f64::min) / 2.0;
    let hi = stats.map(|(_, p99)| p99.max).fold(0.0, f64::max) * 30.0; // room for the legend
    let names: Vec<String> = groups
        .iter()
        .map(|g| if g.ratio.is_nan() { g.name.to_string() } else { format!("{} ×{:.2}", g.name, g.ratio) })
        .collect();
    let frame = report::Frame {
        title:
            "timed: overshoot past the deadline, p99 bars and p50 crosses (median, min-max), lower is better",
        title_size: 16,
        band: 70,
        head,
        names: &names,
        y_desc: "overshoot, ns (log)",
        y: (lo.max(1.0), hi),
        legend: SeriesLabelPosition::UpperLeft,
    };
    let lo = frame.y.0;
    let series: [(&str, RGBColor); 3] = [
        ("parlib-rs timed call, plain thread (×: POSIX timer p99 ÷ this p99)", OURS_COLOR),
        ("parlib-rs timed call, uthread", UTHREAD_COLOR),
        ("POSIX timer + RT signal, plain thread", BASELINE_COLOR),
    ];
    const HALF: f64 = 0.12;
    report::bar_chart(path, &frame, |chart| {
        for (k, &(label, color)) in series.iter().enumerate() {
            let mine: Vec<(f64, Stat, Stat)> = groups
                .iter()
                .enumerate()
                .filter_map(|(i, g)| {
                    g.bars[k].map(|(p50, p99)| (i as f64 + 0.27 * (k as f64 - 1.0), p50, p99))
                })
                .collect();
            if mine.is_empty() {
                continue;
            }
            chart
                .draw_series(mine.iter().map(|(x, _, p99)| {
                    Rectangle::new([(x - HALF, lo), (x + HALF, p99.median)], color.filled())
                }))?
                .label(label)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
            chart.draw_series(mine.iter().map(|(x, _, p99)| {
                PathElement::new(vec![(*x, p99.min), (*x, p99.max)], BLACK.stroke_width(1))
            }))?;
            chart.draw_series(mine.iter().map(|(x, _, p99)| {
                Text::new(format!("{:.0}", p99.median), (x - HALF, p99.max * 1.15), ("sans-serif", 10))
            }))?;
            let crosses = chart.draw_series(
                mine.iter().map(|(x, p50, _)| Cross::new((*x, p50.median), 4, BLACK.stroke_width(2))),
            )?;
            if k == 0 {
                crosses
                    .label("p50 (median)")
                    .legend(|(x, y)| Cross::new((x + 6, y), 4, BLACK.stroke_width(2)));
            }
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = Mode::from_args(&args);
    let settings = mode.pick(&SMOKE, &QUICK, &FULL);
    let filter = harness::CaseFilter::new(&args, &CASES);
    let machine = Machine::probe();
    start_watchdog(settings.limit);
    install_handlers();
    let busy_before = machine::busy_percent(Duration::from_millis(500));
    let driver = Driver::start();

    common::start(); // from here on, `main` is a uthread on vcore 0
    parlib::alarms::init().expect("parlib_alarms::init");
    let head = header(&machine, mode, settings);
    println!("timed: preemptible timed calls (parlib-rs) vs pthread_create, fork, signals and POSIX timers");
    print!("{head}");
    println!("  other load: the CPUs were {busy_before:.0}% busy in the 0.5 s before the run");
    let ns_per_step = driver.run(calibrate);
    println!("  hash chain: {ns_per_step:.3} ns per step (the spinning calls' work)");
    println!();

    let ctx = Ctx { driver: &driver, s: settings, filter: &filter, ns_per_step };
    let started = Instant::now();
    let mut rows = Vec::new();
    for family in [launch_return, timeout_resume, cancel, overshoot, nested] {
        let new = family(&ctx);
        for r in &new {
            r.say();
            if r.figure("missed").is_some_and(|f| f.rounds.iter().any(|&m| m > 0.0)) {
                eprintln!("timed: {}: some trials were never preempted (missed > 0)", r.case);
            }
        }
        rows.extend(new);
    }
    println!("  ({:.1} s of measurements)", started.elapsed().as_secs_f64());

    let note = format!(
        "Medians over the rounds (min-max over them); ratio = baseline ÷ parlib-rs, above 1 \
         parlib-rs wins. Plain-thread sides and every baseline run on one plain Linux thread \
         pinned to vcore 0's CPU while every vcore is parked; `_uthread` cases run on the \
         `main` uthread on vcore 0 and are compared with the plain-thread baselines of the \
         same rounds. `cancel` is compared with libinger's published {:.1} ms, not a \
         same-run figure. Other load: the CPUs were {busy_before:.0}% busy in the 0.5 s \
         before the run.",
        LIBINGER_CANCEL_NS / 1e6
    );
    let report = Report {
        bench: "timed",
        title: "preemptible timed calls vs pthread_create, fork, signals and POSIX timers",
        head: &head,
        note: &note,
        table: table(&rows),
        csv: csv(&rows),
        result_lines: rows.iter().map(result_line).collect(),
        result_lines_in_md: true,
    };
    report::finish(mode, &report, |path| {
        plot_costs(path, &head, &rows)?;
        plot_overshoot(&path.with_file_name("timed_overshoot.svg"), &head, &rows)
    });
}
