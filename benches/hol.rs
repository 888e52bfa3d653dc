//! Comparison benchmark: head-of-line blocking (issue 15). A server on one core gets
//! mostly short requests and a few long ones; without preemption, every short request
//! that arrives while a long one runs waits for it. How much do upthread's time slices,
//! timed-call handlers and the kernel's own preemption take off the short requests' tail
//! latency, and what does each cost in throughput? All in one run (`DESIGN.md` §12).
//!
//! | server | what serves the requests |
//! |---|---|
//! | `nopreempt` (baseline) | kweb on `parlib-upthread`, one vcore (`--vcores 1 --work`): a handler runs until it returns |
//! | `slice` | the same with upthread's own time slices, `UPTHREAD_SCHED_PERIOD_US`=Q: every Q µs the running thread goes to the back of the queue |
//! | `timed` | kweb on upthread, one vcore, `--work --quantum-us Q`: each `/work` handler is a timed call (`parlib-timed`) of quantum Q; one that runs out goes back behind the waiting requests and is resumed later |
//! | `linux` | kweb on Linux threads (`--variant linux --work`): the kernel's scheduler preempts |
//!
//! Every server is kweb with its defaults (100 workers, burst 10), an idle timeout of
//! [`IDLE_TIMEOUT`], in a process of its own pinned to the *server CPU* (the second CPU
//! this process may use), started as this bench binary run again
//! (`common/server.rs`). Q is 100 µs (upthread's shortest period,
//! `MIN_SCHED_PERIOD_US`) and 1 ms; `nopreempt` and `linux` do not depend on Q, so they
//! are measured once per long share, and their figures stand on both Q's lines.
//!
//! # The load
//!
//! Two classes of `GET /work` (kweb's CPU-bound endpoint: a serial hash chain): *short*,
//! about [`SHORT_US`] µs, and *long*, about [`LONG_US`] µs, the long ones being 0, 0.5,
//! 1 or 2 % of the requests. A case is a long share and a Q (`1pct-q1000`). Per long
//! share, in order:
//!
//! 1. **Capacity.** Every server's requests/s with the closed loop (`kweb::load::run`):
//!    [`CAP_CONNS`] connections, one request outstanding on each, more than kweb's 100
//!    workers, so the server always has work waiting and its core is saturated. The URL
//!    list is n − 1 short URLs and one long for n = 1 ÷ share (199 + 1 for 0.5 %, 99 + 1
//!    for 1 %, 49 + 1 for 2 %, the short URL alone for 0 %); connection *i* sends it in
//!    turn from position *i*, so every connection sends exactly one long request in
//!    every n, and since [`CAP_CONNS`] is a multiple of every n, so does every round of
//!    the connections.
//! 2. **Offered rate** = [`LOAD`] × `nopreempt`'s median capacity: queues form but do
//!    not grow without bound. The same rate for every server of the case. The server is
//!    in fact busier than 70 %: the closed loop's capacity comes from a deep queue, where
//!    one `epoll_wait` finds many requests, while under the open loop most requests come
//!    alone to an idle connection and cost more. The 0 % case shows what that queue
//!    alone costs the short requests' p99 (some ms here), before any long request.
//! 3. **Latency.** Every server under the open loop (`kweb::load::open`) at that rate:
//!    requests arrive as a Poisson process, short or long drawn by the share, each sent
//!    on an idle connection of a pool of [`POOL`] (one request at a time per connection,
//!    so the client adds no head-of-line blocking of its own), its latency timed from
//!    its *scheduled* arrival to its answer (no coordinated omission: a request that
//!    waited anywhere, even in the client, counts its wait).
//!
//! # Why the comparison is fair
//!
//! * **The same work.** A server calibrates `/work?us=N` at its start, and two
//!   calibrations differ a little; so the bench asks `nopreempt` once how many steps
//!   [`SHORT_US`] and [`LONG_US`] are (the `n=` of its answer) and sends every server
//!   `/work?n=<steps>`: the same chain, the same answer bytes. Every answer is checked
//!   against a probe of its URL: status, length and the whole body, byte for byte (so a
//!   handler cut short or resumed wrongly is an error, not a fast answer). Any failed
//!   request is printed loudly; a smoke test fails on it.
//! * **The same arrivals.** Within a repetition every server gets the same seeded
//!   Poisson schedule: the same classes at the same offsets from the start.
//! * **The same machine.** The servers take turns (`harness::alternate`: the order
//!   reverses every other repetition), each on the server CPU while the others sit idle
//!   there: blocked in `epoll_wait` or parked, for upthread's ticks run only while a
//!   vcore runs a thread (`upthread/src/preempt.rs`) and a timed call's alarm only while
//!   a handler runs.
//! * **A client that is not in the way.** The load generator has the other CPU to
//!   itself and busy-polls it (`open::Spec::busy_poll`): an idle vCPU here takes some 40
//!   µs to wake, hundreds in the tail, and every such wake-up would count in a latency.
//!   The table gives how late it sent (`send lag p99`) and how many requests found no
//!   idle connection, so a late or short-handed client shows.
//!
//! # Figures
//!
//! Per case and server, medians over R windows (min-max over them in the table):
//! capacity (closed-loop requests/s), achieved requests/s under the open loop (answers
//! completed in the window ÷ its length: the offered rate if the server keeps up), p50
//! and p99 of the short and of the long requests' latency, the send lag's p99, requests
//! that waited for a connection, errors. Capacity is measured with a queue always full
//! (saturation), where preemption has the most to do; a preempting server may sustain
//! a little more under the open loop than its capacity says. The speed goals of
//! issue 15, judged here, not asserted: at 1 % long, `timed` cuts the short requests'
//! p99 at least 10× against `nopreempt` (`ratio`), losing at most 5 % of its capacity
//! (`rps_ratio` ≥ 0.95), and its short p99 is no worse than `linux`'s (`linux_ratio` ≥
//! 1).
//!
//! Run: `cargo bench --bench hol -- --quick` (1 capacity window of 0.5 s and 3 open-loop
//! windows of 1 s per server and long share; about 2 minutes; prints only) or `cargo
//! bench --bench hol` (3 capacity windows of 1 s, 5 open-loop windows of 2.5 s; about 8
//! minutes; also writes `results.md`, `results.csv` and `hol.svg`, short p99 against the
//! long share, a panel per Q, under `<target>/parlib-bench/hol/`). Arguments that are
//! not flags pick cases by name (`-- --quick 1pct`). The output ends with one RESULT
//! line per case (see `BENCHMARKS.md`):
//!
//! ```text
//! RESULT hol case=<share>-q<Q> timed_short_p99_us= nopreempt_short_p99_us= slice_short_p99_us= linux_short_p99_us= timed_rps=<capacity> nopreempt_rps=<capacity> ratio=<nopreempt_short_p99_us ÷ timed_short_p99_us> ...
//! ```
//!
//! then `offered_rps=`, the other capacities (`slice_rps=`, `linux_rps=`), each server's
//! achieved rate (`*_achieved_rps=`), `rps_ratio=` (timed_rps ÷ nopreempt_rps),
//! `linux_ratio=` (linux_short_p99_us ÷ timed_short_p99_us), each server's
//! `*_short_p50_us=`, `*_long_p50_us=` and `*_long_p99_us=` (`nan` at 0 %), and the
//! steps of the two classes. Every ratio reads above 1 when `timed` wins. Without
//! `--bench` the binary runs a smoke test (about 20 s): one short window of each kind per
//! server and share, which fails if any request fails, and prints no RESULT lines.
//!
//! Needs two CPUs (with one, the servers and the load share it, and the bench says so).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kweb::load::{self, open};

#[path = "common/harness.rs"]
mod harness;
#[path = "common/machine.rs"]
mod machine;
#[path = "common/report.rs"]
mod report;
#[path = "common/server.rs"]
mod server;

use harness::Mode;
use machine::Machine;
use report::{cell, num, stat_cell, Report, Stat};
use server::{ServerProcess, START_TIMEOUT};

// ---------------------------------------------------------------------------------------
// Settings.

/// How long one run goes on, and how often.
struct Settings {
    /// Capacity windows per server and long share; odd, so the median is a sample.
    cap_reps: usize,
    /// Closed-loop load before each capacity window, checked but not counted.
    cap_warmup: Duration,
    /// Length of one capacity window.
    cap_window: Duration,
    /// Open-loop windows per server and long share; odd.
    reps: usize,
    /// Open-loop arrivals before each window, checked but not counted: they fill the
    /// server's queues to their steady state.
    warmup: Duration,
    /// Length of one open-loop window.
    window: Duration,
}

/// Without `--bench`: one short window of each kind per server and share, to check that
/// every server answers every request right. No RESULT lines, no files.
const SMOKE: Settings = Settings {
    cap_reps: 1,
    cap_warmup: Duration::from_millis(50),
    cap_window: Duration::from_millis(200),
    reps: 1,
    warmup: Duration::from_millis(50),
    window: Duration::from_millis(300),
};

/// `--quick`: 4 shares x 6 servers x (0.7 s + 3 x 1.2 s) = 103 s of windows, about 2
/// minutes in all.
const QUICK: Settings = Settings {
    cap_reps: 1,
    cap_warmup: Duration::from_millis(200),
    cap_window: Duration::from_millis(500),
    reps: 3,
    warmup: Duration::from_millis(200),
    window: Duration::from_secs(1),
};

/// Full run: 4 x 6 x (3 x 1.3 s + 5 x 3 s) = 454 s of windows, about 8 minutes in all.
/// At 1 % long and some thousands of requests/s, a window holds over 10 000 short
/// requests (their p99 rests on 100 samples or more) and some 100 long ones.
const FULL: Settings = Settings {
    cap_reps: 3,
    cap_warmup: Duration::from_millis(300),
    cap_window: Duration::from_secs(1),
    reps: 5,
    warmup: Duration::from_millis(500),
    window: Duration::from_millis(2500),
};

/// A short request's work, µs: an HTTP request's own handling is some 10-20 µs here, so
/// a short request is mostly work, yet short against the quanta.
const SHORT_US: u64 = 50;

/// A long request's work, µs: 100 short ones, 5 to 50 quanta.
const LONG_US: u64 = 5000;

/// The preemption quanta, µs: upthread's shortest period (`MIN_SCHED_PERIOD_US`: a tick
/// costs 10-20 µs in a VM here) and ten times that.
const QUANTA_US: [u64; 2] = [100, 1000];

/// The cases: a name (the RESULT lines' `case=`), the long requests' share, the quantum.
const CASES: [(&str, f64, u64); 8] = [
    ("0pct-q100", 0.0, 100),
    ("0pct-q1000", 0.0, 1000),
    ("0.5pct-q100", 0.005, 100),
    ("0.5pct-q1000", 0.005, 1000),
    ("1pct-q100", 0.01, 100),
    ("1pct-q1000", 0.01, 1000),
    ("2pct-q100", 0.02, 100),
    ("2pct-q1000", 0.02, 1000),
];

/// The offered rate, as a share of `nopreempt`'s capacity (issue 15: "about 70 %").
const LOAD: f64 = 0.7;

/// Closed-loop connections of a capacity window: twice kweb's workers, and a multiple of
/// every URL list's length (1, 50, 100, 200).
const CAP_CONNS: usize = 200;

/// The open loop's pool: room for as many requests in the server at once as a burst of
/// long ones piles up (at 2 % long and some thousands of requests/s, a 5 ms request
/// sees some 20 arrivals; a few in a row, some 100).
const POOL: usize = 500;

/// A request unanswered this long is a failure (the longest answer here is some tens of
/// ms), and it bounds every window.
const TIMEOUT: Duration = Duration::from_secs(10);

/// kweb's idle timeout in the bench: far above any window, so no pool connection is
/// closed for idling between requests.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------------------
// The servers.

/// Which server a window measures.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Server {
    Nopreempt,
    Slice(u64),
    Timed(u64),
    Linux,
}

impl Server {
    /// Its name in the table and the RESULT keys.
    fn name(self) -> &'static str {
        match self {
            Server::Nopreempt => "nopreempt",
            Server::Slice(_) => "slice",
            Server::Timed(_) => "timed",
            Server::Linux => "linux",
        }
    }

    /// Its name with its quantum, if it has one.
    fn label(self) -> String {
        match self {
            Server::Slice(q) | Server::Timed(q) => format!("{}-q{q}", self.name()),
            _ => self.name().to_string(),
        }
    }

    fn describe(self) -> String {
        match self {
            Server::Nopreempt => "upthread, no preemption".into(),
            Server::Slice(q) => format!("upthread, {q} µs time slices"),
            Server::Timed(q) => format!("upthread, timed handlers, {q} µs quantum"),
            Server::Linux => "Linux threads".into(),
        }
    }

    /// The quantum it depends on, if any.
    fn quantum(self) -> Option<u64> {
        match self {
            Server::Slice(q) | Server::Timed(q) => Some(q),
            _ => None,
        }
    }

    /// kweb's arguments for it, serving `root`.
    fn args(self, root: &Path) -> Vec<String> {
        let mut a: Vec<String> = vec!["--root".into(), root.display().to_string(), "--work".into()];
        a.extend(["--idle-timeout".into(), IDLE_TIMEOUT.as_secs().to_string()]);
        match self {
            Server::Linux => a.extend(["--variant".into(), "linux".into()]),
            _ => a.extend(["--variant".into(), "upthread".into(), "--vcores".into(), "1".into()]),
        }
        if let Server::Timed(q) = self {
            a.extend(["--quantum-us".into(), q.to_string()]);
        }
        a
    }

    /// Its environment.
    fn envs(self) -> Vec<(&'static str, String)> {
        match self {
            Server::Slice(q) => vec![("UPTHREAD_SCHED_PERIOD_US", q.to_string())],
            _ => Vec::new(),
        }
    }
}

/// A running server.
struct Running {
    server: Server,
    process: ServerProcess,
}

impl Running {
    /// What went wrong with the server, if it has exited: for messages.
    fn exit_note(&mut self) -> String {
        match self.process.exited() {
            Some(status) => format!(" (the {} server has exited: {status})", self.server.label()),
            None => String::new(),
        }
    }
}

/// What every server start and window needs.
struct Setup {
    /// The served root: an empty temporary directory (kweb wants one; `/work` needs no
    /// file).
    root: PathBuf,
    /// The CPU every server is pinned to.
    server_cpu: usize,
    /// The CPU of the load generator and the rest of this process.
    load_cpu: usize,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Starts `server` on the server CPU and waits until it answers `/work`.
fn start(server: Server, setup: &Setup) -> Running {
    let label = format!("hol bench: the {} server", server.label());
    let process = server::spawn_kweb(label, &server.args(&setup.root), &server.envs(), setup.server_cpu);
    let mut running = Running { server, process };
    let deadline = Instant::now() + START_TIMEOUT;
    while !server::answers(running.process.port, "/work?n=1") {
        if Instant::now() > deadline || running.process.exited().is_some() {
            let note = running.exit_note();
            panic!("hol bench: the {} server does not answer GET /work?n=1{note}", server.label());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    running
}

/// The steps of `/work?us=<us>` on `running`: the `n=` of its answer
/// (`work n=<steps> hash=<hex>`).
fn work_steps(running: &mut Running, us: u64) -> u64 {
    let got = server::get(running.process.port, &format!("/work?us={us}"));
    let steps = got.as_ref().ok().and_then(|answer| {
        let (_, body) = answer.split_once("\r\n\r\n")?;
        body.split_whitespace().find_map(|w| w.strip_prefix("n="))?.parse().ok()
    });
    match steps {
        Some(n) => n,
        None => {
            let note = running.exit_note();
            panic!("hol bench: no step count in the answer to /work?us={us}: {got:?}{note}")
        }
    }
}

// ---------------------------------------------------------------------------------------
// Windows.

/// The URL of `steps` steps of work.
fn work_url(steps: u64) -> String {
    format!("/work?n={steps}")
}

/// Says loudly that `what` had failed requests, and ends a smoke test.
fn check(mode: Mode, what: &str, running: &mut Running, errors: u64, samples: &[String]) {
    if errors > 0 {
        let msg = format!("hol bench: {what}: {errors} failed requests: {samples:#?}{}", running.exit_note());
        eprintln!("\n!!!!!!!!!! {msg}\n");
        assert!(mode != Mode::Smoke, "{msg}");
    }
}

/// One capacity window: the closed loop on `urls` (module docs).
fn capacity_window(
    mode: Mode,
    running: &mut Running,
    urls: &[String],
    s: &Settings,
    setup: &Setup,
) -> load::Report {
    let what = format!("capacity of {}", running.server.label());
    let mut spec = load::Spec::new(running.process.addr(), urls.to_vec());
    spec.connections = CAP_CONNS;
    spec.warmup = s.cap_warmup;
    spec.duration = Some(s.cap_warmup + s.cap_window);
    spec.cpus = vec![setup.load_cpu];
    spec.timeout = TIMEOUT;
    let r = load::run(&spec).unwrap_or_else(|e| {
        let note = running.exit_note();
        panic!("hol bench: {what}: kweb-load could not run: {e}{note}")
    });
    check(mode, &what, running, r.errors, &r.error_samples);
    r
}

/// One open-loop window at `rate` of `classes`, on the schedule of `seed`.
fn open_window(
    mode: Mode,
    running: &mut Running,
    classes: &[open::Class],
    rate: f64,
    seed: u64,
    s: &Settings,
    setup: &Setup,
) -> open::Report {
    let what = format!("{:.0} requests/s on {}", rate, running.server.label());
    let mut spec = open::Spec::new(running.process.addr(), rate, classes.to_vec());
    spec.connections = POOL;
    spec.warmup = s.warmup;
    spec.duration = s.warmup + s.window;
    spec.cpus = vec![setup.load_cpu];
    spec.timeout = TIMEOUT;
    spec.seed = seed;
    spec.busy_poll = true;
    let r = open::run(&spec).unwrap_or_else(|e| {
        let note = running.exit_note();
        panic!("hol bench: {what}: kweb-load could not run: {e}{note}")
    });
    check(mode, &what, running, r.errors, &r.error_samples);
    r
}

/// Runs `f` on each of `items` `reps` times, alternating their order
/// (`harness::alternate`); returns each item's results in the order of the repetitions.
fn alternate_over<T>(
    reps: usize,
    items: &mut [&mut Running],
    f: &dyn Fn(&mut Running, usize) -> T,
) -> Vec<Vec<T>> {
    let mut sides: Vec<Box<dyn FnMut(usize) -> T + '_>> =
        items.iter_mut().map(|r| Box::new(move |rep| f(r, rep)) as Box<dyn FnMut(usize) -> T + '_>).collect();
    let mut refs: Vec<&mut dyn FnMut(usize) -> T> =
        sides.iter_mut().map(|b| b.as_mut() as &mut dyn FnMut(usize) -> T).collect();
    harness::alternate(reps, &mut refs)
}

// ---------------------------------------------------------------------------------------
// Results.

/// Every window of one server at one long share.
struct Runs {
    server: Server,
    /// Capacity windows, in the order of the repetitions.
    caps: Vec<load::Report>,
    /// Open-loop windows, in the order of the repetitions.
    windows: Vec<open::Report>,
}

/// Every window at one long share.
struct ShareResult {
    /// The long requests' share.
    long: f64,
    /// The offered rate of its open-loop windows.
    offered: f64,
    /// Steps of a short and of a long request.
    steps: (u64, u64),
    runs: Vec<Runs>,
}

/// The short class is the first of a window, the long one (if any) the second.
const SHORT: usize = 0;
const LONG: usize = 1;

impl ShareResult {
    fn runs(&self, server: Server) -> Option<&Runs> {
        self.runs.iter().find(|r| r.server == server)
    }

    /// The statistics of `f` over `server`'s open-loop windows; NaN if it did not run.
    fn stat(&self, server: Server, f: impl Fn(&open::Report) -> f64) -> Stat {
        match self.runs(server) {
            Some(r) => Stat::of(r.windows.iter().map(f).collect()),
            None => Stat { median: f64::NAN, min: f64::NAN, max: f64::NAN },
        }
    }

    /// The statistics of `f` of class `class` (NaN if the windows have no such class).
    fn class_stat(&self, server: Server, class: usize, f: impl Fn(&open::ClassReport) -> f64) -> Stat {
        self.stat(server, |w| w.classes.get(class).map_or(f64::NAN, &f))
    }

    fn capacity(&self, server: Server) -> Stat {
        match self.runs(server) {
            Some(r) => Stat::of(r.caps.iter().map(|c| c.rps).collect()),
            None => Stat { median: f64::NAN, min: f64::NAN, max: f64::NAN },
        }
    }

    fn errors(&self, server: Server) -> u64 {
        self.runs(server).map_or(0, |r| {
            r.caps.iter().map(|c| c.errors).sum::<u64>() + r.windows.iter().map(|w| w.errors).sum::<u64>()
        })
    }

    fn queued(&self, server: Server) -> u64 {
        self.runs(server).map_or(0, |r| r.windows.iter().map(|w| w.queued).sum())
    }
}

/// The URL list of a capacity window at share `long` (module docs).
fn capacity_urls(long: f64, steps: (u64, u64)) -> Vec<String> {
    if long == 0.0 {
        return vec![work_url(steps.0)];
    }
    let n = (1.0 / long).round() as usize;
    let mut urls = vec![work_url(steps.0); n - 1];
    urls.push(work_url(steps.1));
    urls
}

/// The classes of an open-loop window at share `long`.
fn classes(long: f64, steps: (u64, u64)) -> Vec<open::Class> {
    let mut c = vec![open::Class::new(work_url(steps.0), 1.0 - long)];
    if long > 0.0 {
        c.push(open::Class::new(work_url(steps.1), long));
    }
    c
}

/// Measures every server of `running` at share `long`: capacities, then the open loop at
/// [`LOAD`] x `nopreempt`'s (the first server's) capacity.
fn run_share(
    mode: Mode,
    long: f64,
    steps: (u64, u64),
    s: &Settings,
    setup: &Setup,
    running: &mut [&mut Running],
) -> ShareResult {
    assert_eq!(running[0].server, Server::Nopreempt);
    let urls = capacity_urls(long, steps);
    let caps = alternate_over(s.cap_reps, running, &|r, _| capacity_window(mode, r, &urls, s, setup));
    let offered = LOAD * Stat::of(caps[0].iter().map(|c| c.rps).collect()).median;
    let classes = classes(long, steps);
    // Repetition `rep` has the same schedule on every server.
    let windows = alternate_over(s.reps, running, &|r, rep| {
        open_window(mode, r, &classes, offered, 1 + rep as u64, s, setup)
    });
    let runs = running
        .iter()
        .zip(caps.into_iter().zip(windows))
        .map(|(r, (caps, windows))| Runs { server: r.server, caps, windows })
        .collect();
    ShareResult { long, offered, steps, runs }
}

// ---------------------------------------------------------------------------------------
// Output.

/// The long share as a percentage, for people.
fn pct(long: f64) -> String {
    format!("{}%", 100.0 * long)
}

/// The servers of case `q`, in the table's order.
fn case_servers(q: u64) -> [Server; 4] {
    [Server::Nopreempt, Server::Slice(q), Server::Timed(q), Server::Linux]
}

/// One Markdown table per case: a heading line, then a row per server.
fn table(cases: &[(&str, &ShareResult, u64)]) -> String {
    let mut t = String::new();
    for &(name, r, q) in cases {
        let _ = writeln!(
            t,
            "{name}: {} long, Q = {q} µs, offered {:.0} requests/s ({LOAD} x nopreempt's capacity), /work?n={} \
             short, /work?n={} long",
            pct(r.long),
            r.offered,
            r.steps.0,
            r.steps.1
        );
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "| server | capacity requests/s (min-max) | achieved requests/s | short p50 µs | short p99 µs (min-max) | long p50 µs | long p99 µs (min-max) | send lag p99 µs | waited for a connection | errors |"
        );
        let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for server in case_servers(q) {
            let errors = r.errors(server);
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                server.describe(),
                stat_cell(r.capacity(server), 0),
                cell(r.stat(server, |w| w.rps).median, 0),
                cell(r.class_stat(server, SHORT, |c| c.p50_us).median, 0),
                stat_cell(r.class_stat(server, SHORT, |c| c.p99_us), 0),
                cell(r.class_stat(server, LONG, |c| c.p50_us).median, 0),
                stat_cell(r.class_stat(server, LONG, |c| c.p99_us), 0),
                cell(r.stat(server, |w| w.lag_p99_us).median, 0),
                r.queued(server),
                if errors > 0 { format!("**{errors}**") } else { "0".into() },
            );
        }
        let _ = writeln!(t);
    }
    t
}

/// The RESULT line of a case.
fn result_line(name: &str, r: &ShareResult, q: u64) -> String {
    let [nopreempt, slice, timed, linux] = case_servers(q);
    let short_p99 = |s| r.class_stat(s, SHORT, |c| c.p99_us).median;
    let cap = |s| r.capacity(s).median;
    let mut line = format!(
        "RESULT hol case={name} timed_short_p99_us={} nopreempt_short_p99_us={} slice_short_p99_us={} \
         linux_short_p99_us={} timed_rps={} nopreempt_rps={} ratio={}",
        num(short_p99(timed), 1),
        num(short_p99(nopreempt), 1),
        num(short_p99(slice), 1),
        num(short_p99(linux), 1),
        num(cap(timed), 0),
        num(cap(nopreempt), 0),
        num(short_p99(nopreempt) / short_p99(timed), 2),
    );
    let _ = write!(
        line,
        " offered_rps={} slice_rps={} linux_rps={} rps_ratio={} linux_ratio={}",
        num(r.offered, 0),
        num(cap(slice), 0),
        num(cap(linux), 0),
        num(cap(timed) / cap(nopreempt), 3),
        num(short_p99(linux) / short_p99(timed), 2),
    );
    for s in case_servers(q) {
        let _ = write!(
            line,
            " {0}_achieved_rps={1} {0}_short_p50_us={2} {0}_long_p50_us={3} {0}_long_p99_us={4}",
            s.name(),
            num(r.stat(s, |w| w.rps).median, 0),
            num(r.class_stat(s, SHORT, |c| c.p50_us).median, 1),
            num(r.class_stat(s, LONG, |c| c.p50_us).median, 1),
            num(r.class_stat(s, LONG, |c| c.p99_us).median, 1),
        );
    }
    let errors: u64 = case_servers(q).iter().map(|&s| r.errors(s)).sum();
    let _ = write!(
        line,
        " long_share={} q_us={q} short_steps={} long_steps={} errors={errors}",
        r.long, r.steps.0, r.steps.1
    );
    line
}

/// Every window: one line per share, server and window.
fn csv(results: &[ShareResult]) -> String {
    let mut csv = String::from(
        "long_share,server,q_us,kind,rep,offered_rps,rps,short_requests,short_p50_us,short_p99_us,short_max_us,long_requests,long_p50_us,long_p99_us,long_max_us,lag_p99_us,queued,errors,load_cpu_ms\n",
    );
    for r in results {
        for runs in &r.runs {
            let (name, q) =
                (runs.server.name(), runs.server.quantum().map_or(String::new(), |q| q.to_string()));
            for (rep, c) in runs.caps.iter().enumerate() {
                let _ = writeln!(
                    csv,
                    "{},{name},{q},capacity,{rep},,{:.0},,,,,,,,,,,{},{:.1}",
                    r.long, c.rps, c.errors, c.cpu_ms
                );
            }
            for (rep, w) in runs.windows.iter().enumerate() {
                let class = |i: usize| match w.classes.get(i) {
                    Some(c) => format!("{},{:.1},{:.1},{:.1}", c.requests, c.p50_us, c.p99_us, c.max_us),
                    None => ",,,".into(),
                };
                let _ = writeln!(
                    csv,
                    "{},{name},{q},open,{rep},{:.0},{:.0},{},{},{:.1},{},{},{:.1}",
                    r.long,
                    w.offered_rps,
                    w.rps,
                    class(SHORT),
                    class(LONG),
                    w.lag_p99_us,
                    w.queued,
                    w.errors,
                    w.cpu_ms
                );
            }
        }
    }
    csv
}

/// Short requests' p99 against the long share, one line per server, a panel per Q.
fn plot(
    path: &Path,
    head: &str,
    results: &[ShareResult],
    quanta: &[u64],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    let colors = [
        RGBColor(0x7f, 0x7f, 0x7f), // nopreempt
        RGBColor(0x1f, 0x77, 0xb4), // slice
        RGBColor(0xff, 0x7f, 0x0e), // timed
        RGBColor(0xd6, 0x27, 0x28), // linux
    ];
    let panels: Vec<report::Panel> = quanta
        .iter()
        .map(|&q| report::Panel {
            caption: format!("Q = {q} µs"),
            lines: case_servers(q)
                .iter()
                .zip(colors)
                .map(|(&server, color)| report::Line {
                    label: server.describe(),
                    color,
                    points: results
                        .iter()
                        .filter(|r| r.runs(server).is_some())
                        .map(|r| (100.0 * r.long, r.class_stat(server, SHORT, |c| c.p99_us)))
                        .collect(),
                })
                .collect(),
        })
        .collect();
    let all: Vec<Stat> =
        panels.iter().flat_map(|p| &p.lines).flat_map(|l| l.points.iter().map(|p| p.1)).collect();
    let lo = all.iter().map(|s| s.min).filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min) / 2.0;
    let hi = all.iter().map(|s| s.max).filter(|v| v.is_finite()).fold(1.0, f64::max) * 2.0;
    let lo = if lo.is_finite() { lo } else { 1.0 };
    let frame = report::LineFrame {
        title: "Head-of-line blocking: short requests' p99 latency against the share of long ones (lower is better)",
        title_size: 15,
        band: 82,
        head,
        x_desc: "long requests, % (50 µs short, 5 ms long, at 70% of nopreempt's capacity)",
        x: (-0.1, 2.1),
        x_labels: 5,
        x_format: &|x| format!("{x:.1}"),
        y_desc: "short p99, µs (log)",
        y: (lo, hi),
        legend: SeriesLabelPosition::UpperLeft,
    };
    report::line_panels(path, &frame, &panels)
}

// ---------------------------------------------------------------------------------------

fn main() {
    server::run_kweb_if_asked();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = Mode::from_args(&args);
    let s = mode.pick(&SMOKE, &QUICK, &FULL);
    let names: Vec<&'static str> = CASES.iter().map(|c| c.0).collect();
    let filter = harness::CaseFilter::new(&args, &names);
    let cases: Vec<(&'static str, f64, u64)> = CASES.into_iter().filter(|c| filter.wants(c.0)).collect();
    let mut shares: Vec<f64> = Vec::new();
    for &(_, long, _) in &cases {
        if !shares.contains(&long) {
            shares.push(long);
        }
    }
    let quanta: Vec<u64> = QUANTA_US.into_iter().filter(|q| cases.iter().any(|c| c.2 == *q)).collect();

    // Before the pin below: it counts the CPUs this process may use.
    let machine = Machine::probe();
    let cpus = server::allowed_cpus();
    let (load_cpu, server_cpu) = match cpus[..] {
        [a, b, ..] => (a, b),
        [a] => {
            eprintln!("hol bench: only CPU {a} is available: the servers and the load share it, and the figures say little");
            (a, a)
        }
        [] => (0, 0),
    };
    // Everything of this process, the load thread included, stays off the server CPU.
    harness::pin_to(load_cpu);
    let root = std::env::temp_dir().join(format!("hol-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("hol bench: create {}: {e}", root.display()));
    let setup = Setup { root, server_cpu, load_cpu };

    let busy_before = machine::busy_percent(Duration::from_millis(500));
    let head = machine.header(
        mode.name(),
        &format!(
            "capacity {} x {} ms, latency {} x {} ms after {} ms warm-up, medians; servers on CPU {server_cpu}, \
             load on CPU {load_cpu}",
            s.cap_reps,
            s.cap_window.as_millis(),
            s.reps,
            s.window.as_millis(),
            s.warmup.as_millis()
        ),
    );
    println!(
        "hol: head-of-line blocking on one core: kweb /work, {SHORT_US} µs and {LONG_US} µs requests, at {LOAD} \
         of nopreempt's capacity, vs upthread time slices, timed handlers and Linux threads"
    );
    print!("{head}");
    println!("  other load: the CPUs were {busy_before:.0}% busy in the 0.5 s before the run");
    println!();

    // nopreempt first: it is the baseline, and the step counts are its.
    let mut servers = vec![Server::Nopreempt];
    for &q in &quanta {
        servers.extend([Server::Slice(q), Server::Timed(q)]);
    }
    servers.push(Server::Linux);
    let mut running: Vec<Running> = servers.iter().map(|&srv| start(srv, &setup)).collect();
    let steps = (work_steps(&mut running[0], SHORT_US), work_steps(&mut running[0], LONG_US));
    println!(
        "  work: /work?n={} is {SHORT_US} µs and /work?n={} is {LONG_US} µs on nopreempt",
        steps.0, steps.1
    );

    let started = Instant::now();
    let mut results: Vec<ShareResult> = Vec::new();
    for &long in &shares {
        // This share's servers: those of its cases' quanta, nopreempt and linux always.
        let wanted: Vec<u64> = cases.iter().filter(|c| c.1 == long).map(|c| c.2).collect();
        let mut mine: Vec<&mut Running> =
            running.iter_mut().filter(|r| r.server.quantum().is_none_or(|q| wanted.contains(&q))).collect();
        let r = run_share(mode, long, steps, s, &setup, &mut mine);
        let mut line = format!("  {:>5} long, offered {:.0} requests/s; short p99 µs:", pct(long), r.offered);
        for runs in &r.runs {
            let _ = write!(
                line,
                " {} {:.0}",
                runs.server.label(),
                r.class_stat(runs.server, SHORT, |c| c.p99_us).median
            );
        }
        println!("{line}");
        results.push(r);
    }
    drop(running);
    println!("  ({:.1} s of measurements)", started.elapsed().as_secs_f64());
    if mode == Mode::Smoke {
        let answered: u64 = results
            .iter()
            .flat_map(|r| &r.runs)
            .map(|runs| {
                runs.caps.iter().map(|c| c.requests).sum::<u64>()
                    + runs.windows.iter().map(|w| w.requests).sum::<u64>()
            })
            .sum();
        println!("  checked {answered} answers, every one right");
    }

    let by_case: Vec<(&str, &ShareResult, u64)> = cases
        .iter()
        .filter_map(|&(name, long, q)| results.iter().find(|r| r.long == long).map(|r| (name, r, q)))
        .collect();
    let note = format!(
        "Medians of the repetitions (min-max over them). Every server on CPU {server_cpu} (upthread on one \
         vcore), kweb-load on CPU {load_cpu}. Capacity: closed loop, {CAP_CONNS} connections, the long share \
         exact per connection. Latency: open loop, Poisson arrivals at {LOAD} x nopreempt's capacity, a pool of \
         {POOL} connections, timed from each request's scheduled arrival; send lag = how late the generator \
         sent (p99); waited for a connection = requests (all windows) that found the pool busy. nopreempt and \
         linux do not depend on Q: each is measured once per long share and stands on both Q's rows. \
         Other load: the CPUs were {busy_before:.0}% busy in the 0.5 s before the run."
    );
    let report = Report {
        bench: "hol",
        title:
            "head-of-line blocking: upthread without and with time slices, timed-call handlers, Linux threads",
        head: &head,
        note: &note,
        table: table(&by_case),
        csv: csv(&results),
        result_lines: by_case.iter().map(|&(name, r, q)| result_line(name, r, q)).collect(),
        result_lines_in_md: true,
    };
    report::finish(mode, &report, |path| plot(path, &head, &results, &quanta));
    drop(setup);
}
