//! A parked vcore costs no CPU (DESIGN §3): neither the vcores `lib_init` starts parked,
//! nor vcores that were requested and then gave themselves back with `yield_vcore`.
//!
//! The bound is on process CPU time, not on wall-clock speed: a busy-waiting vcore burns
//! a whole CPU, about 300 ms over the 300 ms window, so 30 ms leaves a margin of ten for
//! wake-ups, page faults and the test thread's own sleeping.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parlib_testkit::{isolated, process_cpu_time};
use parlib_vcore as vcore;

const WINDOW: Duration = Duration::from_millis(300);
const IDLE_CPU_BOUND: Duration = Duration::from_millis(30);

/// Process CPU time spent while the caller sleeps for `WINDOW`.
fn cpu_over_window() -> Duration {
    let t0 = process_cpu_time();
    std::thread::sleep(WINDOW);
    process_cpu_time() - t0
}

#[test]
fn parked_vcores_burn_no_cpu() {
    isolated!(Duration::from_secs(30), {
        vcore::lib_init().expect("vcore::lib_init");
        // Nothing was requested: every vcore task sleeps on its futex. The test thread is
        // still a plain thread, so it may sleep.
        assert_eq!(vcore::num_vcores(), 0);
        let used = cpu_over_window();
        assert!(
            used < IDLE_CPU_BOUND,
            "{} parked vcores used {used:?} of CPU in {WINDOW:?}",
            vcore::max_vcores()
        );
    });
}

/// Times each vcore other than 0 entered its entry function.
static ENTRIES: AtomicUsize = AtomicUsize::new(0);

/// Vcore 0 hands itself back to the moved test thread; every other vcore counts its
/// entry and parks again at once.
fn enter_then_yield() -> ! {
    if vcore::id() == 0 {
        vcore::resume_main();
    }
    ENTRIES.fetch_add(1, Ordering::Release);
    vcore::yield_vcore()
}

/// Waits until every vcore but 0 has entered `rounds` times in all and parked again.
fn wait_until_others_parked(entries: usize) {
    let others = || (1..vcore::max_vcores()).map(|i| vcore::get(i).unwrap());
    while ENTRIES.load(Ordering::Acquire) < entries || !others().all(vcore::Vcore::is_parked) {
        std::hint::spin_loop();
    }
}

#[test]
fn yielded_vcores_burn_no_cpu() {
    isolated!(Duration::from_secs(30), {
        vcore::lib_init().expect("vcore::lib_init");
        vcore::set_entry(enter_then_yield);
        let n = vcore::max_vcores();
        assert_eq!(vcore::request(n), Ok(n));
        // We are on vcore 0 now, as ordinary code with the vcore to ourselves (no
        // uthreads here), so sleeping blocks nothing else.
        assert_eq!(vcore::id(), 0);
        wait_until_others_parked(n - 1);
        assert_eq!(vcore::num_vcores(), 1, "only vcore 0 runs");
        let used = cpu_over_window();
        assert!(used < IDLE_CPU_BOUND, "{} yielded vcores used {used:?} of CPU in {WINDOW:?}", n - 1);

        // Requested again, a yielded vcore starts afresh in its entry, and parks again.
        assert_eq!(vcore::request(n - 1), Ok(n - 1));
        wait_until_others_parked(2 * (n - 1));
        assert_eq!(ENTRIES.load(Ordering::Acquire), 2 * (n - 1));
        let used = cpu_over_window();
        assert!(used < IDLE_CPU_BOUND, "re-yielded vcores used {used:?} of CPU in {WINDOW:?}");
    });
}
