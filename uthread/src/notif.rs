//! The notification disable depth of the running uthread.
//!
//! A uthread may not be interrupted (DESIGN §5) while its depth is above 0. The depth is
//! per uthread: while it runs, it lives in its vcore's record, where the signal handler
//! reads it and where one `%gs`-relative instruction changes it (so a preemption cannot
//! split the update); every switch saves it into the uthread and loads the next
//! uthread's. Nested disables work, and the depth travels with a uthread that migrates.
//! Vcore context always runs with notifications off, so there these calls do nothing,
//! as they do on plain threads.
//!
//! | depth | in vcore context | interruptible |
//! |---|---|---|
//! | any | yes | no |
//! | > 0 | no | no: a notification stays pending, and is delivered when the depth returns to 0 |
//! | 0 | no | yes, at safe points (see `parlib_vcore::notif`) |

pub use parlib_events::{disable_notifs, enable_notifs};

/// The running uthread's disable depth (0 in vcore context and outside uthreads).
pub fn notif_disable_depth() -> u32 {
    if parlib_vcore::in_vcore_context() {
        return 0;
    }
    parlib_vcore::notif::running_depth()
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
