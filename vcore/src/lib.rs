//! # parlib-vcore: emulated vcores
//!
//! The bottom layer of parlib-rs (see `DESIGN.md` §1 and §3). A process asks for
//! *cores* (vcores), not threads. Linux cannot hand out dedicated cores, so this crate
//! emulates them: [`lib_init`] starts one Linux task per CPU the process may use
//! (`sched_getaffinity`, capped by the `VCORE_LIMIT` environment variable), pins task *i*
//! to the *i*-th of those CPUs and parks it on a futex. [`request`] wakes parked vcores;
//! [`yield_vcore`] parks the caller again. Every woken vcore starts in *vcore context*,
//! at the top of its own stack and on its own TLS, in the function given to
//! [`set_entry`] (parlib's `vcore_entry`).
//!
//! ## Where it sits
//!
//! ```text
//!   parlib-uthread    uthreads, the Scheduler trait, vcore_entry   <- the main user
//!   parlib-vcore      this crate: vcores, arch (switch, FS base, stacks)
//!   Linux             tasks, futexes, sched_setaffinity
//! ```
//!
//! Most programs never call this crate directly: `parlib_uthread::lib_init` initialises
//! it, installs its entry and moves `main` onto vcore 0.
//!
//! ## Map
//!
//! | module | what |
//! |---|---|
//! | [`arch`] | the only assembly: context switch, FS/GS base, raw system calls |
//! | [`stack`] | guarded, pooled `mmap` stacks |
//! | [`vcore`](mod@vcore) | per-vcore records, tasks, request / yield, moving `main` |
//! | [`notif`] | notifications (SIGUSR1), safe-point interruption, fault delivery |
//! | [`timer`] | POSIX timers that signal one vcore's task (notification retries, alarms) |
//! | [`spin`] | the spinlock vcore context uses |
//! | [`futex`] | futex wait / wake without touching `errno` |
//!
//! ## Example
//!
//! ```
//! # // As a user of the facade crate `parlib` writes it; here, its paths mapped.
//! # mod parlib { pub(crate) use parlib_vcore as vcore; }
//! use parlib::vcore;
//!
//! fn entry() -> ! {
//!     // Vcore context, at the top of this vcore's stack, on its own TLS.
//!     assert!(vcore::in_vcore_context());
//!     // The first request moved `main` here; give it the vcore back.
//!     vcore::resume_main()
//! }
//!
//! vcore::lib_init().unwrap();
//! vcore::set_entry(entry);
//! assert_eq!(vcore::request(1).unwrap(), 1); // returns on vcore 0
//! assert_eq!(vcore::id(), 0);
//! assert!(!vcore::in_vcore_context());
//! ```
//!
//! ## Dependencies
//!
//! | crate | what for |
//! |---|---|
//! | `nix` | the set-up calls made on ordinary threads: CPU affinity ([`CpuSet`]), stack `mmap` / `mprotect` / `munmap`, installing the signal handlers, a helper thread's signal mask |
//! | `x86` | CPUID decoding for the extended-state save area (`arch`), and `wrfsbase` / `wrgsbase` (the reads stay hand-written: see `arch`) |
//! | `crossbeam-utils` | `AtomicCell` for the entry and timer-hook function pointers (asserted lock-free), `Backoff::spin` in [`spin::SpinLock`] |
//! | `libc` | types and constants, and the calls below |
//!
//! Raw `libc`, or a raw system call through [`arch::syscall6`], stays where nix would be
//! wrong or has nothing to offer:
//! * **Signal handlers and what they call** (`notif`'s notification and fault handlers,
//!   the timer hook they run, a fault handler restoring the default action). A handler
//!   runs on whatever TLS was running, often a uthread's, and nix reports failure through
//!   that TLS's `errno`, which belongs to the application.
//! * **Code that runs on a TLS that is not its own, or on none**: moving `main` (the
//!   handoff stack blocks every signal with `rt_sigprocmask`), the FS/GS base
//!   (`arch_prctl`), `getcpu`.
//! * **futex, `tgkill` and the POSIX timers** (`timer_create` / `timer_settime` /
//!   `timer_delete` on kernel timer ids): called from uthreads and from handlers, so they
//!   must not touch `errno` ([`futex`], [`notify`], [`timer`]).
//! * **What nix 0.30 does not wrap**: `sigaltstack`, `pthread_create` and its attributes,
//!   `pthread_atfork`, `getauxval`, `dl_iterate_phdr`, `sysconf`'s page size (behind a
//!   feature of its own).
//!
//! ## Caveats
//!
//! * Vcore tasks own their GS base; do not use GS on them.
//! * A Linux thread created from a vcore inherits its pin to one CPU (Linux copies the
//!   affinity mask); reset it with [`CpuSet::apply_to_calling_thread`] on
//!   [`process_cpus`] if that matters (or call [`detach_from_vcore`]).
//! * FS base accesses use `wrfsbase`/`rdfsbase` when the kernel allows (`AT_HWCAP2` bit 1)
//!   and `arch_prctl` otherwise; setting `PARLIB_FORCE_ARCH_PRCTL=1` forces the latter.
//!   In that mode asking "which vcore am I on" costs a system call.

#![warn(missing_docs)]

pub mod arch;
mod error;
pub mod futex;
mod leave;
pub mod notif;
pub mod spin;
pub mod stack;
pub mod timer;
#[allow(clippy::module_inception)]
pub mod vcore;

pub use error::Error;
pub use leave::detach_from_vcore;
pub use notif::{notify, notify_self, FaultInfo};
pub use stack::{Stack, DEFAULT_STACK_SIZE};
pub use timer::VcoreTimer;
pub use vcore::{
    cpu_of, current_cpu, current_raw, get, id, in_vcore_context, is_initialized, lib_init, main_tls,
    max_vcores, num_vcores, on_uthread, process_cpus, reenter, request, request_specific, resume_main,
    running_uthread_raw, set_entry, set_park_hook, take_main_context, this, this_unchecked, try_id,
    yield_vcore, CpuSet, ParkHook, Vcore, VCORE_LIMIT_ENV,
};
