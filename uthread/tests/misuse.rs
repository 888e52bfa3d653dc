//! Misusing the uthread layer gets an error value or a panic with a clear message, never
//! a crash or a hang. Panics that can unwind (on a uthread or a plain thread) are caught
//! by the test and reported by exit status; a panic in vcore context cannot unwind and
//! must abort after printing its message.

mod common;

use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use common::probe::{assert_aborted_with, assert_unwound_with, expect_unwinding_panic};
use parlib_testkit::{child_outcome, isolated};
use parlib_uthread::{self as uthread, Error, Scheduler, State, TlsMode, Uthread};
use parlib_vcore::{self as vcore, Stack};

const TIMEOUT: Duration = Duration::from_secs(20);

/// A scheduler that must never be used: every `lib_init` given it is refused.
struct Refused;
impl Scheduler for Refused {
    fn sched_entry(&self) -> ! {
        panic!("a refused scheduler was used")
    }
    fn thread_runnable(&self, _: NonNull<Uthread>) {
        panic!("a refused scheduler was used")
    }
}
static REFUSED: Refused = Refused;

/// A fresh, leaked (so forever valid) uthread record.
fn leaked_record() -> NonNull<Uthread> {
    NonNull::from(Box::leak(Box::new(Uthread::new())))
}

/// A uthread that is initialised but never handed to a scheduler (`Created`).
fn created_uthread() -> NonNull<Uthread> {
    fn never_runs(_: *mut ()) -> ! {
        unreachable!("this uthread is never made runnable")
    }
    let uth = leaked_record();
    let stack = Stack::with_default_size().expect("mmap a stack");
    // SAFETY: the record is leaked, so it outlives the uthread; the entry ignores `arg`.
    unsafe { uthread::init(uth, never_runs, core::ptr::null_mut(), stack, TlsMode::None) }
        .expect("uthread::init");
    uth
}

#[test]
fn lib_init_twice_is_an_error() {
    isolated!(TIMEOUT, {
        // A plain thread that makes a second call once main is a uthread. Plain threads
        // may block: it waits on a channel.
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (res_tx, res_rx) = mpsc::channel();
        let plain = std::thread::spawn(move || {
            go_rx.recv().unwrap();
            // SAFETY: the record is leaked, so it lives for the rest of the process.
            res_tx.send(unsafe { uthread::lib_init(&REFUSED, leaked_record()) }).unwrap();
        });

        common::init();
        let main = uthread::main_uthread().unwrap();

        // From a uthread, that is, on a vcore: refused as such, record untouched.
        let spare = leaked_record();
        // SAFETY: the record is leaked, so it lives for the rest of the process.
        let e = unsafe { uthread::lib_init(&REFUSED, spare) }.expect_err("lib_init on a vcore");
        assert_eq!(e, Error::OnVcore);
        assert_eq!(e.errno(), libc::EBUSY);
        // SAFETY: leaked, so valid.
        assert_eq!(unsafe { spare.as_ref() }.state(), State::Idle);

        // From a plain thread, after a successful lib_init.
        go_tx.send(()).unwrap();
        let mut result = None;
        common::wait_until(|| {
            result = res_rx.try_recv().ok();
            result.is_some()
        });
        let e = result.unwrap().expect_err("a second lib_init");
        assert_eq!(e, Error::AlreadyInitialized);
        assert_eq!(e.errno(), libc::EBUSY);
        common::wait_until(|| plain.is_finished());

        assert_eq!(uthread::main_uthread(), Some(main), "main is unchanged");
        assert_eq!(uthread::current(), Some(main));
        // The scheduler in use is still ours: spawning and yielding work.
        common::spawn(TlsMode::Backed, common::yield_now);
        common::wait_all();
    });
}

#[test]
fn lib_init_with_a_bad_vcore_limit_is_an_error_and_can_be_retried() {
    isolated!(TIMEOUT, env = &[(vcore::VCORE_LIMIT_ENV, "abc")], {
        let record = leaked_record();
        // SAFETY: the record is leaked, so it lives for the rest of the process.
        let e = unsafe { uthread::lib_init(&REFUSED, record) }.expect_err("VCORE_LIMIT=abc");
        assert_eq!(e, Error::Vcore(vcore::Error::BadVcoreLimit("abc".into())));
        assert_eq!(e.errno(), libc::EINVAL);
        // SAFETY: leaked, so valid.
        assert_eq!(unsafe { record.as_ref() }.state(), State::Idle, "main's record is untouched");
        assert!(uthread::current().is_none() && uthread::main_uthread().is_none());
        // Nothing started, so a corrected environment may be retried. No other thread of
        // this child reads the environment now.
        std::env::set_var(vcore::VCORE_LIMIT_ENV, "1");
        common::try_init().expect("lib_init retried after fixing VCORE_LIMIT");
        assert_eq!(vcore::max_vcores(), 1);
        assert!(uthread::current().is_some());
    });
}

#[test]
fn requesting_more_vcores_than_exist_from_a_uthread_is_an_error() {
    isolated!(TIMEOUT, {
        common::init();
        let n = vcore::max_vcores();
        assert_eq!(vcore::request(n + 1), Err(vcore::Error::TooManyVcores { requested: n + 1, max: n }));
        assert_eq!(vcore::id(), 0);
        assert_eq!(uthread::current(), uthread::main_uthread());
    });
}

#[test]
fn yield_vcore_from_a_uthread_panics() {
    let out = child_outcome!(TIMEOUT, {
        common::init();
        expect_unwinding_panic(|| vcore::yield_vcore());
    });
    assert_unwound_with(&out, "vcore::yield_vcore called outside vcore context");
}

#[test]
fn yield_with_from_a_plain_thread_panics() {
    let out = child_outcome!(TIMEOUT, {
        expect_unwinding_panic(|| uthread::yield_with(true, uthread::paused));
    });
    assert_unwound_with(&out, "uthread::yield_with must be called from a uthread");
}

#[test]
fn yield_with_from_a_thread_started_on_a_uthread_panics() {
    static INHERITED_GS: AtomicUsize = AtomicUsize::new(0);
    // The new thread inherits its creator's GS base, which points at vcore 0's record;
    // it must still not pass for a uthread.
    let out = child_outcome!(TIMEOUT, {
        common::init();
        let plain = std::thread::spawn(|| {
            INHERITED_GS.store(parlib_vcore::arch::gs_base(), Ordering::Relaxed);
            uthread::yield_with(true, uthread::paused)
        });
        common::wait_until(|| plain.is_finished());
        if INHERITED_GS.load(Ordering::Relaxed) == 0 {
            eprintln!("precondition failed: the new thread did not inherit a GS base");
            std::process::exit(1);
        }
        expect_unwinding_panic(|| {
            if let Err(payload) = plain.join() {
                std::panic::resume_unwind(payload);
            }
        });
    });
    assert_unwound_with(&out, "uthread::yield_with must be called from a uthread");
}

#[test]
fn run_uthread_outside_vcore_context_panics() {
    let out = child_outcome!(TIMEOUT, {
        common::init();
        let uth = created_uthread();
        expect_unwinding_panic(|| uthread::run_uthread(uth));
    });
    assert_unwound_with(&out, "uthread::run_uthread must be called in vcore context");
}

#[test]
fn running_a_uthread_that_is_already_running_aborts_with_a_message() {
    // main spins on vcore 0, Running; a uthread pinned to vcore 1 yields, and its
    // callback (vcore context, on vcore 1) tries to run main too.
    const NEEDS_TWO: &str = "this test needs two vcores";
    let out = child_outcome!(TIMEOUT, {
        common::init();
        if vcore::max_vcores() < 2 {
            println!("{NEEDS_TWO}");
            return;
        }
        common::spawn_on(1, TlsMode::Backed, || {
            let main = uthread::main_uthread().unwrap();
            uthread::yield_with(true, move |_| uthread::run_uthread(main));
        });
        loop {
            std::hint::spin_loop(); // Running on vcore 0 until the abort
        }
    });
    if out.finished && out.stdout.contains(NEEDS_TWO) {
        eprintln!("skipped: {NEEDS_TWO}");
        return;
    }
    assert_aborted_with(&out, "uthread::run_uthread: uthread 0 is already running");
}

#[test]
fn making_the_running_uthread_runnable_panics() {
    // The same check as above, reachable with one vcore: hand the scheduler the uthread
    // that is running.
    let out = child_outcome!(TIMEOUT, {
        common::init();
        let me = uthread::current().unwrap();
        expect_unwinding_panic(|| uthread::runnable(me));
    });
    assert_unwound_with(&out, "uthread::runnable: uthread 0 is already running");
}

#[test]
fn cleanup_of_a_uthread_that_has_not_exited_panics() {
    let out = child_outcome!(TIMEOUT, {
        common::init();
        let uth = created_uthread();
        expect_unwinding_panic(|| {
            // SAFETY: a valid (leaked) record, and we are not it; cleanup must refuse it.
            unsafe { uthread::cleanup(uth) }
        });
    });
    assert_unwound_with(&out, "is Created; only an exited uthread can be cleaned up");
}

#[test]
fn initialising_a_uthread_twice_panics() {
    let out = child_outcome!(TIMEOUT, {
        common::init();
        let uth = created_uthread();
        fn entry(_: *mut ()) -> ! {
            unreachable!()
        }
        let stack = Stack::with_default_size().unwrap();
        expect_unwinding_panic(|| {
            // SAFETY: a valid (leaked) record; init must refuse it, since it is not Idle.
            let _ = unsafe { uthread::init(uth, entry, core::ptr::null_mut(), stack, TlsMode::None) };
        });
    });
    assert_unwound_with(&out, "is Created; only a new or cleaned-up uthread can be initialised");
}
