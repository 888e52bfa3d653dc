//! The safe face: one wrapper per call, over the function of the same name in
//! [`raw`], with the same semantics (how it avoids blocking the vcore, what a
//! plain thread's call does, `SIGPIPE`, interrupts). Buffers are slices, vectors are
//! [`IoSliceMut`]/[`IoSlice`], paths are [`CStr`], socket addresses are [`SockAddr`],
//! sleeps take a [`Duration`]; errors are [`std::io::Error`]s carrying the call's errno
//! ([`raw_os_error`](std::io::Error::raw_os_error)). No wrapper touches `errno`.
//!
//! `recvmsg` and `sendmsg` are only in [`raw`] (`unsafe`): a `msghdr` is made
//! of raw pointers (name, iovecs, control data) whose validity no safe signature here
//! checks.

use std::ffi::CStr;
use std::io::{self, IoSlice, IoSliceMut};
use std::time::Duration;

use crate::raw;
pub use crate::sockaddr::SockAddr;

/// An errno result as an `io::Result`.
fn os<T>(r: Result<T, i32>) -> io::Result<T> {
    r.map_err(io::Error::from_raw_os_error)
}

/// `read(2)` into `buf`: at most `buf.len()` bytes; `Ok(0)` at EOF.
pub fn read(fd: i32, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length and borrowed for the whole call.
    os(unsafe { raw::read(fd, buf.as_mut_ptr(), buf.len()) })
}

/// `write(2)` of `buf`. On a blocking pipe or stream socket it writes all of `buf`
/// unless an error stops it after some progress (then the count so far).
pub fn write(fd: i32, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length and borrowed for the whole call.
    os(unsafe { raw::write(fd, buf.as_ptr(), buf.len()) })
}

/// An offset as `off_t`: `EINVAL` above `i64::MAX`, as the kernel gives for a negative
/// one.
fn offset(off: u64) -> io::Result<i64> {
    i64::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `pread(2)` into `buf` at `off`, off the vcore.
///
/// # Errors
/// `EINVAL` for an offset above `i64::MAX`; the kernel's errors.
pub fn pread(fd: i32, buf: &mut [u8], off: u64) -> io::Result<usize> {
    let off = offset(off)?;
    // SAFETY: `buf` is valid for writes of its length and borrowed for the whole call.
    os(unsafe { raw::pread(fd, buf.as_mut_ptr(), buf.len(), off) })
}

/// `pwrite(2)` of `buf` at `off`, off the vcore.
///
/// # Errors
/// `EINVAL` for an offset above `i64::MAX`; the kernel's errors.
pub fn pwrite(fd: i32, buf: &[u8], off: u64) -> io::Result<usize> {
    let off = offset(off)?;
    // SAFETY: `buf` is valid for reads of its length and borrowed for the whole call.
    os(unsafe { raw::pwrite(fd, buf.as_ptr(), buf.len(), off) })
}

/// A slice count as `readv`/`writev` take it. A count above `i32::MAX` stays above
/// `IOV_MAX`, so the call fails with `EINVAL` as any count above `IOV_MAX` does.
fn iov_count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `readv(2)`: scatters what it reads over `bufs`, in order.
///
/// # Errors
/// `EINVAL` for more than `IOV_MAX` (1024) slices; the kernel's errors.
pub fn readv(fd: i32, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
    let cnt = iov_count(bufs.len());
    // SAFETY: std guarantees `IoSliceMut` is ABI-compatible with `iovec` on Unix, so
    // `bufs` is an array of `bufs.len()` iovecs, each over a buffer valid for writes of
    // its length, all borrowed mutably for the whole call.
    os(unsafe { raw::readv(fd, bufs.as_mut_ptr().cast::<libc::iovec>(), cnt) })
}

/// `writev(2)`: gathers `bufs`, in order. A partial write is returned as it is.
///
/// # Errors
/// `EINVAL` for more than `IOV_MAX` (1024) slices; the kernel's errors.
pub fn writev(fd: i32, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let cnt = iov_count(bufs.len());
    // SAFETY: std guarantees `IoSlice` is ABI-compatible with `iovec` on Unix, so `bufs`
    // is an array of `bufs.len()` iovecs, each over a buffer valid for reads of its
    // length, all borrowed for the whole call.
    os(unsafe { raw::writev(fd, bufs.as_ptr().cast::<libc::iovec>(), cnt) })
}

/// `recv(2)` into `buf` with `flags` (`MSG_*`; `MSG_DONTWAIT` is the plain call).
pub fn recv(fd: i32, buf: &mut [u8], flags: i32) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length and borrowed for the whole call.
    os(unsafe { raw::recv(fd, buf.as_mut_ptr(), buf.len(), flags) })
}

/// `send(2)` of `buf` with `flags`. Like libc's, it raises `SIGPIPE` on a connection the
/// peer closed, unless `flags` has `MSG_NOSIGNAL`.
pub fn send(fd: i32, buf: &[u8], flags: i32) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length and borrowed for the whole call.
    os(unsafe { raw::send(fd, buf.as_ptr(), buf.len(), flags) })
}

/// `recvfrom(2)` into `buf`: the count and the sender's address, which is empty
/// ([`SockAddr::is_empty`]) where the kernel reports none (a connected TCP socket, an
/// unnamed Unix peer).
pub fn recvfrom(fd: i32, buf: &mut [u8], flags: i32) -> io::Result<(usize, SockAddr)> {
    os(SockAddr::from_kernel(|addr, len| {
        // SAFETY: `buf` is valid for writes of its length and borrowed for the whole
        // call; `addr` and `len` are a fresh address storage and its size.
        unsafe { raw::recvfrom(fd, buf.as_mut_ptr(), buf.len(), flags, addr, len) }
    }))
}

/// `sendto(2)` of `buf` to `addr`, with `flags`; `SIGPIPE` as for [`send`].
pub fn sendto(fd: i32, buf: &[u8], flags: i32, addr: &SockAddr) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length, `addr` for reads of its length;
    // both are borrowed for the whole call.
    os(unsafe { raw::sendto(fd, buf.as_ptr(), buf.len(), flags, addr.as_ptr(), addr.len()) })
}

/// `accept(2)`: the new descriptor and the peer's address.
pub fn accept(fd: i32) -> io::Result<(i32, SockAddr)> {
    accept4(fd, 0)
}

/// `accept4(2)` with `flags` (`SOCK_NONBLOCK`, `SOCK_CLOEXEC`): the new descriptor and
/// the peer's address. On a uthread the listening socket is made non-blocking
/// (remembered as ours, so plain threads' calls still block); the accepted socket is
/// blocking unless `flags` says otherwise.
pub fn accept4(fd: i32, flags: i32) -> io::Result<(i32, SockAddr)> {
    os(SockAddr::from_kernel(|addr, len| {
        // SAFETY: `addr` and `len` are a fresh address storage and its size.
        unsafe { raw::accept4(fd, addr, len, flags) }
    }))
}

/// `connect(2)` to `addr`. Blocks only the calling uthread until the connection is made
/// or refused (see [`raw::connect`]).
pub fn connect(fd: i32, addr: &SockAddr) -> io::Result<()> {
    // SAFETY: `addr` is valid for reads of its length and borrowed for the whole call.
    os(unsafe { raw::connect(fd, addr.as_ptr(), addr.len()) })
}

/// `socket(2)`.
pub fn socket(domain: i32, ty: i32, proto: i32) -> io::Result<i32> {
    os(raw::socket(domain, ty, proto))
}

/// `pipe2(2)` with `flags` (`O_CLOEXEC`, `O_NONBLOCK`, ...): `[read end, write end]`.
pub fn pipe2(flags: i32) -> io::Result<[i32; 2]> {
    let mut fds = [-1; 2];
    os(raw::pipe2(&mut fds, flags))?;
    Ok(fds)
}

/// `open(2)`, off the vcore (it may block on the file system). `mode` is used only with
/// `O_CREAT` or `O_TMPFILE`.
pub fn open(path: &CStr, flags: i32, mode: libc::mode_t) -> io::Result<i32> {
    // SAFETY: `path` is NUL-terminated and borrowed for the whole call.
    os(unsafe { raw::open(path.as_ptr(), flags, mode) })
}

/// `openat(2)`, off the vcore: `path` relative to the directory `dirfd` (or
/// `libc::AT_FDCWD`).
pub fn openat(dirfd: i32, path: &CStr, flags: i32, mode: libc::mode_t) -> io::Result<i32> {
    // SAFETY: `path` is NUL-terminated and borrowed for the whole call.
    os(unsafe { raw::openat(dirfd, path.as_ptr(), flags, mode) })
}

/// `close(2)`: wakes any uthread waiting on `fd` first (it retries and gets `EBADF`).
pub fn close(fd: i32) -> io::Result<()> {
    os(raw::close(fd))
}

/// `poll(2)` of `fds` for `timeout_ms` milliseconds (negative: no timeout): how many
/// have events, which are in their `revents`. With a zero timeout it is the plain call;
/// otherwise a uthread waits off the vcore.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is valid for reads and writes of its length and borrowed mutably for
    // the whole call.
    os(unsafe { raw::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) })
}

/// Blocks until `fd` is readable (or has an error or hang-up): a uthread blocks alone,
/// waiting in its vcore's epoll instance; a plain thread waits in `poll`. For programs
/// that keep descriptors non-blocking themselves, such as an event loop waiting on its
/// own epoll descriptor. See [`raw::wait_ready_for`].
pub fn wait_readable(fd: i32) -> io::Result<()> {
    os(raw::wait_ready_for(fd, libc::EPOLLIN as u32))
}

/// Blocks until `fd` is writable (or has an error or hang-up); as [`wait_readable`].
pub fn wait_writable(fd: i32) -> io::Result<()> {
    os(raw::wait_ready_for(fd, libc::EPOLLOUT as u32))
}

/// `d` as a `timespec`. Seconds beyond `i64::MAX` (292 billion years) saturate rather
/// than turn negative.
fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// Sleeps for `d` (`nanosleep(2)`); a uthread sleeps with an alarm.
///
/// # Errors
/// `EINTR` if the sleep was interrupted (a signal on a plain thread; on a uthread an
/// interrupt the interrupt policy does not sleep on, crate docs). [`sleep`] says how
/// much was left.
pub fn nanosleep(d: Duration) -> io::Result<()> {
    os(raw::nanosleep(&timespec(d), None))
}

/// Sleeps for `d`, as [`nanosleep`]; returns the time left unslept: zero unless the sleep
/// was interrupted (the Rust form of `sleep(3)`'s seconds left).
pub fn sleep(d: Duration) -> Duration {
    let mut rem = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    match raw::nanosleep(&timespec(d), Some(&mut rem)) {
        // Both fields are in range: the kernel's or the layer's remainder of a valid time.
        Err(libc::EINTR) => Duration::new(rem.tv_sec as u64, rem.tv_nsec as u32),
        _ => Duration::ZERO,
    }
}
