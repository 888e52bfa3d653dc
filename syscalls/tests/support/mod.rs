//! Helpers shared by the syscalls test files (`mod support;`), next to the uthread test
//! scheduler they all use as `common` (the crate `parlib-testsched`).
//!
//! Every helper that does I/O goes through `parlib_syscalls::io`, so descriptors are
//! created and closed through the layer (it forgets a descriptor's kind and readiness
//! registration only when its own `close` wrapper closes it). Tests compare results as
//! `Result<_, errno>` ([`errno_of`]), so an error is checked down to its errno.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use parlib_syscalls::io::{self, SockAddr};
use parlib_uthread::TlsMode;

/// A watchdog long enough for a loaded machine running a debug build: the tests never
/// assert on speed, so this only bounds a hang.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The environment of a child that must run on a single vcore.
pub const ONE_VCORE: &[(&str, &str)] = &[("VCORE_LIMIT", "1")];

/// Starts the runtime in a test child, in the order the layers need: the uthread test
/// scheduler on every vcore (the calling test thread becomes the uthread `main` on vcore
/// 0), then the alarm service, then the syscall service.
pub fn init_runtime() {
    crate::common::init();
    parlib_alarms::init().expect("parlib_alarms::init after uthread::lib_init");
    parlib_syscalls::init().expect("parlib_syscalls::init after parlib_alarms::init");
}

/// [`init_runtime`] for a test across vcores: fails the test, saying why, if there is
/// only one (it would check nothing).
pub fn init_runtime_across_vcores() {
    init_runtime();
    crate::common::require_vcores(2);
}

/// Starts `f` as a uthread on any vcore. A panic in it (a failed assertion) aborts the
/// child after the panic message is printed, so the test fails at once with that message
/// instead of hanging its partners until the watchdog fires.
pub fn spawn(tls: TlsMode, f: impl FnOnce() + Send + 'static) {
    crate::common::spawn(tls, move || guarded(f));
}

/// [`spawn`], pinned to vcore `v`.
pub fn spawn_on(v: usize, tls: TlsMode, f: impl FnOnce() + Send + 'static) {
    crate::common::spawn_on(v, tls, move || guarded(f));
}

fn guarded(f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        eprintln!("a uthread panicked (message above): aborting the test child");
        std::process::abort();
    }
}

/// Runs `f` on a fresh plain Linux thread and waits for its result by yielding (so the
/// calling uthread's vcore keeps running others). The thread may run on any CPU of the
/// process (a thread started from a vcore would inherit its pin).
pub fn on_plain_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let h = plain_thread(f);
    crate::common::wait_until(|| h.is_finished());
    h.join().expect("the plain thread panicked (message above)")
}

/// Starts `f` on a fresh plain Linux thread free to run on any CPU of the process.
pub fn plain_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        unpin_thread();
        f()
    })
}

/// Lets the calling plain thread run on every CPU the process may use.
pub fn unpin_thread() {
    if let Some(set) = parlib_vcore::process_cpus() {
        // SAFETY: `set` is a valid cpu_set_t of the size we pass; 0 is the calling thread.
        unsafe { libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), set.as_raw()) };
    }
}

/// Whether the caller is a uthread (as opposed to a plain thread or vcore context).
pub fn on_uthread() -> bool {
    parlib_uthread::current().is_some()
}

/// A pipe made through the layer: `[read end, write end]`.
pub fn pipe() -> [i32; 2] {
    io::pipe2(libc::O_CLOEXEC).expect("pipe2")
}

/// A connected pair of Unix stream sockets. There is no socketpair wrapper; the layer
/// classifies the descriptors on first use.
pub fn socketpair() -> [i32; 2] {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    let r = unsafe {
        libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr())
    };
    assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
    fds
}

/// Writes all of `buf` to `fd` through the layer.
pub fn write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        match io::write(fd, buf) {
            Ok(0) => panic!("write to fd {fd} wrote nothing"),
            Ok(n) => buf = &buf[n..],
            Err(e) => panic!("write to fd {fd}: {e}"),
        }
    }
}

/// Fills `buf` from `fd` through the layer; panics at EOF.
pub fn read_exact(fd: i32, mut buf: &mut [u8]) {
    while !buf.is_empty() {
        match io::read(fd, buf) {
            Ok(0) => panic!("read from fd {fd}: EOF with {} bytes still expected", buf.len()),
            Ok(n) => buf = &mut buf[n..],
            Err(e) => panic!("read from fd {fd}: {e}"),
        }
    }
}

/// Reads from `fd` through the layer until EOF; returns everything read.
pub fn read_to_end(fd: i32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        match io::read(fd, &mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read from fd {fd}: {e}"),
        }
    }
}

/// Closes `fd` through the layer, which must succeed.
pub fn close(fd: i32) {
    io::close(fd).unwrap_or_else(|e| panic!("close fd {fd}: {e}"));
}

/// The safe face's result with its error as the errno, for exact comparisons. Every
/// error of the face carries one; one that does not fails the test.
pub fn errno_of<T>(r: std::io::Result<T>) -> Result<T, i32> {
    r.map_err(|e| e.raw_os_error().unwrap_or_else(|| panic!("an error without an errno: {e}")))
}

/// The calling thread's (or uthread's, if it has TLS) `errno`.
pub fn errno() -> i32 {
    // SAFETY: __errno_location returns the running TLS's errno, always valid.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's (or uthread's) `errno`.
pub fn set_errno(e: i32) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e };
}

/// `EBADF (9)` and the like, for messages.
pub fn errno_name(e: i32) -> String {
    format!("{} ({e})", std::io::Error::from_raw_os_error(e))
}

/// `CLOCK_MONOTONIC` now, in nanoseconds.
pub fn now_ns() -> u64 {
    parlib_sync::now_ns()
}

#[allow(unused_imports)] // each test binary uses its own part of this module
pub use parlib_testkit::{fill_pattern, Rng};

/// 127.0.0.1:`port`.
pub fn loopback_addr(port: u16) -> SockAddr {
    SockAddr::from(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// A TCP socket bound to 127.0.0.1 on a free port (plain libc calls), listening if
/// `backlog` is `Some`. Returns the descriptor and the port.
pub fn bound_loopback_socket(backlog: Option<i32>) -> (i32, u16) {
    // SAFETY: plain socket calls on our own descriptor with valid, sized addresses.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let one: i32 = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const i32 as *const libc::c_void,
            core::mem::size_of::<i32>() as libc::socklen_t,
        );
        let a = loopback_addr(0);
        let r = libc::bind(fd, a.as_ptr(), a.len());
        assert_eq!(r, 0, "bind 127.0.0.1:0: {}", std::io::Error::last_os_error());
        if let Some(b) = backlog {
            assert_eq!(libc::listen(fd, b), 0, "listen: {}", std::io::Error::last_os_error());
        }
        let mut got: libc::sockaddr_in = core::mem::zeroed();
        let mut glen = core::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let r = libc::getsockname(fd, &mut got as *mut libc::sockaddr_in as *mut libc::sockaddr, &mut glen);
        assert_eq!(r, 0, "getsockname: {}", std::io::Error::last_os_error());
        (fd, u16::from_be(got.sin_port))
    }
}

/// An abstract Unix socket address unique to this process and `tag` (no file to clean
/// up).
pub fn unix_addr(tag: &str) -> SockAddr {
    let name = format!("parlib-syscalls-{tag}-{}", std::process::id());
    SockAddr::unix_abstract(name.as_bytes()).expect("a short abstract name")
}

/// A listening Unix stream socket (plain libc calls) on [`unix_addr`]`(tag)`, with
/// `backlog`; returns it and its address.
pub fn unix_listener(tag: &str, backlog: i32) -> (i32, SockAddr) {
    let a = unix_addr(tag);
    // SAFETY: plain socket calls on our own descriptor with a valid, sized address.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let r = libc::bind(fd, a.as_ptr(), a.len());
        assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
        assert_eq!(libc::listen(fd, backlog), 0, "listen: {}", std::io::Error::last_os_error());
        (fd, a)
    }
}

/// The descriptor's file status flags as the kernel has them (`F_GETFL` as a plain
/// system call: `fcntl` itself is the layer's wrapper in this process, which keeps its own
/// `O_NONBLOCK` out of a caller's view).
pub fn fd_flags(fd: i32) -> i32 {
    // SAFETY: F_GETFL takes no pointer.
    unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_GETFL) as i32 }
}

/// The descriptor's file status flags as a caller sees them (`fcntl(F_GETFL)`, the
/// layer's wrapper): without the layer's own `O_NONBLOCK`.
pub fn fd_flags_seen(fd: i32) -> i32 {
    // SAFETY: F_GETFL takes no pointer.
    unsafe { libc::fcntl(fd, libc::F_GETFL) }
}

/// Sets `SO_SNDBUF` (the kernel doubles it and enforces a minimum).
pub fn set_send_buffer(fd: i32, bytes: i32) {
    // SAFETY: a valid option value of the size we pass.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &bytes as *const i32 as *const libc::c_void,
            core::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "setsockopt SO_SNDBUF: {}", std::io::Error::last_os_error());
}

/// Reads exactly `total` bytes from `fd` through the layer (panicking at an early EOF),
/// discarding them; returns `total`.
pub fn read_to_end_of(fd: i32, total: usize) -> usize {
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = 0;
    while got < total {
        let want = buf.len().min(total - got);
        match io::read(fd, &mut buf[..want]) {
            Ok(0) => panic!("read from fd {fd}: EOF after {got} of {total} bytes"),
            Ok(n) => got += n,
            Err(e) => panic!("read from fd {fd}: {e}"),
        }
    }
    got
}
