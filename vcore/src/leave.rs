//! Helper threads started from a vcore: what they must shed of it.
//!
//! Linux copies a task's GS base, CPU affinity and signal mask into every task it
//! clones, so a Linux thread created on a uthread (a backing thread, a syscall offload
//! worker) starts out looking like the vcore that created it.

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};

use crate::arch;

/// Makes the calling Linux thread a helper of the runtime that belongs to no vcore, even
/// if it was created on one. Call it first thing in the thread's start routine:
///
/// 1. **GS base cleared.** A cloned task inherits the vcore's GS base, the pointer to its
///    vcore record. [`this`](crate::this) then still finds the record and refuses it only
///    because the running TLS is not one that vcore uses; a backing thread runs on a
///    uthread's TLS, so it would pass that check while its uthread runs on that vcore,
///    and act as the vcore.
/// 2. **CPU affinity restored** to the process's set ([`process_cpus`](crate::process_cpus)):
///    a cloned task inherits the vcore's pin to one CPU, so the blocking calls it exists
///    to run would take that vcore's CPU from it instead of using any CPU the process may.
/// 3. **Every signal blocked.** Process-directed signals belong to the vcores and the
///    application's own threads; a handler run here would run on a thread the
///    application does not know of and, on a backing thread, on the TLS of a uthread
///    that may be running elsewhere. (`pthread_sigmask`, not `rt_sigprocmask`: glibc
///    keeps its internal signals unblocked, which `setuid` and cancellation need.)
///
/// Steps 1 and 2 apply only to a thread cloned from a vcore task (one with a GS base):
/// a thread started from a plain thread keeps the affinity it was given.
///
/// # Panics
/// On a vcore task (in vcore context or on a uthread): it would stop being its vcore.
pub fn detach_from_vcore() {
    if arch::gs_base() != 0 {
        assert!(crate::this().is_none(), "detach_from_vcore called on a vcore");
        // SAFETY: this task is no vcore task (checked just now); it must not claim to be one.
        unsafe { arch::set_gs_base(0) };
        if let Some(set) = crate::process_cpus() {
            // A helper left pinned still works, only on fewer CPUs than it could.
            let _ = set.apply_to_calling_thread();
        }
    }
    // Fails only for an invalid `how`.
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), None);
}
