//! Ordinary Rust works on uthreads, on every vcore: heap allocation (glibc malloc, whose
//! per-thread cache lives in TLS), float formatting, and panics caught with
//! `catch_unwind` (the unwinder walks the uthread's own stack; the panic count lives in
//! TLS). Each vcore gets a pinned uthread, so coverage of every vcore is deterministic;
//! unpinned uthreads do the same while migrating.

use parlib_testsched as common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_testkit::isolated;
use parlib_uthread::TlsMode;
use parlib_vcore as vcore;

/// Prefix of the panics these tests raise on purpose; the panic hook stays quiet for them.
const EXPECTED: &str = "expected test panic";

/// Silences the default panic message for the panics raised on purpose (thousands of
/// them), and keeps it for every other panic.
fn quiet_expected_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info.payload().downcast_ref::<String>().map(String::as_str).unwrap_or("");
        if !msg.starts_with(EXPECTED) {
            default(info);
        }
    }));
}

/// Vcores on which each kind of work succeeded.
static ALLOCATED_ON: AtomicU64 = AtomicU64::new(0);
static FORMATTED_ON: AtomicU64 = AtomicU64::new(0);
static UNWOUND_ON: AtomicU64 = AtomicU64::new(0);
static ROUNDS: AtomicUsize = AtomicUsize::new(0);
static UNWIND_DROPS: AtomicUsize = AtomicUsize::new(0);

/// A heap-owning local that counts its drop: unwinding must run it.
struct DropsWhileUnwinding(Box<usize>);
impl Drop for DropsWhileUnwinding {
    fn drop(&mut self) {
        std::hint::black_box(*self.0);
        UNWIND_DROPS.fetch_add(1, Ordering::Relaxed);
    }
}

/// One round of ordinary Rust, recorded against the vcore it ran on. Panics (aborting
/// the child with the message) on a wrong result.
fn ordinary_rust(tag: usize, round: usize) {
    let vc = 1u64 << vcore::id();

    let v: Vec<usize> = (0..1000).map(|k| k * tag).collect();
    let s = format!("uthread {tag} round {round}");
    let b = Box::new([tag as u8; 4096]);
    let big = vec![round as u64; 1 << 16]; // above malloc's mmap threshold
    assert_eq!(v.iter().sum::<usize>(), tag * 999 * 1000 / 2);
    assert!(s.ends_with(&format!("round {round}")));
    assert!(b.iter().all(|&x| x == tag as u8));
    assert_eq!(big.iter().sum::<u64>(), (round as u64) << 16);
    drop((v, s, b, big));
    ALLOCATED_ON.fetch_or(vc, Ordering::Relaxed);

    let x = std::hint::black_box(2.0f64) / 3.0 + tag as f64;
    assert_eq!(format!("{x:.3}"), format!("{tag}.667"));
    assert_eq!(format!("{:.3}", std::hint::black_box(1.0f64 / 8.0)), "0.125");
    assert_eq!(format!("{:e}", std::hint::black_box(1234.5f64)), "1.2345e3");
    assert_eq!(format!("{}", std::hint::black_box(0.1f32 + 0.2f32)), "0.3");
    FORMATTED_ON.fetch_or(vc, Ordering::Relaxed);

    let r = catch_unwind(AssertUnwindSafe(|| {
        let _guard = DropsWhileUnwinding(Box::new(tag));
        panic!("{EXPECTED} from uthread {tag} round {round}");
    }));
    let payload = r.expect_err("the closure panics");
    let msg = payload.downcast_ref::<String>().expect("a formatted panic carries a String");
    assert_eq!(*msg, format!("{EXPECTED} from uthread {tag} round {round}"));
    assert!(!std::thread::panicking(), "the panic is over once caught");
    UNWOUND_ON.fetch_or(vc, Ordering::Relaxed);

    ROUNDS.fetch_add(1, Ordering::Relaxed);
}

const ROUNDS_EACH: usize = 10;

fn scenario(tls: TlsMode) {
    quiet_expected_panics();
    common::init();
    let n = vcore::max_vcores();
    for id in 0..n {
        common::spawn_on(id, tls, move || {
            for round in 0..ROUNDS_EACH {
                assert_eq!(vcore::id(), id, "a pinned uthread stays on its vcore");
                ordinary_rust(id, round);
                common::yield_now();
            }
        });
    }
    let migrating = 4 * n;
    for k in 0..migrating {
        common::spawn(tls, move || {
            for round in 0..ROUNDS_EACH {
                ordinary_rust(n + k, round);
                common::yield_now();
            }
        });
    }
    // main is a uthread too.
    ordinary_rust(usize::MAX >> 40, 0);
    common::wait_all();
    let all = common::all_vcores_mask();
    let rounds = (n + migrating) * ROUNDS_EACH + 1;
    assert_eq!(ROUNDS.load(Ordering::Relaxed), rounds);
    assert_eq!(UNWIND_DROPS.load(Ordering::Relaxed), rounds, "unwinding skipped a destructor");
    assert_eq!(ALLOCATED_ON.load(Ordering::Relaxed), all, "allocation not seen on every vcore");
    assert_eq!(FORMATTED_ON.load(Ordering::Relaxed), all, "float formatting not seen on every vcore");
    assert_eq!(UNWOUND_ON.load(Ordering::Relaxed), all, "a caught panic not seen on every vcore");
}

#[test]
fn uthreads_allocate_format_floats_and_catch_panics_on_every_vcore() {
    isolated!(Duration::from_secs(30), {
        scenario(TlsMode::Backed);
    });
}

#[test]
fn tls_less_uthreads_allocate_format_floats_and_catch_panics_on_every_vcore() {
    // They share the vcore's TLS (malloc cache, panic count), which is sound as long as
    // nothing yields in the middle of a panic: ordinary_rust does not.
    isolated!(Duration::from_secs(30), {
        scenario(TlsMode::None);
    });
}
