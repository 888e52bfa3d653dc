//! The system calls kweb's request path makes, raw.
//!
//! Every variant runs the same request code, so every variant makes the same kernel
//! calls: raw `syscall` instructions (`parlib_vcore::arch::syscall6`), never libc's
//! wrappers. Two reasons. Under upthread the libc names are `parlib-syscalls`'
//! (interposition), which would turn a would-block into a wait of the whole uthread,
//! where kweb wants `EAGAIN` back to park the connection instead; and a raw call costs
//! the same on every variant, so the comparison measures scheduling, not wrappers.
//! Results are `Err(errno)`; `errno` is never touched.

use std::io::IoSlice;

use parlib_vcore::arch::syscall6;

/// A system call's result as `Result<usize, errno>`.
fn check(r: isize) -> Result<usize, i32> {
    if r < 0 {
        Err(-r as i32)
    } else {
        Ok(r as usize)
    }
}

/// `syscall(nr, a...)`, retried on `EINTR` (kweb installs its handlers without
/// `SA_RESTART` semantics mattering: every call here is retried).
///
/// # Safety
/// The arguments must be valid for system call `nr`.
unsafe fn sys(nr: i64, a: [usize; 6]) -> Result<usize, i32> {
    loop {
        // SAFETY: the caller's contract.
        match check(unsafe { syscall6(nr as usize, a[0], a[1], a[2], a[3], a[4], a[5]) }) {
            Err(libc::EINTR) => continue,
            r => return r,
        }
    }
}

/// `read(2)` into `buf`.
pub fn read(fd: i32, buf: &mut [u8]) -> Result<usize, i32> {
    // SAFETY: `buf` is valid for writes of its length.
    unsafe { sys(libc::SYS_read, [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0]) }
}

/// `write(2)` of `buf` (for non-socket descriptors: the eventfd).
pub fn write(fd: i32, buf: &[u8]) -> Result<usize, i32> {
    // SAFETY: `buf` is valid for reads of its length.
    unsafe { sys(libc::SYS_write, [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0]) }
}

/// `sendmsg(2)` of `bufs` on a stream socket, never blocking and never raising
/// `SIGPIPE`; `more` sets `MSG_MORE` (a `sendfile` of the body follows).
pub fn send_vectored(fd: i32, bufs: &[IoSlice<'_>], more: bool) -> Result<usize, i32> {
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut m: libc::msghdr = unsafe { core::mem::zeroed() };
    // `IoSlice` is ABI-compatible with `iovec` (std guarantees it on Unix).
    m.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    m.msg_iovlen = bufs.len();
    let mut flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
    if more {
        flags |= libc::MSG_MORE;
    }
    // SAFETY: `m` points at `bufs`, valid for reads for the duration of the call.
    unsafe {
        sys(libc::SYS_sendmsg, [fd as usize, &m as *const libc::msghdr as usize, flags as usize, 0, 0, 0])
    }
}

/// `sendfile(2)` of up to `count` bytes of `file` from `*off` to socket `sock`;
/// advances `*off`.
pub fn sendfile(sock: i32, file: i32, off: &mut i64, count: usize) -> Result<usize, i32> {
    // SAFETY: `off` is valid for reads and writes for the duration of the call.
    unsafe { sys(libc::SYS_sendfile, [sock as usize, file as usize, off as *mut i64 as usize, count, 0, 0]) }
}

/// `accept4(2)` with `SOCK_NONBLOCK | SOCK_CLOEXEC`: the descriptor and whether the peer
/// is on the loopback network (127.0.0.0/8 or ::1, or an IPv4-mapped loopback).
pub fn accept(listener: i32) -> Result<(i32, bool), i32> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { core::mem::zeroed() };
    let mut len = core::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    let args = [
        listener as usize,
        &mut ss as *mut libc::sockaddr_storage as usize,
        &mut len as *mut libc::socklen_t as usize,
        flags as usize,
        0,
        0,
    ];
    // SAFETY: `ss` and `len` are valid for writes for the duration of the call.
    let fd = unsafe { sys(libc::SYS_accept4, args) }? as i32;
    Ok((fd, crate::urlcmd::is_loopback(&ss)))
}

/// Sets `TCP_NODELAY` on socket `fd`: a response (or a batch of requests) leaves at
/// once, never held back by Nagle's algorithm.
pub fn set_nodelay(fd: i32) -> Result<(), i32> {
    let one: libc::c_int = 1;
    let args = [
        fd as usize,
        libc::IPPROTO_TCP as usize,
        libc::TCP_NODELAY as usize,
        &one as *const libc::c_int as usize,
        core::mem::size_of::<libc::c_int>(),
        0,
    ];
    // SAFETY: the option value is a live c_int of the size passed.
    unsafe { sys(libc::SYS_setsockopt, args) }.map(drop)
}

/// Raises the soft limit on open descriptors to `want`, or to the hard limit if that is
/// lower; returns the soft limit now in force (0 if it cannot be read).
pub fn raise_fd_limit(want: u64) -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } < 0 {
        return 0;
    }
    if lim.rlim_cur >= want.min(lim.rlim_max) {
        return lim.rlim_cur;
    }
    let new = libc::rlimit { rlim_cur: want.min(lim.rlim_max), rlim_max: lim.rlim_max };
    // SAFETY: `new` is a valid rlimit that does not exceed the hard limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } < 0 {
        return lim.rlim_cur;
    }
    new.rlim_cur
}

/// `close(2)`. Errors other than `EBADF` still free the descriptor; none is reported.
pub fn close(fd: i32) {
    // SAFETY: closing a descriptor number has no memory-safety preconditions.
    let _ = unsafe { syscall6(libc::SYS_close as usize, fd as usize, 0, 0, 0, 0, 0) };
}

/// `epoll_create1(EPOLL_CLOEXEC)`.
pub fn epoll_create() -> Result<i32, i32> {
    // SAFETY: no pointers.
    unsafe { sys(libc::SYS_epoll_create1, [libc::EPOLL_CLOEXEC as usize, 0, 0, 0, 0, 0]) }.map(|f| f as i32)
}

/// `epoll_ctl(2)`: `op` for `fd` with `events`, tagged `data`.
pub fn epoll_ctl(epfd: i32, op: i32, fd: i32, events: u32, data: u64) -> Result<(), i32> {
    let mut ev = libc::epoll_event { events, u64: data };
    let args = [epfd as usize, op as usize, fd as usize, &mut ev as *mut libc::epoll_event as usize, 0, 0];
    // SAFETY: `ev` is valid for the duration of the call.
    unsafe { sys(libc::SYS_epoll_ctl, args) }.map(drop)
}

/// `epoll_wait(2)` into `evs` for `timeout_ms` (-1: no timeout). `EINTR` reports no
/// events (the caller looks at its stop flag).
pub fn epoll_wait(epfd: i32, evs: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
    let args = [epfd as usize, evs.as_mut_ptr() as usize, evs.len(), timeout_ms as isize as usize, 0, 0];
    // SAFETY: `evs` is valid for writes of its length for the duration of the call.
    check(unsafe { syscall6(libc::SYS_epoll_wait as usize, args[0], args[1], args[2], args[3], 0, 0) })
        .unwrap_or(0)
}

/// An `eventfd(2)`, non-blocking and close-on-exec.
pub fn eventfd() -> Result<i32, i32> {
    let flags = libc::EFD_NONBLOCK | libc::EFD_CLOEXEC;
    // SAFETY: no pointers.
    unsafe { sys(libc::SYS_eventfd2, [0, flags as usize, 0, 0, 0, 0]) }.map(|f| f as i32)
}

/// Adds one to eventfd `fd`; async-signal-safe (the stop signal's handler calls it).
pub fn eventfd_signal(fd: i32) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: `one` is valid for reads of 8 bytes; no errno is written.
    let _ = unsafe { syscall6(libc::SYS_write as usize, fd as usize, one.as_ptr() as usize, 8, 0, 0, 0) };
}

/// A non-blocking, close-on-exec `timerfd` on `CLOCK_MONOTONIC` that fires every
/// `period_ms` milliseconds.
pub fn ticker(period_ms: u64) -> Result<i32, i32> {
    let flags = libc::TFD_NONBLOCK | libc::TFD_CLOEXEC;
    // SAFETY: no pointers.
    let fd = unsafe {
        sys(libc::SYS_timerfd_create, [libc::CLOCK_MONOTONIC as usize, flags as usize, 0, 0, 0, 0])
    }? as i32;
    let ts = libc::timespec {
        tv_sec: (period_ms / 1000) as i64,
        tv_nsec: ((period_ms % 1000) * 1_000_000) as i64,
    };
    let spec = libc::itimerspec { it_interval: ts, it_value: ts };
    // SAFETY: `spec` is valid for reads for the duration of the call.
    let r = unsafe {
        sys(libc::SYS_timerfd_settime, [fd as usize, 0, &spec as *const libc::itimerspec as usize, 0, 0, 0])
    };
    if let Err(e) = r {
        close(fd);
        return Err(e);
    }
    Ok(fd)
}

/// Opens `path` (relative, NUL-terminated) beneath directory `root` for reading: the
/// kernel refuses absolute paths, `..` that climbs out of `root`, and symbolic links that
/// lead out of it (`openat2` with `RESOLVE_BENEATH`, `EXDEV`), and `/proc` magic links.
pub fn open_beneath(root: i32, path: &[u8]) -> Result<i32, i32> {
    debug_assert_eq!(path.last(), Some(&0));
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    /// `RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH` (linux/openat2.h).
    const RESOLVE: u64 = 0x02 | 0x08;
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY) as u64,
        mode: 0,
        resolve: RESOLVE,
    };
    let args = [
        root as usize,
        path.as_ptr() as usize,
        &how as *const OpenHow as usize,
        core::mem::size_of::<OpenHow>(),
        0,
        0,
    ];
    // SAFETY: `path` is NUL-terminated and `how` is a valid `struct open_how`.
    unsafe { sys(libc::SYS_openat2, args) }.map(|f| f as i32)
}

/// `fstat(2)`.
pub fn fstat(fd: i32) -> Result<libc::stat, i32> {
    // SAFETY: all-zero is a valid `stat`.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is valid for writes for the duration of the call.
    unsafe { sys(libc::SYS_fstat, [fd as usize, &mut st as *mut libc::stat as usize, 0, 0, 0, 0]) }
        .map(|_| st)
}

/// `pread(2)`: reads all of `buf` from `off` unless the file is shorter.
pub fn pread_full(fd: i32, buf: &mut [u8], mut off: u64) -> Result<usize, i32> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is valid for writes of its length.
        let n = unsafe {
            sys(libc::SYS_pread64, [fd as usize, rest.as_mut_ptr() as usize, rest.len(), off as usize, 0, 0])
        }?;
        if n == 0 {
            break;
        }
        done += n;
        off += n as u64;
    }
    Ok(done)
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: a vDSO read, a few ns; ticks at the
/// kernel's HZ, fine for timeouts and the `Date` header.
pub fn coarse_now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE)
}

/// `CLOCK_REALTIME_COARSE`, in whole seconds since the epoch (the `Date` header).
pub fn wall_secs() -> i64 {
    (clock_ns(libc::CLOCK_REALTIME_COARSE) / 1_000_000_000) as i64
}

/// Clock `clock` in nanoseconds (a vDSO read for the clocks kweb uses).
#[inline]
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is valid for writes. `clock_gettime` is not interposed and sets no
    // errno for a valid clock.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
