//! # parlib-alarms: per-vcore timers, uthread sleep, timeouts
//!
//! The alarm service of parlib-rs (`DESIGN.md` §6). An [`AlarmWaiter`] holds a deadline
//! and a callback that runs in vcore context when the deadline passes. Each vcore keeps
//! its own waiters in deadline order and one POSIX timer aimed at its own task
//! (`SIGEV_THREAD_ID`); an expiry becomes an `EV_ALARM` event on that vcore (see `pvc`).
//! On top of that:
//! * [`sleep`] and [`sleep_until`] block only the calling uthread;
//! * the alarms layer is `parlib-sync`'s timeout service, so `Mutex::timed_lock`,
//!   `Condvar::timed_wait` and `Semaphore::timed_wait` work on uthreads.
//!
//! ## Where it sits
//!
//! ```text
//!   upthread, applications     sleep, timed waits, periodic callbacks
//!   parlib-alarms              this crate
//!   parlib-sync                timed waits call back into this crate through TimeoutService
//!   parlib-uthread / events    block and wake uthreads; EV_ALARM
//!   parlib-vcore               the notification signal, which timer expiry reuses
//! ```
//!
//! Call [`init`] once after `parlib_uthread::lib_init`.
//!
//! ## Example
//!
//! ```no_run
//! # // As a user of the facade crate `parlib` writes it; here, its paths mapped.
//! # mod parlib { pub(crate) use parlib_alarms as alarms; }
//! use std::time::Duration;
//! // On a uthread (after uthread::lib_init and alarms::init):
//! parlib::alarms::sleep(Duration::from_millis(5)); // other uthreads run meanwhile
//! ```

#![warn(missing_docs)]

mod pvc;
mod sleep;
mod waiter;

use core::fmt;
use core::pin::Pin;

pub use parlib_sync::Deadline;
pub use pvc::arm_count;
pub use sleep::{sleep, sleep_until, sleep_until_interruptible};
pub use waiter::AlarmWaiter;

/// What went wrong in an alarms call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The vcore and events layers are not initialised yet.
    NotInitialized,
    /// The kernel refused a timer.
    Timer {
        /// Its errno.
        errno: i32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotInitialized => {
                write!(f, "parlib_alarms::init needs vcore::lib_init and events::init first")
            }
            Error::Timer { errno } => {
                write!(f, "timer_create failed: {}", std::io::Error::from_raw_os_error(*errno))
            }
        }
    }
}

impl std::error::Error for Error {}

/// Creates every vcore's timer, registers the `EV_ALARM` handler, and installs this
/// crate as `parlib-sync`'s timeout service. Call after `parlib_uthread::lib_init`
/// (which initialises the vcore and events layers); later calls do nothing.
pub fn init() -> Result<(), Error> {
    if parlib_vcore::max_vcores() == 0 {
        return Err(Error::NotInitialized);
    }
    parlib_events::init().map_err(|_| Error::NotInitialized)?;
    pvc::init()?;
    parlib_sync::set_timeout_service(&TIMEOUTS);
    Ok(())
}

/// The timeout service for `parlib-sync`: an alarm in the caller's slot.
struct Timeouts;
static TIMEOUTS: Timeouts = Timeouts;

/// What a timeout keeps in its `TimeoutSlot`.
#[repr(C)]
struct TimeoutRecord {
    waiter: AlarmWaiter, // first: the callback recovers the record from it
    f: fn(usize),
    arg: usize,
}

const _: () = assert!(
    core::mem::size_of::<TimeoutRecord>() <= core::mem::size_of::<parlib_sync::TimeoutSlot>()
        && core::mem::align_of::<TimeoutRecord>() <= core::mem::align_of::<parlib_sync::TimeoutSlot>()
);

fn timeout_fired(w: &AlarmWaiter) {
    // SAFETY: the waiter is the first field of a TimeoutRecord (repr(C)), set up in `arm`.
    let rec = unsafe { &*(w as *const AlarmWaiter as *const TimeoutRecord) };
    (rec.f)(rec.arg);
}

impl parlib_sync::TimeoutService for Timeouts {
    unsafe fn arm(&self, slot: *mut parlib_sync::TimeoutSlot, deadline: Deadline, f: fn(usize), arg: usize) {
        let rec = slot as *mut TimeoutRecord;
        // SAFETY: the slot is large and aligned enough (asserted above) and the caller
        // keeps it alive and unmoved until the callback ran or `cancel` returned true.
        unsafe {
            rec.write(TimeoutRecord { waiter: AlarmWaiter::new(), f, arg });
            (*rec).waiter.init_waiter(timeout_fired);
            (*rec).waiter.set_abs(deadline);
            Pin::new_unchecked(&(*rec).waiter).start();
        }
    }

    unsafe fn cancel(&self, slot: *mut parlib_sync::TimeoutSlot) -> bool {
        let rec = slot as *mut TimeoutRecord;
        // SAFETY: armed by `arm`; the record is never dropped (the slot is raw storage),
        // so its waiter's Drop does not run.
        let w = unsafe { &(*rec).waiter };
        if w.stop() {
            return true;
        }
        // Fired or firing: the expiry code touches the slot until it marks it DONE, and
        // the slot is in the caller's frame, so wait for that. (Never called from the
        // timeout's own callback, which only runs `f`.)
        w.wait_while_firing();
        false
    }
}
