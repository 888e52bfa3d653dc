//! The C face: `extern "C"` functions with libc's signatures and `errno` behaviour, under
//! `parlib_`-prefixed names, each over the [`raw`] function of the same name.
//! `upthread` exports them under the libc names, so a C program built against it calls
//! these. `errno` is set on failure only, on the caller's TLS, which on a uthread is its
//! own.

use libc::{
    c_char, c_int, c_uint, c_void, iovec, mode_t, msghdr, nfds_t, pollfd, size_t, sockaddr, socklen_t,
    ssize_t, timespec,
};

use crate::raw;

fn fail(e: i32) {
    // SAFETY: __errno_location returns this TLS's errno, always valid.
    unsafe { *libc::__errno_location() = e };
}

fn ssize(r: Result<usize, i32>) -> ssize_t {
    match r {
        Ok(v) => v as ssize_t,
        Err(e) => {
            fail(e);
            -1
        }
    }
}

fn int(r: Result<i32, i32>) -> c_int {
    r.unwrap_or_else(|e| {
        fail(e);
        -1
    })
}

fn unit(r: Result<(), i32>) -> c_int {
    int(r.map(|()| 0))
}

macro_rules! wrap {
    ($(#[doc = $d:literal] fn $name:ident($($a:ident: $t:ty),*) -> $r:ty => $body:expr;)*) => {
        $(
            #[doc = $d]
            ///
            /// # Safety
            /// As for the libc function: pointers must be valid for the sizes given (the
            /// kernel reports `EFAULT` for bad ones it can detect).
            #[no_mangle]
            pub unsafe extern "C" fn $name($($a: $t),*) -> $r {
                $body
            }
        )*
    };
}

wrap! {
    #[doc = "`read(2)`."]
    fn parlib_read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t => {
        // SAFETY: our caller upholds the libc contract, which is `raw::read`'s.
        ssize(unsafe { raw::read(fd, buf.cast(), n) })
    };
    #[doc = "`write(2)`."]
    fn parlib_write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t => {
        // SAFETY: our caller upholds the libc contract, which is `raw::write`'s.
        ssize(unsafe { raw::write(fd, buf.cast(), n) })
    };
    #[doc = "`readv(2)`."]
    fn parlib_readv(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t => {
        // SAFETY: our caller upholds the libc contract, which is `raw::readv`'s.
        ssize(unsafe { raw::readv(fd, iov, cnt) })
    };
    #[doc = "`writev(2)`."]
    fn parlib_writev(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t => {
        // SAFETY: our caller upholds the libc contract, which is `raw::writev`'s.
        ssize(unsafe { raw::writev(fd, iov, cnt) })
    };
    #[doc = "`pread(2)`."]
    fn parlib_pread(fd: c_int, buf: *mut c_void, n: size_t, off: libc::off_t) -> ssize_t => {
        // SAFETY: our caller upholds the libc contract, which is `raw::pread`'s.
        ssize(unsafe { raw::pread(fd, buf.cast(), n, off) })
    };
    #[doc = "`pwrite(2)`."]
    fn parlib_pwrite(fd: c_int, buf: *const c_void, n: size_t, off: libc::off_t) -> ssize_t => {
        // SAFETY: our caller upholds the libc contract, which is `raw::pwrite`'s.
        ssize(unsafe { raw::pwrite(fd, buf.cast(), n, off) })
    };
    #[doc = "`recv(2)`."]
    fn parlib_recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t => {
        // SAFETY: our caller upholds the libc contract, which is `raw::recv`'s.
        ssize(unsafe { raw::recv(fd, buf.cast(), n, flags) })
    };
    #[doc = "`recvfrom(2)`."]
    fn parlib_recvfrom(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> ssize_t => {
        // SAFETY: our caller upholds the libc contract, which is `raw::recvfrom`'s.
        ssize(unsafe { raw::recvfrom(fd, buf.cast(), n, flags, addr, len) })
    };
    #[doc = "`recvmsg(2)`."]
    fn parlib_recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t => {
        // SAFETY: our caller upholds the libc contract, which is `raw::recvmsg`'s.
        ssize(unsafe { raw::recvmsg(fd, msg, flags) })
    };
    #[doc = "`send(2)`."]
    fn parlib_send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t => {
        // SAFETY: our caller upholds the libc contract, which is `raw::send`'s.
        ssize(unsafe { raw::send(fd, buf.cast(), n, flags) })
    };
    #[doc = "`sendto(2)`."]
    fn parlib_sendto(fd: c_int, buf: *const c_void, n: size_t, flags: c_int, addr: *const sockaddr, len: socklen_t) -> ssize_t => {
        // SAFETY: our caller upholds the libc contract, which is `raw::sendto`'s.
        ssize(unsafe { raw::sendto(fd, buf.cast(), n, flags, addr, len) })
    };
    #[doc = "`sendmsg(2)`."]
    fn parlib_sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t => {
        // SAFETY: our caller upholds the libc contract, which is `raw::sendmsg`'s.
        ssize(unsafe { raw::sendmsg(fd, msg, flags) })
    };
    #[doc = "`accept(2)`."]
    fn parlib_accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int => {
        // SAFETY: our caller upholds the libc contract, which is `raw::accept`'s.
        int(unsafe { raw::accept(fd, addr, len) })
    };
    #[doc = "`accept4(2)`."]
    fn parlib_accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int => {
        // SAFETY: our caller upholds the libc contract, which is `raw::accept4`'s.
        int(unsafe { raw::accept4(fd, addr, len, flags) })
    };
    #[doc = "`connect(2)`."]
    fn parlib_connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int => {
        // SAFETY: our caller upholds the libc contract, which is `raw::connect`'s.
        unit(unsafe { raw::connect(fd, addr, len) })
    };
    #[doc = "`socket(2)`."]
    fn parlib_socket(domain: c_int, ty: c_int, proto: c_int) -> c_int => int(raw::socket(domain, ty, proto));
    #[doc = "`pipe(2)`."]
    fn parlib_pipe(fds: *mut c_int) -> c_int => {
        // SAFETY: the same contract as ours.
        unsafe { parlib_pipe2(fds, 0) }
    };
    #[doc = "`pipe2(2)`."]
    fn parlib_pipe2(fds: *mut c_int, flags: c_int) -> c_int => {
        if fds.is_null() {
            fail(libc::EFAULT);
            return -1;
        }
        // SAFETY: the caller passes room for two descriptors, as pipe2(2) requires.
        unit(raw::pipe2(unsafe { &mut *(fds as *mut [c_int; 2]) }, flags))
    };
    #[doc = "`open(2)` (the mode is read only with `O_CREAT` or `O_TMPFILE`, as in C)."]
    fn parlib_open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int => {
        // SAFETY: our caller upholds the libc contract, which is `raw::open`'s.
        int(unsafe { raw::open(path, flags, mode) })
    };
    #[doc = "`openat(2)`."]
    fn parlib_openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int => {
        // SAFETY: our caller upholds the libc contract, which is `raw::openat`'s.
        int(unsafe { raw::openat(dirfd, path, flags, mode) })
    };
    #[doc = "`close(2)`."]
    fn parlib_close(fd: c_int) -> c_int => unit(raw::close(fd));
    #[doc = "`poll(2)`."]
    fn parlib_poll(fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int => {
        // SAFETY: our caller upholds the libc contract, which is `raw::poll`'s.
        int(unsafe { raw::poll(fds, n, timeout) }.map(|v| v as i32))
    };
    #[doc = "`nanosleep(2)`."]
    fn parlib_nanosleep(req: *const timespec, rem: *mut timespec) -> c_int => {
        if req.is_null() {
            fail(libc::EFAULT);
            return -1;
        }
        // SAFETY: `req` is non-null and, per the contract, valid; `rem` is null or valid.
        unit(raw::nanosleep(unsafe { &*req }, unsafe { rem.as_mut() }))
    };
    #[doc = "`clock_nanosleep(2)`: returns the error number (0 on success) and leaves `errno` alone, as POSIX says."]
    fn parlib_clock_nanosleep(clock: libc::clockid_t, flags: c_int, req: *const timespec, rem: *mut timespec) -> c_int => {
        if req.is_null() {
            return libc::EFAULT;
        }
        // SAFETY: `req` is non-null and, per the contract, valid; `rem` is null or valid.
        match raw::clock_nanosleep(clock, flags, unsafe { &*req }, unsafe { rem.as_mut() }) {
            Ok(()) => 0,
            Err(e) => e,
        }
    };
    #[doc = "`fcntl(2)`, declared variadic in C: the third argument is read as a word (see `interpose`)."]
    fn parlib_fcntl(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int => {
        // SAFETY: our caller upholds the libc contract, which is `raw::fcntl`'s.
        int(unsafe { raw::fcntl(fd, cmd, arg as usize) }.map(|v| v as c_int))
    };
    #[doc = "`ioctl(2)`, declared variadic in C: the third argument is read as a word."]
    fn parlib_ioctl(fd: c_int, req: libc::c_ulong, arg: libc::c_ulong) -> c_int => {
        // SAFETY: our caller upholds the libc contract, which is `raw::ioctl`'s.
        int(unsafe { raw::ioctl(fd, req, arg as usize) }.map(|v| v as c_int))
    };
    #[doc = "`dup(2)`."]
    fn parlib_dup(fd: c_int) -> c_int => int(raw::dup(fd));
    #[doc = "`dup2(2)`."]
    fn parlib_dup2(old: c_int, new: c_int) -> c_int => int(raw::dup2(old, new));
    #[doc = "`dup3(2)`."]
    fn parlib_dup3(old: c_int, new: c_int, flags: c_int) -> c_int => int(raw::dup3(old, new, flags));
    #[doc = "`syscall(2)`, declared variadic in C: six argument words are read (the kernel ignores those a call does not take). `SYS_futex` waits block only a uthread (`futex`); every other number is the plain call."]
    fn parlib_syscall(num: libc::c_long, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize, a6: usize) -> libc::c_long => {
        let r = if num == libc::SYS_futex {
            // SAFETY: our caller upholds futex(2)'s contract for these arguments.
            unsafe { crate::futex::futex(a1, a2 as c_int, a3 as u32, a4, a5, a6 as u32) }
        } else {
            raw::sys(num, [a1, a2, a3, a4, a5, a6])
        };
        match r {
            Ok(v) => v as libc::c_long,
            Err(e) => {
                fail(e);
                -1
            }
        }
    };
    #[doc = "`usleep(3)`."]
    fn parlib_usleep(us: libc::useconds_t) -> c_int => unit(raw::usleep(us as u64));
    #[doc = "`sleep(3)`."]
    fn parlib_sleep(secs: c_uint) -> c_uint => raw::sleep(secs);
}
