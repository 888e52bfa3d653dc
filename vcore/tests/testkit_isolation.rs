//! Regression tests for two bugs, now fixed, in `parlib-testkit`'s child-process
//! protocol, which every runtime test depends on: the OK marker sharing libtest's
//! unterminated `test NAME ... ` line, and a failing assertion after the move onto a
//! vcore hanging until the watchdog instead of failing.

use std::time::Duration;

use parlib_testkit::child_outcome;
use parlib_vcore as vcore;

/// Bug 1: libtest prints `test NAME ... ` without a newline before running the test, so
/// the child's `PARLIB_TESTKIT_OK NAME` marker shares that line, and the parent, which
/// compares whole trimmed lines, never sees it. A child whose body prints nothing is
/// reported as failed ("failed in its child process (exit status: 0)").
#[test]
fn a_child_that_prints_nothing_is_seen_to_finish() {
    let out = child_outcome!(Duration::from_secs(20), {});
    assert!(out.status.is_some_and(|s| s.success()), "{}", out.output());
    assert!(out.finished, "the OK marker was printed but not recognised\n{}", out.output());
}

/// Bug 2: when a test body panics after the runtime moved the test's thread onto a
/// vcore, libtest catches the panic and then joins that thread, which can never finish
/// (its original task sleeps forever). The child hangs until the watchdog kills it, and
/// the test is reported as a deadlock after the full timeout instead of as the failed
/// assertion it is.
#[test]
fn a_failing_assertion_after_the_move_fails_without_the_watchdog() {
    fn resume_main_on_0() -> ! {
        vcore::resume_main()
    }
    let out = child_outcome!(Duration::from_secs(5), {
        vcore::lib_init().expect("vcore::lib_init");
        vcore::set_entry(resume_main_on_0);
        assert_eq!(vcore::request(1), Ok(1));
        panic!("a deliberately failing assertion on vcore 0");
    });
    assert!(out.stderr.contains("a deliberately failing assertion on vcore 0"), "{}", out.output());
    assert!(out.status.is_some(), "the child hung after its body panicked\n{}", out.output());
    assert!(!out.status.unwrap().success());
}
