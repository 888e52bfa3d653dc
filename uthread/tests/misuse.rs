//! Misusing the uthread layer gets an error value or a panic with a clear message, never
//! a crash or a hang. Panics that can unwind (on a uthread or a plain thread) are caught
//! by the test and reported by exit status; a panic in vcore context cannot unwind and
//! must abort after printing its message.

use parlib_testsched as common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use parlib_testkit::probe::{assert_aborted_with, assert_unwound_with, expect_unwinding_panic};
use parlib_testkit::{child_outcome, isolated};
use parlib_uthread::{self as uthread, Blocked, Error, Runnable, Scheduler, TlsMode};
use parlib_vcore::{self as vcore, spin::SpinLock, Stack};

const TIMEOUT: Duration = Duration::from_secs(20);

/// A scheduler that must never be used: every `lib_init` given it is refused.
struct Refused;
impl Scheduler for Refused {
    type Thread = u64;
    fn sched_entry(&self) -> ! {
        panic!("a refused scheduler was used")
    }
    fn thread_runnable(&self, _: Runnable<u64>) {
        panic!("a refused scheduler was used")
    }
}
static REFUSED: Refused = Refused;

/// A scheduler that keeps the one uthread made runnable where a test can take it, and
/// otherwise only ever runs `main` (which never yields in these tests).
struct Stash(SpinLock<Option<Runnable<()>>>);
impl Scheduler for Stash {
    type Thread = ();
    fn sched_entry(&self) -> ! {
        loop {
            let next = self.0.lock().take();
            if let Some(t) = next {
                uthread::run_uthread(t);
            }
            std::hint::spin_loop();
        }
    }
    fn thread_runnable(&self, t: Runnable<()>) {
        *self.0.lock() = Some(t);
    }
}
static STASH: Stash = Stash(SpinLock::new(None));

#[test]
fn lib_init_twice_is_an_error() {
    isolated!(TIMEOUT, {
        // A plain thread that makes a second call once main is a uthread. Plain threads
        // may block: it waits on a channel.
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (res_tx, res_rx) = mpsc::channel();
        let plain = std::thread::spawn(move || {
            go_rx.recv().unwrap();
            res_tx.send(uthread::lib_init(&REFUSED, 7)).unwrap();
        });

        common::init();
        let main = uthread::main_uthread().unwrap();

        // From a uthread, that is, on a vcore: refused as such.
        let e = uthread::lib_init(&REFUSED, 7).expect_err("lib_init on a vcore");
        assert_eq!(e, Error::OnVcore);
        assert_eq!(e.errno(), libc::EBUSY);

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
        let e = uthread::lib_init(&REFUSED, 7).expect_err("VCORE_LIMIT=abc");
        assert_eq!(e, Error::Vcore(vcore::Error::BadVcoreLimit("abc".into())));
        assert_eq!(e.errno(), libc::EINVAL);
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
        expect_unwinding_panic(|| uthread::yield_with(uthread::paused));
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
            uthread::yield_with(uthread::paused)
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
        uthread::lib_init(&STASH, ()).expect("lib_init");
        uthread::spawn((), TlsMode::None, || {}).expect("spawn");
        // `main` holds the Runnable the scheduler was given, on a uthread.
        let stolen = STASH.0.lock().take().expect("the scheduler stashed the new uthread");
        expect_unwinding_panic(|| uthread::run_uthread(stolen));
    });
    assert_unwound_with(&out, "uthread::run_uthread must be called in vcore context");
}

#[test]
fn waking_the_running_uthread_through_a_forged_handle_panics() {
    // Only `unsafe` code can forge a handle; the layer's state check still catches the
    // forgery before anything is touched.
    let out = child_outcome!(TIMEOUT, {
        common::init();
        let me = uthread::current().unwrap();
        expect_unwinding_panic(|| {
            // SAFETY: deliberately broken (`me` is running, not blocked): the test is
            // that the state check refuses it before the scheduler sees anything.
            uthread::runnable(unsafe { Blocked::from_raw(me) })
        });
    });
    assert_unwound_with(&out, "uthread::runnable: uthread 0 is already running");
}

#[test]
fn create_before_lib_init_is_an_error() {
    isolated!(TIMEOUT, {
        let stack = Stack::with_default_size().unwrap();
        let e = uthread::create((), stack, TlsMode::None, || {}).expect_err("create before lib_init");
        assert_eq!(e, Error::NotInitialized);
        assert_eq!(uthread::spawn((), TlsMode::None, || {}).err(), Some(Error::NotInitialized));
    });
}

#[test]
fn creating_a_uthread_with_another_record_type_than_the_schedulers_panics() {
    let out = child_outcome!(TIMEOUT, {
        common::init();
        let stack = Stack::with_default_size().unwrap();
        expect_unwinding_panic(|| {
            let _ = uthread::create(5u32, stack, TlsMode::None, || {});
        });
    });
    assert_unwound_with(&out, "the scheduler's Thread type is parlib_testsched::Pin, not u32");
}

#[test]
fn a_yield_callback_that_drops_the_uthread_aborts_naming_it() {
    let out = child_outcome!(TIMEOUT, {
        common::init();
        common::spawn(TlsMode::Backed, || uthread::yield_with(drop));
        common::wait_all();
    });
    assert_aborted_with(&out, "a Yielded handle of uthread 1 was dropped");
}

#[test]
fn exit_from_a_plain_thread_panics() {
    let out = child_outcome!(TIMEOUT, {
        expect_unwinding_panic(|| {
            // SAFETY: nothing borrows from this frame; the call must refuse a plain thread.
            unsafe { uthread::exit() }
        });
    });
    assert_unwound_with(&out, "uthread::exit must be called from a uthread");
}

#[test]
fn parking_outside_vcore_context_panics() {
    let out = child_outcome!(TIMEOUT, {
        common::init();
        expect_unwinding_panic(|| uthread::idle::park(|| false, || {}));
    });
    assert_unwound_with(&out, "uthread::idle::park must be called in vcore context");
}
