//! The raw layer: the wrappers as the C face needs them, with raw pointers and
//! `Result<_, errno>`. Each returns `Ok(value)` or `Err(errno)`, never touching `errno`
//! (the C face in [`cabi`](crate::cabi) sets it). [`io`](crate::io) is the safe face
//! over these.
//!
//! Outside a uthread each is the plain call, with one exception: on a descriptor we made
//! non-blocking, a plain thread's call still blocks (we wait with `poll`), so its
//! semantics do not change under it.
//!
//! The functions that take pointers are `unsafe fn`s: the kernel reads or writes through
//! the pointers they are given, for the sizes given. A pointer to no mapping at all (null,
//! say) is harmless: the kernel refuses it with `EFAULT` and the call writes nothing. A
//! pointer into memory the caller no longer owns is not: the kernel writes there. The
//! functions without pointers (`socket`, `pipe2`, `close`, the sleeps) are safe.

use parlib_uthread as uthread;
use parlib_vcore::arch::syscall6;

use crate::fdkind::{self, Kind};
use crate::offload::{offload_sys, record};
use crate::poll::{wait_io, wake_closed};

/// A raw system call: `Ok(result)` or `Err(errno)`.
#[inline]
pub(crate) fn sys(nr: libc::c_long, a: [usize; 6]) -> Result<usize, i32> {
    // SAFETY: the wrappers pass arguments as the kernel expects them; the kernel checks
    // user pointers and reports EFAULT.
    let r = unsafe { syscall6(nr as usize, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if r < 0 {
        Err(-r as i32)
    } else {
        Ok(r as usize)
    }
}

const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;

pub(crate) fn on_uthread() -> bool {
    uthread::current().is_some()
}

/// Retries `attempt` until it does not report `EAGAIN` (waiting for `events` on `fd`
/// between tries) unless the `EAGAIN` is the user's. `EINTR` restarts, as `SA_RESTART`
/// would. `(nr, args)` is the call the user made, shown to the scheduler while the
/// uthread waits (`thread_blockon_sysc`).
fn io_loop(
    fd: i32,
    k: Kind,
    events: u32,
    (nr, args): (libc::c_long, [usize; 6]),
    mut attempt: impl FnMut() -> Result<usize, i32>,
) -> Result<usize, i32> {
    loop {
        match attempt() {
            Err(libc::EINTR) => continue,
            Err(libc::EAGAIN) if !fdkind::user_wants_eagain(fd, k) => {
                match wait_ready(fd, events, (nr, args), libc::EAGAIN) {
                    Err(libc::EINTR) if crate::go_on_after_interrupt(true) => {}
                    r => r?,
                }
            }
            r => return r,
        }
    }
}

/// A plain thread's call `attempt` (the user's call `(nr, args)`): the call itself,
/// except that on a descriptor we made non-blocking it waits (with `poll`) and retries,
/// to keep blocking semantics. A plain thread never classifies a descriptor (that could
/// set `O_NONBLOCK` under others' feet).
fn on_plain_thread(
    fd: i32,
    events: u32,
    call: (libc::c_long, [usize; 6]),
    mut attempt: impl FnMut() -> Result<usize, i32>,
) -> Result<usize, i32> {
    if fdkind::nonblock_is_ours(fd) {
        io_loop(fd, Kind::OursNonblock, events, call, attempt)
    } else {
        attempt()
    }
}

/// Waits until `fd` is ready for `events`, as the calling thread waits: a uthread blocks
/// until its vcore's epoll instance reports readiness (the scheduler sees the user's call
/// `(nr, args)`, which would have blocked with `err`; `EINTR` if the wait is
/// interrupted), a plain thread waits in `poll`.
fn wait_ready(fd: i32, events: u32, (nr, args): (libc::c_long, [usize; 6]), err: i32) -> Result<(), i32> {
    if on_uthread() {
        let mut rec = record(nr, args);
        rec.err = err;
        wait_io(fd, events, &mut rec)
    } else {
        thread_wait(fd, events)
    }
}

/// Waits until `fd` is ready for `events` (`EPOLLIN`, `EPOLLOUT`, or both), without a
/// call to retry: for a program that keeps its own descriptors non-blocking and only needs
/// to sleep until one is ready (an event loop's epoll descriptor, which is itself
/// pollable). A uthread blocks until its vcore's epoll instance reports readiness, an
/// error or a hang-up; a plain thread waits in `poll`. Readiness may be stale by the time
/// the caller looks (another waiter took it): the caller's next non-blocking call decides.
///
/// # Errors
/// `EPERM` for a descriptor epoll cannot watch (a regular file), `EBADF`, or `EINTR`
/// if an interrupt ends a uthread's wait and the interrupt policy says not to go on.
pub fn wait_ready_for(fd: i32, events: u32) -> Result<(), i32> {
    loop {
        match wait_ready(fd, events, (libc::SYS_poll as libc::c_long, [0; 6]), libc::EAGAIN) {
            Err(libc::EINTR) if crate::go_on_after_interrupt(true) => {}
            r => return r,
        }
    }
}

/// A plain thread waits for readiness with `poll`.
fn thread_wait(fd: i32, events: u32) -> Result<(), i32> {
    let mut p = libc::pollfd { fd, events: events as i16, revents: 0 };
    loop {
        match sys(libc::SYS_poll, [&mut p as *mut libc::pollfd as usize, 1, usize::MAX, 0, 0, 0]) {
            Err(libc::EINTR) => continue,
            r => return r.map(drop),
        }
    }
}

/// Runs the call `nr(args)` on `fd` by kind: offloaded for regular files, in the retry
/// loop for the rest (`sock`, the same call as a non-blocking socket call, for sockets).
fn by_kind(
    fd: i32,
    events: u32,
    nr: libc::c_long,
    args: [usize; 6],
    sock: impl Fn() -> Result<usize, i32>,
) -> Result<usize, i32> {
    let plain = || sys(nr, args);
    if !on_uthread() {
        return on_plain_thread(fd, events, (nr, args), plain);
    }
    loop {
        let k = fdkind::kind(fd)?;
        let r = match k {
            Kind::Regular => return offload_sys(nr, args),
            Kind::Socket => io_loop(fd, k, events, (nr, args), &sock),
            Kind::Shared => io_loop(fd, k, events, (nr, args), || shared_attempt(fd, events, nr, args)),
            _ => io_loop(fd, k, events, (nr, args), plain),
        };
        if r == Err(libc::ENOTSOCK) && k == Kind::Socket {
            fdkind::forget(fd); // the descriptor was reused behind our back
            continue;
        }
        return r;
    }
}

/// One try of a call on a standard stream (`Kind::Shared`), which is never non-blocking:
/// the call only if a zero-timeout `poll` says it will not wait (a `write` of at most
/// `PIPE_BUF` bytes, which a pipe with room takes whole), else `EAGAIN` for `io_loop` to
/// wait on.
fn shared_attempt(fd: i32, events: u32, nr: libc::c_long, mut args: [usize; 6]) -> Result<usize, i32> {
    let mut p = libc::pollfd { fd, events: events as i16, revents: 0 };
    if sys(libc::SYS_poll, [&mut p as *mut libc::pollfd as usize, 1, 0, 0, 0, 0])? == 0 {
        return Err(libc::EAGAIN);
    }
    if nr == libc::SYS_write {
        args[2] = args[2].min(libc::PIPE_BUF);
    }
    sys(nr, args)
}

/// `read(2)`.
///
/// # Safety
/// `buf` is valid for writes of `n` bytes for the duration of the call.
pub unsafe fn read(fd: i32, buf: *mut u8, n: usize) -> Result<usize, i32> {
    if n == 0 {
        // read(2) of nothing returns at once on every kind of descriptor (0, or its
        // error), where the socket path's non-blocking `recvfrom` would say EAGAIN and wait.
        return sys(libc::SYS_read, [fd as usize, buf as usize, 0, 0, 0, 0]);
    }
    by_kind(fd, IN, libc::SYS_read, [fd as usize, buf as usize, n, 0, 0, 0], || {
        sys(libc::SYS_recvfrom, [fd as usize, buf as usize, n, libc::MSG_DONTWAIT as usize, 0, 0])
    })
}

/// `write(2)`.
///
/// # Safety
/// `buf` is valid for reads of `n` bytes for the duration of the call.
pub unsafe fn write(fd: i32, buf: *const u8, n: usize) -> Result<usize, i32> {
    write_all_if_blocking(fd, n, |done| {
        // `done <= n`: still inside the caller's buffer; only the kernel dereferences it.
        let (b, left) = (buf.wrapping_add(done), n - done);
        by_kind(fd, OUT, libc::SYS_write, [fd as usize, b as usize, left, 0, 0, 0], || {
            sys(libc::SYS_sendto, [fd as usize, b as usize, left, libc::MSG_DONTWAIT as usize, 0, 0])
        })
    })
}

/// A blocking `write` or `send` on a pipe or stream socket writes everything (POSIX);
/// our non-blocking attempts may write part, so go on, waiting for room, until all of it
/// is written, an error stops us (after some progress: the count so far, as the kernel
/// would report it), or the descriptor is one whose short writes are the user's to see.
fn write_all_if_blocking(
    fd: i32,
    n: usize,
    mut step: impl FnMut(usize) -> Result<usize, i32>,
) -> Result<usize, i32> {
    let mut done = 0;
    loop {
        match step(done) {
            Ok(k) => {
                done += k;
                if done >= n || k == 0 {
                    return Ok(done);
                }
                // Only a partial write asks whether the caller blocks: for a socket that
                // costs an fcntl, which a complete write (the common case) never needs.
                let blocking = match fdkind::cached(fd) {
                    Some(Kind::OursNonblock | Kind::Shared) => true,
                    Some(Kind::Socket) => !fdkind::user_wants_eagain(fd, Kind::Socket),
                    _ => false,
                };
                if !blocking {
                    return Ok(done);
                }
            }
            Err(e) => return if done > 0 { Ok(done) } else { Err(e) },
        }
    }
}

fn msghdr(iov: *const libc::iovec, cnt: i32) -> libc::msghdr {
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut m: libc::msghdr = unsafe { core::mem::zeroed() };
    m.msg_iov = iov as *mut libc::iovec;
    m.msg_iovlen = cnt.max(0) as usize;
    m
}

/// libc's `EINVAL` for a vector count outside `0..=IOV_MAX` (the socket path would
/// otherwise see `Ok(0)` or `EMSGSIZE`).
fn check_iov_count(cnt: i32) -> Result<(), i32> {
    if (0..=libc::UIO_MAXIOV).contains(&cnt) {
        Ok(())
    } else {
        Err(libc::EINVAL)
    }
}

/// `readv(2)`.
///
/// # Safety
/// `iov` points to `cnt` iovecs (if `cnt` is in `0..=IOV_MAX`), each valid for writes of
/// its length, for the duration of the call.
pub unsafe fn readv(fd: i32, iov: *const libc::iovec, cnt: i32) -> Result<usize, i32> {
    check_iov_count(cnt)?;
    by_kind(fd, IN, libc::SYS_readv, [fd as usize, iov as usize, cnt as usize, 0, 0, 0], || {
        let mut m = msghdr(iov, cnt);
        sys(
            libc::SYS_recvmsg,
            [fd as usize, &mut m as *mut libc::msghdr as usize, libc::MSG_DONTWAIT as usize, 0, 0, 0],
        )
    })
}

/// `writev(2)`. (Unlike `write`, a partial write of a vector is returned as it is.)
///
/// # Safety
/// `iov` points to `cnt` iovecs (if `cnt` is in `0..=IOV_MAX`), each valid for reads of
/// its length, for the duration of the call.
pub unsafe fn writev(fd: i32, iov: *const libc::iovec, cnt: i32) -> Result<usize, i32> {
    check_iov_count(cnt)?;
    by_kind(fd, OUT, libc::SYS_writev, [fd as usize, iov as usize, cnt as usize, 0, 0, 0], || {
        let m = msghdr(iov, cnt);
        sys(
            libc::SYS_sendmsg,
            [fd as usize, &m as *const libc::msghdr as usize, libc::MSG_DONTWAIT as usize, 0, 0, 0],
        )
    })
}

/// `pread(2)`: positioned I/O is for files, which go to the backing thread.
///
/// # Safety
/// `buf` is valid for writes of `n` bytes for the duration of the call.
pub unsafe fn pread(fd: i32, buf: *mut u8, n: usize, off: i64) -> Result<usize, i32> {
    offload_sys(libc::SYS_pread64, [fd as usize, buf as usize, n, off as usize, 0, 0])
}

/// `pwrite(2)`.
///
/// # Safety
/// `buf` is valid for reads of `n` bytes for the duration of the call.
pub unsafe fn pwrite(fd: i32, buf: *const u8, n: usize, off: i64) -> Result<usize, i32> {
    offload_sys(libc::SYS_pwrite64, [fd as usize, buf as usize, n, off as usize, 0, 0])
}

/// Socket calls with per-call flags: `nr(args(flags))`. The user's `MSG_DONTWAIT` keeps
/// its meaning; a plain thread makes the plain call.
fn sock_call(
    fd: i32,
    flags: i32,
    events: u32,
    nr: libc::c_long,
    args: impl Fn(i32) -> [usize; 6],
) -> Result<usize, i32> {
    let call = |f: i32| sys(nr, args(f));
    if flags & libc::MSG_DONTWAIT != 0 {
        return call(flags);
    }
    if !on_uthread() {
        return on_plain_thread(fd, events, (nr, args(flags)), || call(flags));
    }
    let k = fdkind::kind(fd)?;
    io_loop(fd, k, events, (nr, args(flags)), || call(flags | libc::MSG_DONTWAIT))
}

/// `recv(2)`.
///
/// # Safety
/// `buf` is valid for writes of `n` bytes for the duration of the call.
pub unsafe fn recv(fd: i32, buf: *mut u8, n: usize, flags: i32) -> Result<usize, i32> {
    // SAFETY: our caller's contract for `buf`; no address is asked for.
    unsafe { recvfrom(fd, buf, n, flags, core::ptr::null_mut(), core::ptr::null_mut()) }
}

/// `recvfrom(2)`.
///
/// # Safety
/// `buf` is valid for writes of `n` bytes, and `addr`, unless null, for writes of `*len`
/// bytes with `len` valid for reads and writes, for the duration of the call.
pub unsafe fn recvfrom(
    fd: i32,
    buf: *mut u8,
    n: usize,
    flags: i32,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) -> Result<usize, i32> {
    sock_call(fd, flags, IN, libc::SYS_recvfrom, |f| {
        [fd as usize, buf as usize, n, f as usize, addr as usize, len as usize]
    })
}

/// `recvmsg(2)`.
///
/// # Safety
/// `msg` and everything it points to (name, iovecs and their buffers, control buffer) are
/// valid for the sizes it gives, for reads and writes, for the duration of the call.
pub unsafe fn recvmsg(fd: i32, msg: *mut libc::msghdr, flags: i32) -> Result<usize, i32> {
    sock_call(fd, flags, IN, libc::SYS_recvmsg, |f| [fd as usize, msg as usize, f as usize, 0, 0, 0])
}

/// `send(2)`. Like libc's, it raises `SIGPIPE` on a connection the peer closed, unless
/// `flags` has `MSG_NOSIGNAL`.
///
/// # Safety
/// `buf` is valid for reads of `n` bytes for the duration of the call.
pub unsafe fn send(fd: i32, buf: *const u8, n: usize, flags: i32) -> Result<usize, i32> {
    // SAFETY: our caller's contract for `buf`; no address.
    unsafe { sendto(fd, buf, n, flags, core::ptr::null(), 0) }
}

/// `sendto(2)`.
///
/// # Safety
/// `buf` is valid for reads of `n` bytes, and `addr`, unless null, for reads of `len`
/// bytes, for the duration of the call.
pub unsafe fn sendto(
    fd: i32,
    buf: *const u8,
    n: usize,
    flags: i32,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> Result<usize, i32> {
    if flags & libc::MSG_DONTWAIT != 0 {
        return sys(
            libc::SYS_sendto,
            [fd as usize, buf as usize, n, flags as usize, addr as usize, len as usize],
        );
    }
    write_all_if_blocking(fd, n, |done| {
        // `done <= n`: still inside the caller's buffer; only the kernel dereferences it.
        let b = buf.wrapping_add(done);
        sock_call(fd, flags, OUT, libc::SYS_sendto, |f| {
            [fd as usize, b as usize, n - done, f as usize, addr as usize, len as usize]
        })
    })
}

/// `sendmsg(2)`.
///
/// # Safety
/// `msg` and everything it points to (name, iovecs and their buffers, control buffer) are
/// valid for reads of the sizes it gives for the duration of the call.
pub unsafe fn sendmsg(fd: i32, msg: *const libc::msghdr, flags: i32) -> Result<usize, i32> {
    sock_call(fd, flags, OUT, libc::SYS_sendmsg, |f| [fd as usize, msg as usize, f as usize, 0, 0, 0])
}

/// `accept(2)`.
///
/// # Safety
/// `addr` is null, or valid for writes of `*len` bytes with `len` valid for reads and
/// writes, for the duration of the call.
pub unsafe fn accept(fd: i32, addr: *mut libc::sockaddr, len: *mut libc::socklen_t) -> Result<i32, i32> {
    // SAFETY: our caller's contract.
    unsafe { accept4(fd, addr, len, 0) }
}

/// `accept4(2)`. The listening socket is made non-blocking (remembered as ours, so the
/// user's view of blocking is kept); accepted sockets are blocking unless asked otherwise.
///
/// # Safety
/// `addr` is null, or valid for writes of `*len` bytes with `len` valid for reads and
/// writes, for the duration of the call.
pub unsafe fn accept4(
    fd: i32,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
    flags: i32,
) -> Result<i32, i32> {
    let args = [fd as usize, addr as usize, len as usize, flags as usize, 0, 0];
    let call = || sys(libc::SYS_accept4, args);
    let r = if !on_uthread() {
        on_plain_thread(fd, IN, (libc::SYS_accept4, args), call)
    } else if fdkind::kind(fd)? != Kind::Socket {
        return call().map(|v| v as i32); // not a socket: the kernel's ENOTSOCK
    } else if fdkind::make_socket_nonblocking(fd)? {
        io_loop(fd, Kind::OursNonblock, IN, (libc::SYS_accept4, args), call)
    } else {
        call() // the user's own non-blocking listener
    };
    let nfd = r? as i32;
    wake_closed(nfd); // a stale registration of this number, if a close bypassed us
    fdkind::note_socket(nfd);
    Ok(nfd)
}

/// `connect(2)`. On a uthread the socket is made non-blocking (remembered as ours); on a
/// plain thread the call is the plain one unless the socket is already ours-non-blocking
/// (a uthread connected or accepted on it). Then, on either:
///
/// * `EINPROGRESS` (TCP and most families): wait for writability (as the thread waits:
///   `wait_ready`), then read the outcome from `SO_ERROR`;
/// * `EAGAIN` (a Unix stream socket whose listener's backlog is full: the kernel offers no
///   readiness to wait for, the blocking call sleeps on the listener's queue): the call
///   is made blocking (the flag is ours) and offloaded (on a plain thread: made in
///   place), so it waits in the kernel, off the vcore, exactly as libc's `connect` would;
///   the flag is restored after.
///
/// # Safety
/// `addr` is valid for reads of `len` bytes for the duration of the call.
pub unsafe fn connect(fd: i32, addr: *const libc::sockaddr, len: libc::socklen_t) -> Result<(), i32> {
    let args = [fd as usize, addr as usize, len as usize, 0, 0, 0];
    let call = || sys(libc::SYS_connect, args).map(drop);
    let ours = if on_uthread() {
        fdkind::kind(fd)? == Kind::Socket && fdkind::make_socket_nonblocking(fd)?
    } else {
        fdkind::nonblock_is_ours(fd) // a plain thread never classifies (see `on_plain_thread`)
    };
    if !ours {
        // Plain threads' other descriptors, non-sockets (the kernel's ENOTSOCK), the user's
        // own non-blocking sockets.
        return call();
    }
    match call() {
        Err(libc::EINPROGRESS) | Err(libc::EINTR) => {
            wait_ready(fd, OUT, (libc::SYS_connect, args), libc::EINPROGRESS)?;
            so_error(fd)
        }
        Err(libc::EAGAIN) => {
            fdkind::set_nonblock(fd, false)?;
            let r = offload_sys(libc::SYS_connect, args).map(drop);
            if fdkind::set_nonblock(fd, true).is_err() {
                // Only EBADF fails this: another thread closed `fd` during the connect.
                // The connect's result stands, as libc's connect would return it: a
                // connection that was made must not look failed (the caller would retry
                // and meet EISCONN). Forget the descriptor, so nothing relies on the
                // flag we could not restore.
                fdkind::forget(fd);
            }
            r
        }
        r => r,
    }
}

/// The outcome of a non-blocking `connect` on `fd` that has finished: its pending error
/// (`SO_ERROR`, which reading clears), `Ok` if none.
fn so_error(fd: i32) -> Result<(), i32> {
    let mut err: i32 = 0;
    let mut l = core::mem::size_of::<i32>() as libc::socklen_t;
    sys(
        libc::SYS_getsockopt,
        [
            fd as usize,
            libc::SOL_SOCKET as usize,
            libc::SO_ERROR as usize,
            &mut err as *mut i32 as usize,
            &mut l as *mut _ as usize,
            0,
        ],
    )?;
    if err == 0 {
        Ok(())
    } else {
        Err(err)
    }
}

/// `socket(2)`.
pub fn socket(domain: i32, ty: i32, proto: i32) -> Result<i32, i32> {
    let fd = sys(libc::SYS_socket, [domain as usize, ty as usize, proto as usize, 0, 0, 0])? as i32;
    wake_closed(fd);
    fdkind::note_socket(fd);
    Ok(fd)
}

/// `pipe2(2)` (`pipe` is `pipe2` with no flags).
pub fn pipe2(fds: &mut [i32; 2], flags: i32) -> Result<(), i32> {
    sys(libc::SYS_pipe2, [fds.as_mut_ptr() as usize, flags as usize, 0, 0, 0, 0])?;
    for &fd in fds.iter() {
        wake_closed(fd);
        fdkind::forget(fd);
    }
    Ok(())
}

/// `open(2)`: on the backing thread (it may block on the file system).
///
/// # Safety
/// `path` points to a NUL-terminated string that stays valid for the duration of the call.
pub unsafe fn open(path: *const libc::c_char, flags: i32, mode: libc::mode_t) -> Result<i32, i32> {
    // SAFETY: our caller's contract.
    unsafe { openat(libc::AT_FDCWD, path, flags, mode) }
}

/// `openat(2)`.
///
/// # Safety
/// `path` points to a NUL-terminated string that stays valid for the duration of the call.
pub unsafe fn openat(
    dirfd: i32,
    path: *const libc::c_char,
    flags: i32,
    mode: libc::mode_t,
) -> Result<i32, i32> {
    let fd =
        offload_sys(libc::SYS_openat, [dirfd as usize, path as usize, flags as usize, mode as usize, 0, 0])?
            as i32;
    wake_closed(fd);
    fdkind::forget(fd);
    Ok(fd)
}

/// `close(2)`: wakes any uthread waiting on `fd` first (it retries and gets `EBADF`).
pub fn close(fd: i32) -> Result<(), i32> {
    wake_closed(fd);
    fdkind::forget(fd);
    sys(libc::SYS_close, [fd as usize, 0, 0, 0, 0, 0]).map(drop)
}

/// `fcntl(2)`, with this layer's `O_NONBLOCK` kept out of the caller's view: `F_GETFL`
/// does not show it, `F_SETFL` keeps it while the caller asks for blocking calls (which
/// still block only the calling uthread, and a plain thread as it expects) and hands the
/// flag over when the caller sets it; a duplicate (`F_DUPFD`, `F_DUPFD_CLOEXEC`) shares
/// what is known of the original. Every other command is the plain call.
///
/// # Safety
/// `arg` is what the command expects: a pointer valid for it (`F_GETLK`, `F_SETOWN_EX`,
/// ...) or a number.
pub unsafe fn fcntl(fd: i32, cmd: i32, arg: usize) -> Result<usize, i32> {
    let mut arg = arg;
    if cmd == libc::F_SETFL && fdkind::user_sets_nonblock(fd, arg as i32 & libc::O_NONBLOCK != 0) {
        arg |= libc::O_NONBLOCK as usize;
    }
    let r = sys(libc::SYS_fcntl, [fd as usize, cmd as usize, arg, 0, 0, 0])?;
    Ok(match cmd {
        libc::F_GETFL if fdkind::nonblock_is_ours(fd) => r & !(libc::O_NONBLOCK as usize),
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            fdkind::copy(fd, r as i32);
            r
        }
        _ => r,
    })
}

/// `ioctl(2)`. `FIONBIO` is `F_SETFL`'s `O_NONBLOCK` (see [`fcntl`]); every other request
/// is the plain call.
///
/// # Safety
/// `arg` is what the request expects: for `FIONBIO` a valid `*const c_int`.
pub unsafe fn ioctl(fd: i32, req: libc::c_ulong, arg: usize) -> Result<usize, i32> {
    if req == libc::FIONBIO && arg != 0 {
        // SAFETY: the caller's contract: FIONBIO takes a pointer to an int.
        let on = unsafe { *(arg as *const libc::c_int) } != 0;
        if fdkind::user_sets_nonblock(fd, on) {
            return Ok(0); // ours stays set, and the caller's blocking view is kept
        }
    }
    sys(libc::SYS_ioctl, [fd as usize, req as usize, arg, 0, 0, 0])
}

/// `dup(2)`: the new descriptor shares what is known of the old one.
pub fn dup(fd: i32) -> Result<i32, i32> {
    let new = sys(libc::SYS_dup, [fd as usize, 0, 0, 0, 0, 0])? as i32;
    fdkind::copy(fd, new);
    Ok(new)
}

/// `dup3(2)` (`dup2` is `dup3` without flags, but for `old == new`): `new`, if open, is
/// closed first (its waiters woken, as by [`close`]), then shares what is known of `old`.
pub fn dup3(old: i32, new: i32, flags: i32) -> Result<i32, i32> {
    if old != new {
        wake_closed(new);
    }
    let r = sys(libc::SYS_dup3, [old as usize, new as usize, flags as usize, 0, 0, 0])? as i32;
    fdkind::copy(old, r);
    Ok(r)
}

/// `dup2(2)`.
pub fn dup2(old: i32, new: i32) -> Result<i32, i32> {
    if old == new {
        // dup2 of a descriptor onto itself checks it and does nothing (dup3 refuses it).
        return sys(libc::SYS_fcntl, [old as usize, libc::F_GETFD as usize, 0, 0, 0, 0]).map(|_| old);
    }
    dup3(old, new, 0)
}

/// `poll(2)`. With a zero timeout it is the plain call; otherwise a uthread waits off
/// the vcore (its backing thread, or an offload worker).
///
/// # Safety
/// `fds` is valid for reads and writes of `n` pollfds for the duration of the call.
pub unsafe fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout_ms: i32) -> Result<usize, i32> {
    let args = [fds as usize, n as usize, timeout_ms as isize as usize, 0, 0, 0];
    if timeout_ms == 0 {
        sys(libc::SYS_poll, args)
    } else {
        offload_sys(libc::SYS_poll, args)
    }
}

/// `nanosleep(2)`: a uthread sleeps with an alarm. An interrupted sleep (crate docs)
/// fails with `EINTR` and the time left in `rem`, unless the interrupt policy says to
/// sleep on.
///
/// # Errors
/// `EINVAL` for a negative time or `tv_nsec` outside `0..1e9`.
pub fn nanosleep(req: &libc::timespec, rem: Option<&mut libc::timespec>) -> Result<(), i32> {
    if req.tv_sec < 0 || !(0..1_000_000_000).contains(&req.tv_nsec) {
        return Err(libc::EINVAL);
    }
    if !on_uthread() {
        let remp = rem.map_or(core::ptr::null_mut(), |r| r as *mut libc::timespec);
        return sys(libc::SYS_nanosleep, [req as *const _ as usize, remp as usize, 0, 0, 0, 0]).map(drop);
    }
    sleep_until(
        parlib_sync::Deadline::after(core::time::Duration::new(req.tv_sec as u64, req.tv_nsec as u32)),
        rem,
    )
}

/// A uthread's sleep until `d` (an alarm), asking the interrupt policy after an
/// interrupted wait; on `EINTR`, `rem` (if any) gets the time left.
fn sleep_until(d: parlib_sync::Deadline, rem: Option<&mut libc::timespec>) -> Result<(), i32> {
    let interrupted = loop {
        match parlib_alarms::sleep_until_interruptible(d) {
            Ok(()) => break false,
            Err(_) if crate::go_on_after_interrupt(false) => continue,
            Err(_) => break true,
        }
    };
    let left = if interrupted { d.ns().saturating_sub(parlib_sync::now_ns()) } else { 0 };
    if let Some(r) = rem {
        *r = libc::timespec { tv_sec: (left / 1_000_000_000) as i64, tv_nsec: (left % 1_000_000_000) as i64 };
    }
    if interrupted {
        Err(libc::EINTR)
    } else {
        Ok(())
    }
}

/// `clock_nanosleep(2)`. On a uthread, for the monotonic, boot-time and real-time clocks,
/// only the uthread sleeps (an absolute real-time deadline is taken as the monotonic time
/// it corresponds to now); the CPU-time clocks, which no alarm can wait for, sleep the
/// vcore (the plain call). `rem` is filled for an interrupted relative sleep, as the
/// kernel does.
///
/// # Errors
/// `EINVAL` for `tv_nsec` outside `0..1e9` (or a negative relative time); `EINTR` if an
/// interrupt ended the sleep and the interrupt policy says not to go on.
pub fn clock_nanosleep(
    clock: libc::clockid_t,
    flags: i32,
    req: &libc::timespec,
    rem: Option<&mut libc::timespec>,
) -> Result<(), i32> {
    use parlib_sync::Deadline;
    let abs = flags & libc::TIMER_ABSTIME != 0;
    let by_alarm = matches!(clock, libc::CLOCK_MONOTONIC | libc::CLOCK_BOOTTIME | libc::CLOCK_REALTIME);
    if !on_uthread() || !by_alarm {
        let remp = rem.map_or(core::ptr::null_mut(), |r| r as *mut libc::timespec);
        let args = [clock as usize, flags as usize, req as *const _ as usize, remp as usize, 0, 0];
        return sys(libc::SYS_clock_nanosleep, args).map(drop);
    }
    if !(0..1_000_000_000).contains(&req.tv_nsec) || (!abs && req.tv_sec < 0) {
        return Err(libc::EINVAL);
    }
    let d = match (abs, clock) {
        (true, libc::CLOCK_REALTIME) => Deadline::from_realtime(req),
        (true, _) => Deadline::from_monotonic(req),
        (false, _) => Ok(Deadline::after(core::time::Duration::new(req.tv_sec as u64, req.tv_nsec as u32))),
    }
    .map_err(|e| e.0)?;
    sleep_until(d, if abs { None } else { rem })
}

/// `usleep(3)`.
pub fn usleep(us: u64) -> Result<(), i32> {
    let req = libc::timespec { tv_sec: (us / 1_000_000) as i64, tv_nsec: ((us % 1_000_000) * 1000) as i64 };
    nanosleep(&req, None)
}

/// `sleep(3)`: the whole seconds left unslept, as glibc counts them (0 unless the sleep
/// was interrupted: by a signal on a plain thread, by an interrupt on a uthread).
pub fn sleep(secs: u32) -> u32 {
    let req = libc::timespec { tv_sec: secs as i64, tv_nsec: 0 };
    let mut rem = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    match nanosleep(&req, Some(&mut rem)) {
        Err(libc::EINTR) => rem.tv_sec as u32,
        _ => 0,
    }
}
