//! # parlib: user-level scheduling on Linux
//!
//! A process asks for cores (*vcores*), not threads, and runs its own user-level threads
//! (*uthreads*) on them under a scheduler of its choosing. This facade re-exports the
//! layers of parlib-rs (see `DESIGN.md` §1), bottom up:
//!
//! | module | crate | what |
//! |---|---|---|
//! | [`vcore`] | `parlib-vcore` | emulated vcores: pinned tasks, context switch, FS base, stacks |
//! | [`events`] | `parlib-events` | per-vcore event queues, handlers, notifications |
//! | [`uthread`] | `parlib-uthread` | uthreads, the `Scheduler` trait, `vcore_entry`, TLS |
//! | [`alarms`] | `parlib-alarms` | per-vcore timers, uthread sleep, timeouts for timed waits |
//! | [`syscalls`] | `parlib-syscalls` | system calls that block only the calling uthread |
//! | [`sync`] | `parlib-sync` | spin, MCS, PDR locks; mutexes, condvars, rwlocks, barriers, semaphores, futexes, once |
//! | [`timed`] | `parlib-timed` | preemptible timed calls: launch, resume, cancel, pause |
//! | [`upthread`] | `parlib-upthread` | the canonical scheduler and the pthread-compatible API (its C ABI is `upthread/clib`) |
//!
//! The benchmarks in `benches/` measure them against Linux threads; the examples in
//! `examples/` include a complete round-robin scheduler and a priority scheduler.
//!
//! ## Example
//!
//! Threads on upthread, the canonical scheduler (the layers' own docs show their
//! examples with these same `parlib::` paths):
//!
//! ```no_run
//! use parlib::upthread;
//!
//! upthread::init().expect("start upthread"); // main is now a uthread on vcore 0
//! let h = upthread::spawn(|| 6 * 7);
//! assert_eq!(h.join().unwrap(), 42);
//! ```
//!
//! ## Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `interpose` | on | `parlib-syscalls` defines `read`, `write`, `syscall`, `clock_nanosleep`, ... under their libc names, so Rust's std (its locks, `println!`, `thread::sleep`, `std::net`, `std::fs`) blocks only the calling uthread. Off, those names are glibc's and std's blocking calls block the whole vcore (`parlib::syscalls` docs) |

#![warn(missing_docs)]

pub use parlib_alarms as alarms;
pub use parlib_events as events;
pub use parlib_sync as sync;
pub use parlib_syscalls as syscalls;
pub use parlib_timed as timed;
pub use parlib_upthread as upthread;
pub use parlib_uthread as uthread;
pub use parlib_vcore as vcore;
