//! Every entry point of the uthread layer leaves the stack aligned as the SysV ABI
//! requires, so code that needs 16-byte alignment works: a new uthread's first code, a
//! uthread returning from a yield, and vcore context (the scheduler's `sched_entry`,
//! `thread_runnable`, yield and exit callbacks). parlib's C version was 8 bytes off at
//! uthread entry (DESIGN §3).

use parlib_testsched as common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parlib_testkit::isolated;
use parlib_testkit::probe::stack_is_abi_aligned;
use parlib_uthread::{self as uthread, TlsMode};
use parlib_vcore as vcore;

/// Where an alignment check ran.
#[derive(Clone, Copy)]
enum Site {
    UthreadEntry,
    AfterYield,
    SchedEntry,
    YieldCallback,
    ExitCallback,
}

const SITES: usize = 5;
static CHECKS: [AtomicUsize; SITES] = [const { AtomicUsize::new(0) }; SITES];
static MISALIGNED: [AtomicUsize; SITES] = [const { AtomicUsize::new(0) }; SITES];

/// Counts one check at `site`. Never panics: it also runs in vcore context, where a panic
/// could not unwind; the test asserts on the counts.
fn check(site: Site) {
    CHECKS[site as usize].fetch_add(1, Ordering::Relaxed);
    if !stack_is_abi_aligned() {
        MISALIGNED[site as usize].fetch_add(1, Ordering::Relaxed);
    }
}

fn sched_entry_hook() {
    debug_assert!(vcore::in_vcore_context());
    check(Site::SchedEntry);
}

const YIELDS: usize = 20;

/// A uthread body: check at its start, after each yield, in the callback of each yield
/// (vcore context); the exit hook checks its exit callback (vcore context too).
fn body() {
    check(Site::UthreadEntry);
    for _ in 0..YIELDS {
        uthread::yield_with(|uth| {
            check(Site::YieldCallback);
            uthread::paused(uth);
        });
        check(Site::AfterYield);
    }
}

#[test]
fn every_entry_point_leaves_the_stack_abi_aligned() {
    isolated!(Duration::from_secs(30), {
        common::on_sched_entry(sched_entry_hook);
        common::on_exit(|| check(Site::ExitCallback));
        common::init();
        let n = vcore::max_vcores();
        let mut spawned = 0;
        for tls in [TlsMode::Backed, TlsMode::None] {
            for id in 0..n {
                common::spawn_on(id, tls, body);
                spawned += 1;
            }
            for _ in 0..2 * n {
                common::spawn(tls, body);
                spawned += 1;
            }
        }
        common::wait_all();

        let count = |s: Site| CHECKS[s as usize].load(Ordering::Relaxed);
        let bad = |s: Site| MISALIGNED[s as usize].load(Ordering::Relaxed);
        assert_eq!(count(Site::UthreadEntry), spawned);
        assert_eq!(count(Site::AfterYield), spawned * YIELDS);
        assert_eq!(count(Site::YieldCallback), spawned * YIELDS);
        assert!(count(Site::SchedEntry) >= spawned * YIELDS, "every yield enters sched_entry");
        assert_eq!(count(Site::ExitCallback), spawned);
        for (s, name) in [
            (Site::UthreadEntry, "a new uthread's entry"),
            (Site::AfterYield, "a uthread resumed after a yield"),
            (Site::SchedEntry, "sched_entry (vcore context)"),
            (Site::YieldCallback, "a yield callback (vcore context)"),
            (Site::ExitCallback, "an exit callback (vcore context)"),
        ] {
            assert_eq!(bad(s), 0, "misaligned stack in {name}: {} of {} checks", bad(s), count(s));
        }
    });
}
