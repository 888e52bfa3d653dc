//! Bad input gets exactly the errno plain libc gives in the same situation (DESIGN §7:
//! the wrappers keep the system calls' semantics), on a uthread and on a plain thread,
//! through the safe Rust face (`io`, the errno in the `io::Error`), the raw layer under it
//! (`raw`, `Err(errno)`) and the C face (`cabi`, `-1` and `errno`).
//!
//! Each case builds its situation afresh (a pipe with data, a closed port, ...), makes one
//! call by one of the routes, and cleans up. The reference is the libc call on a plain
//! thread; every route must give the same result, and that result must be the one the
//! case names (so a case cannot pass by testing nothing). Arguments the safe face cannot
//! express (null buffers, negative counts and times) go by the raw layer and the C face
//! only.

use parlib_testsched as common;
mod support;

use std::ffi::CStr;
use std::io::{IoSlice, IoSliceMut};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use parlib_syscalls::io::SockAddr;
use parlib_syscalls::{cabi, io, raw};
use parlib_testkit::isolated;
use parlib_uthread::TlsMode;
use support::{errno_name, errno_of, TIMEOUT};

/// How a case makes its call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// `parlib_syscalls::io`: slices, `&CStr`, `SockAddr`, `Duration`.
    Safe,
    /// `parlib_syscalls::raw`: raw pointers, `Err(errno)`.
    Raw,
    /// `parlib_syscalls::cabi` (`parlib_read` ...), result and errno as in C.
    C,
    /// Plain libc: the reference.
    Libc,
}

type Res = Result<usize, i32>;

/// A C-style return value as a result, reading `errno` on failure.
fn c_res(r: isize) -> Res {
    if r < 0 {
        Err(support::errno())
    } else {
        Ok(r as usize)
    }
}

// The routes. The `*_ptr` routes take raw pointers and counts, for the raw layer, the C
// face and libc only: the cases give them buffers, iovecs and strings valid for the sizes
// given, or, on purpose, a null pointer or a count the kernel must reject; either way no
// call writes anywhere it may not. The other routes take what the safe face takes and
// pass the same pointers and sizes down the other routes.

const NOT_SAFE: &str = "the safe face cannot express this call: the case belongs in RAW_ONLY_CASES";

fn read(via: Via, fd: i32, buf: &mut [u8]) -> Res {
    match via {
        Via::Safe => errno_of(io::read(fd, buf)),
        _ => read_ptr(via, fd, buf.as_mut_ptr(), buf.len()),
    }
}

/// `buf` is valid for writes of `n` bytes, or null on purpose.
fn read_ptr(via: Via, fd: i32, buf: *mut u8, n: usize) -> Res {
    match via {
        Via::Safe => unreachable!("{NOT_SAFE}"),
        // SAFETY: `buf` is valid for `n` bytes, or a null pointer given on purpose: the
        // layer must hand it to the kernel, which refuses it (EFAULT) without writing.
        Via::Raw => unsafe { raw::read(fd, buf, n) },
        // SAFETY: as for the raw layer.
        Via::C => c_res(unsafe { cabi::parlib_read(fd, buf.cast(), n) }),
        // SAFETY: as for the raw layer.
        Via::Libc => c_res(unsafe { libc::read(fd, buf.cast(), n) }),
    }
}

fn write(via: Via, fd: i32, buf: &[u8]) -> Res {
    match via {
        Via::Safe => errno_of(io::write(fd, buf)),
        _ => write_ptr(via, fd, buf.as_ptr(), buf.len()),
    }
}

/// `buf` is valid for reads of `n` bytes, or null on purpose.
fn write_ptr(via: Via, fd: i32, buf: *const u8, n: usize) -> Res {
    match via {
        Via::Safe => unreachable!("{NOT_SAFE}"),
        // SAFETY: `buf` is valid for `n` bytes, or a null pointer given on purpose: the
        // layer must hand it to the kernel, which refuses it (EFAULT) without reading.
        Via::Raw => unsafe { raw::write(fd, buf, n) },
        // SAFETY: as for the raw layer.
        Via::C => c_res(unsafe { cabi::parlib_write(fd, buf.cast(), n) }),
        // SAFETY: as for the raw layer.
        Via::Libc => c_res(unsafe { libc::write(fd, buf.cast(), n) }),
    }
}

fn readv(via: Via, fd: i32, bufs: &mut [IoSliceMut<'_>]) -> Res {
    match via {
        Via::Safe => errno_of(io::readv(fd, bufs)),
        // `IoSliceMut` is ABI-compatible with `iovec` on Unix (std's guarantee).
        _ => readv_ptr(via, fd, bufs.as_mut_ptr().cast(), bufs.len() as i32),
    }
}

/// `iov` holds at least as many valid iovecs as the kernel accepts of `cnt`.
fn readv_ptr(via: Via, fd: i32, iov: *const libc::iovec, cnt: i32) -> Res {
    match via {
        Via::Safe => unreachable!("{NOT_SAFE}"),
        // SAFETY: `iov` holds `cnt` iovecs over writable buffers, or `cnt` is one the
        // layer must refuse (EINVAL) before reading any.
        Via::Raw => unsafe { raw::readv(fd, iov, cnt) },
        // SAFETY: as for the raw layer.
        Via::C => c_res(unsafe { cabi::parlib_readv(fd, iov, cnt) }),
        // SAFETY: as for the raw layer.
        Via::Libc => c_res(unsafe { libc::readv(fd, iov, cnt) }),
    }
}

fn writev(via: Via, fd: i32, bufs: &[IoSlice<'_>]) -> Res {
    match via {
        Via::Safe => errno_of(io::writev(fd, bufs)),
        // `IoSlice` is ABI-compatible with `iovec` on Unix (std's guarantee).
        _ => writev_ptr(via, fd, bufs.as_ptr().cast(), bufs.len() as i32),
    }
}

/// `iov` holds at least as many valid iovecs as the kernel accepts of `cnt`.
fn writev_ptr(via: Via, fd: i32, iov: *const libc::iovec, cnt: i32) -> Res {
    match via {
        Via::Safe => unreachable!("{NOT_SAFE}"),
        // SAFETY: `iov` holds `cnt` iovecs over readable buffers, or `cnt` is one the
        // layer must refuse (EINVAL) before reading any.
        Via::Raw => unsafe { raw::writev(fd, iov, cnt) },
        // SAFETY: as for the raw layer.
        Via::C => c_res(unsafe { cabi::parlib_writev(fd, iov, cnt) }),
        // SAFETY: as for the raw layer.
        Via::Libc => c_res(unsafe { libc::writev(fd, iov, cnt) }),
    }
}

fn recv(via: Via, fd: i32, buf: &mut [u8]) -> Res {
    let (p, n) = (buf.as_mut_ptr(), buf.len());
    match via {
        Via::Safe => errno_of(io::recv(fd, buf, 0)),
        // SAFETY: `p` is valid for writes of `n` bytes (it is `buf`).
        Via::Raw => unsafe { raw::recv(fd, p, n, 0) },
        // SAFETY: as for the raw layer.
        Via::C => c_res(unsafe { cabi::parlib_recv(fd, p.cast(), n, 0) }),
        // SAFETY: as for the raw layer.
        Via::Libc => c_res(unsafe { libc::recv(fd, p.cast(), n, 0) }),
    }
}

fn accept(via: Via, fd: i32) -> Res {
    let (null_addr, null_len) = (core::ptr::null_mut(), core::ptr::null_mut());
    let r = match via {
        Via::Safe => errno_of(io::accept(fd)).map(|(fd, _peer)| fd),
        // SAFETY: null address pointers ask for no peer address.
        Via::Raw => unsafe { raw::accept(fd, null_addr, null_len) },
        // SAFETY: as for the raw layer.
        Via::C => c_res(unsafe { cabi::parlib_accept(fd, null_addr, null_len) } as isize).map(|v| v as i32),
        // SAFETY: as for the raw layer.
        Via::Libc => c_res(unsafe { libc::accept(fd, null_addr, null_len) } as isize).map(|v| v as i32),
    };
    r.map(|fd| {
        support::close(fd);
        fd as usize
    })
}

fn connect(via: Via, fd: i32, addr: &SockAddr) -> Res {
    let (a, len) = (addr.as_ptr(), addr.len());
    match via {
        Via::Safe => errno_of(io::connect(fd, addr)).map(|()| 0),
        // SAFETY: `a` is valid for reads of `len` bytes (it is `addr`).
        Via::Raw => unsafe { raw::connect(fd, a, len) }.map(|()| 0),
        // SAFETY: as for the raw layer.
        Via::C => c_res(unsafe { cabi::parlib_connect(fd, a, len) } as isize),
        // SAFETY: as for the raw layer.
        Via::Libc => c_res(unsafe { libc::connect(fd, a, len) } as isize),
    }
}

/// `sec` and `nsec` may be out of range only for the routes other than the safe one.
fn nanosleep(via: Via, sec: i64, nsec: i64) -> Res {
    let ts = libc::timespec { tv_sec: sec, tv_nsec: nsec };
    match via {
        Via::Safe => {
            let (s, ns) = (u64::try_from(sec), u32::try_from(nsec));
            let (Ok(s), Ok(ns @ 0..1_000_000_000)) = (s, ns) else { unreachable!("{NOT_SAFE}") };
            errno_of(io::nanosleep(Duration::new(s, ns))).map(|()| 0)
        }
        Via::Raw => raw::nanosleep(&ts, None).map(|()| 0),
        // SAFETY: a valid timespec; no remainder wanted.
        Via::C => c_res(unsafe { cabi::parlib_nanosleep(&ts, core::ptr::null_mut()) } as isize),
        // SAFETY: as for the C face.
        Via::Libc => c_res(unsafe { libc::nanosleep(&ts, core::ptr::null_mut()) } as isize),
    }
}

fn close(via: Via, fd: i32) -> Res {
    match via {
        Via::Safe => errno_of(io::close(fd)).map(|()| 0),
        Via::Raw => raw::close(fd).map(|()| 0),
        // SAFETY: closing a number nothing else in this child uses (valid or not, on purpose).
        Via::C => c_res(unsafe { cabi::parlib_close(fd) } as isize),
        // SAFETY: as for the C face.
        Via::Libc => c_res(unsafe { libc::close(fd) } as isize),
    }
}

fn socket(via: Via, domain: i32, ty: i32) -> Res {
    match via {
        Via::Safe => errno_of(io::socket(domain, ty, 0)).map(|v| v as usize),
        Via::Raw => raw::socket(domain, ty, 0).map(|v| v as usize),
        // SAFETY: no pointers.
        Via::C => c_res(unsafe { cabi::parlib_socket(domain, ty, 0) } as isize),
        // SAFETY: no pointers.
        Via::Libc => c_res(unsafe { libc::socket(domain, ty, 0) } as isize),
    }
}

/// `fds` has room for two descriptors (or, for the C face and libc only, is null). The
/// descriptors a successful call makes are closed.
fn pipe2(via: Via, fds: *mut i32, flags: i32) -> Res {
    let made = match via {
        Via::Safe => errno_of(io::pipe2(flags)).map(|fds| close_all(&fds)),
        // SAFETY: the raw layer is only given room for two descriptors.
        Via::Raw => raw::pipe2(unsafe { &mut *(fds as *mut [i32; 2]) }, flags),
        // SAFETY: room for two descriptors, or null on purpose (refused with EFAULT).
        Via::C => c_res(unsafe { cabi::parlib_pipe2(fds, flags) } as isize).map(drop),
        // SAFETY: as for the C face.
        Via::Libc => c_res(unsafe { libc::pipe2(fds, flags) } as isize).map(drop),
    };
    if made.is_ok() && via != Via::Safe {
        // SAFETY: a successful call wrote two descriptors to `fds`.
        close_all(unsafe { &*(fds as *const [i32; 2]) });
    }
    made.map(|()| 0)
}

fn open(via: Via, path: &CStr, flags: i32) -> Res {
    match via {
        Via::Safe => errno_of(io::open(path, flags, 0)).map(|fd| {
            support::close(fd);
            fd as usize
        }),
        _ => open_ptr(via, path.as_ptr(), flags),
    }
}

/// `path` is NUL-terminated, or null on purpose.
fn open_ptr(via: Via, path: *const libc::c_char, flags: i32) -> Res {
    let r = match via {
        Via::Safe => unreachable!("{NOT_SAFE}"),
        // SAFETY: a NUL-terminated path, or a null pointer given on purpose: the layer
        // must hand it to the kernel, which refuses it (EFAULT) without reading.
        Via::Raw => unsafe { raw::open(path, flags, 0) }.map(|v| v as usize),
        // SAFETY: as for the raw layer.
        Via::C => c_res(unsafe { cabi::parlib_open(path, flags, 0) } as isize),
        // SAFETY: as for the raw layer.
        Via::Libc => c_res(unsafe { libc::open(path, flags, 0) } as isize),
    };
    r.inspect(|&fd| support::close(fd as i32))
}

// ---------------------------------------------------------------------------------------
// The situations.

/// A pipe holding `data`.
fn pipe_with(data: &[u8]) -> [i32; 2] {
    let p = support::pipe();
    support::write_all(p[1], data);
    p
}

fn close_all(fds: &[i32]) {
    for &fd in fds {
        support::close(fd);
    }
}

/// A port on 127.0.0.1 nobody listens on: bound, then closed.
fn closed_port() -> u16 {
    let (fd, port) = support::bound_loopback_socket(None);
    // SAFETY: our own descriptor, never seen by the layer.
    unsafe { libc::close(fd) };
    port
}

/// A case: its name, what it must give, and the call by a route.
struct Case {
    name: &'static str,
    expect: Res,
    run: fn(Via) -> Res,
}

/// Cases every route takes.
const CASES: &[Case] = &[
    Case { name: "read(-1)", expect: Err(libc::EBADF), run: |v| read(v, -1, &mut [0u8; 8]) },
    Case { name: "write(-1)", expect: Err(libc::EBADF), run: |v| write(v, -1, b"x") },
    Case {
        name: "read(a closed descriptor)",
        expect: Err(libc::EBADF),
        run: |v| {
            let [r, w] = support::pipe();
            close_all(&[r, w]);
            read(v, r, &mut [0u8; 8])
        },
    },
    Case {
        name: "write(a closed descriptor)",
        expect: Err(libc::EBADF),
        run: |v| {
            let [r, w] = support::pipe();
            close_all(&[r, w]);
            write(v, w, b"x")
        },
    },
    Case {
        name: "read(pipe with data, buf, 0)",
        expect: Ok(0),
        run: |v| {
            let p = pipe_with(b"data");
            let r = read(v, p[0], &mut [0u8; 8][..0]);
            close_all(&p);
            r
        },
    },
    Case {
        name: "read(pipe at EOF)",
        expect: Ok(0),
        run: |v| {
            let [r, w] = support::pipe();
            support::close(w);
            let res = read(v, r, &mut [0u8; 8]);
            support::close(r);
            res
        },
    },
    Case {
        name: "read(socket whose peer closed)",
        expect: Ok(0),
        run: |v| {
            let [a, b] = support::socketpair();
            support::close(b);
            let res = read(v, a, &mut [0u8; 8]);
            support::close(a);
            res
        },
    },
    Case {
        name: "write(pipe whose read end is closed)",
        expect: Err(libc::EPIPE),
        run: |v| {
            let [r, w] = support::pipe();
            support::close(r);
            let res = write(v, w, b"x");
            support::close(w);
            res
        },
    },
    Case {
        name: "write(socket whose peer closed)",
        expect: Err(libc::EPIPE),
        run: |v| {
            let [a, b] = support::socketpair();
            support::close(b);
            let res = write(v, a, b"x");
            support::close(a);
            res
        },
    },
    Case {
        name: "accept(pipe)",
        expect: Err(libc::ENOTSOCK),
        run: |v| {
            let p = support::pipe();
            let r = accept(v, p[0]);
            close_all(&p);
            r
        },
    },
    Case {
        name: "accept(/dev/null)",
        expect: Err(libc::ENOTSOCK),
        run: |v| {
            let fd = io::open(c"/dev/null", libc::O_RDONLY | libc::O_CLOEXEC, 0).expect("open /dev/null");
            let r = accept(v, fd);
            support::close(fd);
            r
        },
    },
    Case {
        name: "accept(socket not listening)",
        expect: Err(libc::EINVAL),
        run: |v| {
            let fd = io::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0).expect("socket");
            let r = accept(v, fd);
            support::close(fd);
            r
        },
    },
    Case {
        name: "recv(pipe)",
        expect: Err(libc::ENOTSOCK),
        run: |v| {
            let p = pipe_with(b"data");
            let r = recv(v, p[0], &mut [0u8; 8]);
            close_all(&p);
            r
        },
    },
    Case {
        name: "connect(127.0.0.1:closed port)",
        expect: Err(libc::ECONNREFUSED),
        run: |v| {
            let addr = support::loopback_addr(closed_port());
            let fd = io::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0).expect("socket");
            let r = connect(v, fd, &addr);
            support::close(fd);
            r
        },
    },
    Case {
        name: "connect(address length 1)",
        expect: Err(libc::EINVAL),
        run: |v| {
            let addr = support::loopback_addr(closed_port());
            // SAFETY: `addr` is valid for reads of its 16 bytes; the copy takes 1.
            let short = unsafe { SockAddr::from_raw(addr.as_ptr(), 1) }.expect("a 1-byte address");
            let fd = io::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0).expect("socket");
            let r = connect(v, fd, &short);
            support::close(fd);
            r
        },
    },
    Case {
        name: "readv(pipe with data, 2 iovecs)",
        expect: Ok(9),
        run: |v| {
            let p = pipe_with(b"some data");
            let (mut b1, mut b2) = ([0u8; 4], [0u8; 16]);
            let r = readv(v, p[0], &mut [IoSliceMut::new(&mut b1), IoSliceMut::new(&mut b2)]);
            close_all(&p);
            assert_eq!(
                (&b1[..], &b2[..5]),
                (&b"some"[..], &b" data"[..]),
                "readv scattered the bytes wrongly"
            );
            r
        },
    },
    Case {
        name: "writev(socket, 2 iovecs)",
        expect: Ok(9),
        run: |v| {
            let s = support::socketpair();
            let r = writev(v, s[0], &[IoSlice::new(b"some"), IoSlice::new(b" data")]);
            let mut back = [0u8; 9];
            support::read_exact(s[1], &mut back);
            assert_eq!(&back, b"some data", "writev gathered the bytes wrongly");
            close_all(&s);
            r
        },
    },
    Case { name: "nanosleep(0 s, 0 ns)", expect: Ok(0), run: |v| nanosleep(v, 0, 0) },
    Case { name: "close(-1)", expect: Err(libc::EBADF), run: |v| close(v, -1) },
    Case {
        name: "close(a closed descriptor)",
        expect: Err(libc::EBADF),
        run: |v| {
            let [r, w] = support::pipe();
            close_all(&[r, w]);
            close(v, r)
        },
    },
    Case {
        name: "socket(bad domain)",
        expect: Err(libc::EAFNOSUPPORT),
        run: |v| socket(v, 12345, libc::SOCK_STREAM),
    },
    Case {
        name: "pipe2(bad flags)",
        expect: Err(libc::EINVAL),
        run: |v| pipe2(v, [0i32; 2].as_mut_ptr(), 0x7fff_0000),
    },
    Case {
        name: "read(a directory)",
        expect: Err(libc::EISDIR),
        run: |v| {
            let fd = io::open(c"/", libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC, 0).expect("open /");
            let r = read(v, fd, &mut [0u8; 8]);
            support::close(fd);
            r
        },
    },
    Case { name: "open(\"\")", expect: Err(libc::ENOENT), run: |v| open(v, c"", libc::O_RDONLY) },
    Case {
        name: "open(a directory for writing)",
        expect: Err(libc::EISDIR),
        run: |v| open(v, c"/", libc::O_WRONLY),
    },
];

/// Arguments the safe face cannot express (null buffers and paths, negative counts,
/// times out of range): by the raw layer and the C face.
const RAW_ONLY_CASES: &[Case] = &[
    Case {
        name: "read(pipe with data, NULL, 16)",
        expect: Err(libc::EFAULT),
        run: |v| {
            let p = pipe_with(b"some data");
            let r = read_ptr(v, p[0], core::ptr::null_mut(), 16);
            close_all(&p);
            r
        },
    },
    Case {
        name: "write(pipe, NULL, 16)",
        expect: Err(libc::EFAULT),
        run: |v| {
            let p = support::pipe();
            let r = write_ptr(v, p[1], core::ptr::null(), 16);
            close_all(&p);
            r
        },
    },
    Case {
        name: "read(socket with data, NULL, 16)",
        expect: Err(libc::EFAULT),
        run: |v| {
            let s = support::socketpair();
            support::write_all(s[1], b"some data");
            let r = read_ptr(v, s[0], core::ptr::null_mut(), 16);
            close_all(&s);
            r
        },
    },
    Case {
        name: "write(socket, NULL, 16)",
        expect: Err(libc::EFAULT),
        run: |v| {
            let s = support::socketpair();
            let r = write_ptr(v, s[0], core::ptr::null(), 16);
            close_all(&s);
            r
        },
    },
    Case {
        name: "readv(pipe, iov, -1)",
        expect: Err(libc::EINVAL),
        run: |v| {
            let p = pipe_with(b"data");
            let mut b = [0u8; 8];
            let iov = libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() };
            let r = readv_ptr(v, p[0], &iov, -1);
            close_all(&p);
            r
        },
    },
    Case {
        name: "nanosleep(0 s, 1e9 ns)",
        expect: Err(libc::EINVAL),
        run: |v| nanosleep(v, 0, 1_000_000_000),
    },
    Case { name: "nanosleep(0 s, -1 ns)", expect: Err(libc::EINVAL), run: |v| nanosleep(v, 0, -1) },
    Case { name: "nanosleep(-1 s, 0 ns)", expect: Err(libc::EINVAL), run: |v| nanosleep(v, -1, 0) },
    Case {
        name: "open(NULL)",
        expect: Err(libc::EFAULT),
        run: |v| open_ptr(v, core::ptr::null(), libc::O_RDONLY),
    },
];

/// The C face's null-pointer arguments it checks itself (no kernel call to ask).
const C_ONLY_CASES: &[Case] = &[
    Case {
        name: "nanosleep(NULL, NULL)",
        expect: Err(libc::EFAULT),
        run: |v| {
            let (req, rem) = (core::ptr::null(), core::ptr::null_mut());
            match v {
                Via::Safe | Via::Raw => unreachable!("the Rust faces take a reference"),
                // SAFETY: a null request, which must be refused (EFAULT); nothing is written.
                Via::C => c_res(unsafe { cabi::parlib_nanosleep(req, rem) } as isize),
                // SAFETY: as for the C face.
                Via::Libc => c_res(unsafe { libc::nanosleep(req, rem) } as isize),
            }
        },
    },
    Case { name: "pipe2(NULL)", expect: Err(libc::EFAULT), run: |v| pipe2(v, core::ptr::null_mut(), 0) },
];

/// Cases and the routes of the layer that take them.
type Group = (&'static [Case], &'static [Via]);

/// Runs every case of every group by its routes, or by libc alone for the `reference`,
/// on the calling thread or uthread; returns `(case, route, result)` triples.
fn run_cases(groups: &'static [Group], reference: bool) -> Vec<(&'static str, Via, Res)> {
    let mut out = Vec::new();
    for &(cases, vias) in groups {
        let vias = if reference { &[Via::Libc][..] } else { vias };
        for c in cases {
            for &v in vias {
                out.push((c.name, v, (c.run)(v)));
            }
        }
    }
    out
}

/// Every route's result equals the libc reference and the case's expectation.
fn check(
    groups: &'static [Group],
    reference: &[(&'static str, Via, Res)],
    got: &[(&'static str, Via, Res)],
    on: &str,
) {
    let show = |r: &Res| match r {
        Ok(v) => format!("Ok({v})"),
        Err(e) => errno_name(*e),
    };
    let mut bad = Vec::new();
    for c in groups.iter().flat_map(|g| g.0) {
        let libc_res = reference.iter().find(|(n, _, _)| *n == c.name).expect("a reference result").2;
        if libc_res != c.expect {
            bad.push(format!(
                "{}: plain libc gave {} (the case expects {})",
                c.name,
                show(&libc_res),
                show(&c.expect)
            ));
        }
        for (_, v, r) in got.iter().filter(|(n, _, _)| *n == c.name) {
            if *r != libc_res {
                bad.push(format!(
                    "{}: {v:?} on {on} gave {}, plain libc {}",
                    c.name,
                    show(r),
                    show(&libc_res)
                ));
            }
        }
    }
    assert!(bad.is_empty(), "results differ from plain libc:\n  {}", bad.join("\n  "));
}

fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN; no handler code runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

fn compare_cases(groups: &'static [Group]) {
    ignore_sigpipe();
    support::init_runtime();
    let reference = support::on_plain_thread(move || run_cases(groups, true));
    let plain = support::on_plain_thread(move || run_cases(groups, false));
    check(groups, &reference, &plain, "a plain thread");
    // Backed TLS: errno read after a C-face call is the uthread's own.
    static DONE: AtomicI32 = AtomicI32::new(0);
    let reference2 = reference.clone();
    support::spawn(TlsMode::Backed, move || {
        let got = run_cases(groups, false);
        check(groups, &reference2, &got, "a uthread");
        DONE.store(1, Ordering::Release);
    });
    common::wait_all();
    assert_eq!(DONE.load(Ordering::Acquire), 1);
}

#[test]
fn bad_descriptors_pointers_addresses_and_times_give_the_errno_plain_libc_gives() {
    isolated!(TIMEOUT, {
        compare_cases(&[(CASES, &[Via::Safe, Via::Raw, Via::C]), (RAW_ONLY_CASES, &[Via::Raw, Via::C])]);
    });
}

#[test]
fn the_c_face_refuses_null_pointers_as_libc_does() {
    isolated!(TIMEOUT, {
        compare_cases(&[(C_ONLY_CASES, &[Via::C])]);
    });
}

// ---------------------------------------------------------------------------------------
// Regressions: library bugs found earlier, now fixed.

/// Vector counts the kernel refuses for `readv`/`writev` (negative, or above `IOV_MAX` =
/// 1024). On a socket the layer turns the call into `recvmsg`/`sendmsg`, whose rules
/// differ; it once passed `msg_iovlen = cnt.max(0)`, so a negative count became an empty
/// vector (`Ok(0)`, which a reader takes for EOF) and too many vectors gave `EMSGSIZE`.
/// Negative counts: by the raw layer and the C face (the safe face has none).
const NEGATIVE_VECTOR_COUNTS: &[Case] = &[
    Case {
        name: "readv(socket with data, iov, -1)",
        expect: Err(libc::EINVAL),
        run: |v| {
            let s = support::socketpair();
            support::write_all(s[1], b"data");
            let mut b = [0u8; 8];
            let iov = libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() };
            let r = readv_ptr(v, s[0], &iov, -1);
            close_all(&s);
            r
        },
    },
    Case {
        name: "writev(socket, iov, -1)",
        expect: Err(libc::EINVAL),
        run: |v| {
            let s = support::socketpair();
            let iov = libc::iovec { iov_base: b"data".as_ptr() as *mut _, iov_len: 4 };
            let r = writev_ptr(v, s[0], &iov, -1);
            close_all(&s);
            r
        },
    },
];

/// More vectors than `IOV_MAX`: by every route.
const TOO_MANY_VECTORS: &[Case] = &[
    Case {
        name: "readv(socket with data, 1025 iovecs)",
        expect: Err(libc::EINVAL),
        run: |v| {
            let s = support::socketpair();
            support::write_all(s[1], b"data");
            let mut bufs: Vec<IoSliceMut<'_>> = (0..1025).map(|_| IoSliceMut::new(&mut [])).collect();
            let r = readv(v, s[0], &mut bufs);
            close_all(&s);
            r
        },
    },
    Case {
        name: "writev(socket, 1025 iovecs)",
        expect: Err(libc::EINVAL),
        run: |v| {
            let s = support::socketpair();
            let r = writev(v, s[0], &vec![IoSlice::new(b"d"); 1025]);
            close_all(&s);
            r
        },
    },
];

#[test]
fn readv_and_writev_on_sockets_refuse_bad_vector_counts_as_libc_does() {
    parlib_testkit::isolated!(TIMEOUT, {
        compare_cases(&[
            (NEGATIVE_VECTOR_COUNTS, &[Via::Raw, Via::C]),
            (TOO_MANY_VECTORS, &[Via::Safe, Via::Raw, Via::C]),
        ]);
    });
}

/// `connect` on a pipe fails with ENOTSOCK, as in libc, and must leave the pipe as it
/// was. The layer's `connect` calls `make_socket_nonblocking` before finding out the
/// descriptor is no socket: it sets `O_NONBLOCK` on the pipe and caches it as "a socket
/// we made non-blocking". The next `read` reclassifies it (ENOTSOCK from `recvfrom`),
/// finds `O_NONBLOCK` set and takes it for the user's: from then on reads of the empty
/// pipe return EAGAIN to uthreads and plain threads instead of blocking.
#[test]
fn connect_on_a_pipe_fails_with_enotsock_and_leaves_the_pipe_blocking() {
    static READ: AtomicI32 = AtomicI32::new(0);
    parlib_testkit::isolated!(TIMEOUT, env = support::ONE_VCORE, {
        support::init_runtime();
        let [r, w] = support::pipe();
        support::spawn(TlsMode::None, move || {
            let addr = support::loopback_addr(closed_port());
            assert_eq!(connect(Via::Safe, r, &addr), Err(libc::ENOTSOCK), "connect on a pipe");
            // The pipe is empty: this read must block until main writes.
            let mut b = [0u8; 4];
            let got = errno_of(io::read(r, &mut b));
            READ.store(1, Ordering::Release);
            assert_eq!(got, Ok(4), "a read of the empty pipe after a failed connect on it");
            assert_eq!(&b, b"late");
        });
        common::yield_now(); // one vcore, FIFO: the reader is blocked (or already failed)
        assert_eq!(READ.load(Ordering::Acquire), 0, "the read of an empty pipe returned at once");
        support::write_all(w, b"late");
        common::wait_all();
        close_all(&[r, w]);
    });
}
