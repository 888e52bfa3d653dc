//! # parlib-syscalls: system calls that block only the calling uthread
//!
//! The syscall service of parlib-rs (`DESIGN.md` §7). A uthread that makes a blocking
//! system call through this crate blocks; its vcore keeps running other uthreads.
//!
//! * Descriptors that can be non-blocking (sockets, pipes, FIFOs, ttys, eventfds) are
//!   tried without blocking; on `EAGAIN` the uthread blocks until the vcore's epoll
//!   instance reports readiness, then retries ([`poll`](mod@poll) and `fdkind` explain the
//!   mechanics: sockets keep their flags, other descriptors get `O_NONBLOCK` once).
//! * Calls that cannot be made non-blocking (regular files, `open`, `openat`, `poll`
//!   with a timeout) run on the uthread's own backing thread, on its own TLS, and
//!   complete with an `EV_SYSCALL` event on the vcore that issued them.
//! * `nanosleep`, `usleep`, `sleep` sleep with an alarm.
//! * Outside a uthread every wrapper is the plain system call.
//!
//! `errno` is never touched by the Rust face ([`io`]: `Result<_, errno>`); the C face
//! ([`cabi`], `parlib_read` ...) sets it on failure, on the caller's TLS, as libc does.
//!
//! ## Where it sits
//!
//! ```text
//!   upthread             exports cabi under the libc names for C programs
//!   parlib-syscalls      this crate
//!   parlib-alarms        sleeping
//!   parlib-uthread       blocking, backing threads (run_on_backing)
//!   parlib-events        EV_SYSCALL, the poll hook of handle_events
//!   parlib-vcore         the park hook: idle vcores sleep in epoll_wait
//! ```
//!
//! Call [`init`] after `parlib_uthread::lib_init` (and `parlib_alarms::init`).

#![warn(missing_docs)]

pub mod cabi;
mod fdkind;
pub mod io;
pub mod poll;

pub use fdkind::MAX_CACHED_FD;

/// Creates each vcore's epoll instance and eventfd, installs the park hook and the poll
/// hook, and registers the `EV_SYSCALL` handler. Later calls do nothing.
pub fn init() -> std::io::Result<()> {
    if parlib_vcore::max_vcores() == 0 {
        return Err(std::io::Error::other("parlib_syscalls::init before uthread::lib_init"));
    }
    poll::init()?;
    parlib_events::register_handler(parlib_events::EV_SYSCALL, io::on_syscall_event)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(())
}
