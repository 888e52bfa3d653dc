//! A fault on a task that is not a vcore goes to the handler that was installed before
//! `lib_init` installed parlib's, called the way that handler was installed (with or
//! without `SA_SIGINFO`); with none, the process dies of the signal as it would have.

use parlib_testkit::probe as common;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::load_from;
use parlib_testkit::{child_outcome, Outcome};
use parlib_vcore as vcore;

const TIMEOUT: Duration = Duration::from_secs(20);
/// Exit statuses the application's handlers report with.
const SIGINFO_HANDLER_RAN: i32 = 42;
const PLAIN_HANDLER_RAN: i32 = 43;
/// The address the test loads from: in the never-mapped first page.
const BAD_ADDR: usize = 8;

extern "C" fn siginfo_handler(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo; si_addr is valid for SIGSEGV.
    let addr = unsafe { (*info).si_addr() } as usize;
    let code = if sig == libc::SIGSEGV && addr == BAD_ADDR { SIGINFO_HANDLER_RAN } else { 1 };
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(code) }
}

extern "C" fn plain_handler(sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(if sig == libc::SIGSEGV { PLAIN_HANDLER_RAN } else { 1 }) }
}

/// Installs `handler` for SIGSEGV as the application's own, before parlib's.
fn install_app_handler(handler: usize, flags: libc::c_int) {
    // SAFETY: a zeroed sigaction with an empty mask and a handler that only exits.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = flags;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGSEGV, &sa, core::ptr::null_mut()), 0);
    }
}

/// Starts the vcores, then faults on this plain thread.
fn fault_after_lib_init() {
    vcore::lib_init().expect("vcore::lib_init");
    assert!(vcore::this().is_none(), "the test thread is no vcore");
    load_from(BAD_ADDR);
}

fn exit_code(out: &Outcome) -> Option<i32> {
    out.status.and_then(|s| s.code())
}

#[test]
fn a_plain_threads_fault_reaches_the_earlier_siginfo_handler_with_its_address() {
    let out = child_outcome!(TIMEOUT, {
        install_app_handler(siginfo_handler as *const () as usize, libc::SA_SIGINFO);
        fault_after_lib_init();
    });
    assert_eq!(exit_code(&out), Some(SIGINFO_HANDLER_RAN), "{:?}\n{}", out.status, out.output());
}

#[test]
fn a_plain_threads_fault_reaches_the_earlier_handler_installed_without_siginfo() {
    let out = child_outcome!(TIMEOUT, {
        install_app_handler(plain_handler as *const () as usize, 0);
        fault_after_lib_init();
    });
    assert_eq!(exit_code(&out), Some(PLAIN_HANDLER_RAN), "{:?}\n{}", out.status, out.output());
}

#[test]
fn a_plain_threads_fault_with_no_earlier_handler_kills_the_process_with_the_signal() {
    let out = child_outcome!(TIMEOUT, {
        install_app_handler(libc::SIG_DFL, 0);
        fault_after_lib_init();
    });
    let signal = out.status.and_then(|s| s.signal());
    assert_eq!(signal, Some(libc::SIGSEGV), "{:?}\n{}", out.status, out.output());
}
