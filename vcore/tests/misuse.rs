//! Misusing the vcore layer gets an error value or a panic with a clear message, never a
//! crash or a hang. Panics that can unwind (on a plain thread, or on the caller after it
//! moved onto vcore 0) are caught by the test and reported by exit status; a panic in
//! vcore context cannot unwind and must abort after printing its message.

use parlib_testkit::probe as common;

use std::time::Duration;

use common::{assert_aborted_with, assert_unwound_with, expect_unwinding_panic};
use parlib_testkit::{child_outcome, isolated};
use parlib_vcore::{self as vcore, Error};

const TIMEOUT: Duration = Duration::from_secs(20);

fn gettid() -> i64 {
    // SAFETY: gettid has no arguments and no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

/// Vcore 0 gives itself back to the moved caller; others park.
fn resume_main_on_0() -> ! {
    if vcore::id() == 0 {
        vcore::resume_main();
    }
    vcore::yield_vcore()
}

#[test]
fn calls_before_lib_init_are_errors() {
    isolated!(TIMEOUT, {
        assert!(!vcore::is_initialized());
        assert_eq!(vcore::request(1), Err(Error::NotInitialized));
        assert_eq!(vcore::request_specific(0), Err(Error::NotInitialized));
        assert_eq!(vcore::max_vcores(), 0);
        assert_eq!(vcore::num_vcores(), 0);
        assert!(vcore::this().is_none());
        assert_eq!(vcore::try_id(), None);
        assert!(!vcore::in_vcore_context());
        assert_eq!(vcore::cpu_of(0), Err(Error::NoSuchVcore { id: 0, max: 0 }));
    });
}

#[test]
fn lib_init_twice_is_an_error() {
    isolated!(TIMEOUT, {
        assert_eq!(vcore::lib_init(), Ok(()));
        let n = vcore::max_vcores();
        let e = vcore::lib_init().expect_err("a second lib_init must fail");
        assert_eq!(e, Error::AlreadyInitialized);
        assert_eq!(e.errno(), libc::EBUSY);
        assert_eq!(vcore::max_vcores(), n, "the failed call changed nothing");
        assert!(vcore::is_initialized());
    });
}

#[test]
fn requesting_more_vcores_than_exist_is_an_error() {
    isolated!(TIMEOUT, {
        vcore::lib_init().expect("vcore::lib_init");
        vcore::set_entry(resume_main_on_0);
        let n = vcore::max_vcores();
        let tid = gettid();
        let e = vcore::request(n + 1).expect_err("more than max_vcores");
        assert_eq!(e, Error::TooManyVcores { requested: n + 1, max: n });
        assert_eq!(e.errno(), libc::EINVAL);
        // A refused request moves nothing and wakes nothing.
        assert_eq!(gettid(), tid);
        assert!(vcore::this().is_none());
        assert_eq!(vcore::num_vcores(), 0);
        assert_eq!(vcore::request_specific(n), Err(Error::NoSuchVcore { id: n, max: n }));
        // The same refusal from vcore 0, after a valid request moved us there.
        assert_eq!(vcore::request(1), Ok(1));
        assert_eq!(vcore::request(n + 1), Err(Error::TooManyVcores { requested: n + 1, max: n }));
        assert_eq!(vcore::id(), 0);
    });
}

#[test]
fn yield_vcore_on_a_plain_thread_panics() {
    let out = child_outcome!(TIMEOUT, {
        vcore::lib_init().expect("vcore::lib_init");
        expect_unwinding_panic(|| vcore::yield_vcore());
    });
    assert_unwound_with(&out, "vcore::yield_vcore called outside vcore context");
}

#[test]
fn yield_vcore_from_the_resumed_caller_panics() {
    // The moved caller runs on vcore 0, but as ordinary code, not vcore context.
    let out = child_outcome!(TIMEOUT, {
        vcore::lib_init().expect("vcore::lib_init");
        vcore::set_entry(resume_main_on_0);
        assert_eq!(vcore::request(1), Ok(1));
        assert_eq!(vcore::id(), 0);
        expect_unwinding_panic(|| vcore::yield_vcore());
    });
    assert_unwound_with(&out, "vcore::yield_vcore called outside vcore context");
}

#[test]
fn reenter_outside_vcore_context_panics() {
    fn never() -> ! {
        unreachable!("reenter must not run its function outside vcore context")
    }
    let out = child_outcome!(TIMEOUT, {
        vcore::lib_init().expect("vcore::lib_init");
        vcore::set_entry(resume_main_on_0);
        assert_eq!(vcore::request(1), Ok(1));
        expect_unwinding_panic(|| vcore::reenter(never));
    });
    assert_unwound_with(&out, "vcore::reenter called outside vcore context");
}

#[test]
fn resume_main_outside_vcore_context_panics() {
    let out = child_outcome!(TIMEOUT, {
        vcore::lib_init().expect("vcore::lib_init");
        expect_unwinding_panic(|| vcore::resume_main());
    });
    assert_unwound_with(&out, "vcore::resume_main called outside vcore context");
}

#[test]
fn requesting_a_vcore_without_an_entry_aborts_with_a_message() {
    // Vcore 0 starts in vcore context, finds no entry and cannot unwind anywhere.
    let out = child_outcome!(TIMEOUT, {
        vcore::lib_init().expect("vcore::lib_init");
        let _ = vcore::request(1);
        unreachable!("nothing can resume the moved caller");
    });
    assert_aborted_with(&out, "no entry function is set: call vcore::set_entry before vcore::request");
}
