//! # parlib-syscalls: system calls that block only the calling uthread
//!
//! The syscall service of parlib-rs (`DESIGN.md` §7). A uthread that makes a blocking
//! system call through this crate blocks; its vcore keeps running other uthreads.
//!
//! ## Map
//!
//! | module | what it holds |
//! |---|---|
//! | [`io`] | the Rust face: one safe wrapper per call over [`raw`], with slices, [`CStr`](std::ffi::CStr) paths, [`SockAddr`](io::SockAddr) addresses, `std::io::Result` |
//! | [`raw`] | the wrappers themselves: raw pointers (`unsafe fn`s), `Result<_, errno>`, never touching `errno`; `recvmsg`/`sendmsg` are only here |
//! | [`cabi`] | the C face: `parlib_read` ... with libc's signatures, over [`raw`]; sets `errno` on failure |
//! | `fdkind` | what each descriptor is (socket, pipe-like, regular file, the user's non-blocking) and so how its calls avoid blocking |
//! | [`poll`](mod@poll) | readiness: one epoll instance per vcore, the park hook, the poll hook |
//! | `offload` | how a uthread blocks in a call (its `Syscall` record) and the offload of calls that cannot be non-blocking |
//! | `sockaddr` | [`SockAddr`](io::SockAddr), an owned socket address of any family |
//! | `interpose` | the wrappers under the libc names (`read`, `syscall`, `clock_nanosleep`, ...), for Rust's std and C programs; only with the feature of that name (on by default) |
//! | `cancel` | the cancellation check those wrappers call, which the layer above installs ([`set_cancellation_point`]) |
//! | `futex` | `futex(2)` through `syscall`: a uthread's wait blocks only the uthread |
//!
//! How each call avoids blocking the vcore:
//!
//! * Descriptors that can be non-blocking (sockets, pipes, FIFOs, ttys, eventfds) are
//!   tried without blocking; on `EAGAIN` the uthread blocks until the epoll instance of
//!   the vcore it runs on reports readiness, then retries (sockets keep their flags and
//!   get `MSG_DONTWAIT`; other descriptors get `O_NONBLOCK` once, remembered as ours,
//!   and hidden from the program's `fcntl(F_GETFL)`). Standard streams (0-2) that are
//!   pipes, ttys or devices are shared with other processes and never made non-blocking:
//!   a uthread's call on one asks `poll` first and waits for readiness.
//! * Calls that cannot be made non-blocking (regular files, `pread`/`pwrite`, `open`,
//!   `openat`, `poll` with a timeout, a Unix `connect` on a full backlog) run off the
//!   vcore: on the uthread's own backing thread, on its own TLS, or, for `main` and
//!   TLS-less uthreads, on an offload worker; they complete with an `EV_SYSCALL` event on
//!   the vcore that issued them.
//! * `nanosleep`, `clock_nanosleep`, `usleep`, `sleep` sleep with an alarm
//!   (`parlib-alarms`); a `futex` wait through `syscall` blocks in `parlib-sync`.
//! * Outside a uthread every wrapper is the plain system call. The one exception keeps
//!   semantics, not calls: on a descriptor this layer made non-blocking, a plain thread's
//!   call waits with `poll` and retries, so it still blocks as the thread expects.
//!
//! Underneath:
//!
//! * A blocked uthread shows its scheduler the call it is blocked in
//!   (`Scheduler::thread_blockon_sysc`): a `Syscall` record on its stack, handed over in
//!   one place (`offload::block_on_sysc`).
//! * A parked vcore runs no scheduler callback: readiness its park hook collects is
//!   stashed and reported by the vcore's next `handle_events`, in vcore context.
//! * Each descriptor's kind is remembered by number, at any number (a table below
//!   [`MAX_CACHED_FD`], a map above), so a non-blocking flag the layer set stays known as
//!   its own. The calls that make a descriptor (`socket`, `accept`, `pipe2`, `open`,
//!   `openat`) clear any stale readiness registration of its number.
//!
//! Results and errors are libc's: EOF is `Ok(0)`; `EPIPE` comes with `SIGPIPE` (the
//! socket path's `sendto` raises it as `write` does) unless `MSG_NOSIGNAL`; `ECONNRESET`,
//! `EBADF`, `EFAULT` (the kernel checks the pointers; the C face checks the ones libc
//! dereferences itself) are the kernel's. A uthread's call that a signal interrupts is
//! restarted (as with `SA_RESTART`); a plain thread's plain call returns `EINTR` as
//! libc's does, and its `sleep` returns the seconds left.
//!
//! ## Rust's std on uthreads
//!
//! Once a program calls [`init`] (upthread's `init` does), this crate's wrappers stand
//! under the libc names in the executable (`interpose`), so std's own calls land in them:
//! on a uthread they block only that uthread; on any other thread they are the plain
//! calls, with libc's results.
//!
//! This is the cargo feature `interpose`, on by default (the facade's and
//! `parlib-upthread`'s features of the same name turn it on; upthread's C library always
//! does). A program that must define those names itself, or must keep glibc's, turns
//! it off (`default-features = false`); then std's calls are glibc's, and on a uthread
//! each blocking one blocks the whole vcore: a uthread preempted while it holds one of
//! std's locks (`println!` takes one) can deadlock its vcore.
//!
//! | std | what it calls | on a uthread |
//! |---|---|---|
//! | `sync::{Mutex, RwLock, Condvar, Once, OnceLock, LazyLock, Barrier}`, `mpsc`, `thread::park`/`park_timeout`/`unpark`, the `stdout`/`stderr` locks (`println!`) | `syscall(SYS_futex)` | blocks only the uthread (`futex`) |
//! | `thread::sleep` | `clock_nanosleep` | an alarm |
//! | `io::stdout`/`stderr` writes, `stdin` reads | `write`, `read` on 0-2 | readiness, never `O_NONBLOCK` |
//! | `net::TcpListener::accept`, `TcpStream::connect`/`read`/`write`/`peek`, `UdpSocket::send_to`/`recv_from` | `accept4`, `socket`, `connect`, `recv`, `send`, `sendto`, `recvfrom` | readiness |
//! | `set_nonblocking`, `try_clone` | `ioctl(FIONBIO)`, `fcntl(F_DUPFD_CLOEXEC)` | the caller's view of `O_NONBLOCK` is kept |
//! | `fs::File::open`/`read`/`write`, `fs::read`, `fs::write` | `open64`, `read`, `write` | offloaded |
//!
//! Not covered (the plain call: it blocks the whole vcore while it waits): name
//! resolution (`ToSocketAddrs` with a host name: glibc's `getaddrinfo` makes its own
//! calls); `process::Command` waits (`waitpid`); `JoinHandle::join` of a std thread (glibc's
//! `pthread_join`); `fs` metadata and directory calls (`statx`, `getdents64`), which are
//! quick on a local file system; `futex` operations other than plain and any-bitset
//! waits and wakes. std's locks used *in vcore context* (a scheduler callback) take the
//! plain kernel path, as vcore context must never block a uthread's way.
//!
//! A uthread preempted while it holds one of std's locks is no longer a hazard: another
//! uthread that wants the lock blocks, and the holder runs again. `NotifGuard` (in
//! `parlib-uthread`) remains the tool for sections that must not be preempted at all.
//!
//! ## Never call libc's wrappers of the interposed names
//!
//! This crate defines the libc names (`read`, `write`, `close`, `poll`, `open`,
//! `nanosleep`, `syscall`, ...) in every program that calls [`init`], and `upthread`'s C
//! library exports them, so there a call to `libc::read` *is* a call to
//! [`cabi::parlib_read`]. This crate, and everything it calls,
//! must therefore never use libc's wrapper of any of those names: internally every such
//! call is a raw system call (`raw::sys`, `syscall6`), as are the epoll and eventfd calls.
//! Otherwise the layer recurses into itself.
//!
//! ## Dependencies
//!
//! Only `libc` (types, constants, `__errno_location`) and the parlib layers below. The
//! system calls are made raw, not through a crate such as `nix` or `rustix`, for the
//! reason above: every interposed name must bypass libc's wrapper, and a crate that may
//! call that wrapper (now or in a later version) would recurse. The Rust face returns
//! `std::io::Result`, the error carrying the errno ([`raw_os_error`](std::io::Error::raw_os_error)).
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
//! Call [`init`] after `parlib::uthread::lib_init` (and `parlib::alarms::init`).
//!
//! ```no_run
//! # // As a user of the facade crate `parlib` writes it; here, its paths mapped.
//! # mod parlib { pub(crate) use parlib_syscalls as syscalls; }
//! use parlib::syscalls::io;
//!
//! // In a uthread, after parlib::syscalls::init():
//! let [r, w] = io::pipe2(libc::O_CLOEXEC)?;
//! let mut buf = [0u8; 16];
//! // Blocks only this uthread until another one writes to `w`.
//! let n = io::read(r, &mut buf)?;
//! # let _ = (n, w);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## Where it differs from DESIGN §7
//!
//! * **One epoll instance per vcore, not one for all.** Readiness lands on the vcore that
//!   blocked, so a ready socket costs no thread hop and no cross-vcore traffic. The
//!   price: readiness for a uthread whose vcore is kept busy by a uthread that never
//!   yields waits for that vcore's next entry into vcore context (any yield, block,
//!   event or preemption tick), instead of being taken by an idle vcore. Under
//!   cooperative scheduling everything else queued on that vcore waits the same way;
//!   a scheduler that preempts bounds it by its period. The test
//!   `readiness_for_a_waiter_on_a_busy_vcore_is_delivered_by_that_vcore_when_it_next_schedules`
//!   pins this down.
//! * **`main` and TLS-less uthreads offload to workers**, not to a backing thread (they
//!   have none): see `offload`. The calls offloaded are raw system calls, so the thread
//!   they run on does not matter.
//!
//! ## Interrupted waits
//!
//! A uthread's readiness waits (`read`, `write`, `accept`, `recv*`, `send*`, ... on
//! pipes and sockets) and its sleeps (`nanosleep`, `usleep`, `sleep`) can be ended by
//! `parlib_uthread::interrupt_wait`, which `pthread_cancel` and uthread-directed signals
//! use. After an interrupted wait the call asks the *interrupt policy* a layer above
//! installed ([`set_interrupt_policy`]; upthread runs pending signal handlers and acts on
//! a cancel there) whether to go on or fail with `EINTR`. Without a policy it fails with
//! `EINTR`. Offloaded calls (regular files, `open`, `poll` with a timeout) are not
//! interruptible: they end when the kernel call does.
//!
//! ## Open ends
//!
//! * A blocking socket with `SO_RCVTIMEO`/`SO_SNDTIMEO` waits without its timeout on a
//!   uthread (readiness waits have none).

#![warn(missing_docs)]

pub mod cabi;
mod cancel;
mod fdkind;
mod futex;
#[cfg(feature = "interpose")]
mod interpose;
pub mod io;
mod offload;
pub mod poll;
pub mod raw;

pub use cancel::set_cancellation_point;
mod sockaddr;

pub use fdkind::MAX_CACHED_FD;
pub use offload::{MAX_WORKERS, SYSC_DONE};

use std::sync::OnceLock;

/// What to do after an interrupted wait (crate docs): called on the interrupted uthread
/// with whether the call is one a signal handler installed with `SA_RESTART` restarts
/// (reads, writes, ... yes; sleeps no). True: go on waiting (for the same deadline, for
/// sleeps); false: fail with `EINTR`. It may also not return (a cancellation).
pub type InterruptPolicy = fn(restartable: bool) -> bool;

static INTERRUPT_POLICY: OnceLock<InterruptPolicy> = OnceLock::new();

/// Installs the interrupt policy (crate docs). The first one stays.
pub fn set_interrupt_policy(policy: InterruptPolicy) {
    let _ = INTERRUPT_POLICY.set(policy);
}

/// Whether to go on after an interrupted wait (see [`InterruptPolicy`]).
pub(crate) fn go_on_after_interrupt(restartable: bool) -> bool {
    INTERRUPT_POLICY.get().is_some_and(|p| p(restartable))
}

/// Creates each vcore's epoll instance and eventfd, installs the park hook and the poll
/// hook, and registers the `EV_SYSCALL` handler. Later calls do nothing.
pub fn init() -> std::io::Result<()> {
    #[cfg(feature = "interpose")]
    interpose::keep();
    if parlib_vcore::max_vcores() == 0 {
        return Err(std::io::Error::other("parlib_syscalls::init before uthread::lib_init"));
    }
    poll::init()?;
    parlib_events::register_handler(parlib_events::EV_SYSCALL, offload::on_syscall_event)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(())
}
