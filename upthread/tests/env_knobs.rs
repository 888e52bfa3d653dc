//! The UPTHREAD_* environment variables set the knobs at init; malformed values are
//! reported by name and the defaults used.

mod support;

use std::time::Duration;

use support::TIMEOUT;

#[test]
fn well_formed_knobs_take_effect() {
    parlib_testkit::isolated!(
        TIMEOUT,
        env = &[
            ("UPTHREAD_VCORES", "1"),
            ("UPTHREAD_SCHED_PERIOD_US", "2000"),
            ("UPTHREAD_CAN_VCORE_REQUEST", "off"),
            ("UPTHREAD_CAN_VCORE_STEAL", "false"),
        ],
        {
            support::init();
            assert_eq!(parlib_upthread::num_vcores(), 1);
            assert_eq!(parlib_upthread::sched_period(), 2000);
            assert!(!parlib_upthread::sched::requesting());
            assert!(!parlib_upthread::sched::stealing());
            // Threads still run (on vcore 0 only).
            let hs: Vec<_> = (0..20).map(|_| parlib_upthread::spawn(parlib_vcore::id)).collect();
            for h in hs {
                assert_eq!(h.join().unwrap(), 0);
            }
        }
    );
}

#[test]
fn too_many_vcores_means_all_of_them() {
    parlib_testkit::isolated!(TIMEOUT, env = &[("UPTHREAD_VCORES", "100000")], {
        support::init();
        assert_eq!(parlib_upthread::num_vcores(), parlib_vcore::max_vcores());
    });
}

#[test]
fn malformed_knobs_are_named_and_defaults_used() {
    let out = parlib_testkit::child_outcome!(
        TIMEOUT,
        env = &[
            ("UPTHREAD_VCORES", "zero"),
            ("UPTHREAD_SCHED_PERIOD_US", "5"),
            ("UPTHREAD_CAN_VCORE_REQUEST", "maybe"),
            ("UPTHREAD_CAN_VCORE_STEAL", ""),
        ],
        {
            support::init();
            assert_eq!(parlib_upthread::num_vcores(), parlib_vcore::max_vcores());
            assert_eq!(parlib_upthread::sched_period(), 0);
            assert!(parlib_upthread::sched::requesting());
            assert!(parlib_upthread::sched::stealing());
            assert_eq!(parlib_upthread::spawn(|| 1).join().unwrap(), 1);
        }
    );
    assert!(out.finished && out.status.is_some_and(|s| s.success()), "the child failed\n{}", out.output());
    for var in [
        "UPTHREAD_VCORES",
        "UPTHREAD_SCHED_PERIOD_US",
        "UPTHREAD_CAN_VCORE_REQUEST",
        "UPTHREAD_CAN_VCORE_STEAL",
    ] {
        assert!(out.stderr.contains(var), "no message names {var}\n{}", out.output());
    }
}

#[test]
fn knobs_change_at_run_time() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        let max = parlib_vcore::max_vcores();
        assert_eq!(parlib_upthread::set_num_vcores(0), Err(parlib_sync::Errno::INVAL));
        assert_eq!(parlib_upthread::set_num_vcores(max + 1), Err(parlib_sync::Errno::INVAL));
        parlib_upthread::set_num_vcores(1).unwrap();
        parlib_upthread::can_vcore_steal(false);
        let hs: Vec<_> = (0..20).map(|_| parlib_upthread::spawn(parlib_vcore::id)).collect();
        for h in hs {
            assert_eq!(h.join().unwrap(), 0, "one active vcore");
        }
        parlib_upthread::set_num_vcores(max).unwrap();
        parlib_upthread::can_vcore_steal(true);
        parlib_upthread::can_vcore_request(false);
        let hs: Vec<_> = (0..20)
            .map(|_| parlib_upthread::spawn(|| parlib_alarms::sleep(Duration::from_millis(1))))
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
}
