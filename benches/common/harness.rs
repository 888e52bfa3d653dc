//! How a comparison benchmark runs (`STYLE.md` §6), in the parts every one of them
//! shares: which run the arguments ask for ([`Mode`]) and which cases ([`CaseFilter`]), the order of the sides within a
//! repetition ([`alternate`]), and what its plain Linux threads (baselines, and the
//! driver that times the windows) do around a window: pin themselves to a CPU
//! ([`pin_to`]) and wait, sleeping, until the window is ready ([`wait_until`],
//! [`is_parked`]). Included by path (`#[path = "common/harness.rs"] mod harness;`), like
//! `machine.rs`.

#![allow(dead_code)] // each bench uses a different subset

use std::time::{Duration, Instant};

use parlib::vcore;

/// The cases a run's arguments pick. Words that are not flags pick cases by name, like
/// criterion's filters: a word that is a case's exact name picks that case alone
/// (`conn10` is a prefix of `conn100`), any other word the cases whose names contain
/// it. No words: every case.
pub struct CaseFilter {
    words: Vec<String>,
    names: Vec<&'static str>,
}

impl CaseFilter {
    /// The filter in `args`, for a bench whose cases are `names` (they decide which words
    /// are exact names; a bench that builds its names may pass none).
    pub fn new(args: &[String], names: &[&'static str]) -> CaseFilter {
        let words = args.iter().filter(|a| !a.starts_with('-')).cloned().collect();
        CaseFilter { words, names: names.to_vec() }
    }

    /// Whether `case` runs.
    pub fn wants(&self, case: &str) -> bool {
        let picks = |w: &str| case == w || (!self.names.contains(&w) && case.contains(w));
        self.words.is_empty() || self.words.iter().any(|w| picks(w))
    }
}

/// What one loop iteration of a yield benchmark measures with `per_core` threads on each
/// core: with one, nothing else is runnable, so a Linux thread's `sched_yield` returns
/// without switching (a system call round trip) and a uthread's yield comes back to
/// itself: a *yield*. With more, each yield is a *switch*.
pub fn yield_measures(per_core: usize) -> &'static str {
    if per_core == 1 {
        "yield"
    } else {
        "switch"
    }
}

/// Which run `cargo` asked for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// No `--bench` flag (`cargo test --benches`, or the binary run by hand): a short run
    /// that checks that everything works, like criterion's test mode. It prints no RESULT
    /// lines and writes no files.
    Smoke,
    /// `--bench --quick`: fewer and shorter windows; prints only.
    Quick,
    /// `--bench`: the full run, which also writes its results to files.
    Full,
}

impl Mode {
    /// The mode the bench's arguments ask for. `cargo bench` passes `--bench` (and may
    /// pass filters and criterion's flags); only `--quick` and the presence of `--bench`
    /// mean anything here.
    pub fn from_args(args: &[String]) -> Mode {
        if !args.iter().any(|a| a == "--bench") {
            Mode::Smoke
        } else if args.iter().any(|a| a == "--quick") {
            Mode::Quick
        } else {
            Mode::Full
        }
    }

    /// What the header's `run:` line calls this run.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Smoke => "smoke test (no --bench flag)",
            Mode::Quick => "quick",
            Mode::Full => "full",
        }
    }

    /// The one of a bench's three settings that belongs to this mode.
    pub fn pick<'a, T>(self, smoke: &'a T, quick: &'a T, full: &'a T) -> &'a T {
        match self {
            Mode::Smoke => smoke,
            Mode::Quick => quick,
            Mode::Full => full,
        }
    }

    /// Whether this run writes the table, the CSV and the plot to files.
    pub fn writes_files(self) -> bool {
        self == Mode::Full
    }
}

/// Runs `reps` repetitions of every side of one case: `sides[i](rep)` measures side `i`
/// once. Within a repetition the sides run in turn, and their order is reversed on every
/// other repetition, so that a slow drift of the machine hits them all alike. Returns
/// each side's measurements in the order of the repetitions.
pub fn alternate<T>(reps: usize, sides: &mut [&mut dyn FnMut(usize) -> T]) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = sides.iter().map(|_| Vec::new()).collect();
    for rep in 0..reps {
        let order: Vec<usize> =
            if rep % 2 == 0 { (0..sides.len()).collect() } else { (0..sides.len()).rev().collect() };
        for i in order {
            out[i].push(sides[i](rep));
        }
    }
    out
}

/// Pins the calling Linux thread to `cpu`.
pub fn pin_to(cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is the empty set; we add one CPU and pin the calling
    // thread (pid 0) to it with a set of the size we pass.
    let r = unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(r, 0, "cannot pin a Linux thread to CPU {cpu}: {}", std::io::Error::last_os_error());
}

/// How often [`wait_until`] looks whether a window is ready (its workers arrived, its
/// vcores parked or idle). Short against a window, long enough not to steal noticeable
/// time from the threads and vcores it waits for.
pub const POLL: Duration = Duration::from_micros(50);

/// After this long waiting for a window to be ready, say so on stderr (something hangs).
pub const STALL_WARNING: Duration = Duration::from_secs(5);

/// Polls `ready` every [`POLL`], sleeping (the caller is a plain Linux thread, not a
/// vcore), until it holds. If it still does not after [`STALL_WARNING`], calls `stalled`
/// once, to say so on stderr.
pub fn wait_until(ready: impl Fn() -> bool, stalled: impl FnOnce()) {
    let start = Instant::now();
    let mut stalled = Some(stalled);
    while !ready() {
        std::thread::sleep(POLL);
        if let Some(say) = stalled.take_if(|_| start.elapsed() > STALL_WARNING) {
            say();
        }
    }
}

/// Whether vcore `v` exists and is parked.
pub fn is_parked(v: usize) -> bool {
    vcore::get(v).is_ok_and(|vc| vc.is_parked())
}
