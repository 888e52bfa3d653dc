//! Vcores are Linux tasks pinned one per CPU, and `VCORE_LIMIT` caps how many there are
//! (DESIGN §3). These tests use the vcore layer alone: an entry function, `request`, and
//! `resume_main` to hand vcore 0 back to the moved test thread.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use parlib_testkit::isolated;
use parlib_vcore::{self as vcore, arch, Error};

/// How often each vcore asks the kernel where it runs; between samples it calls
/// `sched_yield`, giving the kernel every chance to move an unpinned task.
const CPU_SAMPLES: usize = 200;
/// Recorded "CPU" of a vcore whose samples disagreed.
const MOVED: usize = usize::MAX;

/// Per vcore: 0 until it reported, then the CPU it ran on plus one (or `MOVED`).
static SEEN_CPU: OnceLock<Vec<AtomicUsize>> = OnceLock::new();
static REPORTED: AtomicUsize = AtomicUsize::new(0);

fn gettid() -> i64 {
    // SAFETY: gettid has no arguments and no preconditions. (A raw system call, not a
    // cached value: we want the task the code runs on right now.)
    unsafe { libc::syscall(libc::SYS_gettid) }
}

/// Vcore entry: sample the CPU, report it, then give vcore 0 back to the moved caller
/// and park every other vcore.
fn report_cpu() -> ! {
    let vc = vcore::this().expect("the entry runs on a vcore");
    let cpu = vcore::current_cpu();
    let mut seen = cpu + 1;
    for _ in 0..CPU_SAMPLES {
        std::thread::yield_now();
        if vcore::current_cpu() != cpu {
            seen = MOVED;
        }
    }
    let ok_ctx = vc.in_vcore_context() && vcore::in_vcore_context();
    SEEN_CPU.get().expect("set before request")[vc.id()]
        .store(if ok_ctx { seen } else { 0 }, Ordering::Relaxed);
    REPORTED.fetch_add(1, Ordering::Release);
    if vc.id() == 0 {
        vcore::resume_main();
    }
    vcore::yield_vcore()
}

thread_local! {
    static MARK: Cell<u64> = const { Cell::new(0) };
}

#[test]
fn vcores_run_pinned_to_their_cpus() {
    isolated!(Duration::from_secs(30), {
        vcore::lib_init().expect("vcore::lib_init");
        let n = vcore::max_vcores();
        assert!(n >= 1);
        let cpus = vcore::process_cpus().expect("recorded by lib_init").cpus();
        assert_eq!(n, cpus.len(), "without VCORE_LIMIT there is one vcore per allowed CPU");
        SEEN_CPU.set((0..n).map(|_| AtomicUsize::new(0)).collect()).unwrap();
        vcore::set_entry(report_cpu);

        assert_eq!(vcore::request(n), Ok(n));
        while REPORTED.load(Ordering::Acquire) < n {
            std::hint::spin_loop();
        }
        let tids: std::collections::HashSet<i32> = (0..n).map(|i| vcore::get(i).unwrap().tid()).collect();
        assert_eq!(tids.len(), n, "every vcore is its own task");
        for (id, want) in cpus.iter().enumerate() {
            assert_eq!(vcore::cpu_of(id), Ok(*want), "vcore {id} is pinned to the {id}-th allowed CPU");
            let seen = SEEN_CPU.get().unwrap()[id].load(Ordering::Relaxed);
            assert_ne!(seen, 0, "vcore {id} did not report from vcore context");
            assert_ne!(seen, MOVED, "vcore {id} ran on more than one CPU");
            assert_eq!(seen - 1, *want, "vcore {id} ran on CPU {} instead of {want}", seen - 1);
        }
        // The caller now runs on vcore 0's pinned task too.
        assert_eq!(vcore::current_cpu(), vcore::cpu_of(0).unwrap());
        assert_eq!(gettid(), vcore::get(0).unwrap().tid() as i64);
    });
}

#[test]
fn first_request_moves_the_caller_onto_vcore_0() {
    isolated!(Duration::from_secs(30), {
        vcore::lib_init().expect("vcore::lib_init");
        let n = vcore::max_vcores();
        SEEN_CPU.set((0..n).map(|_| AtomicUsize::new(0)).collect()).unwrap();
        vcore::set_entry(report_cpu);
        MARK.with(|m| m.set(0x5eed));
        let tid_before = gettid();
        let tls_before = arch::fs_base();
        assert!(vcore::this().is_none(), "the test thread is not a vcore");
        assert_eq!(vcore::try_id(), None);

        assert_eq!(vcore::request(1), Ok(1), "the move counts vcore 0 as granted");

        assert_eq!(vcore::id(), 0);
        assert!(!vcore::in_vcore_context(), "the caller runs as ordinary code, not vcore context");
        assert_ne!(gettid(), tid_before, "the caller left its original task");
        assert_eq!(gettid(), vcore::get(0).unwrap().tid() as i64, "... for vcore 0's task");
        assert_eq!(arch::fs_base(), tls_before, "its TLS travelled with it");
        assert_eq!(MARK.with(Cell::get), 0x5eed);
        assert_eq!(REPORTED.load(Ordering::Acquire), 1, "only vcore 0 was woken");
        assert_eq!(vcore::num_vcores(), 1);
        // A later request from a vcore wakes parked vcores and moves nothing.
        assert_eq!(vcore::request(n - 1), Ok(n - 1));
        assert_eq!(vcore::id(), 0);
        while REPORTED.load(Ordering::Acquire) < n {
            std::hint::spin_loop();
        }
        assert_eq!(gettid(), vcore::get(0).unwrap().tid() as i64);
    });
}

#[test]
fn vcore_limit_caps_max_vcores() {
    isolated!(Duration::from_secs(30), env = &[(vcore::VCORE_LIMIT_ENV, "1")], {
        vcore::lib_init().expect("vcore::lib_init");
        assert_eq!(vcore::max_vcores(), 1);
        let first_cpu = vcore::process_cpus().unwrap().cpus()[0];
        assert_eq!(vcore::cpu_of(0), Ok(first_cpu));
        assert_eq!(vcore::cpu_of(1), Err(Error::NoSuchVcore { id: 1, max: 1 }));
        assert_eq!(vcore::request(2), Err(Error::TooManyVcores { requested: 2, max: 1 }));
        SEEN_CPU.set(vec![AtomicUsize::new(0)]).unwrap();
        vcore::set_entry(report_cpu);
        assert_eq!(vcore::request(1), Ok(1));
        assert_eq!(vcore::current_cpu(), first_cpu);
    });
}

#[test]
fn malformed_vcore_limit_is_an_error_and_can_be_fixed() {
    isolated!(Duration::from_secs(30), env = &[(vcore::VCORE_LIMIT_ENV, "abc")], {
        let e = vcore::lib_init().expect_err("VCORE_LIMIT=abc must be rejected");
        assert_eq!(e, Error::BadVcoreLimit("abc".into()));
        assert_eq!(e.errno(), libc::EINVAL);
        assert!(e.to_string().contains("VCORE_LIMIT"), "{e}");
        assert!(!vcore::is_initialized());
        assert_eq!(vcore::max_vcores(), 0);
        // Nothing was started, so a corrected limit may be retried (vcore::lib_init docs).
        // No other thread of this child reads the environment at this point.
        std::env::set_var(vcore::VCORE_LIMIT_ENV, "0");
        assert_eq!(vcore::lib_init(), Err(Error::BadVcoreLimit("0".into())), "0 is not a positive integer");
        std::env::set_var(vcore::VCORE_LIMIT_ENV, "1");
        assert_eq!(vcore::lib_init(), Ok(()));
        assert_eq!(vcore::max_vcores(), 1);
    });
}
