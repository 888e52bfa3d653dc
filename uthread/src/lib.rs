//! # parlib-uthread: uthreads and the `Scheduler` trait
//!
//! The second layer of parlib-rs (`DESIGN.md` §2 and §4). It turns the vcores of
//! `parlib-vcore` into a place where user-level threads (*uthreads*) run under a
//! scheduler the application chooses, written against the [`Scheduler`] trait (parlib's
//! `sched_ops`).
//!
//! ## Where it sits
//!
//! ```text
//!   sync, alarms, syscalls, upthread, your scheduler   <- block / wake uthreads through this crate
//!   parlib-uthread   this crate: Uthread, Scheduler, vcore_entry, yield / run, TLS, notif depth
//!   parlib-vcore     vcores, context switch, FS base, stacks
//! ```
//!
//! ## The model
//!
//! Each vcore runs either **vcore context** (scheduler code, on the vcore's own stack
//! and TLS, never blocking) or a **uthread** (application code). Control passes between
//! them only through this crate:
//!
//! * [`vcore_entry`] is the single way into vcore context; it ends in
//!   [`Scheduler::sched_entry`], which picks a uthread and calls [`run_uthread`].
//! * A uthread leaves through [`yield_with`], whose callback runs in vcore context and
//!   hands the uthread to someone: back to the scheduler ([`runnable`], [`paused`]) or to
//!   a wait queue ([`has_blocked`]). [`exit_with`] leaves for good.
//! * A scheduler's hot path may skip the checks it has already made:
//!   [`yield_current_with`] for a uthread that looked itself up with [`current`], and
//!   [`run_uthread_in_vcore_context`] from `sched_entry`. Each saves one vcore lookup
//!   (`upthread`'s yield uses both).
//!
//! A wait that someone else must be able to end early (cancellation, signals) registers
//! how to end it; [`interrupt_wait`] does so exactly once, racing the normal wake-up
//! safely (the protocol is in [`interrupt`]).
//!
//! Uthread records belong to the scheduler: it embeds [`Uthread`] as the first field of
//! its own `#[repr(C)]` struct, allocates it, and calls [`init`] and [`cleanup`].
//!
//! ## TLS
//!
//! A uthread made with [`TlsMode::Backed`] runs on its own glibc TLS, borrowed from a
//! parked *backing* thread, and every switch loads its FS base: `errno`, Rust
//! `thread_local!` values and glibc's per-thread state belong to the uthread and follow
//! it across vcores. [`TlsMode::None`] uthreads run on the vcore's TLS: cheaper, for
//! code that keeps per-thread state elsewhere. See [`tls`](crate::tls) for the pool.
//!
//! ## Preemption and locks
//!
//! A scheduler may preempt: a notification (`parlib-events`) interrupts a running
//! uthread at its next *safe point* (never inside libc, the loader, libgcc_s or
//! libstdc++, never with notifications disabled) and `vcore_entry` can hand it back to
//! the scheduler with [`paused`]. Scheduler callbacks never run preemptibly: in vcore
//! context notifications are off, and [`runnable`] called from a uthread disables them
//! around the callback. A lock that a uthread shares with vcore context must disable
//! notifications while a uthread holds it (`parlib_vcore::spin::PdrSpinLock`), or an
//! interruption while holding it deadlocks the vcore. `std::sync` locks, including the
//! one behind `println!`, are not protected: under preemption, hold them inside a
//! [`NotifGuard`].
//!
//! ## Do not block the vcore
//!
//! A uthread shares its vcore with every other uthread on it. `std::sync` locks,
//! `std::thread::sleep` and blocking system calls block the whole vcore; the `sync`,
//! `alarms` and `syscalls` layers are the uthread-aware replacements.
//!
//! ## Example
//!
//! `examples/round_robin.rs` is a complete scheduler (about 150 lines) that runs 1000
//! uthreads on every vcore: `cargo run --release --example round_robin`.

#![warn(missing_docs)]

mod error;
pub mod interrupt;
mod notif;
mod runtime;
mod sched;
mod switch;
pub mod tls;
mod uthread;

pub use error::Error;
pub use interrupt::{interrupt_wait, Interrupted, WaitInterrupt};
pub use notif::{disable_notifs, enable_notifs, notif_disable_depth, NotifGuard};
pub use runtime::{lib_init, main_uthread, vcore_entry};
pub use sched::{default_fault_policy, BlockReason, Fault, Scheduler, Syscall};
pub use switch::{
    blockon_sysc, cleanup, current, exit_with, has_blocked, has_exited, init, interrupted, paused, push_call,
    run_current_uthread, run_uthread, run_uthread_in_vcore_context, runnable, yield_current_with, yield_with,
};
pub use tls::{run_on_backing, run_sysc_on_backing};
pub use uthread::{State, TlsMode, Uthread};
