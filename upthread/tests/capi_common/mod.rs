//! Helpers shared by the `capi_*` test files (`mod capi_common;`): run a closure on an
//! upthread thread or a plain Linux thread and collect its result from either kind of
//! caller, wait without blocking a vcore, build absolute deadlines, read `errno`, make
//! zeroed objects as C's static storage would hold them, and the checks every file makes
//! alike (a table of calls and their results, the `pshared` attribute).

#![allow(dead_code)]

use std::fmt::Debug;
use std::ptr::{null, null_mut};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::Duration;

use libc::{c_int, EINVAL, ENOTSUP, PTHREAD_PROCESS_PRIVATE, PTHREAD_PROCESS_SHARED};

/// A watchdog long enough for a loaded machine running a debug build: the tests never
/// assert on speed, so this only bounds a hang (a lost wake-up, a deadlock).
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// Starts upthread in a test child: the test thread becomes `main`, a uthread.
pub fn init() {
    parlib_upthread::init().expect("parlib_upthread::init");
}

/// Which kind of caller runs a piece of a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// An upthread thread (a uthread).
    Uthread,
    /// A plain Linux thread.
    Thread,
}

/// Both kinds, for checks that must hold from each.
pub const BOTH: [Who; 2] = [Who::Uthread, Who::Thread];

/// Alternates the kinds: `mixed(i)` for the i-th participant of a test.
pub fn mixed(i: usize) -> Who {
    BOTH[i % 2]
}

/// A closure running on another caller; [`Task::join`] collects its result.
pub struct Task<T> {
    rx: Receiver<T>,
    result: Option<T>,
    who: Who,
}

/// Starts `f` on a new caller of kind `who`. Callable from a uthread or a plain thread
/// (upthread must be initialised for `Who::Uthread`).
pub fn start<T: Send + 'static>(who: Who, f: impl FnOnce() -> T + Send + 'static) -> Task<T> {
    let (tx, rx) = mpsc::channel();
    let body = move || {
        // The receiver is gone only if the test already failed.
        let _ = tx.send(f());
    };
    match who {
        // Detached: the channel reports completion.
        Who::Uthread => drop(parlib_upthread::spawn(body)),
        Who::Thread => drop(spawn_plain(body)),
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
                    panic!("a {:?} of this test died without a result", self.who)
                }
            }
        }
        self.result.is_some()
    }

    /// Waits for the result without blocking a vcore (see [`wait_until`]).
    pub fn join(mut self) -> T {
        wait_until(|| self.is_finished());
        self.result.take().expect("finished")
    }
}

/// Runs `f` on a new caller of kind `who` and returns its result.
pub fn run_as<T: Send + 'static>(who: Who, f: impl FnOnce() -> T + Send + 'static) -> T {
    start(who, f).join()
}

/// Starts upthread, then runs `check` on a uthread and then on a plain thread, telling it
/// which it is on: for checks that must hold from either kind of caller. Call it inside
/// the test's own `isolated!`, which names the test's child process after the enclosing
/// fn and so cannot move in here; its watchdog bounds a hang in `check`.
pub fn check_from_both(check: fn(Who)) {
    init();
    for who in BOTH {
        run_as(who, move || check(who));
    }
}

/// Asserts that every call of the table returned `expected`, naming the call that did
/// not: `[("upthread_mutex_lock", upthread_mutex_lock(null_mut())), ...]`. A call whose
/// null pointer is not its first argument says which (`"..., null out"`).
pub fn assert_all_return<T: PartialEq + Debug>(expected: T, calls: &[(&str, T)]) {
    for (call, got) in calls {
        assert_eq!(*got, expected, "{call}");
    }
}

/// `pthread_*attr_setpshared` of some attribute type `A`.
pub type SetPshared<A> = unsafe extern "C" fn(*mut A, c_int) -> c_int;
/// `pthread_*attr_getpshared` of some attribute type `A`.
pub type GetPshared<A> = unsafe extern "C" fn(*const A, *mut c_int) -> c_int;

/// The `pshared` attribute as every attribute type has it: `PTHREAD_PROCESS_PRIVATE` by
/// default and the only value taken (0), `PTHREAD_PROCESS_SHARED` refused with `ENOTSUP`,
/// anything else and null pointers with `EINVAL`, a refused value changing nothing.
///
/// # Safety
/// `attr` must point to initialised attributes of the type `set` and `get` take.
pub unsafe fn check_pshared<A>(set: SetPshared<A>, get: GetPshared<A>, attr: *mut A) {
    let mut v = -1;
    // SAFETY: `attr` is initialised, by the caller's contract; `v` is writable; null
    // pointers are refused before use.
    unsafe {
        assert_eq!(get(attr, &mut v), 0, "getpshared");
        assert_eq!(v, PTHREAD_PROCESS_PRIVATE, "the default");
        assert_eq!(set(attr, PTHREAD_PROCESS_PRIVATE), 0, "setpshared(PTHREAD_PROCESS_PRIVATE)");
        assert_eq!(set(attr, PTHREAD_PROCESS_SHARED), ENOTSUP, "setpshared(PTHREAD_PROCESS_SHARED)");
        for bad in [2, 7, -1] {
            assert_eq!(set(attr, bad), EINVAL, "setpshared({bad})");
        }
        assert_eq!(get(attr, &mut v), 0);
        assert_eq!(v, PTHREAD_PROCESS_PRIVATE, "a refused value changes nothing");
        assert_eq!(set(null_mut(), PTHREAD_PROCESS_PRIVATE), EINVAL, "setpshared, null attr");
        assert_eq!(get(null(), &mut v), EINVAL, "getpshared, null attr");
        assert_eq!(get(attr, null_mut()), EINVAL, "getpshared, null out");
    }
}

/// A plain Linux thread with the process's whole CPU set: one created on a vcore would
/// inherit that vcore's pin to a single CPU and compete with it.
pub fn spawn_plain<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        if let Some(cpus) = parlib_vcore::process_cpus() {
            // SAFETY: sched_setaffinity on the calling thread (0) with a valid set of the
            // right size.
            unsafe { libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), cpus.as_raw()) };
        }
        f()
    })
}

/// Whether the caller is a uthread.
pub fn on_uthread() -> bool {
    parlib_uthread::current().is_some()
}

/// Waits until `done()` holds: by yielding on a uthread (blocking would stall its
/// vcore), by short sleeps on a plain thread.
pub fn wait_until(mut done: impl FnMut() -> bool) {
    while !done() {
        pause();
    }
}

/// Gives others a turn: a yield on a uthread, a short sleep on a plain thread.
pub fn pause() {
    if on_uthread() {
        parlib_upthread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Sleeps `d` without blocking a vcore.
pub fn sleep(d: Duration) {
    parlib_alarms::sleep(d);
}

fn now(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock and a writable timespec.
    assert_eq!(unsafe { libc::clock_gettime(clock, &mut ts) }, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos() as i64 }
}

/// The absolute `CLOCK_REALTIME` time `d` from now, as the timed calls take it.
pub fn realtime_in(d: Duration) -> libc::timespec {
    timespec(now(libc::CLOCK_REALTIME) + d)
}

/// The absolute `CLOCK_MONOTONIC` time `d` from now.
pub fn monotonic_in(d: Duration) -> libc::timespec {
    timespec(now(libc::CLOCK_MONOTONIC) + d)
}

/// An absolute time that has long passed (the epoch).
pub const PAST: libc::timespec = libc::timespec { tv_sec: 0, tv_nsec: 0 };
/// A `tv_nsec` out of range (one second's worth).
pub const BAD_NSEC: libc::timespec = libc::timespec { tv_sec: 0, tv_nsec: 1_000_000_000 };
/// A negative `tv_nsec`.
pub const NEGATIVE_NSEC: libc::timespec = libc::timespec { tv_sec: 0, tv_nsec: -1 };

/// The calling thread's `errno`.
pub fn errno() -> i32 {
    // SAFETY: `__errno_location` is always valid for the calling thread.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's `errno`.
pub fn set_errno(e: i32) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e };
}

/// `EINVAL (22)` and the like, for messages.
pub fn name(e: i32) -> String {
    format!("{} ({e})", std::io::Error::from_raw_os_error(e))
}

/// A `T` in fresh, all-zero heap memory that is never freed: what a C program's
/// `static T x;` or `calloc` gives it. Returned as a raw pointer, as C code holds it.
pub fn zeroed<T>() -> *mut T {
    let layout = std::alloc::Layout::new::<T>();
    // SAFETY: the C types used here have a non-zero size.
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!p.is_null(), "allocation failed");
    p.cast()
}

/// A raw pointer that may cross to another thread: the objects the tests share are
/// leaked (never freed) and only used through the thread-safe C API.
#[derive(Clone, Copy)]
pub struct Shared<T>(pub *mut T);
// SAFETY: see above.
unsafe impl<T> Send for Shared<T> {}
// SAFETY: see above.
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// A zeroed, leaked `T` (see [`zeroed`]).
    pub fn zeroed() -> Shared<T> {
        Shared(zeroed())
    }

    /// The pointer.
    pub fn get(self) -> *mut T {
        self.0
    }
}
