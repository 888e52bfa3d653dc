//! What a comparison benchmark records about the run (`STYLE.md` §6): the machine, the
//! kernel, the build and the date, as the header a bench prints and writes above its
//! results. Included by path (`#[path = "common/machine.rs"] mod machine;`), separately
//! from the scheduler in `mod.rs`, by the benches that use it.

#![allow(dead_code)] // each bench uses a different subset

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use parlib::vcore;

/// The machine and build a run happened on.
pub struct Machine {
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// CPUs the process may use.
    pub cpus_online: usize,
    /// `uname -r`.
    pub kernel: String,
    /// The kernel's clock source (`tsc`, `kvm-clock`, ...): what `clock_gettime` reads.
    pub clocksource: String,
    /// `git rev-parse --short HEAD`, with `-dirty` if tracked files differ.
    pub commit: String,
    /// `rustc -V`.
    pub rustc: String,
    /// When the run started, UTC.
    pub date: String,
}

impl Machine {
    /// Gathers everything. Call it before `lib_init`: it runs `git` and `rustc`, which is
    /// no work for a vcore.
    pub fn probe() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, m)| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let clocksource =
            std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into());
        Machine {
            cpu_model,
            cpus_online: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: kernel_release(),
            clocksource,
            commit: commit(),
            rustc: command_output("rustc", &["-V"]).unwrap_or_else(|| "unknown".into()),
            date: utc_now(),
        }
    }

    /// The header of a run: the `machine:`, `kernel:` and `build:` lines, then
    /// `run:     <run> (<how>), <date>`, where `run` names the run (`quick`, `full`, ...)
    /// and `how` says how long and how often it measures. Call after `lib_init` (it counts
    /// vcores and asks how the FS base is written).
    /// A bench whose parlib runtimes run in server processes of their own (`kweb`, `hol`)
    /// has no vcores itself: the line then leaves the count out.
    pub fn header(&self, run: &str, how: &str) -> String {
        let mut h = String::new();
        let vcores = match vcore::max_vcores() {
            0 => String::new(),
            n => format!(", {n} vcores"),
        };
        let _ = writeln!(h, "machine: {}, {} CPUs online{vcores}", self.cpu_model, self.cpus_online);
        let _ = writeln!(
            h,
            "kernel:  {}, clocksource {}, FSGSBASE: {}",
            self.kernel,
            self.clocksource,
            if vcore::arch::uses_fsgsbase() { "yes (wrfsbase)" } else { "no (arch_prctl)" }
        );
        let _ = writeln!(h, "build:   commit {}, {}", self.commit, self.rustc);
        let _ = writeln!(h, "run:     {run} ({how}), {}", self.date);
        h
    }
}

/// How busy the machine's CPUs were over the next `d` (100 − the idle share of
/// `/proc/stat`'s `cpu` line, idle and iowait counting as idle), sampled by sleeping:
/// the other work a run on a shared machine competes with. NaN if `/proc/stat` cannot be
/// read. Call it from a plain thread (it sleeps).
pub fn busy_percent(d: Duration) -> f64 {
    let sample = || -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
        let v: Vec<u64> = cpu.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal; idle and iowait are idle time.
        let total: u64 = v.iter().take(8).sum();
        Some((v.get(3)? + v.get(4)?, total))
    };
    let before = sample();
    std::thread::sleep(d);
    match (before, sample()) {
        (Some((i0, t0)), Some((i1, t1))) if t1 > t0 => 100.0 * (1.0 - (i1 - i0) as f64 / (t1 - t0) as f64),
        _ => f64::NAN,
    }
}

fn kernel_release() -> String {
    // SAFETY: uname fills the zeroed struct we pass; `release` is NUL-terminated.
    unsafe {
        let mut u: libc::utsname = core::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return "unknown".into();
        }
        std::ffi::CStr::from_ptr(u.release.as_ptr()).to_string_lossy().into_owned()
    }
}

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `git rev-parse --short HEAD`, plus "-dirty" if tracked files differ from it. Read-only:
/// `--no-optional-locks` keeps `git status` from refreshing the index.
fn commit() -> String {
    let Some(head) = command_output("git", &["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    let dirty =
        command_output("git", &["--no-optional-locks", "status", "--porcelain", "--untracked-files=no"])
            .is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head}-dirty")
    } else {
        head
    }
}

/// The current UTC date and time, `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date: H. Hinnant, "chrono-Compatible Low-Level
    // Date Algorithms", civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}
