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
//!   parlib-uthread   this crate: records, handles, Scheduler, vcore_entry, yield / run, idle, TLS
//!   parlib-events    event queues, notifications
//!   parlib-vcore     vcores, context switch, FS base, stacks
//! ```
//!
//! ## Map
//!
//! | item | what |
//! |---|---|
//! | [`Scheduler`] | the callbacks a scheduler implements; its `Thread` type is its per-thread data |
//! | [`lib_init`], [`create`], [`spawn`] | start the layer (the caller becomes `main`), make uthreads |
//! | [`Runnable`], [`Yielded`], [`Blocked`], [`Created`], [`Exited`] | owned handles: which one you hold says what you may do (`handle` docs) |
//! | [`run_uthread`], [`yield_with`], [`paused`], [`runnable`], [`has_blocked`] | the moves between states |
//! | [`idle`] | parking an idle vcore without losing a wake-up |
//! | [`interrupt`] | ending a blocked uthread's wait early (cancellation, signals) |
//! | [`call_at_safe_point`] | running a function on a uthread at its next safe point (timed calls' preemption) |
//! | [`tls`], [`TlsBlock`], [`swap_running_tls`] | per-uthread TLS from backing threads, running calls on them, TLS blocks for code on stacks of its own |
//! | [`NotifGuard`] | keeping notifications (preemption) off over a critical section |
//!
//! ## The model
//!
//! Each vcore runs either **vcore context** (scheduler code, on the vcore's own stack
//! and TLS, never blocking) or a **uthread** (application code). Control passes between
//! them only through this crate:
//!
//! * [`vcore_entry`] is the single way into vcore context; it ends in
//!   [`Scheduler::sched_entry`], which picks a uthread and calls [`run_uthread`], or parks
//!   the vcore with [`idle::park`].
//! * A uthread leaves through [`yield_with`], whose callback runs in vcore context and
//!   hands the uthread on: back to the scheduler ([`paused`], [`runnable`]) or to a wait
//!   queue ([`has_blocked`], which returns the [`Blocked`] handle its waker will need).
//!   Returning from its entry ends it, and the scheduler gets its [`Exited`] handle.
//! * A scheduler's hot path may skip the checks it has already made:
//!   [`yield_current_with`] for a uthread that looked itself up with [`current`], and
//!   [`run_uthread_in_vcore_context`] from `sched_entry`. Each saves one vcore lookup
//!   (`upthread`'s yield uses both).
//!
//! A wait that someone else must be able to end early (cancellation, signals) registers
//! how to end it; [`interrupt_wait`] does so exactly once, racing the normal wake-up
//! safely (the protocol is in [`interrupt`]).
//!
//! ## Records and handles
//!
//! Every uthread has one record, allocated by this crate at a random cache colour and
//! recycled through a pool: the uthread layer's [`Uthread`] and the scheduler's own data
//! ([`Scheduler::Thread`]) side by side ([`Record`]). Nobody else ever holds a raw
//! pointer it could run twice: a uthread that is not running is owned by one handle,
//! and each move to another state consumes it. Raw pointers remain only behind
//! `unsafe fn`s (`from_raw`, [`interrupt`]) for the sync primitives and services that
//! need intrusive structures, each with one stated obligation.
//!
//! ## Where it differs from DESIGN §4
//!
//! * **This crate allocates the records**, not the scheduler: a [`Record`] holds the
//!   [`Uthread`] and the scheduler's data (`Scheduler::Thread`) side by side. Only so can
//!   it hand the scheduler typed handles without trusting a cast of the scheduler's,
//!   give every scheduler cache-coloured, pooled records, and free a record exactly when
//!   its [`Exited`] handle is dropped.
//! * **`yield_with(f)` always saves the uthread**; a uthread ends by returning from its
//!   entry (or by the `unsafe` [`exit`]), and the scheduler hears of it through
//!   [`Scheduler::thread_exited`] (a callback later parlib's `sched_ops` has too). The
//!   callback is `'static + Send`, since it runs while the uthread may already run again.
//! * **`init` and `cleanup` are [`create`] and dropping [`Exited`]**; `runnable`,
//!   `paused` and `has_blocked` take handles, not raw pointers.
//!
//! ## TLS
//!
//! A uthread made with [`TlsMode::Backed`] runs on its own glibc TLS, borrowed from a
//! parked *backing* thread, and every switch loads its FS base: `errno`, Rust
//! `thread_local!` values and glibc's per-thread state belong to the uthread and follow
//! it across vcores. [`TlsMode::None`] uthreads run on the vcore's TLS: cheaper, for
//! code that keeps per-thread state elsewhere. See [`tls`] for the pool.
//!
//! ## Preemption and locks
//!
//! A scheduler may preempt: a notification (`parlib-events`) interrupts a running
//! uthread at its next *safe point* (never inside libc, the loader, libgcc_s or
//! libstdc++, never with notifications disabled) and an event handler can take it off
//! its vcore with [`take_interrupted`] and hand it back with [`paused`]. Scheduler
//! callbacks never run preemptibly: in vcore context notifications are off, and
//! [`runnable`] called from a uthread disables them around the callback. A lock that a
//! uthread shares with vcore context must disable notifications while a uthread holds it
//! (`parlib_vcore::spin::PdrSpinLock`), or an interruption while holding it deadlocks
//! the vcore. A section that must not be preempted at all goes inside a [`NotifGuard`].
//!
//! ## Do not block the vcore
//!
//! A uthread shares its vcore with every other uthread on it, so a call that blocks in
//! the kernel blocks them all. `parlib-syscalls` makes Rust's std uthread-aware once its
//! `init` has run (upthread's `init` does): std's locks, condvars, `Once`, thread
//! parking, `println!`, `thread::sleep`, `std::net` and `std::fs` then block only the
//! uthread, and a preempted holder of a std lock no longer stalls the vcore (its crate
//! docs list what is covered and what is not: name resolution, `process` waits and
//! joining std threads still block the vcore). Without it (or with its `interpose`
//! feature off), std's blocking calls block the vcore; the `sync`, `alarms` and `syscalls` layers are the direct, faster faces either
//! way.
//!
//! ## Example
//!
//! A complete FIFO scheduler; `examples/round_robin.rs` is the same with preemption and
//! more comments, and `examples/priority.rs` a priority scheduler.
//!
//! ```
//! use std::collections::VecDeque;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! # // As a user of the facade crate `parlib` writes it; here, its paths mapped.
//! # mod parlib { pub(crate) use parlib_events as events; pub(crate) use parlib_uthread as uthread; pub(crate) use parlib_vcore as vcore; }
//! use parlib::uthread::{self, idle, Runnable, Scheduler, TlsMode};
//! use parlib::vcore::spin::SpinLock;
//!
//! struct Fifo(SpinLock<VecDeque<Runnable<()>>>);
//!
//! impl Scheduler for Fifo {
//!     type Thread = (); // no per-thread data
//!     fn sched_entry(&self) -> ! {
//!         loop {
//!             let next = self.0.lock().pop_front();
//!             match next {
//!                 Some(t) => uthread::run_uthread(t),
//!                 None => idle::park(|| !self.0.lock().is_empty(), || {}),
//!             }
//!             if parlib::events::events_pending() {
//!                 parlib::events::handle_events();
//!             }
//!         }
//!     }
//!     fn thread_runnable(&self, t: Runnable<()>) {
//!         self.0.lock().push_back(t);
//!         idle::wake_any();
//!     }
//!     fn thread_paused(&self, t: Runnable<()>) {
//!         self.0.lock().push_back(t); // a yield: this vcore schedules next, wake nobody
//!     }
//! }
//!
//! static FIFO: Fifo = Fifo(SpinLock::new(VecDeque::new()));
//! static DONE: AtomicUsize = AtomicUsize::new(0);
//!
//! uthread::lib_init(&FIFO, ()).unwrap(); // we are now the uthread `main`
//! for _ in 0..4 {
//!     uthread::spawn((), TlsMode::Backed, || {
//!         DONE.fetch_add(1, Ordering::Release);
//!     })
//!     .unwrap();
//! }
//! while DONE.load(Ordering::Acquire) < 4 {
//!     uthread::yield_with(uthread::paused);
//! }
//! ```

#![warn(missing_docs)]

mod error;
pub mod handle;
pub mod idle;
pub mod interrupt;
mod notif;
mod record;
mod runtime;
mod safe_call;
mod sched;
mod switch;
pub mod tls;
mod uthread;

pub use error::Error;
pub use handle::{Blocked, Created, Exited, IntoRunnable, Runnable, Yielded};
pub use interrupt::{interrupt_wait, Interrupted, WaitInterrupt};
pub use notif::{disable_notifs, enable_notifs, notif_disable_depth, NotifGuard};
pub use record::{cache_colour, Record};
pub use runtime::{lib_init, main_uthread, vcore_entry};
pub use safe_call::call_at_safe_point;
pub use sched::{default_fault_policy, BlockReason, Fault, Scheduler, Syscall};
pub use switch::{
    blockon_sysc, create, create_named, current, current_id, exit, has_blocked, interrupted, paused,
    run_current_uthread, run_uthread, run_uthread_in_vcore_context, runnable, spawn, swap_running_tls,
    take_interrupted, with_current, yield_current_with, yield_with,
};
pub use tls::{run_on_backing, run_sysc_on_backing, TlsBlock};
pub use uthread::{State, TlsMode, Uthread};
