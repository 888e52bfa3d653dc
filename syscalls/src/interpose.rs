//! The system calls under their libc names: `read`, `write`, `accept4`, `nanosleep`,
//! `clock_nanosleep`, `syscall` (for `futex`), ... each forwards to the [`cabi`]
//! function of the same name, so a blocking call made on a uthread blocks only that
//! uthread, and on any other thread (a plain thread, vcore context, a backing thread) it
//! is the plain system call with libc's results and `errno`.
//!
//! ## Who lands here
//!
//! * **Rust programs**, std included: these definitions are in the executable, so the
//!   static linker binds std's calls to them rather than to glibc. std's `Mutex`,
//!   `Condvar`, `RwLock`, `Once`, thread parking and the lock behind `println!` wait
//!   with `syscall(SYS_futex, ...)`; `thread::sleep` is `clock_nanosleep`; `std::net` and
//!   `std::fs` call `accept4`, `connect`, `recv`, `send`, `read`, `write`, `open64`,
//!   `poll`, `fcntl`, `ioctl(FIONBIO)` ... (the crate docs list what is covered). The
//!   object that holds them is linked when the program calls [`crate::init`], which
//!   refers to them all; a program that never does gets glibc's functions, and uthreads
//!   are then not what it runs anyway.
//! * **C programs built against upthread** (`libupthread.so`, `libupthread.a`): the
//!   dynamic linker binds their calls here before glibc (the static linker, for the
//!   archive, finds these first).
//!
//! glibc's own functions call its internal entry points (`__read`, `__futex...`), never
//! these names, so `printf` or `pthread_mutex_lock` inside glibc are not interposed.
//!
//! Besides the names above this exports the names a glibc program may call instead:
//!
//! | the program writes | glibc's headers may emit | when |
//! |---|---|---|
//! | `open`, `openat`, `pread`, `pwrite`, `fcntl` | `open64`, `openat64`, `pread64`, `pwrite64`, `fcntl64` | `_FILE_OFFSET_BITS=64` |
//! | `read`, `pread`, `recv`, `recvfrom`, `poll` | `__read_chk`, `__pread_chk`, `__pread64_chk`, `__recv_chk`, `__recvfrom_chk`, `__poll_chk` | `_FORTIFY_SOURCE` with a buffer of known size |
//! | `open`, `openat` | `__open_2`, `__open64_2`, `__openat_2`, `__openat64_2` | `_FORTIFY_SOURCE` with flags not known at compile time |
//!
//! Without them a fortified build (Ubuntu's compiler enables `_FORTIFY_SOURCE` by default)
//! would reach glibc's blocking versions and block a whole vcore. (On x86-64 the `64`
//! names are the same functions: `off_t` is already 64 bits.)
//!
//! ## Cancellation points
//!
//! POSIX makes every one of these a cancellation point except `socket`, `pipe`, `pipe2`,
//! `fcntl` (but for `F_SETLKW`), `ioctl`, `dup*` and `syscall`. A layer above that
//! implements cancellation (upthread) installs its check with
//! [`crate::set_cancellation_point`]; each cancellation point calls it:
//!
//! * on entry, always: a pending request with cancellation enabled exits the thread
//!   before the call has any effect;
//! * on return, only where acting then loses nothing: after the sleeps and `poll`
//!   (`after`), and after a failed call of the others (`after_failure`). A thread
//!   cancelled while blocked in one of them is woken by the cancel (the wait is
//!   interrupted) and acts on it there; but a `read` that consumed data or an `accept`
//!   that made a descriptor returns its result, and the request waits for the next
//!   cancellation point, as in glibc when the request comes after the system call
//!   completed.
//!
//! ## Variadic functions
//!
//! Rust cannot define a C-variadic function on stable, so `open(path, flags, ...)`,
//! `fcntl(fd, cmd, ...)`, `ioctl(fd, req, ...)` and `syscall(num, ...)` are defined here
//! with fixed trailing arguments. On x86-64 (the only target parlib supports, see
//! `parlib-vcore::arch`) this is sound: the SysV ABI passes the first six integer
//! arguments of variadic and fixed-argument calls alike in registers (and the seventh,
//! `syscall`'s sixth argument word, in the caller's stack slot, which is mapped), so a
//! caller that passed fewer leaves unspecified values that are never read (the mode
//! without `O_CREAT`/`O_TMPFILE`) or only passed on to the kernel, which ignores the
//! arguments a call does not take, exactly as C's `va_arg` would be.
#[cfg(not(target_arch = "x86_64"))]
compile_error!("open/openat rely on the x86-64 SysV calling convention for their mode argument");

use libc::{
    c_char, c_int, c_uint, c_void, iovec, mode_t, msghdr, nfds_t, off_t, pollfd, size_t, sockaddr, socklen_t,
    ssize_t, timespec, useconds_t,
};

use crate::cabi;
use crate::cancel::cancellation_point;

/// Refers to every function this module defines, so that the program that calls it (from
/// [`crate::init`]) links them all (module docs: an object nothing refers to is left
/// out, and with it the libc names it would have taken over).
pub(crate) fn keep() {
    keep_forwarded();
    core::hint::black_box([
        __read_chk as *const (),
        __pread_chk as *const (),
        __pread64_chk as *const (),
        __recv_chk as *const (),
        __recvfrom_chk as *const (),
        __poll_chk as *const (),
        __open_2 as *const (),
        __open64_2 as *const (),
        __openat_2 as *const (),
        __openat64_2 as *const (),
    ]);
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
        /// Refers to every forwarding function, so that whatever refers to this links them.
        fn keep_forwarded() {
            core::hint::black_box([$($name as *const ()),*]);
        }
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
    #[doc = "`clock_nanosleep(2)`: sleeps only the calling uthread (the clocks an alarm can wait for)."]
    after fn clock_nanosleep(clock: libc::clockid_t, flags: c_int, req: *const timespec, rem: *mut timespec) -> c_int
        => cabi::parlib_clock_nanosleep;
    #[doc = "`fcntl(2)` (see the module docs for the variadic third argument): this layer's `O_NONBLOCK` stays out of the caller's view."]
    nocancel fn fcntl(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int => cabi::parlib_fcntl;
    #[doc = "`fcntl64`: `fcntl` under `_FILE_OFFSET_BITS=64`."]
    nocancel fn fcntl64(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int => cabi::parlib_fcntl;
    #[doc = "`ioctl(2)` (see the module docs for the variadic third argument): `FIONBIO` as `fcntl`'s `O_NONBLOCK`."]
    nocancel fn ioctl(fd: c_int, req: libc::c_ulong, arg: libc::c_ulong) -> c_int => cabi::parlib_ioctl;
    #[doc = "`dup(2)`."]
    nocancel fn dup(fd: c_int) -> c_int => cabi::parlib_dup;
    #[doc = "`dup2(2)`."]
    nocancel fn dup2(old: c_int, new: c_int) -> c_int => cabi::parlib_dup2;
    #[doc = "`dup3(2)`."]
    nocancel fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int => cabi::parlib_dup3;
    #[doc = "`syscall(2)` (see the module docs for the variadic arguments): `futex` waits block only the calling uthread."]
    nocancel fn syscall(num: libc::c_long, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize, a6: usize) -> libc::c_long
        => cabi::parlib_syscall;
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
    // SAFETY: the same function on x86-64 (`off_t` is 64 bits); our caller's contract.
    unsafe { __pread_chk(fd, buf, n, off, buflen) }
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
        const MSG: &[u8] = b"parlib: open with O_CREAT or O_TMPFILE but no mode\n";
        // A raw write of a static buffer to standard error (not `write`, which here is our
        // own wrapper and a cancellation point), then abort.
        let _ = crate::raw::sys(libc::SYS_write, [2, MSG.as_ptr() as usize, MSG.len(), 0, 0, 0]);
        // SAFETY: abort has no preconditions.
        unsafe { libc::abort() }
    }
}
