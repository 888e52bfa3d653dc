//! Helpers shared by the alarms test files (`mod support;`), next to the uthread test
//! scheduler they all use as `common` (the crate `parlib-testsched`).

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

/// Starts the runtime for an alarms test: the uthread test scheduler on every vcore
/// (the calling test thread becomes the uthread `main` on vcore 0), then the alarm
/// service, which needs the vcore and events layers `lib_init` brought up.
pub fn init_runtime(init_scheduler: fn()) {
    init_scheduler();
    parlib_alarms::init().expect("parlib_alarms::init after uthread::lib_init");
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock alarm deadlines are on.
pub fn now() -> u64 {
    parlib_sync::now_ns()
}

#[allow(unused_imports)] // each test binary uses its own part of this module
pub use parlib_testkit::Rng;

/// Seeds handed out by [`seed`]: each caller gets its own stream.
static SEEDS: AtomicU64 = AtomicU64::new(1);

/// A fresh seed: the clock mixed with a process-wide counter, so repeated runs cover
/// different inputs. Tests print what they saw, not the seed: a failure names the alarm
/// or round that broke the rule.
pub fn seed() -> u64 {
    now() ^ SEEDS.fetch_add(0x1000_0001, Ordering::Relaxed).rotate_left(17)
}

/// A uthread or plain thread started by [`Task::uthread`] / [`Task::thread`], whose result
/// (or panic message) the test collects with [`Task::join`].
pub struct Task<T> {
    result: std::sync::Arc<parlib_sync::Mutex<Option<Result<T, String>>>>,
}

impl<T: Send + 'static> Task<T> {
    fn body(f: impl FnOnce() -> T + Send + 'static) -> (Self, impl FnOnce() + Send + 'static) {
        let result = std::sync::Arc::new(parlib_sync::Mutex::new(None));
        let slot = result.clone();
        let run = move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|e| {
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a non-string panic".into())
            });
            *slot.lock() = Some(r);
        };
        (Task { result }, run)
    }

    /// Runs `f` on a new uthread (any vcore, its own TLS).
    pub fn uthread(f: impl FnOnce() -> T + Send + 'static) -> Self {
        let (task, run) = Self::body(f);
        crate::common::spawn(parlib_uthread::TlsMode::Backed, run);
        task
    }

    /// Runs `f` on a new uthread pinned to vcore `v`.
    pub fn uthread_on(v: usize, f: impl FnOnce() -> T + Send + 'static) -> Self {
        let (task, run) = Self::body(f);
        crate::common::spawn_on(v, parlib_uthread::TlsMode::Backed, run);
        task
    }

    /// Runs `f` on a new plain Linux thread, free to run on any of the process's CPUs (a
    /// thread started from a vcore inherits its pin to one CPU, which it would share with
    /// a busy vcore).
    pub fn thread(f: impl FnOnce() -> T + Send + 'static) -> Self {
        let (task, run) = Self::body(f);
        std::thread::spawn(move || {
            unpin_thread();
            run()
        });
        task
    }

    /// Waits, by yielding (call it from a uthread), for the result; re-raises a panic of
    /// the task here with its message.
    pub fn join(self) -> T {
        loop {
            if let Some(r) = self.result.lock().take() {
                return r.unwrap_or_else(|msg| panic!("task panicked: {msg}"));
            }
            crate::common::yield_now();
        }
    }
}

/// Lets the calling plain thread run on every CPU the process may use.
pub fn unpin_thread() {
    if let Some(set) = parlib_vcore::process_cpus() {
        // SAFETY: `set` is a valid cpu_set_t of the right size; 0 is the calling thread.
        unsafe { libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), set.as_raw()) };
    }
}
