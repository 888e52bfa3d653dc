//! `upthread_kill` runs the process's handler on the target thread (upthread_self() in
//! the handler is the target), the per-thread mask holds signals back, and bad
//! arguments get glibc's codes.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use libc::{c_int, c_void};
use parlib_upthread::signal::*;
use parlib_upthread::thread::*;
use support::{create, join, wait_until, TIMEOUT};

static HANDLED_ON: AtomicUsize = AtomicUsize::new(0);
static HANDLED: AtomicUsize = AtomicUsize::new(0);
static READY: AtomicBool = AtomicBool::new(false);
static SENT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr2(sig: c_int) {
    assert_eq!(sig, libc::SIGUSR2);
    HANDLED_ON.store(upthread_self() as usize, Ordering::SeqCst);
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

fn install_handler() {
    // SAFETY: an all-zero sigaction is valid; we set a one-argument handler.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_usr2 as *const () as usize;
        assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, core::ptr::null_mut()), 0);
    }
}

extern "C" fn wait_for_signal(_: *mut c_void) -> *mut c_void {
    READY.store(true, Ordering::SeqCst);
    wait_until(|| HANDLED.load(Ordering::SeqCst) > 0); // yields are delivery points
    upthread_self() as *mut c_void
}

#[test]
fn the_handler_runs_on_the_target_thread() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        install_handler();
        let t = create(wait_for_signal, 0);
        wait_until(|| READY.load(Ordering::SeqCst));
        assert_eq!(upthread_kill(t, libc::SIGUSR2), 0);
        assert_eq!(join(t) as usize, t as usize);
        assert_eq!(HANDLED_ON.load(Ordering::SeqCst), t as usize, "upthread_self() in the handler");
        assert_eq!(HANDLED.load(Ordering::SeqCst), 1);
    });
}

fn usr2_set() -> libc::sigset_t {
    // SAFETY: sigemptyset / sigaddset initialise and fill a local set.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        set
    }
}

extern "C" fn block_then_unblock(_: *mut c_void) -> *mut c_void {
    let set = usr2_set();
    // SAFETY: a valid set; a null old set is allowed.
    assert_eq!(unsafe { upthread_sigmask(libc::SIG_BLOCK, &set, core::ptr::null_mut()) }, 0);
    READY.store(true, Ordering::SeqCst);
    wait_until(|| SENT.load(Ordering::SeqCst));
    for _ in 0..10 {
        parlib_upthread::yield_now(); // masked: nothing runs
    }
    let held = HANDLED.load(Ordering::SeqCst);
    // SAFETY: as above, plus a writable old set.
    let mut old: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { upthread_sigmask(libc::SIG_UNBLOCK, &set, &mut old) }, 0);
    // SAFETY: `old` was filled by upthread_sigmask.
    assert_eq!(unsafe { libc::sigismember(&old, libc::SIGUSR2) }, 1, "the old mask held SIGUSR2");
    let after = HANDLED.load(Ordering::SeqCst);
    (held * 10 + after) as *mut c_void
}

#[test]
fn a_masked_signal_waits_until_unmasked() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        install_handler();
        let t = create(block_then_unblock, 0);
        wait_until(|| READY.load(Ordering::SeqCst));
        assert_eq!(upthread_kill(t, libc::SIGUSR2), 0);
        SENT.store(true, Ordering::SeqCst);
        assert_eq!(join(t) as usize, 1, "not delivered while masked, delivered by the unmasking call");
    });
}

#[test]
fn a_signal_to_oneself_runs_before_kill_returns() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        install_handler();
        assert_eq!(upthread_kill(upthread_self(), libc::SIGUSR2), 0);
        assert_eq!(HANDLED.load(Ordering::SeqCst), 1);
        assert_eq!(HANDLED_ON.load(Ordering::SeqCst), upthread_self() as usize);
    });
}

#[test]
fn bad_kill_and_sigmask_arguments() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let me = upthread_self();
        assert_eq!(upthread_kill(me, 0), 0, "signal 0 checks existence");
        assert_eq!(upthread_kill(0x1234_5670, 0), libc::ESRCH);
        assert_eq!(upthread_kill(0x1234_5670, libc::SIGUSR2), libc::ESRCH);
        assert_eq!(upthread_kill(me, -1), libc::EINVAL);
        assert_eq!(upthread_kill(me, 65), libc::EINVAL);
        assert_eq!(upthread_kill(me, libc::SIGUSR1), libc::EINVAL, "parlib's notification signal");
        let set = usr2_set();
        // SAFETY: a valid set; null old.
        assert_eq!(unsafe { upthread_sigmask(12345, &set, core::ptr::null_mut()) }, libc::EINVAL);
        // SAFETY: null set and old: a no-op query.
        assert_eq!(unsafe { upthread_sigmask(12345, core::ptr::null(), core::ptr::null_mut()) }, 0);
    });
}

#[test]
fn a_preempted_compute_loop_runs_its_handler_without_calling_upthread() {
    static SPINNING: AtomicBool = AtomicBool::new(false);
    static ON: AtomicUsize = AtomicUsize::new(0);
    extern "C" fn on_usr2_stop(_: c_int) {
        ON.store(upthread_self() as usize, Ordering::SeqCst);
    }
    extern "C" fn spin_until_handled(_: *mut c_void) -> *mut c_void {
        SPINNING.store(true, Ordering::SeqCst);
        // A pure loop: no upthread call, no libc. Only a handler pushed onto this thread
        // at a preemption can end it.
        while ON.load(Ordering::Relaxed) == 0 {
            core::hint::spin_loop();
        }
        core::ptr::null_mut()
    }
    parlib_testkit::isolated!(TIMEOUT, env = &[("UPTHREAD_VCORES", "1")], {
        support::init();
        parlib_upthread::set_sched_period(1000).unwrap();
        // SAFETY: an all-zero sigaction is valid; we set a one-argument handler.
        unsafe {
            let mut sa: libc::sigaction = core::mem::zeroed();
            sa.sa_sigaction = on_usr2_stop as *const () as usize;
            assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, core::ptr::null_mut()), 0);
        }
        let t = create(spin_until_handled, 0);
        wait_until(|| SPINNING.load(Ordering::SeqCst));
        assert_eq!(upthread_kill(t, libc::SIGUSR2), 0);
        join(t);
        assert_eq!(ON.load(Ordering::SeqCst), t as usize, "the handler ran on another thread");
    });
}
