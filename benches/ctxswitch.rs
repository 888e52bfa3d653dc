//! Comparison benchmark: yield-to-yield switches of uthreads against Linux threads, in the
//! same process and the same run (`DESIGN.md` §12).
//!
//! For C cores (1, and all the process may use) and T threads per core (1 and 8):
//!
//! * **uthreads**: T TLS-backed uthreads on each of vcores `0..C` (never migrating), each
//!   calling `yield_with(paused)` in a loop under the FIFO scheduler of `common/`;
//!   with C = 1 the other vcores stay parked;
//! * **Linux threads**: T `std` threads pinned with `sched_setaffinity` to each of the
//!   same C CPUs, each calling `sched_yield()` in a loop, while every vcore is parked.
//!
//! Both sides use the same *window*: every worker announces itself and spins (yielding)
//! on a start flag; a timekeeper thread raises it once all have arrived (and the vcores
//! that must be idle are parked), sleeps for the window, then raises the stop flag. Each
//! worker counts its yields between the two flags. ns per switch per core =
//! elapsed x C / total yields; switches/s = total yields / elapsed.
//!
//! With T = 1 nothing else is runnable on a core: a Linux thread's `sched_yield` finds
//! no other thread and returns (a system call round trip, no switch), and a uthread's
//! yield goes through its scheduler back to itself. Those cases (`c1t1`, `callt1`)
//! measure a *yield*, not a switch, and are labelled so (`measures=yield`); T = 8
//! measures switches.
//!
//! Each configuration runs one untimed warm-up window per side, then R repetitions
//! (uthreads and Linux alternating which goes first); figures are medians over the R.
//! The ratio is linux_ns / uthread_ns: above 1 means uthreads switch faster.
//!
//! Run: `cargo bench --bench ctxswitch -- --quick` (under 10 s on 2 cores; prints only) or
//! `cargo bench --bench ctxswitch` (about 40 s; also writes `results.md`, `results.csv`
//! and `ctxswitch.svg` under `<target>/parlib-bench/ctxswitch/`). The output ends with
//! one `RESULT ctxswitch case=...` line per configuration (see `BENCHMARKS.md`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use harness::{Mode, STALL_WARNING};
use machine::Machine;
use report::{Report, Stat};

/// How long one run goes on, and how often.
struct Settings {
    /// Measured repetitions per configuration and side; odd, so the median is a sample.
    reps: usize,
    /// Length of one measured window.
    window: Duration,
    /// Length of the untimed warm-up window per configuration and side.
    warmup: Duration,
}

/// `--quick`: 5 repetitions of 100 ms (4 configurations x 2 sides x (5 x 100 + 30) ms is
/// about 4.3 s of windows): a 2-core VM's run-to-run noise is a few percent at 100 ms,
/// and 5 is the smallest odd count whose median ignores two outliers.
const QUICK: Settings =
    Settings { reps: 5, window: Duration::from_millis(100), warmup: Duration::from_millis(30) };

/// Full run: 11 repetitions of 400 ms (about 36 s of windows), well under the 3-minute
/// budget, with a median robust to five outliers.
const FULL: Settings =
    Settings { reps: 11, window: Duration::from_millis(400), warmup: Duration::from_millis(100) };

/// Without `--bench` (`cargo test --benches`, or the binary run by hand): one short
/// window per side and configuration, to check that everything runs, like criterion's
/// test mode. Prints no RESULT lines and writes no files.
const SMOKE: Settings =
    Settings { reps: 1, window: Duration::from_millis(10), warmup: Duration::from_millis(5) };

/// Threads per core measured: 1 (a switch back to the same thread: the bare cost of the
/// call) and 8 (the and the reference figures' operating point).
const THREADS_PER_CORE: [usize; 2] = [1, 8];

// ---------------------------------------------------------------------------------------
// One measurement window, shared by the driver (`main` uthread), the timekeeper and the
// workers of both sides. Only one window exists at a time; the driver resets it between
// windows, when nobody else touches it.

struct Window {
    /// Workers that have announced themselves.
    arrived: AtomicUsize,
    /// Raised by the timekeeper: start counting.
    go: AtomicBool,
    /// Raised by the timekeeper: stop counting.
    stop: AtomicBool,
    /// Tells the uthread workers to exit instead of running a window.
    quit: AtomicBool,
    /// Yields counted between `go` and `stop`, summed over the workers.
    switches: AtomicU64,
    /// Time between raising `go` and raising `stop`.
    elapsed_ns: AtomicU64,
    /// The driver waits here for the window to end.
    done: Completion,
}

static WINDOW: Window = Window {
    arrived: AtomicUsize::new(0),
    go: AtomicBool::new(false),
    stop: AtomicBool::new(false),
    quit: AtomicBool::new(false),
    switches: AtomicU64::new(0),
    elapsed_ns: AtomicU64::new(0),
    done: Completion::new(),
};

impl Window {
    fn reset(&self, arrivals_to_wait_for: usize) {
        self.arrived.store(0, Ordering::Relaxed);
        self.go.store(false, Ordering::Relaxed);
        self.stop.store(false, Ordering::Relaxed);
        self.switches.store(0, Ordering::Relaxed);
        self.elapsed_ns.store(0, Ordering::Relaxed);
        self.done.reset(arrivals_to_wait_for);
    }
}

/// What the driver asks of the timekeeper.
enum Job {
    /// Time a window for `workers` uthreads; vcores from `idle_from` on must be parked.
    Uthreads { workers: usize, idle_from: usize, window: Duration },
    /// Start `cores` x `per_core` pinned Linux threads, time a window, join them, and
    /// arrive at `WINDOW.done`.
    Linux { cores: usize, per_core: usize, window: Duration },
}

/// The timekeeper: a plain Linux thread, started before `lib_init` so that it and the
/// threads it starts carry no vcore pin. It sleeps except for a few polls per window.
fn timekeeper(jobs: mpsc::Receiver<Job>) {
    for job in jobs {
        match job {
            Job::Uthreads { workers, idle_from, window } => time_window(workers, idle_from, window),
            Job::Linux { cores, per_core, window } => {
                let cpus: Vec<usize> = (0..cores).map(|v| vcore::cpu_of(v).expect("vcore exists")).collect();
                let threads: Vec<_> = (0..cores * per_core)
                    .map(|k| {
                        let cpu = cpus[k / per_core];
                        std::thread::spawn(move || linux_worker(cpu))
                    })
                    .collect();
                time_window(cores * per_core, 0, window);
                for t in threads {
                    t.join().expect("a Linux worker panicked");
                }
                WINDOW.done.arrive();
            }
        }
    }
}

/// Waits until `workers` have arrived and vcores `idle_from..` are parked, then raises
/// `go`, sleeps `window`, and raises `stop`.
fn time_window(workers: usize, idle_from: usize, window: Duration) {
    harness::wait_until(
        || {
            WINDOW.arrived.load(Ordering::Acquire) == workers
                && (idle_from..vcore::max_vcores()).all(harness::is_parked)
        },
        || {
            eprintln!(
                "ctxswitch: window not ready after {STALL_WARNING:?}: {}/{workers} workers, vcores parked: {:?}",
                WINDOW.arrived.load(Ordering::Relaxed),
                (0..vcore::max_vcores()).map(harness::is_parked).collect::<Vec<_>>()
            )
        },
    );
    let start = Instant::now();
    WINDOW.go.store(true, Ordering::Release);
    std::thread::sleep(window);
    WINDOW.elapsed_ns.store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    WINDOW.stop.store(true, Ordering::Release); // publishes elapsed_ns too
}

/// A Linux-thread worker: pinned to `cpu`, yields with `sched_yield` until `stop`.
fn linux_worker(cpu: usize) {
    harness::pin_to(cpu);
    WINDOW.arrived.fetch_add(1, Ordering::Release);
    while !WINDOW.go.load(Ordering::Acquire) {
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
    let mut n = 0u64;
    while !WINDOW.stop.load(Ordering::Acquire) {
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
        n += 1;
    }
    WINDOW.switches.fetch_add(n, Ordering::Relaxed); // published by the join
}

// ---------------------------------------------------------------------------------------
// The uthread side.

/// `cores` x `per_core` TLS-backed uthread workers, T on each of vcores `0..cores`, alive
/// for all the windows of one configuration (so no backing thread is created or exits
/// during a measurement); each waits on its gate between windows.
struct Team {
    gates: Vec<Arc<Gate>>,
    cores: usize,
}

impl Team {
    fn spawn(cores: usize, per_core: usize) -> Team {
        let mut gates = Vec::new();
        for k in 0..cores * per_core {
            let gate = Arc::new(Gate::new());
            let g = gate.clone();
            common::spawn_on(k / per_core, TlsMode::Backed, move || loop {
                g.pass(); // blocked here between windows
                if WINDOW.quit.load(Ordering::Relaxed) {
                    WINDOW.done.arrive();
                    return;
                }
                WINDOW.arrived.fetch_add(1, Ordering::Release);
                while !WINDOW.go.load(Ordering::Acquire) {
                    common::yield_now();
                }
                let mut n = 0u64;
                while !WINDOW.stop.load(Ordering::Acquire) {
                    common::yield_now();
                    n += 1;
                }
                WINDOW.switches.fetch_add(n, Ordering::Relaxed); // published by arrive
                WINDOW.done.arrive();
            });
            gates.push(gate);
        }
        Team { gates, cores }
    }

    /// One window on the uthread side.
    fn measure(&self, jobs: &mpsc::Sender<Job>, window: Duration) -> Sample {
        WINDOW.reset(self.gates.len());
        jobs.send(Job::Uthreads { workers: self.gates.len(), idle_from: self.cores, window })
            .expect("timekeeper alive");
        for g in &self.gates {
            g.open(); // queued on its home vcore, which is requested if it parked
        }
        WINDOW.done.wait(); // main blocks; vcore 0 runs its workers
        Sample::take()
    }

    /// Lets every worker exit and waits until they have.
    fn finish(self) {
        WINDOW.reset(self.gates.len());
        WINDOW.quit.store(true, Ordering::Relaxed);
        for g in &self.gates {
            g.open();
        }
        WINDOW.done.wait();
        WINDOW.quit.store(false, Ordering::Relaxed);
    }
}

/// One window on the Linux side. `main` blocks meanwhile, so vcore 0 parks like the rest.
fn measure_linux(jobs: &mpsc::Sender<Job>, cores: usize, per_core: usize, window: Duration) -> Sample {
    WINDOW.reset(1); // the timekeeper arrives once it has joined the threads
    jobs.send(Job::Linux { cores, per_core, window }).expect("timekeeper alive");
    WINDOW.done.wait();
    Sample::take()
}

// ---------------------------------------------------------------------------------------
// Results.

/// One window's outcome.
#[derive(Clone, Copy)]
struct Sample {
    elapsed_ns: u64,
    switches: u64,
}

impl Sample {
    fn take() -> Sample {
        let s = Sample {
            elapsed_ns: WINDOW.elapsed_ns.load(Ordering::Relaxed),
            switches: WINDOW.switches.load(Ordering::Relaxed),
        };
        assert!(s.switches > 0, "a window counted no switches");
        s
    }
    fn ns_per_switch_per_core(&self, cores: usize) -> f64 {
        self.elapsed_ns as f64 * cores as f64 / self.switches as f64
    }
}

struct CaseResult {
    case: String,
    cores: usize,
    per_core: usize,
    uthread: Vec<Sample>,
    linux: Vec<Sample>,
}

impl CaseResult {
    fn stat(&self, samples: &[Sample]) -> Stat {
        Stat::of(samples.iter().map(|s| s.ns_per_switch_per_core(self.cores)).collect())
    }
    fn uthread_ns(&self) -> Stat {
        self.stat(&self.uthread)
    }
    fn linux_ns(&self) -> Stat {
        self.stat(&self.linux)
    }
    /// Total switches per second across the cores, from a median ns per switch per core.
    fn per_s(&self, ns: f64) -> f64 {
        self.cores as f64 * 1e9 / ns
    }
    fn ratio(&self) -> f64 {
        self.linux_ns().median / self.uthread_ns().median
    }
    /// What a loop iteration is (module docs).
    fn measures(&self) -> &'static str {
        harness::yield_measures(self.per_core)
    }
}

fn run_case(jobs: &mpsc::Sender<Job>, s: &Settings, cores: usize, per_core: usize) -> CaseResult {
    let case = format!("c{}t{per_core}", if cores == 1 { "1".to_string() } else { "all".to_string() });
    let team = Team::spawn(cores, per_core);
    // Warm-up, untimed: first runs of fresh stacks, the TLS pool refilling, caches.
    team.measure(jobs, s.warmup);
    measure_linux(jobs, cores, per_core, s.warmup);
    // The two sides take turns going first, so a slow drift of the machine hits both.
    let mut sides = harness::alternate(
        s.reps,
        &mut [&mut |_| team.measure(jobs, s.window), &mut |_| measure_linux(jobs, cores, per_core, s.window)],
    );
    let (linux, uthread) = (sides.pop().unwrap(), sides.pop().unwrap());
    team.finish();
    CaseResult { case, cores, per_core, uthread, linux }
}

// ---------------------------------------------------------------------------------------
// Output.

fn header(m: &Machine, mode: Mode, s: &Settings) -> String {
    m.header(mode.name(), &format!("{} reps x {} ms windows, medians", s.reps, s.window.as_millis()))
}

fn table(results: &[CaseResult]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| case | measures | cores | threads/core | uthread ns/op/core (min-max) | linux ns/op/core (min-max) | uthread ops/s | linux ops/s | ratio |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let (u, l) = (r.uthread_ns(), r.linux_ns());
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {:.1} ({:.1}-{:.1}) | {:.1} ({:.1}-{:.1}) | {:.3e} | {:.3e} | {:.2} |",
            r.case,
            r.measures(),
            r.cores,
            r.per_core,
            u.median,
            u.min,
            u.max,
            l.median,
            l.min,
            l.max,
            r.per_s(u.median),
            r.per_s(l.median),
            r.ratio()
        );
    }
    t
}

fn result_line(r: &CaseResult) -> String {
    let (u, l) = (r.uthread_ns().median, r.linux_ns().median);
    format!(
        "RESULT ctxswitch case={} measures={} cores={} threads_per_core={} uthread_ns={:.1} linux_ns={:.1} \
         uthread_switches_per_s={:.0} linux_switches_per_s={:.0} ratio={:.2}",
        r.case,
        r.measures(),
        r.cores,
        r.per_core,
        u,
        l,
        r.per_s(u),
        r.per_s(l),
        r.ratio()
    )
}

/// Every window: one line per configuration, side and repetition.
fn csv(results: &[CaseResult]) -> String {
    let mut csv =
        String::from("case,cores,threads_per_core,side,rep,elapsed_ns,switches,ns_per_switch_per_core\n");
    for r in results {
        for (side, samples) in [("uthread", &r.uthread), ("linux", &r.linux)] {
            for (rep, s) in samples.iter().enumerate() {
                let _ = writeln!(
                    csv,
                    "{},{},{},{side},{rep},{},{},{:.3}",
                    r.case,
                    r.cores,
                    r.per_core,
                    s.elapsed_ns,
                    s.switches,
                    s.ns_per_switch_per_core(r.cores)
                );
            }
        }
    }
    csv
}

/// Grouped bars, log scale: median ns per switch per core, uthread vs Linux, per case,
/// with min-max whiskers and the median printed above each bar.
fn plot(
    path: &std::path::Path,
    head: &str,
    results: &[CaseResult],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    let uthread_color = RGBColor(0x1f, 0x77, 0xb4);
    let linux_color = RGBColor(0xd6, 0x27, 0x28);
    let stats: Vec<(Stat, Stat)> = results.iter().map(|r| (r.uthread_ns(), r.linux_ns())).collect();
    let lo = stats.iter().map(|(u, l)| u.min.min(l.min)).fold(f64::INFINITY, f64::min) / 2.0;
    let hi = stats.iter().map(|(u, l)| u.max.max(l.max)).fold(0.0, f64::max) * 3.0;
    let names: Vec<String> = results
        .iter()
        .map(|r| format!("{} ({}): {}x{}, ratio {:.1}", r.case, r.measures(), r.cores, r.per_core, r.ratio()))
        .collect();
    let frame = report::Frame {
        title: "ctxswitch: ns per yield or switch per core (median, min-max), lower is better",
        title_size: 20,
        band: 70,
        head,
        names: &names,
        y_desc: "ns per yield or switch per core (log)",
        y: (lo, hi),
        legend: SeriesLabelPosition::UpperLeft,
    };
    report::bar_chart(path, &frame, |chart| {
        for (side, color, offset) in [(0usize, uthread_color, -0.2f64), (1, linux_color, 0.2)] {
            let pick = |(u, l): &(Stat, Stat)| if side == 0 { *u } else { *l };
            chart
                .draw_series(stats.iter().enumerate().map(|(i, st)| {
                    let s = pick(st);
                    let x = i as f64 + offset;
                    Rectangle::new([(x - 0.17, lo), (x + 0.17, s.median)], color.filled())
                }))?
                .label(if side == 0 {
                    "uthreads (parlib-rs, TLS-backed)"
                } else {
                    "Linux threads (sched_yield)"
                })
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
            chart.draw_series(stats.iter().enumerate().map(|(i, st)| {
                let s = pick(st);
                let x = i as f64 + offset;
                PathElement::new(vec![(x, s.min), (x, s.max)], BLACK.stroke_width(1))
            }))?;
            chart.draw_series(stats.iter().enumerate().map(|(i, st)| {
                let s = pick(st);
                let x = i as f64 + offset - 0.12;
                Text::new(format!("{:.0}", s.median), (x, s.max * 1.15), ("sans-serif", 12))
            }))?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = Mode::from_args(&args);
    let settings = mode.pick(&SMOKE, &QUICK, &FULL);
    let machine = Machine::probe();

    let (jobs, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("ctxswitch-timekeeper".into())
        .spawn(move || timekeeper(rx))
        .expect("start the timekeeper thread");

    common::start(); // from here on, `main` is a uthread on vcore 0
    let all = common::usable_vcores();
    let head = header(&machine, mode, settings);
    println!("ctxswitch: yield-to-yield switch cost, uthreads (parlib-rs) vs Linux threads (sched_yield)");
    print!("{head}");
    println!();

    let mut core_counts = vec![1];
    if all > 1 {
        core_counts.push(all);
    }
    let mut results = Vec::new();
    for &cores in &core_counts {
        for per_core in THREADS_PER_CORE {
            let r = run_case(&jobs, settings, cores, per_core);
            println!(
                "  {:<7} uthread {:>8.1} ns   linux {:>8.1} ns   ratio {:.2}",
                r.case,
                r.uthread_ns().median,
                r.linux_ns().median,
                r.ratio()
            );
            results.push(r);
        }
    }
    if all == 1 {
        // "all" is one core here: report it under its own name as well.
        for per_core in THREADS_PER_CORE {
            let r = run_case(&jobs, settings, 1, per_core);
            results.push(CaseResult { case: format!("callt{per_core}"), ..r });
        }
    }

    let report = Report {
        bench: "ctxswitch",
        title: "uthreads vs Linux threads, yield to yield",
        head: &head,
        note: "ns per switch per core = elapsed x cores / switches; medians of the repetitions.",
        table: table(&results),
        csv: csv(&results),
        result_lines: results.iter().map(result_line).collect(),
        result_lines_in_md: false,
    };
    report::finish(mode, &report, |path| plot(path, &head, &results));
}
