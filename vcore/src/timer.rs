//! POSIX timers aimed at one vcore's task: the notification retry timer (`notif`) and
//! the per-vcore alarm timers of `parlib-alarms` (DESIGN §6); and, through
//! [`VcoreTimer::for_task`], at a plain thread (parlib-timed's preemption timer).
//!
//! A [`VcoreTimer`] is a `CLOCK_MONOTONIC` timer created with `SIGEV_THREAD_ID`: its
//! expiry sends the notification signal to that vcore's task alone, whichever task armed
//! it. The notification handler then runs the timer hook ([`set_timer_hook`]) for a
//! timer made with [`VcoreTimer::new`]; a retry timer's expiry only retries a deferred
//! notification.
//!
//! Every call is a raw system call on the kernel's timer id, never glibc's `timer_*`:
//! the retry timer is armed from the notification handler, and alarm timers from
//! uthreads, where `errno` belongs to the application.
//!
//! [`set_timer_hook`]: crate::notif::set_timer_hook

use nix::errno::Errno;

use crate::arch::syscall6;
use crate::error::Error;
use crate::notif::NOTIF_SIGNAL;
use crate::vcore::{get, Vcore};

/// `sigev_value` of a timer made by [`VcoreTimer::new`]: the notification handler runs
/// the timer hook for expiries that carry it.
pub(crate) const TIMER_HOOK_TAG: usize = 0x7061_726c_6962; // "parlib"

/// A one-shot POSIX timer that signals one vcore's task; deleted when dropped.
#[derive(Debug)]
pub struct VcoreTimer {
    /// The kernel's timer id.
    id: libc::c_int,
}

impl VcoreTimer {
    /// A disarmed timer whose expiry runs the timer hook on vcore `vcore_id` (in its
    /// notification handler, with that vcore's id).
    ///
    /// # Errors
    /// [`Error::NoSuchVcore`], [`Error::NotInitialized`] if the vcore's task has not
    /// started, or [`Error::Os`] if the kernel refuses the timer.
    pub fn new(vcore_id: usize) -> Result<VcoreTimer, Error> {
        VcoreTimer::create(get(vcore_id)?, TIMER_HOOK_TAG)
    }

    /// A disarmed timer whose expiry sends the notification signal, with `value` as its
    /// `sigev_value`, to task `tid` of this process (any thread, not only a vcore's):
    /// parlib-timed's per-thread preemption timer. Its expiry runs no timer hook; on a
    /// plain thread the signal runs the thread hook ([`set_thread_hook`]), which can tell
    /// the timer by `value` (`si_value`).
    ///
    /// # Errors
    /// [`Error::Os`] if the kernel refuses the timer (for example, `tid` is not a task of
    /// this process).
    ///
    /// [`set_thread_hook`]: crate::notif::set_thread_hook
    pub fn for_task(tid: libc::pid_t, value: usize) -> Result<VcoreTimer, Error> {
        VcoreTimer::create_for(tid, value)
    }

    /// A disarmed timer whose expiry only delivers the notification signal to `vc`: the
    /// notification retry timer.
    pub(crate) fn for_retry(vc: &Vcore) -> Result<VcoreTimer, Error> {
        VcoreTimer::create(vc, 0)
    }

    fn create(vc: &Vcore, value: usize) -> Result<VcoreTimer, Error> {
        if vc.tid() == 0 {
            return Err(Error::NotInitialized);
        }
        VcoreTimer::create_for(vc.tid(), value)
    }

    fn create_for(tid: libc::pid_t, value: usize) -> Result<VcoreTimer, Error> {
        // SAFETY: an all-zero sigevent is valid; we fill the fields the kernel reads.
        let mut sev: libc::sigevent = unsafe { core::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = NOTIF_SIGNAL;
        sev.sigev_notify_thread_id = tid;
        sev.sigev_value = libc::sigval { sival_ptr: value as *mut libc::c_void };
        let mut id: libc::c_int = -1;
        // SAFETY: raw timer_create with a valid sigevent and out-pointer.
        let r = unsafe {
            syscall6(
                libc::SYS_timer_create as usize,
                libc::CLOCK_MONOTONIC as usize,
                &mut sev as *mut libc::sigevent as usize,
                &mut id as *mut libc::c_int as usize,
                0,
                0,
                0,
            )
        };
        if r != 0 {
            return Err(Error::Os { what: "timer_create", errno: -r as i32 });
        }
        Ok(VcoreTimer { id })
    }

    /// Arms the timer to expire once at `deadline_ns` on `CLOCK_MONOTONIC`, replacing any
    /// earlier arming. A deadline of 0 arms for 1 ns: an all-zero time would disarm it
    /// instead. Async-signal-safe; never touches `errno`, and its error is a plain `Errno`
    /// (no drop glue that could free memory in a signal handler).
    pub fn arm_at(&self, deadline_ns: u64) -> Result<(), Errno> {
        self.settime(libc::TIMER_ABSTIME, deadline_ns.max(1))
    }

    /// Arms the timer to expire once, `ns` (> 0) from now. As for [`arm_at`](Self::arm_at).
    pub fn arm_after(&self, ns: u64) -> Result<(), Errno> {
        self.settime(0, ns.max(1))
    }

    /// Disarms the timer; an expiry already signalled is still delivered.
    pub fn disarm(&self) -> Result<(), Errno> {
        self.settime(0, 0)
    }

    fn settime(&self, flags: libc::c_int, ns: u64) -> Result<(), Errno> {
        let its = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: (ns / 1_000_000_000) as i64,
                tv_nsec: (ns % 1_000_000_000) as i64,
            },
        };
        // SAFETY: raw timer_settime on our own timer with a valid itimerspec and no old value.
        let r = unsafe {
            syscall6(
                libc::SYS_timer_settime as usize,
                self.id as usize,
                flags as usize,
                &its as *const libc::itimerspec as usize,
                0,
                0,
                0,
            )
        };
        if r != 0 {
            return Err(Errno::from_raw(-r as i32));
        }
        Ok(())
    }
}

impl Drop for VcoreTimer {
    fn drop(&mut self) {
        // SAFETY: raw timer_delete of a timer we created and nobody else knows.
        unsafe { syscall6(libc::SYS_timer_delete as usize, self.id as usize, 0, 0, 0, 0, 0) };
    }
}
