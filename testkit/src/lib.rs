//! # parlib-testkit: process isolation and watchdogs for parlib-rs tests
//!
//! parlib's runtime is process-wide: `lib_init` runs once, `main` moves onto vcore 0,
//! vcore tasks live until exit. So every test that starts the runtime runs in a fresh
//! child process: the test binary re-executes itself with a filter naming just that
//! test. The parent is the watchdog: a child that does not finish in time (a deadlock,
//! a lost wake-up) is killed and the test fails with a message and the child's output.
//! This works the same under `cargo test` and `cargo nextest`.
//!
//! ```no_run
//! use std::time::Duration;
//! #[test]
//! fn uthreads_run() {
//!     parlib_testkit::isolated!(Duration::from_secs(30), {
//!         // lib_init, spawn, assert ...
//!     });
//! }
//! ```
//!
//! [`probe`] holds checks shared by every layer's tests (stack alignment, clean panics
//! on misuse); [`rng`], random test inputs and self-checking byte patterns. The test scheduler that runs uthreads in those tests is the separate crate
//! `parlib-testsched` (`testkit/sched/`), which depends on the layers this crate must not.

#![warn(missing_docs)]

pub mod probe;
pub mod rng;

pub use rng::{fill_pattern, Rng};

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Set in a child to the test it must run.
pub const CHILD_ENV: &str = "PARLIB_TESTKIT_CHILD";
const OK_MARKER: &str = "PARLIB_TESTKIT_OK";

/// The path of the enclosing function, without the crate name: the name libtest filters
/// on.
#[macro_export]
macro_rules! test_name {
    () => {{
        fn f() {}
        let full = ::std::any::type_name_of_val(&f);
        let full = &full[..full.len() - 3];
        match full.find("::") {
            Some(i) => &full[i + 2..],
            None => full,
        }
    }};
}

/// Runs the block in a child process under a watchdog of the given timeout; the test
/// fails if the child fails, crashes or hangs.
#[macro_export]
macro_rules! isolated {
    ($timeout:expr, $body:block) => {
        $crate::isolated_by_name($crate::test_name!(), $timeout, &[], || $body)
    };
    ($timeout:expr, env = $env:expr, $body:block) => {
        $crate::isolated_by_name($crate::test_name!(), $timeout, $env, || $body)
    };
}

/// Runs the block in a child process and returns what it did, without judging it: for
/// tests whose point is how the child fails.
#[macro_export]
macro_rules! child_outcome {
    ($timeout:expr, env = $env:expr, $body:block) => {
        $crate::outcome_by_name($crate::test_name!(), $timeout, $env, || $body)
    };
    ($timeout:expr, $body:block) => {
        $crate::outcome_by_name($crate::test_name!(), $timeout, &[], || $body)
    };
}

/// What a child process did.
#[derive(Debug)]
pub struct Outcome {
    /// Its exit status (`None` if the watchdog killed it).
    pub status: Option<ExitStatus>,
    /// Whether it reached the end of the test body.
    pub finished: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Outcome {
    /// Standard output and error together, for messages.
    pub fn output(&self) -> String {
        format!("--- stdout ---\n{}\n--- stderr ---\n{}", self.stdout, self.stderr)
    }
}

fn in_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|v| v == name)
}

/// Body of [`isolated!`].
pub fn isolated_by_name(name: &str, timeout: Duration, env: &[(&str, &str)], body: impl FnOnce()) {
    let out = outcome_by_name(name, timeout, env, body);
    match out.status {
        None => panic!(
            "watchdog: test `{name}` did not finish within {timeout:?} (deadlock or lost wake-up?)\n{}",
            out.output()
        ),
        Some(s) if !s.success() || !out.finished => {
            panic!("test `{name}` failed in its child process ({s})\n{}", out.output())
        }
        Some(_) => {}
    }
}

/// Body of [`child_outcome!`]. In the child this runs `body` and exits; in the parent it
/// spawns the child and waits for it, at most `timeout`.
pub fn outcome_by_name(name: &str, timeout: Duration, env: &[(&str, &str)], body: impl FnOnce()) -> Outcome {
    if in_child(name) {
        use std::io::Write;
        // Exit here either way: the runtime may have moved this test's thread onto a
        // vcore, where libtest would wait forever for it to finish after a panic.
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_ok();
        if !ok {
            let _ = std::io::stderr().flush();
            std::process::exit(101);
        }
        // On a line of its own: libtest has printed "test NAME ... " without a newline.
        println!("\n{OK_MARKER} {name}");
        let _ = std::io::stdout().flush();
        std::process::exit(0);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    // `--include-ignored`: the parent already decided to run this test (an `#[ignore]`d
    // one only under `--ignored`), so the child must not skip it.
    cmd.args([name, "--exact", "--include-ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Children that abort on purpose (misuse, faults) must not leave core files behind.
    // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn test child");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for test child") {
            break Some(s);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    let finished = stdout.lines().any(|l| l.trim() == format!("{OK_MARKER} {name}"));
    Outcome { status, finished, stdout, stderr }
}

/// Process CPU time (user + system) so far.
pub fn process_cpu_time() -> Duration {
    // SAFETY: an all-zero timespec is valid; clock_gettime writes it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid clock id and pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
