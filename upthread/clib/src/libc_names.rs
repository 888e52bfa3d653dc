//! The system call wrappers of `parlib-syscalls` under their libc names.
//!
//! A C program linked against this library calls `read`, `accept`, `nanosleep` ... and
//! the dynamic linker (or, for `libupthread.a`, the static linker, which finds these
//! before `-lc`) binds those calls here rather than to glibc. Each function forwards to
//! the `parlib_*` function of the same name in `parlib_syscalls::cabi`, which has the
//! libc signature and sets `errno` on failure on the caller's TLS (its uthread's). On a
//! uthread a blocking call blocks only that uthread; on any other thread (a vcore in
//! vcore context, a backing thread, a thread the program made before the constructor ran)
//! it is the plain system call.
//!
//! Besides the names in the issue this exports the names a glibc program may call
//! instead of them:
//!
//! | the program writes | glibc's headers may emit | when |
//! |---|---|---|
//! | `open`, `openat`, `pread`, `pwrite` | `open64`, `openat64`, `pread64`, `pwrite64` | `_FILE_OFFSET_BITS=64` |
//! | `read`, `pread`, `recv`, `recvfrom`, `poll` | `__read_chk`, `__pread_chk`, `__pread64_chk`, `__recv_chk`, `__recvfrom_chk`, `__poll_chk` | `_FORTIFY_SOURCE` with a buffer of known size |
//! | `open`, `openat` | `__open_2`, `__open64_2`, `__openat_2`, `__openat64_2` | `_FORTIFY_SOURCE` with flags not known at compile time |
//!
//! Without them a fortified build (Ubuntu's compiler enables `_FORTIFY_SOURCE` by default)
//! would reach glibc's blocking versions and block a whole vcore. (On x86-64 the `64`
//! names are the same functions: `off_t` is already 64 bits.)
//!
//! ## Cancellation points
//!
//! POSIX makes every one of these a cancellation point except `socket`, `pipe` and
//! `pipe2`. Each of those calls `parlib_upthread::cancel::testcancel` (which also
//! delivers pending uthread-directed signals):
//!
//! * on entry, always: a pending request with cancellation enabled exits the thread
//!   before the call has any effect;
//! * on return, only where acting then loses nothing: after the sleeps and `poll`
//!   (`after`), and after a failed call of the others (`after_failure`). A thread
//!   cancelled while blocked in one of them is woken by the cancel (the wait is
//!   interrupted; `parlib_upthread::cancel` explains) and acts on it there; but a
//!   `read` that consumed data or an `accept` that made a descriptor
//!   returns its result, and the request waits for the next cancellation point, as in
//!   glibc when the request comes after the system call completed.
//!
//! ## `open` and `openat` are variadic in C
//!
//! Rust cannot define a C-variadic function on stable, so `open(path, flags, ...)` is
//! defined here with a fixed third argument, `mode`. On x86-64 (the only target parlib
//! supports, see `parlib-vcore::arch`) this is sound: the SysV ABI passes the first six
//! integer arguments of variadic and fixed-argument calls alike in registers, so a caller
//! that passed a mode leaves it in `%rdx` (for `openat`, `%rcx`), and a caller
//! that did not leaves an unspecified value there that is never read, because the mode
//! is only used with `O_CREAT` or `O_TMPFILE`, exactly as C's `va_arg` would be.
#[cfg(not(target_arch = "x86_64"))]
compile_error!("open/openat rely on the x86-64 SysV calling convention for their mode argument");

use libc::{
    c_char, c_int, c_uint, c_void, iovec, mode_t, msghdr, nfds_t, off_t, pollfd, size_t, sockaddr, socklen_t,
    ssize_t, timespec, useconds_t,
};
use parlib_syscalls::cabi;

/// Acts on a pending cancellation request of the calling uthread, if it has one and has
/// cancellation enabled (never returning then); does nothing on other threads.
#[inline]
fn cancellation_point() {
    parlib_upthread::cancel::testcancel();
}

/// What a wrapper returns, as far as its cancellation point on return cares.
trait Outcome: Copy {
    fn failed(self) -> bool;
}
impl Outcome for c_int {
    fn failed(self) -> bool {
        self == -1
    }
}
impl Outcome for ssize_t {
    fn failed(self) -> bool {
        self == -1
    }
}
impl Outcome for c_uint {
    fn failed(self) -> bool {
        false
    }
}

extern "C" {
    /// glibc's report of a buffer overflow detected by a `_chk` function: it prints
    /// "*** buffer overflow detected ***" and aborts.
    fn __chk_fail() -> !;
}

/// Defines `#[no_mangle] extern "C"` functions that forward to `parlib_syscalls::cabi`.
/// `nocancel`: not a cancellation point; `after_failure`: one on entry and after a
/// failed call; `after`: one on entry and on return (module docs).
macro_rules! forward {
    ($(
        #[doc = $doc:literal]
        $point:ident fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty => $target:path;
    )*) => {
        $(
            #[doc = $doc]
            ///
            /// # Safety
            /// The contract of the libc function of the same name: pointers must be
            /// valid for the sizes passed.
            #[no_mangle]
            pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
                forward!(@entry $point);
                // SAFETY: same signature and contract as the libc function, passed on
                // unchanged; our caller upholds it.
                let r: $ret = unsafe { $target($($arg),*) };
                forward!(@return $point, r);
                r
            }
        )*
    };
    (@entry nocancel) => {};
    (@entry $point:ident) => { cancellation_point() };
    (@return nocancel, $r:ident) => {};
    (@return after, $r:ident) => { cancellation_point() };
    (@return after_failure, $r:ident) => {
        if Outcome::failed($r) {
            // errno is the call's: keep it across a cancellation point that returns.
            let e = errno();
            cancellation_point();
            set_errno(e);
        }
    };
}

fn errno() -> c_int {
    // SAFETY: __errno_location returns the calling thread's (uthread's) errno slot.
    unsafe { *libc::__errno_location() }
}

fn set_errno(e: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e }
}

forward! {
    #[doc = "`read(2)`: blocks only the calling uthread."]
    after_failure fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t => cabi::parlib_read;
    #[doc = "`write(2)`: blocks only the calling uthread."]
    after_failure fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t => cabi::parlib_write;
    #[doc = "`readv(2)`: blocks only the calling uthread."]
    after_failure fn readv(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t => cabi::parlib_readv;
    #[doc = "`writev(2)`: blocks only the calling uthread."]
    after_failure fn writev(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t => cabi::parlib_writev;
    #[doc = "`pread(2)`: blocks only the calling uthread."]
    after_failure fn pread(fd: c_int, buf: *mut c_void, n: size_t, off: off_t) -> ssize_t => cabi::parlib_pread;
    #[doc = "`pread64`: `pread` under `_FILE_OFFSET_BITS=64`."]
    after_failure fn pread64(fd: c_int, buf: *mut c_void, n: size_t, off: off_t) -> ssize_t => cabi::parlib_pread;
    #[doc = "`pwrite(2)`: blocks only the calling uthread."]
    after_failure fn pwrite(fd: c_int, buf: *const c_void, n: size_t, off: off_t) -> ssize_t => cabi::parlib_pwrite;
    #[doc = "`pwrite64`: `pwrite` under `_FILE_OFFSET_BITS=64`."]
    after_failure fn pwrite64(fd: c_int, buf: *const c_void, n: size_t, off: off_t) -> ssize_t => cabi::parlib_pwrite;
    #[doc = "`recv(2)`: blocks only the calling uthread."]
    after_failure fn recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t => cabi::parlib_recv;
    #[doc = "`recvfrom(2)`: blocks only the calling uthread."]
    after_failure fn recvfrom(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> ssize_t
        => cabi::parlib_recvfrom;
    #[doc = "`recvmsg(2)`: blocks only the calling uthread."]
    after_failure fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t => cabi::parlib_recvmsg;
    #[doc = "`send(2)`: blocks only the calling uthread."]
    after_failure fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t => cabi::parlib_send;
    #[doc = "`sendto(2)`: blocks only the calling uthread."]
    after_failure fn sendto(fd: c_int, buf: *const c_void, n: size_t, flags: c_int, addr: *const sockaddr, len: socklen_t) -> ssize_t
        => cabi::parlib_sendto;
    #[doc = "`sendmsg(2)`: blocks only the calling uthread."]
    after_failure fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t => cabi::parlib_sendmsg;
    #[doc = "`accept(2)`: blocks only the calling uthread."]
    after_failure fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int => cabi::parlib_accept;
    #[doc = "`accept4(2)`: blocks only the calling uthread."]
    after_failure fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int => cabi::parlib_accept4;
    #[doc = "`connect(2)`: blocks only the calling uthread."]
    after_failure fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int => cabi::parlib_connect;
    #[doc = "`socket(2)`."]
    nocancel fn socket(domain: c_int, ty: c_int, proto: c_int) -> c_int => cabi::parlib_socket;
    #[doc = "`pipe(2)`."]
    nocancel fn pipe(fds: *mut c_int) -> c_int => cabi::parlib_pipe;
    #[doc = "`pipe2(2)`."]
    nocancel fn pipe2(fds: *mut c_int, flags: c_int) -> c_int => cabi::parlib_pipe2;
    #[doc = "`open(2)`, declared variadic in C (see the module docs for the mode argument)."]
    after_failure fn open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int => cabi::parlib_open;
    #[doc = "`open64`: `open` under `_FILE_OFFSET_BITS=64`."]
    after_failure fn open64(path: *const c_char, flags: c_int, mode: mode_t) -> c_int => cabi::parlib_open;
    #[doc = "`openat(2)`, declared variadic in C (see the module docs for the mode argument)."]
    after_failure fn openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int => cabi::parlib_openat;
    #[doc = "`openat64`: `openat` under `_FILE_OFFSET_BITS=64`."]
    after_failure fn openat64(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int => cabi::parlib_openat;
    #[doc = "`close(2)`."]
    after_failure fn close(fd: c_int) -> c_int => cabi::parlib_close;
    #[doc = "`poll(2)`: blocks only the calling uthread."]
    after fn poll(fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int => cabi::parlib_poll;
    #[doc = "`nanosleep(2)`: sleeps only the calling uthread."]
    after fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int => cabi::parlib_nanosleep;
    #[doc = "`usleep(3)`: sleeps only the calling uthread."]
    after fn usleep(us: useconds_t) -> c_int => cabi::parlib_usleep;
    #[doc = "`sleep(3)`: sleeps only the calling uthread."]
    after fn sleep(secs: c_uint) -> c_uint => cabi::parlib_sleep;
}

/// Fails like glibc when a fortified caller's buffer (`have` bytes) is smaller than the
/// length it asked for (`want`).
#[inline]
fn check_buffer(want: size_t, have: size_t) {
    if want > have {
        // SAFETY: __chk_fail takes no arguments and never returns; it is what glibc's own
        // _chk functions call in this case.
        unsafe { __chk_fail() }
    }
}

/// `__read_chk`: `read` called by a fortified program with a buffer of `buflen` bytes.
///
/// # Safety
/// As for `read`.
#[no_mangle]
pub unsafe extern "C" fn __read_chk(fd: c_int, buf: *mut c_void, n: size_t, buflen: size_t) -> ssize_t {
    check_buffer(n, buflen);
    // SAFETY: as for read, which our caller's contract is.
    unsafe { read(fd, buf, n) }
}

/// `__pread_chk`: `pread` called by a fortified program.
///
/// # Safety
/// As for `pread`.
#[no_mangle]
pub unsafe extern "C" fn __pread_chk(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    off: off_t,
    buflen: size_t,
) -> ssize_t {
    check_buffer(n, buflen);
    // SAFETY: as for pread, which our caller's contract is.
    unsafe { pread(fd, buf, n, off) }
}

/// `__pread64_chk`: `pread64` called by a fortified program.
///
/// # Safety
/// As for `pread`.
#[no_mangle]
pub unsafe extern "C" fn __pread64_chk(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    off: off_t,
    buflen: size_t,
) -> ssize_t {
    check_buffer(n, buflen);
    // SAFETY: as for pread, which our caller's contract is.
    unsafe { pread(fd, buf, n, off) }
}

/// `__recv_chk`: `recv` called by a fortified program.
///
/// # Safety
/// As for `recv`.
#[no_mangle]
pub unsafe extern "C" fn __recv_chk(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    buflen: size_t,
    flags: c_int,
) -> ssize_t {
    check_buffer(n, buflen);
    // SAFETY: as for recv, which our caller's contract is.
    unsafe { recv(fd, buf, n, flags) }
}

/// `__recvfrom_chk`: `recvfrom` called by a fortified program.
///
/// # Safety
/// As for `recvfrom`.
#[no_mangle]
pub unsafe extern "C" fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    buflen: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    check_buffer(n, buflen);
    // SAFETY: as for recvfrom, which our caller's contract is.
    unsafe { recvfrom(fd, buf, n, flags, addr, len) }
}

/// `__poll_chk`: `poll` called by a fortified program whose array is `fdslen` bytes.
///
/// # Safety
/// As for `poll`.
#[no_mangle]
pub unsafe extern "C" fn __poll_chk(fds: *mut pollfd, n: nfds_t, timeout: c_int, fdslen: size_t) -> c_int {
    check_buffer(n as size_t, fdslen / core::mem::size_of::<pollfd>());
    // SAFETY: as for poll, which our caller's contract is.
    unsafe { poll(fds, n, timeout) }
}

/// `__open_2`: `open` without a mode, called by a fortified program whose flags are not
/// a compile-time constant. Like glibc's, it refuses `O_CREAT`/`O_TMPFILE` (which need a
/// mode) by aborting.
///
/// # Safety
/// As for `open`.
#[no_mangle]
pub unsafe extern "C" fn __open_2(path: *const c_char, flags: c_int) -> c_int {
    refuse_missing_mode(flags);
    // SAFETY: as for open; the mode is not read without O_CREAT/O_TMPFILE.
    unsafe { open(path, flags, 0) }
}

/// `__open64_2`: `__open_2` under `_FILE_OFFSET_BITS=64`.
///
/// # Safety
/// As for `open`.
#[no_mangle]
pub unsafe extern "C" fn __open64_2(path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: the same function.
    unsafe { __open_2(path, flags) }
}

/// `__openat_2`: `openat` without a mode, from a fortified program.
///
/// # Safety
/// As for `openat`.
#[no_mangle]
pub unsafe extern "C" fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    refuse_missing_mode(flags);
    // SAFETY: as for openat; the mode is not read without O_CREAT/O_TMPFILE.
    unsafe { openat(dirfd, path, flags, 0) }
}

/// `__openat64_2`: `__openat_2` under `_FILE_OFFSET_BITS=64`.
///
/// # Safety
/// As for `openat`.
#[no_mangle]
pub unsafe extern "C" fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: the same function.
    unsafe { __openat_2(dirfd, path, flags) }
}

/// glibc's `__open_2` aborts when the flags need a mode the caller did not pass.
fn refuse_missing_mode(flags: c_int) {
    if flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE {
        const MSG: &[u8] = b"upthread: open with O_CREAT or O_TMPFILE but no mode\n";
        // SAFETY: a raw write of a static buffer to standard error (not `libc::write`,
        // which in this library is our own wrapper and a cancellation point), then abort.
        unsafe {
            libc::syscall(libc::SYS_write, 2, MSG.as_ptr(), MSG.len());
            libc::abort()
        }
    }
}
