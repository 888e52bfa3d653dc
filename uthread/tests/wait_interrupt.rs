//! Wait interrupts (`parlib_uthread::interrupt`): a registration taken by an interrupter
//! is always handed back to its waiter, even when its function panics (regression: the
//! panic skipped the `done` mark, and the waiter spun in `disarm` forever).

use parlib_testsched as common;

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parlib_testkit::isolated;
use parlib_uthread::{self as uthread, interrupt, TlsMode, Uthread, WaitInterrupt};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Set by the interrupter once `interrupt_wait` has unwound.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn panicking_interrupt(_: usize) -> bool {
    panic!("interrupt function panics on purpose");
}

#[test]
fn a_panicking_interrupt_function_still_lets_the_waiter_disarm() {
    isolated!(TIMEOUT, {
        common::init();
        let me = uthread::current().expect("main runs on a uthread");
        let reg = WaitInterrupt::new(panicking_interrupt, 0);
        // SAFETY: `me` is our own uthread, and `reg` stays in this frame until `disarm`
        // has returned.
        assert!(unsafe { interrupt::arm(me, &reg) }, "an interrupt was pending on a fresh uthread");

        let waiter = me.as_ptr() as usize;
        common::spawn(TlsMode::Backed, move || {
            // SAFETY: the waiter stays alive: it waits for INTERRUPTED, then in `disarm`.
            let r = std::panic::catch_unwind(|| unsafe {
                uthread::interrupt_wait(NonNull::new_unchecked(waiter as *mut Uthread))
            });
            assert!(r.is_err(), "the interrupt function's panic did not reach the interrupter");
            assert_eq!(uthread::notif_disable_depth(), 0, "the unwind left notifications disabled");
            INTERRUPTED.store(true, Ordering::Release);
        });
        common::wait_until(|| INTERRUPTED.load(Ordering::Acquire));

        // SAFETY: `reg` was armed for `me` above.
        assert!(unsafe { interrupt::disarm(me, &reg) }, "disarm did not see the interrupter take it");
    });
}
