//! Work stealing: 1000 threads created on one vcore end up running on every vcore.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use support::{wait_until, TIMEOUT};

static SEEN: AtomicU64 = AtomicU64::new(0);
static GO: AtomicBool = AtomicBool::new(false);

fn all_vcores() -> u64 {
    u64::MAX >> (64 - parlib_vcore::max_vcores())
}

#[test]
fn stealing_spreads_a_thousand_threads_over_every_vcore() {
    parlib_testkit::isolated!(TIMEOUT, env = &[("VCORE_LIMIT", "64")], {
        support::init();
        assert!(parlib_upthread::sched::stealing(), "stealing is on by default");
        // With stealing on, new threads are queued on their creator's vcore (vcore 0):
        // only stealing can take them anywhere else.
        let hs: Vec<_> = (0..1000)
            .map(|_| {
                parlib_upthread::spawn(|| {
                    // Record where we run until every vcore has been seen, then leave.
                    while !GO.load(Ordering::Acquire) {
                        SEEN.fetch_or(1 << parlib_vcore::id(), Ordering::AcqRel);
                        parlib_upthread::yield_now();
                    }
                })
            })
            .collect();
        // Hangs (and the watchdog fails the test) if some vcore never runs a thread.
        wait_until(|| SEEN.load(Ordering::Acquire) | 1 == all_vcores());
        GO.store(true, Ordering::Release);
        for h in hs {
            h.join().unwrap();
        }
        println!("{} vcores ran threads", SEEN.load(Ordering::Relaxed).count_ones());
    });
}

#[test]
fn without_stealing_new_threads_are_placed_round_robin() {
    parlib_testkit::isolated!(TIMEOUT, env = &[("UPTHREAD_CAN_VCORE_STEAL", "0")], {
        support::init();
        assert!(!parlib_upthread::sched::stealing());
        let hs: Vec<_> = (0..100)
            .map(|_| {
                parlib_upthread::spawn(|| {
                    let first = parlib_vcore::id();
                    for _ in 0..10 {
                        parlib_upthread::yield_now();
                        assert_eq!(parlib_vcore::id(), first, "without stealing a thread stays put");
                    }
                    first
                })
            })
            .collect();
        let mut seen = 0u64;
        for h in hs {
            seen |= 1 << h.join().unwrap();
        }
        assert_eq!(seen, all_vcores(), "round robin placement uses every vcore");
    });
}
