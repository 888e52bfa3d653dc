//! Comparison benchmark: the yield-to-yield switch cost of one unchanged C pthread
//! program, `benches/c/pthread_ctxswitch.c`, built against glibc and against upthread
//! (`-include upthread_compat.h`, `libupthread.so`), both run in the same bench run
//! (`DESIGN.md` §12).
//!
//! The program starts T x C workers that call `sched_yield()` in a loop, lets them warm
//! up, and counts their yields over a window (see the C file). For C cores (1, and all
//! the process may use) and T threads per core (1, 8, 64):
//!
//! * **glibc**: with C = 1, the whole process is pinned to the first CPU it may use (as
//!   `taskset -c` would); with all cores, worker i pins itself to CPU i mod C (`--pin`),
//!   so every CPU runs T workers. `main` sleeps in `nanosleep` during the window.
//! * **upthread**: `UPTHREAD_VCORES=C`, `UPTHREAD_SCHED_PERIOD_US=0` (cooperative), the
//!   other knobs at their defaults; upthread places the workers on its vcores itself.
//!
//! With T = 1 a yield finds nothing else to run on its core, so those cases measure a
//! *yield*, not a switch, and are labelled so (`measures=yield`).
//!
//! ns per switch per core = elapsed x C / yields. One repetition runs each side once,
//! as a fresh process with one untimed warm-up and one measured window; the sides
//! alternate which goes first. Figures are medians over R repetitions; the ratio is
//! glibc_ns / upthread_ns, so above 1 means upthread is faster.
//!
//! Run: `cargo bench --bench pthread_ctxswitch -- --quick` (R = 5, 100 ms windows, about
//! 10 s) or `cargo bench --bench pthread_ctxswitch` (R = 11, 300 ms windows, about 50 s;
//! also writes `results.md`, `results.csv` and `pthread_ctxswitch.svg` under
//! `<target>/parlib-bench/pthread_ctxswitch/`). Words that are not flags pick cases by
//! name. Without `--bench` (`cargo test --benches`) it builds both programs and runs
//! every case once with 10 ms windows, printing no RESULT lines. The output ends with one
//! `RESULT pthread_ctxswitch case=...` line per case (see `BENCHMARKS.md`).

use std::fmt::Write as _;
use std::time::Duration;

#[path = "c/cbuild.rs"]
mod cbuild;
#[path = "common/harness.rs"]
mod harness;
#[path = "common/machine.rs"]
mod machine;
#[path = "common/report.rs"]
mod report;

use cbuild::{Programs, Run, Side, Toolchain};
use harness::Mode;
use machine::Machine;
use report::{Report, Stat};

/// How long one run goes on, and how often.
struct Settings {
    /// Measured repetitions per case and side; odd, so the median is a sample.
    reps: usize,
    /// Length of the measured window, ms.
    window_ms: u64,
    /// Length of the untimed warm-up window just before it, in the same process, ms.
    warmup_ms: u64,
}

/// Smoke test: one short window per side and case, to check that both builds run.
const SMOKE: Settings = Settings { reps: 1, window_ms: 10, warmup_ms: 2 };
/// `--quick`: 5 x 100 ms (6 cases x 2 sides x 5 x 130 ms, about 8 s of windows).
const QUICK: Settings = Settings { reps: 5, window_ms: 100, warmup_ms: 30 };
/// Full run: 11 x 300 ms (6 x 2 x 11 x 350 ms, about 46 s of windows). Every run is a
/// new process, so a window is shorter than in `ctxswitch` (400 ms) to stay under a
/// minute; 300 ms is still thousands of scheduler ticks for the glibc side.
const FULL: Settings = Settings { reps: 11, window_ms: 300, warmup_ms: 50 };

/// Threads per core: 1 (glibc's `sched_yield` returns at once, upthread's goes round its
/// scheduler), 8 (the operating point, as in `ctxswitch`) and 64 (a run queue
/// longer than the caches hold comfortably).
const THREADS_PER_CORE: [usize; 3] = [1, 8, 64];

/// The goal of issue 7: upthread at least 20x faster than glibc in `c1t8`.
const GOAL_CASE: &str = "c1t8";
const GOAL_RATIO: f64 = 20.0;

/// One window: its length and the yields counted in it.
#[derive(Clone, Copy)]
struct Sample {
    elapsed_ns: u64,
    switches: u64,
}

struct CaseResult {
    case: String,
    cores: usize,
    per_core: usize,
    glibc: Vec<Sample>,
    upthread: Vec<Sample>,
}

impl CaseResult {
    fn ns(&self, s: &Sample) -> f64 {
        s.elapsed_ns as f64 * self.cores as f64 / s.switches as f64
    }
    fn stat(&self, side: Side) -> Stat {
        let v = match side {
            Side::Glibc => &self.glibc,
            Side::Upthread => &self.upthread,
        };
        Stat::of(v.iter().map(|s| self.ns(s)).collect())
    }
    fn ratio(&self) -> f64 {
        self.stat(Side::Glibc).median / self.stat(Side::Upthread).median
    }
}

/// Runs one side once: a fresh process, one warm-up and one measured window.
fn measure(
    progs: &Programs,
    side: Side,
    cores: usize,
    per_core: usize,
    cpus: &[usize],
    s: &Settings,
) -> Sample {
    let threads = cores * per_core;
    let mut args = vec![threads.to_string(), s.warmup_ms.to_string(), s.window_ms.to_string()];
    let (mut env, mut cpu) = (Vec::new(), None);
    match side {
        Side::Glibc if cores == 1 => cpu = Some(cpus[0]),
        Side::Glibc => args.push("--pin".into()),
        Side::Upthread => {
            env.push(("UPTHREAD_VCORES", cores.to_string()));
            env.push(("UPTHREAD_SCHED_PERIOD_US", "0".to_string()));
        }
    }
    let timeout = Duration::from_millis(s.warmup_ms + s.window_ms) + Duration::from_secs(60);
    let out =
        cbuild::run(&Run { bin: progs.of(side), args, env, cpu, timeout }).unwrap_or_else(|e| panic!("{e}"));
    let line =
        out.lines().find(|l| l.starts_with("threads=")).unwrap_or_else(|| panic!("no result in {out:?}"));
    let sample = Sample {
        elapsed_ns: cbuild::field(line, "elapsed_ns").expect("elapsed_ns"),
        switches: cbuild::field(line, "switches").expect("switches"),
    };
    // Sanity: the window lasted about as long as asked (nanosleep oversleeps, never
    // undersleeps), and something was counted.
    assert!(sample.elapsed_ns >= s.window_ms * 1_000_000, "{side:?}: window too short: {line}");
    assert!(sample.switches > 0, "{side:?}: no switches: {line}");
    sample
}

fn run_case(
    progs: &Programs,
    s: &Settings,
    case: String,
    cores: usize,
    per_core: usize,
    cpus: &[usize],
) -> CaseResult {
    let mut glibc = |_rep: usize| measure(progs, Side::Glibc, cores, per_core, cpus, s);
    let mut upthread = |_rep: usize| measure(progs, Side::Upthread, cores, per_core, cpus, s);
    let mut out = harness::alternate(s.reps, &mut [&mut glibc, &mut upthread]);
    let upthread = out.pop().expect("two sides");
    let glibc = out.pop().expect("two sides");
    CaseResult { case, cores, per_core, glibc, upthread }
}

fn table(results: &[CaseResult]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| case | measures | cores | threads/core | upthread ns/op/core (min-max) | glibc ns/op/core (min-max) | ratio |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|");
    for r in results {
        let (u, g) = (r.stat(Side::Upthread), r.stat(Side::Glibc));
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {:.1} ({:.1}-{:.1}) | {:.1} ({:.1}-{:.1}) | {:.2} |",
            r.case,
            harness::yield_measures(r.per_core),
            r.cores,
            r.per_core,
            u.median,
            u.min,
            u.max,
            g.median,
            g.min,
            g.max,
            r.ratio()
        );
    }
    t
}

fn result_line(r: &CaseResult) -> String {
    format!(
        "RESULT pthread_ctxswitch case={} measures={} cores={} threads_per_core={} upthread_ns={:.1} glibc_ns={:.1} ratio={:.2}",
        r.case,
        harness::yield_measures(r.per_core),
        r.cores,
        r.per_core,
        r.stat(Side::Upthread).median,
        r.stat(Side::Glibc).median,
        r.ratio()
    )
}

/// Every window: one line per case, side and repetition.
fn csv(results: &[CaseResult]) -> String {
    let mut csv =
        String::from("case,cores,threads_per_core,side,rep,elapsed_ns,switches,ns_per_switch_per_core\n");
    for r in results {
        for (side, samples) in [(Side::Upthread, &r.upthread), (Side::Glibc, &r.glibc)] {
            for (rep, s) in samples.iter().enumerate() {
                let _ = writeln!(
                    csv,
                    "{},{},{},{},{rep},{},{},{:.3}",
                    r.case,
                    r.cores,
                    r.per_core,
                    side.name(),
                    s.elapsed_ns,
                    s.switches,
                    r.ns(s)
                );
            }
        }
    }
    csv
}

/// Grouped bars, log scale: median ns per switch per core, upthread vs glibc, per case,
/// with min-max whiskers and the median printed above each bar.
fn plot(
    path: &std::path::Path,
    head: &str,
    results: &[CaseResult],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    let upthread_color = RGBColor(0x1f, 0x77, 0xb4);
    let glibc_color = RGBColor(0xd6, 0x27, 0x28);
    let stats: Vec<(Stat, Stat)> =
        results.iter().map(|r| (r.stat(Side::Upthread), r.stat(Side::Glibc))).collect();
    let lo = stats.iter().map(|(u, g)| u.min.min(g.min)).fold(f64::INFINITY, f64::min) / 2.0;
    let hi = stats.iter().map(|(u, g)| u.max.max(g.max)).fold(0.0, f64::max) * 3.0;
    let names: Vec<String> = results
        .iter()
        .map(|r| format!("{} ({}): ratio {:.1}", r.case, harness::yield_measures(r.per_core), r.ratio()))
        .collect();
    let frame = report::Frame {
        title: "pthread_ctxswitch: the same C program, ns per sched_yield per core (median, min-max)",
        title_size: 18,
        band: 94,
        head,
        names: &names,
        y_desc: "ns per switch per core (log)",
        y: (lo, hi),
        legend: SeriesLabelPosition::UpperLeft,
    };
    report::bar_chart(path, &frame, |chart| {
        for (side, color, offset) in
            [(Side::Upthread, upthread_color, -0.2f64), (Side::Glibc, glibc_color, 0.2)]
        {
            let pick = |(u, g): &(Stat, Stat)| if side == Side::Upthread { *u } else { *g };
            chart
                .draw_series(stats.iter().enumerate().map(|(i, st)| {
                    let x = i as f64 + offset;
                    Rectangle::new([(x - 0.17, lo), (x + 0.17, pick(st).median)], color.filled())
                }))?
                .label(if side == Side::Upthread {
                    "upthread (-include upthread_compat.h)"
                } else {
                    "glibc pthreads"
                })
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
            chart.draw_series(stats.iter().enumerate().map(|(i, st)| {
                let (s, x) = (pick(st), i as f64 + offset);
                PathElement::new(vec![(x, s.min), (x, s.max)], BLACK.stroke_width(1))
            }))?;
            chart.draw_series(stats.iter().enumerate().map(|(i, st)| {
                let (s, x) = (pick(st), i as f64 + offset - 0.12);
                Text::new(format!("{:.0}", s.median), (x, s.max * 1.15), ("sans-serif", 12))
            }))?;
        }
        Ok(())
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = Mode::from_args(&args);
    let s = mode.pick(&SMOKE, &QUICK, &FULL);
    let filter = harness::CaseFilter::new(&args, &[]);
    let machine = Machine::probe();
    let tc = Toolchain::prepare(report::output_dir("pthread_ctxswitch").join("bin"))
        .unwrap_or_else(|e| panic!("{e}"));
    let progs = tc.compile("pthread_ctxswitch").unwrap_or_else(|e| panic!("{e}"));
    let cpus = cbuild::allowed_cpus();
    let all = cpus.len();
    let load = cbuild::machine_load(Duration::from_millis(500));
    let head = cbuild::header(
        &machine,
        &tc,
        &load,
        &format!(
            "{} ({} reps x {} ms windows after {} ms warm-up, medians)",
            mode.name(),
            s.reps,
            s.window_ms,
            s.warmup_ms
        ),
    );
    println!(
        "pthread_ctxswitch: one C program calling sched_yield, built against glibc and against upthread"
    );
    print!("{head}");
    println!();

    let mut results = Vec::new();
    // With one CPU, "all" is one core too: it is measured again under its own name.
    for (label, cores) in [("1", 1), ("all", all)] {
        for per_core in THREADS_PER_CORE {
            let name = format!("c{label}t{per_core}");
            if !filter.wants(&name) {
                continue;
            }
            let r = run_case(&progs, s, name, cores, per_core, &cpus);
            println!(
                "  {:<8} upthread {:>8.1} ns   glibc {:>8.1} ns   ratio {:.2}",
                r.case,
                r.stat(Side::Upthread).median,
                r.stat(Side::Glibc).median,
                r.ratio()
            );
            results.push(r);
        }
    }
    if let (Some(r), false) = (results.iter().find(|r| r.case == GOAL_CASE), mode == Mode::Smoke) {
        println!(
            "\ngoal: {GOAL_CASE} ratio >= {GOAL_RATIO}: {:.2}, {}",
            r.ratio(),
            if r.ratio() >= GOAL_RATIO { "met" } else { "not met" }
        );
    }

    let report = Report {
        bench: "pthread_ctxswitch",
        title: "one C pthread program, glibc vs upthread, yield to yield",
        head: &head,
        note: "ns per switch per core = elapsed x cores / yields; medians of the repetitions; \
               ratio = glibc ns / upthread ns.",
        table: table(&results),
        csv: csv(&results),
        result_lines: results.iter().map(result_line).collect(),
        result_lines_in_md: true,
    };
    report::finish(mode, &report, |path| plot(path, &head, &results));
}
