//! Uthread TLS (DESIGN §4): a uthread made with `TlsMode::Backed` has its own
//! glibc-initialised TLS, so Rust `thread_local!` values and `errno` belong to it and
//! follow it from vcore to vcore; TLS destructors run when it is cleaned up. A
//! `TlsMode::None` uthread runs on the TLS of whichever vcore runs it.
//!
//! The scenarios run twice: with whatever FS-base mechanism the machine offers
//! (`wrfsbase` on Linux 5.9+) and with the `arch_prctl` fallback forced.

use parlib_testsched as common;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_testkit::isolated;
use parlib_uthread::{self as uthread, TlsMode};
use parlib_vcore::{self as vcore, arch};

const FORCE_ARCH_PRCTL: &[(&str, &str)] = &[(arch::FORCE_ARCH_PRCTL_ENV, "1")];

thread_local! {
    static VALUE: Cell<u64> = const { Cell::new(0) };
}

fn errno() -> i32 {
    // SAFETY: __errno_location returns the calling TLS's errno slot, valid while that
    // TLS lives (the running uthread's, for the whole body).
    unsafe { *libc::__errno_location() }
}

fn set_errno(v: i32) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = v };
}

const UTHREADS: usize = 1000;
const YIELDS: usize = 30;

/// 1000 backed uthreads each give their `thread_local!` and `errno` a unique value,
/// then yield until all of them exist and many times more (so they migrate between
/// vcores), re-checking both after every yield.
fn thread_local_and_errno_scenario() {
    static DONE: AtomicUsize = AtomicUsize::new(0);
    static MIGRATED: AtomicUsize = AtomicUsize::new(0);
    static VCORES_USED: AtomicU64 = AtomicU64::new(0);
    static STARTED: AtomicBool = AtomicBool::new(false);
    common::init();
    for i in 0..UTHREADS {
        common::spawn(TlsMode::Backed, move || {
            let mine = 0x1000_0000 + i as u64;
            let my_errno = 10_000 + i as i32;
            // Fresh TLS: nothing left over from another uthread.
            assert_eq!(VALUE.with(Cell::get), 0, "uthread {i}: thread_local not fresh");
            VALUE.with(|v| v.set(mine));
            set_errno(my_errno);
            let tls = arch::fs_base();
            assert_ne!(tls, vcore::this().unwrap().tls(), "a backed uthread runs on its own TLS");
            let mut seen: u64 = 0;
            let mut y = 0;
            // Until every uthread exists, then YIELDS more times.
            while !STARTED.load(Ordering::Acquire) || y < YIELDS {
                seen |= 1 << vcore::id();
                common::yield_now();
                y += 1;
                assert_eq!(VALUE.with(Cell::get), mine, "uthread {i}: thread_local after yield {y}");
                assert_eq!(errno(), my_errno, "uthread {i}: errno after yield {y}");
                assert_eq!(arch::fs_base(), tls, "uthread {i}: FS base after yield {y}");
            }
            seen |= 1 << vcore::id();
            VCORES_USED.fetch_or(seen, Ordering::Relaxed);
            if seen.count_ones() > 1 {
                MIGRATED.fetch_add(1, Ordering::Relaxed);
            }
            DONE.fetch_add(1, Ordering::Release);
        });
    }
    // Creating a uthread (its backing thread) takes far longer than a yield: without
    // this start line, each uthread could finish before the next one exists.
    STARTED.store(true, Ordering::Release);
    common::wait_all();
    assert_eq!(DONE.load(Ordering::Acquire), UTHREADS);
    assert_eq!(VALUE.with(Cell::get), 0, "main's own thread_local was never touched");
    if vcore::max_vcores() > 1 {
        let used = VCORES_USED.load(Ordering::Relaxed);
        assert!(
            MIGRATED.load(Ordering::Relaxed) > 0,
            "no uthread ran on more than one vcore (vcores used: {used:#b})"
        );
        assert!(used.count_ones() > 1);
    }
}

#[test]
fn thread_local_and_errno_are_private_and_follow_migrating_uthreads() {
    isolated!(Duration::from_secs(60), {
        thread_local_and_errno_scenario();
    });
}

#[test]
fn thread_local_and_errno_are_private_under_forced_arch_prctl() {
    isolated!(Duration::from_secs(60), env = FORCE_ARCH_PRCTL, {
        assert!(!arch::uses_fsgsbase(), "PARLIB_FORCE_ARCH_PRCTL=1 must select arch_prctl");
        thread_local_and_errno_scenario();
        assert!(!arch::uses_fsgsbase());
    });
}

/// `TlsMode::None` uthreads run on the vcore's own TLS, including after migrating.
fn tls_less_scenario() {
    static CHECKS: AtomicUsize = AtomicUsize::new(0);
    static WRONG: AtomicUsize = AtomicUsize::new(0);
    static VCORES_USED: AtomicU64 = AtomicU64::new(0);
    fn check() {
        let vc = vcore::this().expect("a uthread runs on a vcore");
        // SAFETY: the running uthread's record stays alive while it runs.
        let has_tls = unsafe { uthread::current().expect("on a uthread").as_ref() }.has_tls();
        CHECKS.fetch_add(1, Ordering::Relaxed);
        VCORES_USED.fetch_or(1 << vc.id(), Ordering::Relaxed);
        if has_tls || arch::fs_base() != vc.tls() || vc.current_tls() != vc.tls() {
            WRONG.fetch_add(1, Ordering::Relaxed);
        }
    }
    common::init();
    let n = vcore::max_vcores();
    const YIELDS: usize = 20;
    for id in 0..n {
        common::spawn_on(id, TlsMode::None, || {
            for _ in 0..YIELDS {
                check();
                common::yield_now();
            }
        });
    }
    for _ in 0..4 * n {
        common::spawn(TlsMode::None, || {
            for _ in 0..YIELDS {
                check();
                common::yield_now();
            }
        });
    }
    common::wait_all();
    assert_eq!(CHECKS.load(Ordering::Relaxed), 5 * n * YIELDS);
    assert_eq!(WRONG.load(Ordering::Relaxed), 0, "a TLS-less uthread did not run on its vcore's TLS");
    assert_eq!(VCORES_USED.load(Ordering::Relaxed), common::all_vcores_mask());
}

#[test]
fn tls_less_uthreads_run_on_the_vcore_tls() {
    isolated!(Duration::from_secs(30), {
        tls_less_scenario();
    });
}

#[test]
fn tls_less_uthreads_run_on_the_vcore_tls_under_forced_arch_prctl() {
    isolated!(Duration::from_secs(30), env = FORCE_ARCH_PRCTL, {
        assert!(!arch::uses_fsgsbase());
        tls_less_scenario();
    });
}

/// Counts drops of a uthread's thread_local, which run on its backing thread's exit.
struct CountDrop;
static DROPPED: AtomicUsize = AtomicUsize::new(0);
impl Drop for CountDrop {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::Release);
    }
}
thread_local! {
    static OWNED: Cell<Option<CountDrop>> = const { Cell::new(None) };
}

#[test]
fn thread_local_destructors_run_when_a_uthread_is_cleaned_up() {
    isolated!(Duration::from_secs(30), {
        common::init();
        const N: usize = 50;
        for _ in 0..N {
            common::spawn(TlsMode::Backed, || {
                OWNED.with(|o| o.set(Some(CountDrop)));
                common::yield_now();
            });
        }
        common::wait_all();
        // Cleanup tells each backing thread to exit; glibc runs its TLS destructors on
        // that thread, asynchronously. Wait (yielding) until they all have.
        common::wait_until(|| DROPPED.load(Ordering::Acquire) == N);
        assert_eq!(DROPPED.load(Ordering::Acquire), N);
    });
}
