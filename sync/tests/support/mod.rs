//! Helpers shared by the sync test files, next to the test scheduler (`common`, the
//! crate `parlib-testsched`). Each test file says
//!
//! ```ignore
//! use parlib_testsched as common;
//! mod support;
//! ```
//!
//! * [`Who`] and [`start`]: run a closure on a new uthread or a new plain Linux thread
//!   and collect its result later, from either kind of caller;
//! * [`wait_until_blocked`]: wait until a uthread is queued in a sync primitive;
//! * [`wait_until_asleep`]: the same for a plain thread (it sleeps on its futex);
//! * [`spawn_plain`]: a plain thread that is not pinned to the CPU of the vcore that
//!   created it.

#![allow(dead_code)]

use std::ptr::NonNull;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::Duration;

use parlib_uthread::{self as uthread, State, TlsMode, Uthread};

use crate::common;

/// Which kind of caller runs a piece of a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// A new uthread of the test scheduler (its own TLS).
    Uthread,
    /// A new plain Linux thread.
    Thread,
}

/// Both kinds, for tests that check the same thing from each.
pub const BOTH: [Who; 2] = [Who::Uthread, Who::Thread];

/// A closure running on another uthread or thread; [`Task::join`] collects its result.
pub struct Task<T> {
    rx: Receiver<T>,
    result: Option<T>,
    who: Who,
}

/// Starts `f` on a new caller of kind `who`. Callable from a uthread (the runtime must
/// be up for `Who::Uthread`) or a plain thread.
pub fn start<T: Send + 'static>(who: Who, f: impl FnOnce() -> T + Send + 'static) -> Task<T> {
    let (tx, rx) = mpsc::channel();
    let body = move || {
        // The receiver may be gone if the test already failed; nothing to report then.
        let _ = tx.send(f());
    };
    match who {
        Who::Uthread => {
            common::spawn(TlsMode::Backed, body);
        }
        Who::Thread => {
            // Detached: the channel reports completion.
            drop(spawn_plain(body));
        }
    }
    Task { rx, result: None, who }
}

impl<T> Task<T> {
    /// Whether the closure has returned.
    pub fn is_finished(&mut self) -> bool {
        if self.result.is_none() {
            match self.rx.try_recv() {
                Ok(v) => self.result = Some(v),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    panic!("a {:?} of this test died without a result (it panicked)", self.who)
                }
            }
        }
        self.result.is_some()
    }

    /// Waits for the closure's result: by yielding on a uthread (blocking would stall
    /// its vcore), by blocking on a plain thread.
    pub fn join(mut self) -> T {
        if uthread::current().is_some() {
            common::wait_until(|| self.is_finished());
            return self.result.take().expect("finished");
        }
        if let Some(v) = self.result.take() {
            return v;
        }
        self.rx.recv().unwrap_or_else(|_| panic!("a {:?} of this test died without a result", self.who))
    }
}

/// Runs `f` on a new caller of kind `who` and returns its result.
pub fn run_as<T: Send + 'static>(who: Who, f: impl FnOnce() -> T + Send + 'static) -> T {
    start(who, f).join()
}

/// Starts a plain Linux thread with the process's whole CPU set: a thread created on a
/// vcore inherits that vcore's pin to one CPU, and would then compete with it.
pub fn spawn_plain<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        if let Some(cpus) = parlib_vcore::process_cpus() {
            // SAFETY: sched_setaffinity on the calling thread (0) with a valid set of
            // the right size.
            unsafe { libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), cpus.as_raw()) };
        }
        f()
    })
}

/// Runs `f` on a new plain thread and returns its result (see [`Task::join`]).
pub fn on_plain_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    run_as(Who::Thread, f)
}

/// Waits until `done()` holds: by yielding on a uthread, by short sleeps on a plain
/// thread (where sleeping blocks nobody else).
pub fn wait_for(mut done: impl FnMut() -> bool) {
    if uthread::current().is_some() {
        common::wait_until(done);
    } else {
        while !done() {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// Gives others a turn: a yield on a uthread, a short sleep on a plain thread.
pub fn pause() {
    if uthread::current().is_some() {
        common::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Yields until `uth` is `Blocked`. A sync primitive marks its waiter `Blocked` (in the
/// yield callback) before it releases its queue lock, so from then on a waker finds it
/// queued.
///
/// # Safety
/// `uth`'s record must stay alive until it is `Blocked`: the caller knows the uthread
/// cannot exit before someone wakes it.
pub unsafe fn wait_until_blocked(uth: NonNull<Uthread>) {
    // SAFETY: the caller keeps the record alive; `state` is an atomic load.
    common::wait_until(|| unsafe { uth.as_ref() }.state() == State::Blocked);
}

/// The calling thread's kernel id.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Whether task `tid` of this process is asleep (`S` in `/proc/self/task/TID/stat`).
pub fn task_asleep(tid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": the state follows the last ')' (comm may contain anything).
    stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('S'))
}

/// Waits until plain thread `tid` is asleep. For a thread whose only possible sleep is
/// the futex wait of a sync primitive, that means it is queued there. Polled from a
/// plain thread, so no vcore waits on `/proc`.
pub fn wait_until_asleep(tid: i32) {
    on_plain_thread(move || {
        while !task_asleep(tid) {
            std::thread::sleep(Duration::from_micros(200));
        }
    });
}

/// Collects the first few failures seen by uthreads or threads, for the test's main
/// body to report: uthreads must not panic while other uthreads hold locks they need
/// (a panic there aborts the whole child with a less useful message).
pub struct Failures {
    count: std::sync::atomic::AtomicUsize,
    first: parlib_vcore::spin::SpinLock<Vec<String>>,
}

impl Failures {
    /// No failures yet.
    pub const fn new() -> Failures {
        Failures {
            count: std::sync::atomic::AtomicUsize::new(0),
            first: parlib_vcore::spin::SpinLock::new(Vec::new()),
        }
    }

    /// Records a failure (keeps the first ten messages).
    pub fn record(&self, msg: impl FnOnce() -> String) {
        if self.count.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 10 {
            let m = msg();
            // Hold the spinlock with notifications off: it is also taken by uthreads
            // that a tick may preempt (see PdrSpinLock for why that matters).
            let _g = uthread::NotifGuard::new();
            self.first.lock().push(m);
        }
    }

    /// Fails with every recorded message if there were any.
    pub fn assert_none(&self, what: &str) {
        let n = self.count.load(std::sync::atomic::Ordering::Relaxed);
        if n != 0 {
            let msgs = {
                let _g = uthread::NotifGuard::new();
                self.first.lock().join("\n  ")
            };
            panic!("{what}: {n} failure(s), first ones:\n  {msgs}");
        }
    }
}
