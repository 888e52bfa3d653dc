//! Comparison benchmark: 1024 threads doing the same fixed computation, scheduled by
//! upthread under several preemption settings and by glibc/Linux, in the same run
//! (K. Klues' thesis §2.6.3; `DESIGN.md` §12).
//!
//! One unchanged C program, `benches/c/fixedwork.c`, is built against glibc and against
//! upthread (`-include upthread_compat.h`). Its workers meet at a barrier, then each runs
//! the same loop and records when it finished, measured from the earliest clock reading
//! after the barrier. The cases:
//!
//! | case | build | `UPTHREAD_SCHED_PERIOD_US` | loop yields |
//! |---|---|---:|---|
//! | `nopreempt` | upthread | 0 (cooperative) | never |
//! | `yield1000` | upthread | 0 | `sched_yield()` every [`YIELD_EVERY`] iterations |
//! | `preempt100ms` | upthread | 100 000 | never |
//! | `preempt10ms` | upthread | 10 000 | never |
//! | `preempt1ms` | upthread | 1 000 | never |
//! | `glibc` | glibc (CFS/EEVDF) | - | never |
//!
//! Every upthread case runs on all vcores (`UPTHREAD_VCORES` = the CPUs the process may
//! use), with the other knobs at their defaults. The loop is calibrated at the start of
//! the run (single-threaded, in thread CPU time, so other load does not count) to
//! [`Settings::work_ms`] of CPU per thread.
//!
//! Per case and repetition: `total_ms` (the last completion), `median_ms` and `max_ms`
//! of the 1024 completions. Figures are medians over R repetitions, which run every case
//! once, in an order reversed on every other repetition. ratio = glibc's total / the
//! case's total (above 1: faster than glibc).
//!
//! Run: `cargo bench --bench fixedwork -- --quick` (R = 1, 5 ms per thread, about 20 s
//! on two idle CPUs) or `cargo bench --bench fixedwork` (R = 3, 10 ms per thread, about
//! 95 s; also writes `results.md`, `results.csv` with every thread's completion time,
//! and `fixedwork.svg`, the sorted completion times per case, under
//! `<target>/parlib-bench/fixedwork/`). `--work-ms=N` sets the CPU time per thread;
//! words that are not flags pick cases by name. Without `--bench` (`cargo test
//! --benches`) it runs every case once with 32 threads of 1 ms, printing no RESULT
//! lines. The output ends with one `RESULT fixedwork case=...` line per case.

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

/// How big one run is, and how often.
struct Settings {
    /// Repetitions of every case; odd, so the median is a sample.
    reps: usize,
    /// Threads in the program.
    threads: usize,
    /// CPU time of one thread's loop, ms.
    work_ms: f64,
}

/// Smoke test: every case once, small, to check that both builds run and report.
const SMOKE: Settings = Settings { reps: 1, threads: 32, work_ms: 1.0 };
/// `--quick`: one repetition, half the work of a full run.
const QUICK: Settings = Settings { reps: 1, threads: 1024, work_ms: 5.0 };
/// Full run: 1024 threads (the thesis) x 10 ms is 10.2 s of CPU, about 5 s per case on
/// two CPUs, so 6 cases x 3 repetitions take about 95 s.
const FULL: Settings = Settings { reps: 3, threads: 1024, work_ms: 10.0 };

/// `yield1000` yields every 1000 iterations. One iteration is 16 xorshift steps, about
/// 26 ns on the EPYC this was written on, so a yield every ~26 µs: often enough that
/// every thread advances in step with the others (a round of 512 threads per vcore
/// takes ~13 ms), rarely enough that the switch (~0.2 µs in `pthread_ctxswitch`) costs
/// about 1%.
const YIELD_EVERY: u64 = 1000;

/// Issue 7's goals, for `preempt10ms`: total at most 3% over `nopreempt`, and the last
/// completion within 5% of the median one.
const GOAL_OVERHEAD: f64 = 1.03;
const GOAL_SPREAD: f64 = 1.05;

/// One case: which build, which preemption period, how often the loop yields.
struct Case {
    name: &'static str,
    side: Side,
    period_us: u64,
    yield_every: u64,
}

const CASES: [Case; 6] = [
    Case { name: "nopreempt", side: Side::Upthread, period_us: 0, yield_every: 0 },
    Case { name: "yield1000", side: Side::Upthread, period_us: 0, yield_every: YIELD_EVERY },
    Case { name: "preempt100ms", side: Side::Upthread, period_us: 100_000, yield_every: 0 },
    Case { name: "preempt10ms", side: Side::Upthread, period_us: 10_000, yield_every: 0 },
    Case { name: "preempt1ms", side: Side::Upthread, period_us: 1_000, yield_every: 0 },
    Case { name: "glibc", side: Side::Glibc, period_us: 0, yield_every: 0 },
];

/// One run of one case: every thread's completion time, ns after the common start.
struct Sample {
    completions: Vec<u64>,
}

impl Sample {
    fn total_ms(&self) -> f64 {
        *self.completions.iter().max().expect("threads") as f64 / 1e6
    }
    fn median_ms(&self) -> f64 {
        let mut v = self.completions.clone();
        v.sort_unstable();
        v[v.len() / 2] as f64 / 1e6
    }
    /// Last completion / median completion.
    fn spread(&self) -> f64 {
        self.total_ms() / self.median_ms()
    }
}

struct CaseResult {
    case: &'static Case,
    samples: Vec<Sample>,
}

impl CaseResult {
    fn stat(&self, f: impl Fn(&Sample) -> f64) -> Stat {
        Stat::of(self.samples.iter().map(f).collect())
    }
    fn total(&self) -> Stat {
        self.stat(Sample::total_ms)
    }
    /// The repetition whose total is the median: the one plotted.
    fn median_sample(&self) -> &Sample {
        let t = self.total().median;
        self.samples.iter().find(|s| s.total_ms() == t).expect("the median is a sample")
    }
}

/// Sizes the loop: the fewest thread-CPU nanoseconds per iteration over three
/// single-threaded runs of the glibc build (the least disturbed one).
fn calibrate(progs: &Programs) -> f64 {
    const N: u64 = 200_000;
    (0..3)
        .map(|_| {
            let out = cbuild::run(&Run {
                bin: &progs.glibc,
                args: vec!["--calibrate".into(), N.to_string()],
                env: vec![],
                cpu: None,
                timeout: Duration::from_secs(60),
            })
            .unwrap_or_else(|e| panic!("{e}"));
            cbuild::field::<u64>(out.trim(), "cpu_ns").expect("cpu_ns") as f64 / N as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn measure(progs: &Programs, case: &Case, s: &Settings, iterations: u64, vcores: usize) -> Sample {
    let mut env = Vec::new();
    if case.side == Side::Upthread {
        env.push(("UPTHREAD_VCORES", vcores.to_string()));
        env.push(("UPTHREAD_SCHED_PERIOD_US", case.period_us.to_string()));
    }
    // Ten times the ideal, plus a minute: only a hang takes that long.
    let ideal = s.threads as f64 * s.work_ms / vcores as f64;
    let timeout = Duration::from_millis((10.0 * ideal) as u64) + Duration::from_secs(60);
    let args = vec![s.threads.to_string(), iterations.to_string(), case.yield_every.to_string()];
    let out = cbuild::run(&Run { bin: progs.of(case.side), args, env, cpu: None, timeout })
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let mut lines = out.lines();
    let head = lines.next().unwrap_or_default();
    let total: u64 =
        cbuild::field(head, "total_ns").unwrap_or_else(|| panic!("{}: no total in {head:?}", case.name));
    let completions: Vec<u64> = lines.map(|l| l.trim().parse().expect("a completion time")).collect();
    assert_eq!(completions.len(), s.threads, "{}: one completion per thread", case.name);
    assert_eq!(completions.iter().max().copied(), Some(total), "{}: total is the last completion", case.name);
    // Sanity: nobody finished before the CPU time its loop needs, less 20% for the
    // calibration's error.
    let floor = (s.work_ms * 0.8 * 1e6) as u64;
    assert!(completions.iter().all(|&c| c >= floor), "{}: a thread finished in under {floor} ns", case.name);
    Sample { completions }
}

fn table(results: &[CaseResult]) -> String {
    let glibc = results.iter().find(|r| r.case.side == Side::Glibc).map(|r| r.total().median);
    let mut t = String::new();
    // The last completion is the total, so there is no separate max column.
    let _ = writeln!(t, "| case | total = max ms (min-max) | median ms | max / median | ratio |");
    let _ = writeln!(t, "|---|---:|---:|---:|---:|");
    for r in results {
        let tot = r.total();
        let _ = writeln!(
            t,
            "| {} | {:.1} ({:.1}-{:.1}) | {:.1} | {:.3} | {} |",
            r.case.name,
            tot.median,
            tot.min,
            tot.max,
            r.stat(Sample::median_ms).median,
            r.stat(Sample::spread).median,
            glibc.map_or("-".into(), |g| format!("{:.3}", g / tot.median))
        );
    }
    t
}

fn result_line(r: &CaseResult, glibc_total: Option<f64>) -> String {
    let tot = r.total().median;
    format!(
        "RESULT fixedwork case={} total_ms={:.1} median_ms={:.1} max_ms={:.1} ratio={}",
        r.case.name,
        tot,
        r.stat(Sample::median_ms).median,
        r.stat(Sample::total_ms).median,
        glibc_total.map_or("nan".into(), |g| format!("{:.3}", g / tot))
    )
}

/// Every thread of every run: case, rep, the thread's index, its completion time.
fn csv(results: &[CaseResult]) -> String {
    let mut csv = String::from("case,rep,thread,completion_ns\n");
    for r in results {
        for (rep, s) in r.samples.iter().enumerate() {
            for (i, c) in s.completions.iter().enumerate() {
                let _ = writeln!(csv, "{},{rep},{i},{c}", r.case.name);
            }
        }
    }
    csv
}

/// Completion times sorted, one line per case (its median-total repetition): x is the
/// thread's rank, y its completion time. Perfect fairness is a flat line at the end;
/// run-to-completion is a straight ramp.
fn plot(
    path: &std::path::Path,
    head: &str,
    results: &[CaseResult],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    let colors = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0x94, 0x67, 0xbd),
        RGBColor(0x8c, 0x56, 0x4b),
        RGBColor(0xd6, 0x27, 0x28),
    ];
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let (band, body) = root.split_vertically(100);
    band.draw(&Text::new(
        "fixedwork: completion time of each thread, sorted (the median-total repetition per case)",
        (12, 8),
        ("sans-serif", 18),
    ))?;
    for (i, line) in head.lines().enumerate() {
        band.draw(&Text::new(line.to_string(), (12, 32 + 12 * i as i32), ("sans-serif", 11)))?;
    }
    let n = results.iter().map(|r| r.median_sample().completions.len()).max().unwrap_or(1);
    let ymax = results.iter().map(|r| r.median_sample().total_ms()).fold(0.0, f64::max) / 1e3 * 1.05;
    let mut chart = ChartBuilder::on(&body)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..n as f64, 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("threads, sorted by completion time")
        .y_desc("completion time (s)")
        .draw()?;
    for (r, color) in results.iter().zip(colors.iter().cycle()) {
        let mut v = r.median_sample().completions.clone();
        v.sort_unstable();
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                v.iter().enumerate().map(|(i, &c)| (i as f64, c as f64 / 1e9)),
                color.stroke_width(2),
            ))?
            .label(format!("{} (total {:.2} s)", r.case.name, r.total().median / 1e3))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = Mode::from_args(&args);
    let base = mode.pick(&SMOKE, &QUICK, &FULL);
    let work_ms =
        args.iter().find_map(|a| a.strip_prefix("--work-ms=")?.parse::<f64>().ok()).unwrap_or(base.work_ms);
    let s = Settings { reps: base.reps, threads: base.threads, work_ms };
    let names: Vec<&'static str> = CASES.iter().map(|c| c.name).collect();
    let filter = harness::CaseFilter::new(&args, &names);
    let cases: Vec<&'static Case> = CASES.iter().filter(|c| filter.wants(c.name)).collect();

    let machine = Machine::probe();
    let tc =
        Toolchain::prepare(report::output_dir("fixedwork").join("bin")).unwrap_or_else(|e| panic!("{e}"));
    let progs = tc.compile("fixedwork").unwrap_or_else(|e| panic!("{e}"));
    let vcores = cbuild::allowed_cpus().len();
    let ns_per_iter = calibrate(&progs);
    let iterations = ((s.work_ms * 1e6 / ns_per_iter).round() as u64).max(1);
    let load = cbuild::machine_load(Duration::from_millis(500));
    let head = cbuild::header(
        &machine,
        &tc,
        &load,
        &format!(
            "{} ({} reps, {} threads x {:.1} ms = {iterations} iterations of {ns_per_iter:.1} ns; \
             yield1000 yields every {:.1} us; {vcores} vcores; medians)",
            mode.name(),
            s.reps,
            s.threads,
            s.work_ms,
            YIELD_EVERY as f64 * ns_per_iter / 1e3
        ),
    );
    println!(
        "fixedwork: {} threads with a fixed amount of work each, upthread (preemption settings) vs glibc",
        s.threads
    );
    print!("{head}");
    println!();

    let mut sides: Vec<Box<dyn FnMut(usize) -> Sample>> = cases
        .iter()
        .map(|&c| {
            let (progs, s) = (&progs, &s);
            Box::new(move |rep: usize| {
                let sample = measure(progs, c, s, iterations, vcores);
                println!(
                    "  rep {rep} {:<13} total {:>9.1} ms   median {:>9.1} ms   max/median {:.3}",
                    c.name,
                    sample.total_ms(),
                    sample.median_ms(),
                    sample.spread()
                );
                sample
            }) as Box<dyn FnMut(usize) -> Sample>
        })
        .collect();
    let mut refs: Vec<&mut dyn FnMut(usize) -> Sample> = sides.iter_mut().map(|b| &mut **b as _).collect();
    let out = harness::alternate(s.reps, &mut refs);
    drop(refs);
    drop(sides);
    let results: Vec<CaseResult> =
        cases.iter().zip(out).map(|(&case, samples)| CaseResult { case, samples }).collect();

    let glibc_total = results.iter().find(|r| r.case.side == Side::Glibc).map(|r| r.total().median);
    let by_name = |n: &str| results.iter().find(|r| r.case.name == n);
    if let (Some(p), Some(n), false) = (by_name("preempt10ms"), by_name("nopreempt"), mode == Mode::Smoke) {
        let over = p.total().median / n.total().median;
        let spread = p.stat(Sample::spread).median;
        println!();
        println!(
            "goal: preempt10ms total <= {GOAL_OVERHEAD} x nopreempt: {over:.3}, {}",
            if over <= GOAL_OVERHEAD { "met" } else { "not met" }
        );
        println!(
            "goal: preempt10ms max <= {GOAL_SPREAD} x its median: {spread:.3}, {}",
            if spread <= GOAL_SPREAD { "met" } else { "not met" }
        );
    }

    let report = Report {
        bench: "fixedwork",
        title: "1024 threads of fixed work, upthread preemption settings vs glibc",
        head: &head,
        note: "Completion times are from the earliest clock reading after the common start barrier. \
               total = last completion; max / median = last completion over median completion; \
               medians of the repetitions; ratio = glibc total / case total.",
        table: table(&results),
        csv: csv(&results),
        result_lines: results.iter().map(|r| result_line(r, glibc_total)).collect(),
        result_lines_in_md: true,
    };
    report::finish(mode, &report, |path| plot(path, &head, &results));
}
