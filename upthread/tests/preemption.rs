//! `set_sched_period` preempts: on one vcore, a thread spinning without ever yielding
//! does not keep another from running.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};

use support::TIMEOUT;

static FLAG: AtomicBool = AtomicBool::new(false);

fn spin_until_flag() {
    // A pure loop: no yield, no system call, no libc.
    while !FLAG.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
}

#[test]
fn a_period_lets_another_thread_run_past_a_spinner_on_one_vcore() {
    parlib_testkit::isolated!(TIMEOUT, env = &[("UPTHREAD_VCORES", "1")], {
        support::init();
        assert_eq!(parlib_upthread::num_vcores(), 1);
        assert_eq!(parlib_upthread::sched_period(), 0, "cooperative by default");
        parlib_upthread::set_sched_period(1000).unwrap();
        let spinner = parlib_upthread::spawn(spin_until_flag);
        // Give the spinner the vcore: it never gives it back by itself.
        parlib_upthread::yield_now();
        let setter = parlib_upthread::spawn(|| FLAG.store(true, Ordering::Release));
        setter.join().unwrap();
        spinner.join().unwrap();
    });
}

#[test]
fn the_period_from_the_environment_preempts_too() {
    parlib_testkit::isolated!(
        TIMEOUT,
        env = &[("UPTHREAD_VCORES", "1"), ("UPTHREAD_SCHED_PERIOD_US", "500")],
        {
            support::init();
            assert_eq!(parlib_upthread::sched_period(), 500);
            let spinner = parlib_upthread::spawn(spin_until_flag);
            parlib_upthread::yield_now();
            let setter = parlib_upthread::spawn(|| FLAG.store(true, Ordering::Release));
            spinner.join().unwrap();
            setter.join().unwrap();
        }
    );
}

#[test]
fn periods_below_the_minimum_are_refused() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init();
        assert_eq!(
            parlib_upthread::set_sched_period(parlib_upthread::MIN_SCHED_PERIOD_US - 1),
            Err(parlib_sync::Errno::INVAL)
        );
        assert_eq!(parlib_upthread::set_sched_period(0), Ok(()));
        assert_eq!(parlib_upthread::sched_period(), 0);
    });
}
