//! The system calls the load generator makes, each behind a small safe function: clocks,
//! epoll, a timer, non-blocking sockets, CPU affinity and the descriptor limit.
//!
//! Errors come back as `std::io::Error` (the errno inside); the hot calls (`recv`,
//! `send`) return the raw count or the errno so that the caller can branch on `EAGAIN`
//! without building an error value.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `CLOCK_MONOTONIC` in nanoseconds: every timestamp of a run (send, completion,
/// deadlines) is on this clock.
#[inline]
pub(crate) fn now_ns() -> u64 {
    crate::sys::clock_ns(libc::CLOCK_MONOTONIC)
}

/// CPU time the calling thread has used, in nanoseconds.
pub(crate) fn thread_cpu_ns() -> u64 {
    crate::sys::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// The errno of the last failed call on this thread.
#[inline]
pub(crate) fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() }
}

/// `recv` into `buf` without blocking: `Ok(n)` (0 at end of stream) or `Err(errno)`.
///
/// `MSG_DONTWAIT` repeats what the socket's `O_NONBLOCK` already says, for a reason:
/// kweb's binaries link parlib-syscalls, whose `recv`/`send` stand under the libc names,
/// and a call that says `MSG_DONTWAIT` takes their direct path (one raw system call, no
/// descriptor-kind lookup).
#[inline]
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> Result<usize, i32> {
    // SAFETY: `buf` is valid and writable for `buf.len()` bytes for the whole call.
    let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as usize)
    }
}

/// `send` of `buf` without blocking (see [`recv`] for `MSG_DONTWAIT`) and without
/// `SIGPIPE` (a server that closes must not kill the generator): `Ok(bytes sent)` or
/// `Err(errno)`.
#[inline]
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> Result<usize, i32> {
    let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the whole call.
    let r = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as usize)
    }
}

/// The epoll token of a connection: its index and its socket's generation (bumped at
/// every reconnect, so events of an old socket in the same batch are recognised).
pub(crate) fn token(i: usize, generation: u32) -> u64 {
    (u64::from(generation) << 32) | i as u64
}

/// Interest and report bits, as epoll's `u32`.
pub(crate) const IN: u32 = libc::EPOLLIN as u32;
pub(crate) const OUT: u32 = libc::EPOLLOUT as u32;
pub(crate) const ERR: u32 = (libc::EPOLLERR | libc::EPOLLHUP) as u32;

/// One epoll instance; closed on drop.
pub(crate) struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// A new epoll instance (close-on-exec).
    pub(crate) fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes only flags.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned to us open, and nothing else owns it.
        Ok(Epoll { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Watches `fd` for `events`, reporting `token` with them.
    pub(crate) fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
    }

    /// Changes the events `fd` is watched for.
    pub(crate) fn modify(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, token)
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event for the call; the kernel checks both fds.
        let r = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Waits up to `timeout_ms` for events; returns how many of `events` were filled
    /// (0 on timeout or `EINTR`).
    pub(crate) fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
        let max = events.len().min(i32::MAX as usize) as i32;
        // SAFETY: `events` is valid and writable for `max` entries for the whole call.
        let r = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, timeout_ms) };
        // EINTR (a signal) reads as "nothing ready"; the caller's loop goes round again.
        r.max(0) as usize
    }
}

/// A `timerfd` on `CLOCK_MONOTONIC` (the [`now_ns`] clock), non-blocking; closed on drop.
/// The open loop watches it in its epoll set to wake at the next scheduled arrival.
///
/// Why not `epoll_wait`'s own timeout: it counts whole milliseconds, and the kernel adds
/// the thread's timer slack (50 µs by default, `prctl(2)` `PR_SET_TIMERSLACK`) to it,
/// where an arrival must go out within microseconds of its time. A timerfd's expiry is
/// an hrtimer started without slack (`timerfd_settime(2)`; `fs/timerfd.c`).
pub(crate) struct Timer {
    fd: OwnedFd,
}

impl Timer {
    /// A new disarmed timer.
    pub(crate) fn new() -> io::Result<Timer> {
        // SAFETY: timerfd_create takes only a clock id and flags.
        let fd =
            unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned to us open, and nothing else owns it.
        Ok(Timer { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Its descriptor, for the epoll set.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Arms the timer to expire once at `at_ns` on the [`now_ns`] clock (a time already
    /// past expires at once). Re-arming resets the expiration count, so the descriptor
    /// stops being readable until the new time.
    pub(crate) fn set_at(&self, at_ns: u64) -> io::Result<()> {
        // An all-zero it_value would disarm the timer instead: 1 ns is long past.
        let at_ns = at_ns.max(1);
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: (at_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (at_ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec for the call; a null old value is allowed.
        let r = unsafe {
            libc::timerfd_settime(self.fd.as_raw_fd(), libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut())
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Reads (and so clears) the expiration count, if the timer has expired.
    pub(crate) fn clear(&self) {
        let mut count = [0u8; 8];
        // A raw read (kweb's request path's), not libc's name, which parlib-syscalls may
        // stand under. The count itself is not needed; EAGAIN (not expired) is fine too.
        let _ = crate::sys::read(self.fd.as_raw_fd(), &mut count);
    }
}

/// The C form of a socket address, for `connect`.
fn sockaddr_of(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for any sockaddr_*.
            unsafe { (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>().write(sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above.
            unsafe { (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>().write(sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// A new connection to `addr` for slot `i` of a load thread, its epoll token carrying
/// `generation`, watched in `epoll` for both directions (writable once connected): both
/// loops reconnect this way. The error says which step failed.
pub(crate) fn reopen(epoll: &Epoll, addr: &SocketAddr, i: usize, generation: u32) -> Result<OwnedFd, String> {
    let (fd, _) = connect_nonblocking(addr).map_err(|e| format!("reconnect to {addr} failed: {e}"))?;
    epoll.add(fd.as_raw_fd(), IN | OUT, token(i, generation)).map_err(|e| format!("epoll_ctl: {e}"))?;
    Ok(fd)
}

/// Starts a non-blocking TCP connection to `addr` with `TCP_NODELAY` set. Returns the
/// socket and whether it is already connected (`false`: in progress, writable when done).
pub(crate) fn connect_nonblocking(addr: &SocketAddr) -> io::Result<(OwnedFd, bool)> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: socket takes only integer arguments.
    let raw =
        unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just returned to us open, and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    crate::sys::set_nodelay(raw).map_err(io::Error::from_raw_os_error)?;
    let (sa, len) = sockaddr_of(addr);
    // SAFETY: `sa` holds a valid sockaddr of `len` bytes for the family of the socket.
    let r = unsafe { libc::connect(raw, (&sa as *const libc::sockaddr_storage).cast(), len) };
    if r == 0 {
        return Ok((fd, true));
    }
    match errno() {
        libc::EINPROGRESS | libc::EINTR => Ok((fd, false)),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// The pending error of a socket (`SO_ERROR`): how a non-blocking connect ended
/// (0 = connected).
pub(crate) fn socket_error(fd: RawFd) -> i32 {
    let mut err: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are valid and writable, `len` holding the size of `err`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        errno()
    } else {
        err
    }
}

/// The CPUs the calling thread may run on (its affinity), in order: where load threads
/// and the servers under test are pinned. Also for the benches, which pin servers.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is valid and writable for the size passed; pid 0 is this thread.
    let r = unsafe { libc::sched_getaffinity(0, mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let max = 8 * mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads bit `cpu` of `set`, and every `cpu` is below the set's size.
    Ok((0..max).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect())
}

/// Pins the calling thread to `cpu`.
pub(crate) fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= 8 * mem::size_of::<libc::cpu_set_t>() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: as in `allowed_cpus`.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    // SAFETY: `cpu` is below the size of the set (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let r = unsafe { libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
