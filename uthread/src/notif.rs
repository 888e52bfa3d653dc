//! The notification disable depth of the running uthread.
//!
//! A uthread may not be interrupted (DESIGN §5) while its depth is above 0. The depth is
//! per uthread, so nested disables work and the depth travels with the uthread when it
//! migrates. Vcore context always runs with notifications off, so there these calls do
//! nothing, as they do on plain threads.
//!
//! | depth | in vcore context | interruptible |
//! |---|---|---|
//! | any | yes | no |
//! | > 0 | no | no |
//! | 0 | no | yes |
//!
//! Delivery of notifications that arrive while the depth is above 0 comes with the
//! events layer.

use core::sync::atomic::Ordering;

use crate::switch::current;

/// Disables notifications for the running uthread (depth + 1).
#[inline]
pub fn disable_notifs() {
    if let Some(u) = current() {
        // SAFETY: `current` is the live uthread running this code.
        let u = unsafe { u.as_ref() };
        u.notif_depth.store(u.notif_depth.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// Re-enables notifications for the running uthread (depth - 1).
///
/// # Panics
/// If the depth is already 0: an `enable_notifs` without its `disable_notifs`.
#[inline]
pub fn enable_notifs() {
    if let Some(u) = current() {
        // SAFETY: `current` is the live uthread running this code.
        let u = unsafe { u.as_ref() };
        let d = u.notif_depth.load(Ordering::Relaxed);
        assert!(d > 0, "enable_notifs without a matching disable_notifs (uthread {})", u.id());
        u.notif_depth.store(d - 1, Ordering::Relaxed);
    }
}

/// The running uthread's disable depth (0 outside uthreads).
pub fn notif_disable_depth() -> u32 {
    current().map_or(0, |u| {
        // SAFETY: `current` is the live uthread running this code.
        unsafe { u.as_ref() }.notif_depth.load(Ordering::Relaxed)
    })
}

/// Keeps notifications disabled while it lives.
#[must_use = "notifications are re-enabled when the guard is dropped"]
pub struct NotifGuard {
    _not_send: core::marker::PhantomData<*const ()>,
}

impl NotifGuard {
    /// Disables notifications until the guard is dropped.
    pub fn new() -> NotifGuard {
        disable_notifs();
        NotifGuard { _not_send: core::marker::PhantomData }
    }
}

impl Default for NotifGuard {
    fn default() -> Self {
        NotifGuard::new()
    }
}

impl Drop for NotifGuard {
    fn drop(&mut self) {
        enable_notifs();
    }
}
