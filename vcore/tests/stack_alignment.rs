//! Every way into vcore context leaves the stack aligned as the SysV ABI requires
//! (`(rsp + 8) % 16 == 0` at a function's first instruction), so code that needs
//! 16-byte alignment (SSE spills, `#[repr(align(16))]` locals) works there. parlib's C
//! version was 8 bytes off (DESIGN §3). These use the vcore layer alone; the uthread
//! suite checks uthread entry, yields and scheduler callbacks.

use parlib_testkit::probe as common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{call_with_aligned_stack, call_with_misaligned_stack, stack_is_abi_aligned};
use parlib_testkit::isolated;
use parlib_vcore as vcore;

static CHECKS: AtomicUsize = AtomicUsize::new(0);
static MISALIGNED: AtomicUsize = AtomicUsize::new(0);
/// Entries of vcores other than 0, each followed by a `reenter`.
static REENTERED: AtomicUsize = AtomicUsize::new(0);

/// Counts one alignment check; vcore context cannot unwind, so failures are counted and
/// asserted on by the test thread.
fn check(where_: &str) {
    CHECKS.fetch_add(1, Ordering::Relaxed);
    if !stack_is_abi_aligned() {
        MISALIGNED.fetch_add(1, Ordering::Relaxed);
        eprintln!("misaligned stack in {where_} on vcore {:?}", vcore::try_id());
    }
}

/// Entered at the top of the vcore stack (first start and every restart after a yield).
fn entry() -> ! {
    check("the vcore entry");
    if vcore::id() == 0 {
        vcore::resume_main();
    }
    vcore::reenter(after_reenter)
}

/// Entered at the top of the vcore stack again, through `reenter`.
fn after_reenter() -> ! {
    check("a function started by reenter");
    REENTERED.fetch_add(1, Ordering::Release);
    vcore::yield_vcore()
}

#[test]
fn vcore_context_starts_on_an_abi_aligned_stack() {
    isolated!(Duration::from_secs(30), {
        check("the test thread");
        vcore::lib_init().expect("vcore::lib_init");
        vcore::set_entry(entry);
        let n = vcore::max_vcores();
        assert_eq!(vcore::request(n), Ok(n));
        check("the caller resumed on vcore 0");
        const ROUNDS: usize = 3;
        for round in 1..=ROUNDS {
            while REENTERED.load(Ordering::Acquire) < round * (n - 1)
                || !(1..n).all(|i| vcore::get(i).unwrap().is_parked())
            {
                std::hint::spin_loop();
            }
            if round < ROUNDS {
                // Restarted vcores enter at the top of their stacks again.
                assert_eq!(vcore::request(n - 1), Ok(n - 1));
            }
        }
        // test thread + vcore 0's entry + resumed caller, then per round an entry and a
        // reentry on every other vcore.
        assert_eq!(CHECKS.load(Ordering::Relaxed), 3 + ROUNDS * 2 * (n - 1));
        assert_eq!(MISALIGNED.load(Ordering::Relaxed), 0, "misaligned entries (see stderr)");
    });
}

#[test]
fn alignment_probe_detects_a_misaligned_stack() {
    extern "C" fn probe() -> bool {
        stack_is_abi_aligned()
    }
    isolated!(Duration::from_secs(30), {
        assert!(call_with_aligned_stack(probe), "the probe must pass on an ABI-aligned stack");
        assert!(!call_with_misaligned_stack(probe), "the probe must fail on a stack 8 bytes off");
    });
}
